"""Prometheus metrics of the webhook, on a registry of its own (two servers in one
process, as in the tests, do not share counters):

- ``ocimodel_admission_requests_total{endpoint, result}``: answers by endpoint (validate,
  mutate) and result (allowed, denied, malformed);
- ``ocimodel_admission_verdicts_total{result}``: model verdicts (allowed, denied,
  not_a_model), one per distinct reference judged;
- ``ocimodel_admission_request_seconds{endpoint}``: the time to answer (histogram);
- ``ocimodel_admission_cache_total{cache, result}``: lookups of the verdict, resolve and
  kind caches, by hit or miss;
- ``ocimodel_admission_deployment_records_total{result}``: records written or failed;
- ``ocimodel_admission_tls_reloads_total{result}``: TLS certificate reloads (ok, failed:
  the new files did not load and the last good pair is still served);
- ``ocimodel_admission_tls_certificate_expiry_timestamp_seconds``: the served
  certificate's notAfter (Unix time), to alert before it expires."""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

# Admission answers take milliseconds when cached and up to the deadline when not.
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("ocimodel_admission_requests", "AdmissionReview answers.",
                                ["endpoint", "result"], registry=self.registry)
        self.verdicts = Counter("ocimodel_admission_verdicts", "Model verdicts.", ["result"], registry=self.registry)
        self.latency = Histogram("ocimodel_admission_request_seconds", "Time to answer an AdmissionReview.",
                                 ["endpoint"], buckets=_BUCKETS, registry=self.registry)
        self.cache = Counter("ocimodel_admission_cache", "Cache lookups.", ["cache", "result"], registry=self.registry)
        self.records = Counter("ocimodel_admission_deployment_records", "Deployment records written off the "
                               "request path.", ["result"], registry=self.registry)
        self.tls_reloads = Counter("ocimodel_admission_tls_reloads", "TLS certificate reloads after the files "
                                   "changed.", ["result"], registry=self.registry)
        for result in ("ok", "failed"):  # both shown from the start: an alert on failed needs its 0
            self.tls_reloads.labels(result=result)
        self.tls_expiry = Gauge("ocimodel_admission_tls_certificate_expiry_timestamp_seconds", "The served "
                                "certificate's notAfter, in Unix time.", registry=self.registry)

    def cache_lookup(self, name: str, hit: bool) -> None:
        self.cache.labels(cache=name, result="hit" if hit else "miss").inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
