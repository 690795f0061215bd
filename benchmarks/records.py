#!/usr/bin/env python3
"""Benchmark of reading records: `history` and `audit` on one repository as its records
grow, on the local registry without the referrers API (so every listing is the fallback
tag index, and every record is a manifest and a blob to fetch).

    PYTHONPATH=src .venv/bin/python benchmarks/records.py [--steps 100,250,500] [--runs 3] [--out FILE]

Starts Debian's docker-registry on a free loopback port (tests/support/registry.py), pushes
10 small versions, then adds records in steps up to the last count: of each 10 records, 4
promotions of `production` (unsigned, as `promote` writes them today), 3 deployment
records and 3 attestations (both signed with a key, so `audit --policy` verifies each
one). After each step it times, in this process, the median of --runs calls of
`history(repo, "production")` and of `audit(repo, policy=...)`, and prints one markdown
row: records, seconds, and the growth against the step before. The goal: under 3 s for 500.

Writers are serial here, so the fallback-index settle time is set low
(OCIMODEL_REFERRERS_SETTLE=0.1) to keep the set-up short; reads do not depend on it."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
sys.path[:0] = [str(REPO_ROOT), str(REPO_ROOT / "src")]
os.environ.setdefault("OCIMODEL_REFERRERS_SETTLE", "0.1")
os.environ.setdefault("OCIMODEL_TAG_SETTLE", "0.5")

import ocimodel  # noqa: E402
from ocimodel.api import functions as api  # noqa: E402
from ocimodel.api import trust as api_trust  # noqa: E402
from tests.support.faultproxy import FaultProxy  # noqa: E402
from tests.support.registry import LocalRegistry  # noqa: E402

VERSIONS = 10
EVAL = "https://ocimodel.dev/evaluation/v1"


def _median_seconds(call, runs: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", default="100,250,500", help="record counts to measure at (comma-separated, rising)")
    parser.add_argument("--runs", type=int, default=3, help="timed calls per measurement (the median is shown)")
    parser.add_argument("--out", type=Path, help="also write the table to this file")
    parser.add_argument("--profile", action="store_true", help="after the last step, profile one audit (cProfile, top 25)")
    args = parser.parse_args()
    steps = [int(x) for x in args.steps.split(",")]

    with tempfile.TemporaryDirectory(prefix="ocimodel-bench-records-") as tmp, LocalRegistry() as registry:
        work = Path(tmp)
        repo = f"{registry.host}/bench/records"
        key, pub = work / "bench.key", work / "bench.pub"
        api_trust.generate_key_pair(key, pub)
        policy = work / "policy.yaml"
        policy.write_text(f"version: 1\nsigners:\n  bench: {{key: {pub}}}\n")
        model = work / "model"
        model.mkdir()
        (model / "config.json").write_text("{}")
        for i in range(VERSIONS):
            (model / "weights.bin").write_bytes(i.to_bytes(4, "big") * 256)
            ocimodel.push(model, f"{repo}:1.{i}", name="bench", version=f"1.{i}")

        written = 0
        promoted = 0
        rows = []
        previous: tuple[float, float] | None = None
        print(f"registry {registry.host} (referrers API: none, fallback tag index); {VERSIONS} versions", flush=True)
        header = "| records | history (s) | audit --policy (s) | audit entries | history growth | audit growth | set-up (s) |"
        print(header + "\n|---|---|---|---|---|---|---|", flush=True)
        for target_count in steps:
            start = time.perf_counter()
            while written < target_count:
                slot = written % 10
                version = f"1.{written % VERSIONS}"
                if slot < 4:
                    api.promote(f"{repo}:1.{promoted % VERSIONS}", "production")
                    promoted += 1
                elif slot < 7:
                    api.deploy(f"{repo}:{version}", environment="prod", target=f"k8s://bench/ns/m{written % 7}", key=key)
                else:
                    api.attest(f"{repo}:{version}", predicate={"n": written}, predicate_type=EVAL, key=key)
                written += 1
            setup = time.perf_counter() - start
            history_s, history = _median_seconds(lambda: api.history(repo, "production"), args.runs)
            audit_s, audit = _median_seconds(lambda: api.audit(repo, policy=policy), args.runs)
            assert len(history.events) >= promoted, (len(history.events), promoted)
            growth = ("-", "-") if previous is None else (
                f"x{history_s / previous[0]:.2f}", f"x{audit_s / previous[1]:.2f}")
            row = (f"| {written} | {history_s:.2f} | {audit_s:.2f} | {len(audit.entries)} | {growth[0]} | {growth[1]} "
                   f"| {setup:.0f} |")
            rows.append(row)
            print(row, flush=True)
            previous = (history_s, audit_s)
        if args.profile:
            import cProfile
            import pstats

            profile = cProfile.Profile()
            cpu = time.process_time()
            start = time.perf_counter()
            profile.runcall(lambda: api.audit(repo, policy=policy))
            print(f"profiled audit: {time.perf_counter() - start:.2f} s wall, {time.process_time() - cpu:.2f} s CPU (all threads)")
            pstats.Stats(profile).sort_stats("cumulative").print_stats(25)
        trusted = sum(1 for e in audit.entries if e.trust == "trusted")
        cpu = time.process_time()
        api.audit(repo, policy=policy)
        cpu = time.process_time() - cpu
        os.environ["OCIMODEL_NO_CACHE"] = "1"  # every record fetched, as a first read does
        with FaultProxy(registry.host) as proxy:
            api.audit(repo.replace(registry.host, proxy.host, 1), policy=policy)
            gets = (proxy.count("GET", "/manifests/"), proxy.count("GET", "/blobs/"))
        del os.environ["OCIMODEL_NO_CACHE"]
        note = (f"\n{written} records ({promoted} promotions) on {VERSIONS} versions; last audit: {len(audit.entries)} "
                f"entries, {trusted} trusted; median of {args.runs} runs; {os.cpu_count()} CPUs; one audit "
                f"--policy: {cpu:.2f} s CPU in this process; uncached, {gets[0]} manifest + {gets[1]} blob GETs.")
        print(note)
        if args.out:
            args.out.write_text("\n".join([header, "|---|---|---|---|---|---|---|", *rows]) + "\n" + note + "\n")
            print(json.dumps({"written": str(args.out)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
