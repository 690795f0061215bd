#!/usr/bin/env python3
"""Model scanners side by side: ocimodel, picklescan, modelscan and fickling on the
project's corpus (tests/support/scan_corpus.py, plus the other formats' corpus when it is
there), printing detections, misses, false alarms and errors per tool and per format,
then pickle throughput and the bytes fetched to scan a remote 1 GiB safetensors model
(benchmarks/scan_remote.py, which starts a local registry; ``--no-remote`` skips it).

    PYTHONPATH=src .venv/bin/python benchmarks/scan_peers.py [--only ocimodel,picklescan] [--list] [--no-remote]

Each file is written under its corpus name (``model.safetensors`` stays so named: tools
that pick files by name are judged on what they skip). A tool "detects" a file when it
reports it as unsafe by its own standard: picklescan a dangerous global or an infected
file; modelscan any issue; fickling any result above LIKELY_SAFE; ocimodel a finding at
or above high (what ``scan --fail-on high``, the default, fails on). A tool that errors
on a file neither detects it nor raises a false alarm on it: errors are counted apart.

Peers are installed in the venv by hand (``pip install picklescan modelscan fickling``),
never by the project. Nothing here loads a model."""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import pickle
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from ocimodel.scanning.findings import Severity  # noqa: E402
from tests.support.scan_corpus import benign_corpus, malicious_pickle_corpus, scan_bytes  # noqa: E402

TIMEOUT = 60  # seconds a tool may spend on one file


Entry = tuple[str, str, str, bytes]  # format group, label, file name, bytes


def _corpus() -> tuple[list[Entry], list[Entry]]:
    # The pickle corpus holds plain pickles and the formats that carry them (PyTorch zip
    # and legacy, joblib, NumPy): one group, "pickle+".
    malicious = [("pickle+", *entry) for entry in malicious_pickle_corpus()]
    benign = [("pickle+", *entry) for entry in benign_corpus()]
    try:  # the other formats' corpus, when that work is merged
        from tests.support.scan_corpus_formats import benign_files, malicious_files
    except ImportError:
        return malicious, benign
    malicious += [(f.format, f"{f.format}:{f.why or f.name}", f.name, f.data) for f in malicious_files()
                  if f.expect is not None and f.expect.at_least(Severity.HIGH)]  # fmt: skip
    benign += [(f.format, f"{f.format}:{f.name}", f.name, f.data) for f in benign_files()]
    return malicious, benign


# -- the tools: each returns True (unsafe), False (clean) or raises -------------------------
def _ocimodel(path: Path, data: bytes) -> bool:
    findings = scan_bytes(data, path.name)
    return any(f.severity.at_least(Severity.HIGH) for f in findings)


def _picklescan(path: Path, data: bytes) -> bool:
    from picklescan.scanner import scan_file_path

    result = scan_file_path(str(path))
    if result.scan_err and not (result.infected_files or result.issues_count):
        raise RuntimeError("picklescan: scan error")
    return bool(result.infected_files or result.issues_count)


def _modelscan(path: Path, data: bytes) -> bool:
    from modelscan.modelscan import ModelScan

    result = ModelScan().scan(path)
    if result.get("issues"):
        return True
    if result.get("errors"):
        raise RuntimeError(f"modelscan: {result['errors'][0]}")
    return False


def _fickling(path: Path, data: bytes) -> bool:
    import fickling
    from fickling.analysis import Severity as FicklingSeverity

    result = fickling.scan_file(str(path))
    return result.severity is not None and result.severity > FicklingSeverity.LIKELY_SAFE


TOOLS: dict[str, Callable[[Path, bytes], bool]] = {
    "ocimodel": _ocimodel,
    "picklescan": _picklescan,
    "modelscan": _modelscan,
    "fickling": _fickling,
}


class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout()


def _run(tool: Callable[[Path, bytes], bool], path: Path, data: bytes) -> str:
    """detected | clean | error"""
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(TIMEOUT)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            return "detected" if tool(path, data) else "clean"
    except _Timeout:
        return "error"
    except Exception:  # noqa: BLE001 - a peer's crash on a file is its error count
        return "error"
    finally:
        signal.alarm(0)


def _throughput(tools: list[str], workdir: Path) -> list[str]:
    """MB/s over two pickles: op-dense (many small objects) and array-heavy (protocol 2,
    as NumPy arrays pickle through _codecs.encode)."""
    import numpy as np

    rows = []
    samples = {
        "op-dense": pickle.dumps([{"id": i, "score": i / 7, "name": f"n{i}", "tags": (i, "x")} for i in range(150_000)], protocol=4),
        "array-heavy-p2": pickle.dumps({f"layer{i}": np.random.RandomState(i).rand(256, 256) for i in range(40)}, protocol=2),
    }
    for label, data in samples.items():
        path = workdir / f"{label}.pkl"
        path.write_bytes(data)
        cells = []
        for name in tools:
            start = time.perf_counter()
            outcome = _run(TOOLS[name], path, data)
            elapsed = time.perf_counter() - start
            mb = len(data) / 1e6
            cells.append(f"{mb / elapsed:8.1f}" if outcome != "error" else "   error")
        rows.append(f"| {label} ({len(data) / 1e6:.1f} MB) | " + " | ".join(cells) + " |")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="comma-separated subset of " + ",".join(TOOLS))
    parser.add_argument("--list", action="store_true", help="list each file's outcome per tool")
    parser.add_argument("--no-remote", action="store_true", help="skip the remote scan (benchmarks/scan_remote.py)")
    args = parser.parse_args(argv)
    tools = [t for t in (args.only.split(",") if args.only else TOOLS)]
    logging.disable(logging.CRITICAL)
    malicious, benign = _corpus()
    counts = {t: {"found": 0, "missed": 0, "mal-errors": 0, "false": 0, "ben-errors": 0, "seconds": 0.0} for t in tools}
    lines = []
    # format -> tool -> [malicious found, benign flagged]; format -> [malicious, benign]
    per_format: dict[str, dict[str, list[int]]] = {}
    format_sizes: dict[str, list[int]] = {}
    with tempfile.TemporaryDirectory(prefix="ocimodel-scan-peers-") as tmp:
        workdir = Path(tmp)
        for kind, corpus in (("malicious", malicious), ("benign", benign)):
            for index, (group, label, name, data) in enumerate(corpus):
                format_sizes.setdefault(group, [0, 0])[kind == "benign"] += 1
                cells = per_format.setdefault(group, {t: [0, 0] for t in tools})
                folder = workdir / f"{kind}-{index}"
                folder.mkdir()
                path = folder / name
                path.write_bytes(data)
                row = []
                for tool in tools:
                    start = time.perf_counter()
                    outcome = _run(TOOLS[tool], path, data)
                    counts[tool]["seconds"] += time.perf_counter() - start
                    row.append(outcome)
                    c = counts[tool]
                    cells[tool][kind == "benign"] += outcome == "detected"
                    if kind == "malicious":
                        c["found" if outcome == "detected" else "missed"] += 1
                        c["mal-errors"] += outcome == "error"
                    else:
                        c["false"] += outcome == "detected"
                        c["ben-errors"] += outcome == "error"
                lines.append(f"{kind:9} {label:40} " + " ".join(f"{o:9}" for o in row))
        print(f"corpus: {len(malicious)} malicious, {len(benign)} benign files\n")
        if args.list:
            print(f"{'':9} {'file':40} " + " ".join(f"{t:9}" for t in tools))
            print("\n".join(lines) + "\n")
        print("| tool | detected | missed (of which errors) | false alarms | errors on benign | seconds |")
        print("|---|---|---|---|---|---|")
        for tool in tools:
            c = counts[tool]
            print(f"| {tool} | {c['found']}/{len(malicious)} | {c['missed']} ({c['mal-errors']}) | "
                  f"{c['false']}/{len(benign)} | {c['ben-errors']} | {c['seconds']:.1f} |")  # fmt: skip
        print("\nper format: malicious files detected / benign files flagged (a false alarm)\n")
        print("| format | malicious | benign | " + " | ".join(tools) + " |")
        print("|---|---:|---:|" + "---|" * len(tools))
        for group, (n_mal, n_ben) in format_sizes.items():
            cells = [f"{per_format[group][t][0]}/{n_mal} · {per_format[group][t][1]}/{n_ben}" for t in tools]
            print(f"| {group} | {n_mal} | {n_ben} | " + " | ".join(cells) + " |")
        print("\npickle throughput, MB/s (one run each, includes each tool's per-file overhead)\n")
        print("| pickle | " + " | ".join(tools) + " |")
        print("|---|" + "---|" * len(tools))
        print("\n".join(_throughput(tools, workdir)))
    if args.no_remote:
        return 0
    from benchmarks import scan_remote

    print("\nscanning a model in a registry (benchmarks/scan_remote.py: cache off, one run each)\n")
    print("\n".join(scan_remote.run()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
