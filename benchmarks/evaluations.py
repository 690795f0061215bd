#!/usr/bin/env python3
"""Benchmark of evaluation records: `eval history` and `eval check` on one model as its
records grow, on the local registry without the referrers API (every listing is the
fallback tag index; every record is a manifest to fetch, and, for records written before
their layer was embedded in it, a statement blob).

    PYTHONPATH=src .venv/bin/python benchmarks/evaluations.py [--steps 100,300,1000] [--runs 3] [--signed-every 10] [--out FILE]

Starts Debian's docker-registry on a free loopback port (tests/support/registry.py),
pushes one small model, then adds evaluation records (accuracy and f1, an hour apart) in
steps up to the last count; one in --signed-every is signed with a key, the others are
unsigned (what a monitoring job without a key writes). After each step it times, in this
process, the median of --runs calls of `evaluation_history(REF)` and of
`check_evaluations(REF, ["accuracy>=0.5", "accuracy drop<=0.1 from previous"])`, cold
(OCIMODEL_NO_CACHE=1: every record fetched, as the first read does) and warm (the records
in the content cache, as a scheduled check finds them), the same check with a policy (the
signed records verified; warm), the client's CPU seconds of one check cold and warm, and
the GET requests of one cold check (through a counting proxy, tests/support/faultproxy.py:
manifests and blobs) with the registry's CPU seconds for it; it prints one markdown row with the growth against the step before. At the end, one
`ocimodel eval check` process, timed whole (start-up included). The goal: under 2 s for
1,000 records.

There is one writer, writing one record after another, so the fallback-index settle time
is 0 (OCIMODEL_REFERRERS_SETTLE=0: no wait for racing writers, which it has none of); reads
do not depend on it. With 0.1, as benchmarks/records.py uses, the set-up gave up near 500
records on a loaded machine: reading the growing index took longer than 0.1 s, so every
read counted as stale ("other writers kept overwriting the referrers index")."""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
sys.path[:0] = [str(REPO_ROOT), str(REPO_ROOT / "src")]
os.environ.setdefault("OCIMODEL_REFERRERS_SETTLE", "0")
os.environ.setdefault("OCIMODEL_TAG_SETTLE", "0.5")

import ocimodel  # noqa: E402
from ocimodel.api import trust as api_trust  # noqa: E402
from tests.support.faultproxy import FaultProxy  # noqa: E402
from tests.support.registry import LocalRegistry  # noqa: E402

RULES = ["accuracy>=0.5", "accuracy drop<=0.1 from previous"]


def _median_seconds(call, runs: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def _cpu_seconds(call) -> float:
    """CPU seconds of one call, every thread of this process (the registry's not
    included): what a busy machine cannot inflate much, unlike the wall clock."""
    start = time.process_time()
    call()
    return time.process_time() - start


def _registry_cpu(registry: LocalRegistry) -> float:
    """CPU seconds the registry process has used so far (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{registry._proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, AttributeError, ValueError, IndexError):
        return 0.0


def _cold_requests(registry: LocalRegistry, ref: str) -> tuple[int, int, float]:
    """(manifest GETs, blob GETs, the registry's CPU seconds) of one cold check, the
    requests counted by a pass-through proxy: the registry's share of the work, which a
    busy machine delays but does not inflate."""
    with FaultProxy(registry.host) as proxy:
        before = _registry_cpu(registry)
        ocimodel.check_evaluations(ref.replace(registry.host, proxy.host, 1), RULES)
        return proxy.count("GET", "/manifests/"), proxy.count("GET", "/blobs/"), _registry_cpu(registry) - before


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", default="100,300,1000", help="record counts to measure at (comma-separated, rising)")
    parser.add_argument("--runs", type=int, default=3, help="timed calls per measurement (the median is shown)")
    parser.add_argument("--signed-every", type=int, default=10, help="one record in N is signed with a key")
    parser.add_argument("--out", type=Path, help="also write the table to this file")
    args = parser.parse_args()
    steps = [int(x) for x in args.steps.split(",")]

    with tempfile.TemporaryDirectory(prefix="ocimodel-bench-evals-") as tmp, LocalRegistry() as registry:
        work = Path(tmp)
        ref = f"{registry.host}/bench/evaluations:1.0"
        key, pub = work / "bench.key", work / "bench.pub"
        api_trust.generate_key_pair(key, pub)
        policy = work / "policy.yaml"
        policy.write_text(f"version: 1\nsigners:\n  bench: {{key: {pub}}}\n")
        model = work / "model"
        model.mkdir()
        (model / "weights.bin").write_bytes(b"w" * 1024)
        ocimodel.push(model, ref, name="bench", version="1.0")
        start_time = datetime.now(timezone.utc) - timedelta(hours=max(steps) + 1)

        written, rows, previous = 0, [], None
        os.environ["OCIMODEL_CACHE_DIR"] = str(work / "cache")  # its own content cache, empty at first
        header = ("| records | history cold (s) | check cold (s) | history warm (s) | check warm (s) "
                  "| check --policy warm (s) | check warm growth | CPU cold / warm (s) | GETs cold: manifests + blobs | registry CPU cold (s) | set-up (s) |")
        rule = "|---|---|---|---|---|---|---|---|---|---|---|"
        print(f"registry {registry.host} (referrers API: none, fallback tag index); {os.cpu_count()} CPUs", flush=True)
        print(header + "\n" + rule, flush=True)
        for target_count in steps:
            start = time.perf_counter()
            while written < target_count:
                when = (start_time + timedelta(hours=written)).isoformat(timespec="seconds").replace("+00:00", "Z")
                signed = args.signed_every > 0 and written % args.signed_every == 0
                ocimodel.record_evaluation(ref, {"accuracy": 0.9 + (written % 7) / 100, "f1": 0.8},
                                           environment="production", time=when, key=key if signed else None)
                written += 1
            setup = time.perf_counter() - start
            history = lambda: ocimodel.evaluation_history(ref)  # noqa: E731
            check = lambda: ocimodel.check_evaluations(ref, RULES)  # noqa: E731
            # cold: every record fetched (the first read of a history, or OCIMODEL_NO_CACHE=1)
            os.environ["OCIMODEL_NO_CACHE"] = "1"
            cold_history_s, read = _median_seconds(history, args.runs)
            cold_check_s, _ = _median_seconds(check, args.runs)
            cold_cpu = _cpu_seconds(check)
            manifest_gets, blob_gets, registry_cpu = _cold_requests(registry, ref)
            del os.environ["OCIMODEL_NO_CACHE"]
            check()  # fills the cache: what the previous run of a scheduled check leaves
            warm_history_s, _ = _median_seconds(history, args.runs)
            warm_check_s, result = _median_seconds(check, args.runs)
            trusted_s, trusted = _median_seconds(lambda: ocimodel.check_evaluations(ref, RULES, policy=policy), args.runs)
            warm_cpu = _cpu_seconds(check)
            assert sum(1 for r in read.records if not r.baseline) == written, len(read.records)
            assert result.records == written and result.ok, result.lines()
            assert trusted.records == (written + args.signed_every - 1) // args.signed_every, trusted.records
            growth = "-" if previous is None else f"x{warm_check_s / previous:.2f}"
            row = (f"| {written} | {cold_history_s:.2f} | {cold_check_s:.2f} | {warm_history_s:.2f} | {warm_check_s:.2f} "
                   f"| {trusted_s:.2f} | {growth} | {cold_cpu:.2f} / {warm_cpu:.2f} | {manifest_gets} + {blob_gets} | {registry_cpu:.2f} | {setup:.0f} |")
            rows.append(row)
            print(row, flush=True)
            previous = warm_check_s
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
        command = [sys.executable, "-m", "ocimodel", "eval", "check", ref, *sum((["--rule", r] for r in RULES), [])]
        cli_times = []
        for _ in range(args.runs):
            start = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
            cli_times.append(time.perf_counter() - start)
            assert done.returncode == 0, done.stdout + done.stderr
        note = (f"\n`ocimodel eval check` as a process at {written} records, cache warm: "
                f"{statistics.median(cli_times):.2f} s (median of {args.runs}, start-up included). {written} records, one in {args.signed_every} signed; "
                f"median of {args.runs} runs; {os.cpu_count()} CPUs.")
        print(note, flush=True)
        if args.out:
            args.out.write_text("\n".join([header, rule, *rows]) + "\n" + note + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
