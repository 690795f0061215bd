"""A test double for ONE format scanner (not for the registry of scanners): the format
"evil" of files that start with ``EVIL`` (critical), ``MAYBE`` (medium, the callable
``maybe.callable`` for review) or ``STREAM`` (read whole through ``open()``, critical if
``EVIL`` appears anywhere after). It reads a header with ``read_at`` only, as a safetensors
scanner would, so a remote scan of such a file must fetch only that header.

The engine is independent of which scanners exist; the real format scanners replace this
one in their own tests. ``install(monkeypatch)`` makes it the only scanner in this process;
``cli(...)`` runs ``ocimodel`` in a subprocess with it installed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ocimodel.scanning.findings import Finding, Severity

ROOT = Path(__file__).resolve().parents[2]


class EvilScanner:
    name = "evil"

    def detect(self, head: bytes, size: int) -> bool:
        return head.startswith((b"EVIL", b"MAYBE", b"STREAM"))

    def scan(self, source) -> list[Finding]:
        head = source.read_at(0, 8)
        if head.startswith(b"EVIL"):
            return [Finding(file=source.name, format=self.name, severity=Severity.CRITICAL, rule="evil.magic",
                            detail="the callable os.system", offset=0)]
        if head.startswith(b"MAYBE"):
            return [Finding(file=source.name, format=self.name, severity=Severity.MEDIUM, rule="evil.review",
                            detail="maybe.callable", offset=5)]
        with source.open() as stream:
            data = stream.read()
        at = data.find(b"EVIL", 6)
        if at >= 0:
            return [Finding(file=source.name, format=self.name, severity=Severity.CRITICAL, rule="evil.streamed",
                            detail="the callable builtins.exec", offset=at)]
        return []


def install(monkeypatch) -> None:
    from ocimodel.scanning.formats import catalog

    monkeypatch.setattr(catalog, "all_scanners", lambda: [EvilScanner()])


_BOOT = (
    "from ocimodel.scanning.formats import catalog\n"
    "from tests.support.evilscanner import EvilScanner\n"
    "catalog.all_scanners = lambda: [EvilScanner()]\n"
    "import sys\n"
    "sys.argv[0] = 'ocimodel'\n"
    "from ocimodel.cli.app import main\n"
    "main()\n"
)


def cli(*args: object, cache_dir: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``ocimodel ARGS`` with the evil scanner, its own scan cache, no OCIMODEL_* leaking in."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("OCIMODEL_")}
    environment["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    environment["OCIMODEL_CACHE_DIR"] = str(cache_dir)
    environment["COLUMNS"] = "200"
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", _BOOT, *map(str, args)], capture_output=True, text=True, env=environment,
        timeout=120, stdin=subprocess.DEVNULL, check=False,
    )
