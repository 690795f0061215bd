"""Deployment records (docs/audit.md) for admitted models, written by a background
thread so the answer never waits for a registry write (docs/admission.md).

A record says the model runs at ``k8s://NAMESPACE/KIND/NAME`` in the environment given
to ``--record-deployments``. It is written once per (model, target) for the life of the
process, for the workloads and bare Pods admitted, never for a dry run, and never for a
Pod that has an owner (its Deployment or Job was recorded; a record per Pod restart would
only repeat it). Unsigned: whoever reads them with a policy sees them as such."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

from ocimodel.api.deployments import deploy
from ocimodel.errors import OcimodelError
from ocimodel.transport.connection import ConnectionOptions

log = logging.getLogger("ocimodel.admission")

MAX_PENDING = 1000  # a registry that cannot keep up loses records, never admission's memory


class RecordWriter:
    def __init__(self, connection: ConnectionOptions, environment: str,
                 on_result: Callable[[str], None] | None = None) -> None:
        self.connection = connection
        self.environment = environment
        self.on_result = on_result or (lambda result: None)
        self._queue: queue.Queue[tuple[str, str] | None] = queue.Queue(MAX_PENDING)
        self._seen: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="ocimodel-admission-records", daemon=True)
        self._thread.start()

    def submit(self, reference: str, target: str) -> None:
        """Queue a record of ``reference`` (pinned by digest) running at ``target``."""
        with self._lock:
            if (reference, target) in self._seen:
                return
            self._seen.add((reference, target))
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
                deploy(self.connection, reference, environment=self.environment, target=target, runtime=None)
                self.on_result("written")
            except OcimodelError as exc:
                self.on_result("failed")
                log.warning({"event": "deployment-record", "result": "failed", "reference": reference,
                             "target": target, "detail": exc.message})
            except Exception as exc:  # noqa: BLE001 - the writer outlives one bad record
                self.on_result("failed")
                log.warning({"event": "deployment-record", "result": "failed", "reference": reference,
                             "target": target, "detail": str(exc)[:300]})
