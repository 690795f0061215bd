"""Deployment records (docs/audit.md) for admitted models, written by a background
thread so the answer never waits for a registry write (docs/admission.md).

A record says the model runs at ``k8s://NAMESPACE/KIND/NAME`` in the environment given
to ``--record-deployments``. It is written once per (model, target) (remembered for a
day, at most 10,000 pairs, oldest out first), for the workloads and Pods admitted, never
for a dry run, and never for an object owned by a kind the webhook records (its
Deployment or Job was recorded; a record per Pod restart would only repeat it).
Signed with ``--record-key`` (an ECDSA P-256 private key, read from its file for each
record, so a rotated Secret signs the next one; ``$OCIMODEL_KEY_PASSWORD`` decrypts it),
a record is trusted by whoever reads it with a policy that trusts the public key.
Without a key they are unsigned, and a policy shows them as such. Never keyless: no
identity token for Fulcio in a webhook (docs/admission.md)."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from ocimodel.api.deployments import deploy
from ocimodel.errors import OcimodelError
from ocimodel.transport.connection import ConnectionOptions

log = logging.getLogger("ocimodel.admission")

MAX_PENDING = 1000  # a registry that cannot keep up loses records, never admission's memory
MAX_SEEN = 10_000  # (model, target) pairs remembered as recorded
SEEN_TTL = 24 * 3600.0  # seconds: a workload still admitted a day later is recorded again


class RecordWriter:
    def __init__(self, connection: ConnectionOptions, environment: str,
                 on_result: Callable[[str], None] | None = None, *, max_seen: int = MAX_SEEN,
                 seen_ttl: float = SEEN_TTL, key: Path | None = None) -> None:
        self.connection = connection
        self.environment = environment
        self.key = key  # the password, when encrypted, from $OCIMODEL_KEY_PASSWORD (never held here)
        self.on_result = on_result or (lambda result: None)
        self._queue: queue.Queue[tuple[str, str] | None] = queue.Queue(MAX_PENDING)
        self._seen: OrderedDict[tuple[str, str], float] = OrderedDict()  # when each was queued
        self.max_seen, self.seen_ttl = max_seen, seen_ttl
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="ocimodel-admission-records", daemon=True)
        self._thread.start()

    def submit(self, reference: str, target: str) -> None:
        """Queue a record of ``reference`` (pinned by digest) running at ``target``."""
        key, now = (reference, target), time.monotonic()
        with self._lock:
            queued = self._seen.get(key)
            if queued is not None and now - queued < self.seen_ttl:
                return
            self._seen[key] = now
            self._seen.move_to_end(key)
            # Oldest out first: a long-lived webhook sees ever new targets (a Pod name per
            # run); a pruned one is recorded again, a duplicate record rather than unbounded memory.
            while len(self._seen) > self.max_seen:
                self._seen.popitem(last=False)
        try:
            self._queue.put_nowait((reference, target))
        except queue.Full:
            self.on_result("dropped")
            log.warning({"event": "deployment-record", "result": "dropped", "reference": reference,
                         "target": target, "detail": "queue full"})

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued (for at most ``timeout`` seconds), then stop."""
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            reference, target = item
            try:
                deploy(self.connection, reference, environment=self.environment, target=target, runtime=None,
                       key=self.key)
                self.on_result("written")
            except OcimodelError as exc:
                self.on_result("failed")
                log.warning({"event": "deployment-record", "result": "failed", "reference": reference,
                             "target": target, "detail": exc.message})
            except Exception as exc:  # noqa: BLE001 - the writer outlives one bad record
                self.on_result("failed")
                log.warning({"event": "deployment-record", "result": "failed", "reference": reference,
                             "target": target, "detail": str(exc)[:300]})
