"""The latest evaluation values in Prometheus' text exposition format, built with
prometheus-client (imported here only: the rest of ocimodel never loads it).

    ocimodel_evaluation_value{model="team/sentiment",version="1.1",alias="production",metric="accuracy",dataset="..."} 0.91
    ocimodel_evaluation_timestamp_seconds{...same labels...} 1.7650944e+09

One sample per model version, metric and dataset: the value of the newest record that
measured it, and the time that record says it was measured (so an alert rule can also
fire on ``time() - ocimodel_evaluation_timestamp_seconds > 7*86400``)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

LABELS = ("model", "version", "alias", "metric", "dataset")
VALUE = "ocimodel_evaluation_value"
TIMESTAMP = "ocimodel_evaluation_timestamp_seconds"


@dataclass(frozen=True)
class Sample:
    model: str
    version: str
    alias: str
    metric: str
    dataset: str
    value: float
    timestamp: float  # seconds since the epoch, of the record

    def labels(self) -> list[str]:
        return [self.model, self.version, self.alias, self.metric, self.dataset]


def exposition(samples: Iterable[Sample]) -> bytes:
    """The text exposition of ``samples`` (version 0.0.4, what node_exporter's textfile
    collector and the Pushgateway read)."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import GaugeMetricFamily

    samples = list(samples)

    class _Collector:
        def collect(self):
            value = GaugeMetricFamily(VALUE, "The latest evaluation value of a model version, metric and dataset.",
                                      labels=LABELS)
            stamp = GaugeMetricFamily(TIMESTAMP, "When that evaluation was measured (the record's time), in seconds "
                                      "since the epoch.", labels=LABELS)
            for sample in samples:
                value.add_metric(sample.labels(), sample.value)
                stamp.add_metric(sample.labels(), sample.timestamp)
            yield value
            yield stamp

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector())
    return generate_latest(registry)
