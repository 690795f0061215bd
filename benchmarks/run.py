#!/usr/bin/env python3
"""Speed benchmark: ocimodel vs skopeo vs oras-py against one fresh local registry.

    .venv/bin/python benchmarks/run.py [--quick] [--with-4g] [--runs N] [--out results.md]

Starts Debian's docker-registry on free loopback ports (storage in the benchmark's temp dir,
on the same disk as the data), generates deterministic incompressible data, runs every
scenario for every tool that has it, alternating tools within each round, and prints the
ceilings of this machine (sha256sum, raw curl upload/download) and one markdown table of
medians. Every tool runs as a child process; wall time, CPU time and peak RSS are that
child's own (os.wait4). See benchmarks/README.md for what each column means.

Stdlib only; needs docker-registry, skopeo, curl, sha256sum, and oras-py in this Python.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import os
import platform
import random
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Self

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
ORAS_DRIVER = HERE / "oras_driver.py"

MiB = 1 << 20
GiB = 1 << 30
MB = 1_000_000

TOOLS = ("ocimodel", "skopeo", "oras-py")
SLUG = {"ocimodel": "ocimodel", "skopeo": "skopeo", "oras-py": "oras"}

# scenario key -> (label, tools that have it, data sets it applies to: "all" or "model")
SCENARIOS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "push-cold": ("cold push", ("ocimodel", "skopeo", "oras-py"), "all"),
    "push-again": ("re-push unchanged", ("ocimodel", "skopeo", "oras-py"), "all"),
    "push-sibling": ("push to a sibling repository", ("ocimodel", "skopeo", "oras-py"), "all"),
    "startup": ("`ocimodel --version` (start-up floor)", ("ocimodel",), "all"),
    "push-v2": ("push v2 after v1", ("ocimodel", "skopeo", "oras-py"), "model"),
    "pull-cold": ("cold pull", ("ocimodel", "skopeo", "oras-py"), "all"),
    "pull-into-v1": ("pull v2 into a v1 dir", ("ocimodel",), "model"),
    "pull-cached": ("pull, blob cache warm", ("ocimodel",), "all"),
    "copy": ("copy to another registry", ("ocimodel", "skopeo"), "all"),
    "copy-mount": ("copy within the registry", ("ocimodel", "skopeo"), "all"),
    # Only when named: the 4 GiB file pulled cold (both tools verify digests), for its peak
    # RSS (issue 20: under 100 MiB). It brings in the 4 GiB data set for this scenario
    # alone, pushed by these two tools only (oras-py would hold 4 GiB in memory to push).
    "pull-4g": ("4 GiB verified cold pull", ("ocimodel", "skopeo"), "4g"),
}
DEFAULT_SCENARIOS = [s for s in SCENARIOS if s != "pull-4g"]

REGISTRY_START_TIMEOUT = 20.0
STOP_TIMEOUT = 5.0
CHUNK = 1 * MiB

SKOPEO_UPLOAD = re.compile(r"Upload of layer (sha256:[0-9a-f]{64}) complete")
SKOPEO_DOWNLOAD = re.compile(r'msg="Downloading /v2/\S+/blobs/(sha256:[0-9a-f]{64})"')

HASHLIB_SCRIPT = (
    "import hashlib, sys\n"
    "for p in sys.argv[1:]:\n"
    "    h = hashlib.sha256()\n"
    "    with open(p, 'rb', buffering=0) as f:\n"
    "        while b := f.read(1 << 20):\n"
    "            h.update(b)\n"
    "    print(h.hexdigest(), p)\n"
)

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class BenchError(RuntimeError):
    pass


def log(message: str = "") -> None:
    print(message, file=sys.stderr, flush=True)


# -- data -------------------------------------------------------------------------------


@dataclass
class DataFile:
    relpath: str
    size: int
    digest: str = ""


@dataclass
class DataSet:
    key: str  # used in repository names
    label: str
    dir: Path
    files: list[DataFile]
    v2_dir: Path | None = None
    v2_files: list[DataFile] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)  # relpaths that differ in v2

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def v2_size(self) -> int:
        return sum(f.size for f in self.v2_files)

    @property
    def is_model(self) -> bool:
        return self.v2_dir is not None

    @property
    def changed_bytes(self) -> int:
        return sum(f.size for f in self.v2_files if f.relpath in self.changed)


def write_random_file(path: Path, size: int, seed: str) -> str:
    """Deterministic, incompressible bytes (a Mersenne Twister seeded from ``seed``; no two
    chunks alike, so nothing compresses or dedups). Returns the sha256 digest."""
    rng = random.Random(zlib.crc32(seed.encode()) ^ 0x5EED)
    h = hashlib.sha256()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        left = size
        while left > 0:
            block = rng.randbytes(min(CHUNK, left))
            h.update(block)
            f.write(block)
            left -= len(block)
    return "sha256:" + h.hexdigest()


def model_layout(quick: bool) -> list[tuple[str, int]]:
    """Relative paths and sizes of the model: a few large weight shards, some mid-size
    files, many small ones (1 KiB .. 64 KiB), in folders up to 3 deep. Basenames are unique
    (oras-py flattens paths on pull)."""
    if quick:
        shards, mids, parts, smalls = 1, 4, 10, 25  # 40 files, ~60 MB
    else:
        shards, mids, parts, smalls = 5, 10, 20, 65  # 100 files, ~250 MB
    files: list[tuple[str, int]] = []
    for i in range(shards):
        files.append((f"weights/fp16/shards/model-{i + 1:05d}-of-{shards:05d}.safetensors", 40 * MB))
    for i in range(mids):
        files.append((f"weights/adapters/lora/adapter-{i:02d}.bin", 4 * MB))
    for i in range(parts):
        files.append((f"tokenizer/vocab/part-{i:02d}.bin", 400_000))
    small_dirs = ["configs", "configs/generation", "docs", "docs/api/reference", "eval/results/2024"]
    rng = random.Random(1234)
    for i in range(smalls):
        size = int(1024 * 64 ** rng.random())  # log-uniform 1 KiB .. 64 KiB
        files.append((f"{small_dirs[i % len(small_dirs)]}/file-{i:03d}.json", size))
    return files


def generate_data(root: Path, quick: bool, with_4g: bool) -> list[DataSet]:
    datasets: list[DataSet] = []
    singles = [("file-256m", "256 MiB file", 256 * MiB)] if quick else [("file-1g", "1 GiB file", GiB)]
    if with_4g:
        singles.append(("file-4g", "4 GiB file", 4 * GiB))
    for key, label, size in singles:
        d = root / key
        f = DataFile("weights.bin", size)
        f.digest = write_random_file(d / f.relpath, size, key)
        datasets.append(DataSet(key, label, d, [f]))

    d = root / "model-v1"
    files = []
    for rel, size in model_layout(quick):
        df = DataFile(rel, size)
        df.digest = write_random_file(d / rel, size, "model/" + rel)
        files.append(df)
    # v2: a full copy (own inodes) with the last weight shard and one small config changed
    v2 = root / "model-v2"
    changed = [files[0 if quick else 4].relpath, "configs/file-000.json"]
    v2_files = []
    for f in files:
        df = DataFile(f.relpath, f.size)
        if f.relpath in changed:
            df.digest = write_random_file(v2 / f.relpath, f.size, "model-v2/" + f.relpath)
        else:
            (v2 / f.relpath).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(d / f.relpath, v2 / f.relpath)
            df.digest = f.digest
        v2_files.append(df)
    total = sum(f.size for f in files)
    label = f"model, {len(files)} files ({total / MB:.0f} MB)"
    datasets.append(DataSet("model", label, d, files, v2, v2_files, changed))
    return datasets


def tree_size(path: Path) -> int:
    total = 0
    for root, _dirs, names in os.walk(path):
        for name in names:
            p = os.path.join(root, name)
            if not os.path.islink(p):
                total += os.path.getsize(p)
    return total


# -- registry ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Registry:
    """docker-registry serve on 127.0.0.1:<free port>, storage under ``parent``."""

    live: ClassVar[list[Registry]] = []

    def __init__(self, parent: Path, env: dict[str, str]) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="registry-", dir=parent))
        self.env = {k: v for k, v in env.items() if not k.startswith("REGISTRY_")}
        self.proc: subprocess.Popen[bytes] | None = None
        self.host = ""

    def start(self) -> Registry:
        Registry.live.append(self)
        for _attempt in range(3):
            port = free_port()
            self.host = f"127.0.0.1:{port}"
            config = self.dir / "config.yml"
            config.write_text(
                "version: 0.1\n"
                "log: {level: warn, accesslog: {disabled: true}}\n"
                "storage:\n"
                f"  filesystem: {{rootdirectory: {json.dumps(str(self.dir / 'data'))}}}\n"
                "  delete: {enabled: true}\n"
                "  maintenance: {uploadpurging: {enabled: false}}\n"
                f"http: {{addr: {json.dumps(self.host)}, secret: local-bench-only}}\n"
                "health: {storagedriver: {enabled: false}}\n"
            )
            with open(self.dir / "registry.log", "ab") as logf:
                self.proc = subprocess.Popen(
                    ["docker-registry", "serve", str(config)],
                    stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                    cwd=self.dir, env=self.env,
                )
            deadline = time.monotonic() + REGISTRY_START_TIMEOUT
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    with _NO_PROXY.open(f"http://{self.host}/v2/", timeout=1) as r:
                        r.read()
                    return self
                except urllib.error.HTTPError:
                    return self
                except OSError:
                    time.sleep(0.03)
            tail = (self.dir / "registry.log").read_text(errors="replace")[-2000:]
            self._reap()
            if "address already in use" not in tail.lower():
                raise BenchError(f"docker-registry did not start on {self.host}:\n{tail}")
        raise BenchError("docker-registry: no free port after 3 attempts")

    def _reap(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stop(self) -> None:
        self._reap()
        shutil.rmtree(self.dir, ignore_errors=True)
        if self in Registry.live:
            Registry.live.remove(self)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start_upload(self, repo: str) -> str:
        """POST an upload session; its absolute Location URL."""
        req = urllib.request.Request(f"http://{self.host}/v2/{repo}/blobs/uploads/", method="POST", data=b"")
        with _NO_PROXY.open(req, timeout=30) as r:
            location = r.headers["Location"]
        return urllib.parse.urljoin(f"http://{self.host}/", location)


# -- measuring one child ----------------------------------------------------------------


@dataclass
class Sample:
    wall: float = 0.0
    cpu: float = 0.0
    sys_cpu: float = 0.0  # the kernel's share of cpu (in the per-run log: page cache, copies)
    rss_mib: float = 0.0
    rss_is_bound: bool = False  # exited before the first poll: rss_mib is only an upper bound
    moved: int | None = None
    error: str | None = None
    stdout: str = ""
    stderr: str = ""


_current: set[subprocess.Popen] = set()
_run_counter = [0]


def measure(argv: list[str], env: dict[str, str], logs: Path, timeout: float, cwd: Path | None = None) -> Sample:
    """Run ``argv`` to completion; wall time, and the CPU time and peak RSS of that child
    alone (os.wait4 on its pid). Killed after ``timeout`` seconds."""
    _run_counter[0] += 1
    name = f"{_run_counter[0]:04d}-{Path(argv[0]).name}"
    out_path, err_path = logs / f"{name}.out", logs / f"{name}.err"
    timed_out = threading.Event()
    exited = threading.Event()
    # ru_maxrss counts the memory image the child had before exec: a copy of (or, with
    # vfork, the very) image of this Python process. So a child's ru_maxrss at or below our
    # own high-water mark says nothing; then the child's own VmHWM, polled, is the answer.
    floor_kib = _vm_kib("self", "VmHWM") or 0
    polled = [0]
    # Untimed: write back what earlier runs left dirty (a pull writes 1-4 GiB into the page
    # cache). Otherwise a run pays, in throttled writes, for the run before it, whichever
    # tool that was: pulls of 1 GiB swung between 1.5 and 3.8 s.
    os.sync()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env, cwd=cwd)
        _current.add(proc)
        poller = threading.Thread(target=_poll_hwm, args=(proc.pid, exited, polled), daemon=True)
        poller.start()

        def kill() -> None:
            timed_out.set()
            proc.kill()

        timer = threading.Timer(timeout, kill)
        timer.daemon = True
        timer.start()
        try:
            _pid, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            proc.kill()
            os.wait4(proc.pid, 0)
            proc.returncode = -9
            raise
        finally:
            exited.set()
            timer.cancel()
            _current.discard(proc)
        wall = time.perf_counter() - t0
        poller.join(timeout=1)
    proc.returncode = os.waitstatus_to_exitcode(status)
    maxrss_kib = usage.ru_maxrss  # KiB on Linux
    exact = maxrss_kib > floor_kib + 1024
    rss_kib = maxrss_kib if exact or not polled[0] else polled[0]
    sample = Sample(
        wall=wall,
        cpu=usage.ru_utime + usage.ru_stime,
        sys_cpu=usage.ru_stime,
        rss_mib=rss_kib / 1024,
        rss_is_bound=not exact and not polled[0],
        stdout=out_path.read_text(errors="replace"),
        stderr=err_path.read_text(errors="replace"),
    )
    if timed_out.is_set():
        sample.error = f"timed out after {timeout:.0f} s"
    elif proc.returncode != 0:
        tail = sample.stderr.strip().splitlines()[-3:]
        sample.error = f"exit {proc.returncode}: " + " | ".join(tail)[-400:]
    return sample


def _vm_kib(pid: int | str, field_name: str) -> int | None:
    """A ``Vm*`` line of /proc/PID/status in KiB; None once the process is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(field_name.encode() + b":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def _poll_hwm(pid: int, exited: threading.Event, result: list[int]) -> None:
    """Track the child's VmHWM (its peak RSS since exec) until it exits: every 2 ms for the
    first 50 ms (short commands), then every 10 ms. VmHWM never decreases, so the last
    reading before exit misses only growth in the last interval."""
    start = time.monotonic()
    while not exited.is_set():
        kib = _vm_kib(pid, "VmHWM")
        if kib is None:
            return
        result[0] = max(result[0], kib)
        exited.wait(0.002 if time.monotonic() - start < 0.05 else 0.01)


def run_checked(argv: list[str], env: dict[str, str], logs: Path, timeout: float, what: str) -> Sample:
    s = measure(argv, env, logs, timeout)
    if s.error:
        raise BenchError(f"{what} failed: {shlex.join(argv)}\n{s.error}\n{s.stderr[-2000:]}")
    return s


# -- the benchmark ----------------------------------------------------------------------


@dataclass
class Result:
    dataset: DataSet
    scenario: str
    tool: str
    samples: list[Sample] = field(default_factory=list)


class Bench:
    def __init__(self, args: argparse.Namespace, base: Path) -> None:
        self.args = args
        self.base = base
        self.tools = [t for t in TOOLS if t in args.tools]
        self.scenarios = [s for s in SCENARIOS if s in args.scenarios]
        for sub in ("data", "registries", "layouts", "work", "logs", "home"):
            (base / sub).mkdir()
        self.logs = base / "logs"
        venv_bin = Path(sys.executable).parent
        self.ocimodel = str(venv_bin / "ocimodel") if (venv_bin / "ocimodel").exists() else shutil.which("ocimodel")
        if not self.ocimodel:
            raise BenchError("ocimodel CLI not found next to this Python or on PATH: run `make venv`")
        self.python = sys.executable
        env = {
            k: v for k, v in os.environ.items()
            if not k.startswith(("OCIMODEL_", "REGISTRY_"))
            and k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
        }
        env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
        self.base_env = env
        self.home = base / "home"
        self.env = self.env_with_home(self.home)
        self.skopeo_policy = [] if (
            Path("/etc/containers/policy.json").exists()
            or Path("~/.config/containers/policy.json").expanduser().exists()
        ) else ["--insecure-policy"]
        self.sizes: dict[str, int] = {}  # digest -> size, from the layouts (skopeo byte counts)
        self.results: dict[tuple[str, str, str], Result] = {}
        self.ceilings: dict[tuple[str, str], list[Sample]] = {}
        self.main: Registry | None = None
        self.datasets: list[DataSet] = []

    def env_with_home(self, home: Path) -> dict[str, str]:
        """Each tool sees HOME and XDG_CACHE_HOME inside the benchmark's temp dir: no user
        cache or config leaks in, and cold scenarios can start from an empty one."""
        (home / ".cache").mkdir(parents=True, exist_ok=True)
        return {**self.base_env, "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache")}

    def timeout(self, nbytes: int) -> float:
        return 120 + nbytes / (10 * MB)  # generous; bounds every child

    # ---- setup

    def setup(self) -> None:
        args = self.args
        t0 = time.perf_counter()
        # pip compiles an installed wheel to bytecode; an editable install (this venv) is
        # compiled on import, and not at all under PYTHONDONTWRITEBYTECODE, which would add
        # ~40 ms of compiling to every ocimodel command timed here. Compile it once, as
        # installed.
        package = Path(__file__).resolve().parent.parent / "src" / "ocimodel"
        if package.is_dir():
            subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)], check=True, timeout=300)
        log("generating data ...")
        self.datasets = generate_data(self.base / "data", args.quick, args.with_4g or "pull-4g" in self.scenarios)
        for ds in self.datasets:
            extra = f"; v2 changes {len(ds.changed)} files, {ds.changed_bytes:,} bytes" if ds.is_model else ""
            log(f"  {ds.label}: {ds.size:,} bytes{extra}")
        log(f"  ({time.perf_counter() - t0:.1f} s)")

        log("making OCI layouts for skopeo (ocimodel push DIR oci:LAYOUT:TAG) ...")
        for ds in self.datasets:
            layout = self.layout(ds)
            run_checked([self.ocimodel, "push", str(ds.dir), f"oci:{layout}:v1", "--json"],
                        self.env, self.logs, self.timeout(ds.size), "layout v1")
            if ds.is_model:
                run_checked([self.ocimodel, "push", str(ds.v2_dir), f"oci:{layout}:v2", "--json"],
                            self.env, self.logs, self.timeout(ds.size), "layout v2")
            for blob in (layout / "blobs" / "sha256").iterdir():
                self.sizes["sha256:" + blob.name] = blob.stat().st_size

        self.main = Registry(self.base / "registries", self.env).start()
        log(f"registry for pulls, re-pushes and copies: {self.main.host}")
        log("pushing every data set once with every tool (untimed) ...")
        for ds in self.datasets:
            for tool in self.tools_for(ds):
                s = self.push(tool, ds, self.main.host, self.repo(tool, ds), "v1", ds.dir)
                if s.error:
                    raise BenchError(f"setup push with {tool} failed: {s.error}\n{s.stderr[-2000:]}")
            if ds.is_model:
                s = self.push("ocimodel", ds, self.main.host, self.repo("ocimodel", ds), "v2", ds.v2_dir)
                if s.error:
                    raise BenchError(f"setup push of v2 failed: {s.error}")
        log(f"setup done in {time.perf_counter() - t0:.1f} s")

    def layout(self, ds: DataSet) -> Path:
        return self.base / "layouts" / ds.key

    @staticmethod
    def repo(tool: str, ds: DataSet, suffix: str = "") -> str:
        return f"{SLUG[tool]}{suffix}/{ds.key}"

    # ---- tool commands

    def skopeo(self, *args: str) -> list[str]:
        # --debug: the only output that tells uploaded from skipped blobs (bytes moved)
        return ["skopeo", "--debug", *self.skopeo_policy, "copy", *args]

    def concurrency(self) -> list[str]:
        return ["-j", str(self.args.concurrency)] if self.args.concurrency else []

    def push(self, tool: str, ds: DataSet, host: str, repo: str, tag: str, src: Path,
             env: dict[str, str] | None = None) -> Sample:
        env = env or self.env
        timeout = self.timeout(ds.size)
        if tool == "ocimodel":
            s = measure([self.ocimodel, "push", str(src), f"{host}/{repo}:{tag}", "--json", *self.concurrency()],
                        env, self.logs, timeout)
            if not s.error:
                s.moved = json.loads(s.stdout)["bytes_uploaded"]
        elif tool == "skopeo":
            s = measure(self.skopeo("--dest-tls-verify=false", f"oci:{self.layout(ds)}:{tag}", f"docker://{host}/{repo}:{tag}"),
                        env, self.logs, timeout)
            s.moved = self.skopeo_bytes(SKOPEO_UPLOAD, s.stderr)
        else:
            s = measure([self.python, str(ORAS_DRIVER), "push", host, f"{repo}:{tag}", str(src)], env, self.logs, timeout)
            if not s.error:
                s.moved = json.loads(s.stdout.strip().splitlines()[-1])["bytes"]
        return s

    def pull(self, tool: str, ds: DataSet, repo: str, tag: str, dest: Path, expect: int,
             env: dict[str, str] | None = None) -> Sample:
        env = env or self.env
        assert self.main is not None
        host = self.main.host
        timeout = self.timeout(ds.size)
        if tool == "ocimodel":
            s = measure([self.ocimodel, "pull", f"{host}/{repo}:{tag}", str(dest), "--json", *self.concurrency()],
                        env, self.logs, timeout)
            if not s.error:
                s.moved = json.loads(s.stdout)["bytes_downloaded"]
        elif tool == "skopeo":
            s = measure(self.skopeo("--src-tls-verify=false", f"docker://{host}/{repo}:{tag}", f"oci:{dest}:{tag}"),
                        env, self.logs, timeout)
            s.moved = self.skopeo_bytes(SKOPEO_DOWNLOAD, s.stderr)
        else:
            s = measure([self.python, str(ORAS_DRIVER), "pull", host, f"{repo}:{tag}", str(dest)], env, self.logs, timeout)
            if not s.error:
                s.moved = json.loads(s.stdout.strip().splitlines()[-1])["bytes"]
        if not s.error:  # untimed sanity check: the bytes arrived
            got = tree_size(dest)
            if got < expect or (tool != "skopeo" and got != expect):
                s.error = f"destination holds {got:,} bytes, expected {expect:,}"
        return s

    def copy(self, tool: str, ds: DataSet, src: str, dst: str) -> Sample:
        timeout = self.timeout(ds.size)
        if tool == "ocimodel":
            s = measure([self.ocimodel, "copy", src, dst, "--json", *self.concurrency()], self.env, self.logs, timeout)
            if not s.error:
                s.moved = json.loads(s.stdout)["bytes_copied"]
        else:
            s = measure(self.skopeo("--src-tls-verify=false", "--dest-tls-verify=false", f"docker://{src}", f"docker://{dst}"),
                        self.env, self.logs, timeout)
            s.moved = self.skopeo_bytes(SKOPEO_UPLOAD, s.stderr)
        return s

    def skopeo_bytes(self, pattern: re.Pattern[str], text: str) -> int | None:
        digests = pattern.findall(text)
        if any(d not in self.sizes for d in digests):
            return None
        return sum(self.sizes[d] for d in digests)

    # ---- scenarios: one timed run of one tool

    def fresh_registry(self) -> Registry:
        return Registry(self.base / "registries", self.env)

    def fresh_home(self, run: int, tool: str) -> Path:
        return Path(tempfile.mkdtemp(prefix=f"home-{SLUG[tool]}-{run}-", dir=self.base / "work"))

    def scratch(self, run: int, tool: str) -> Path:
        return Path(tempfile.mkdtemp(prefix=f"{SLUG[tool]}-{run}-", dir=self.base / "work"))

    def run_one(self, scenario: str, tool: str, ds: DataSet, run: int) -> Sample:
        assert self.main is not None
        main = self.main.host
        if scenario == "push-cold":
            # a fresh registry each run: nothing to skip, nothing to mount (skopeo would
            # mount blobs it saw in other repositories of the same registry)
            home = self.fresh_home(run, tool)
            try:
                with self.fresh_registry() as reg:
                    repo = self.repo(tool, ds, suffix=f"-r{run}")
                    return self.push(tool, ds, reg.host, repo, "v1", ds.dir, env=self.env_with_home(home))
            finally:
                shutil.rmtree(home, ignore_errors=True)
        if scenario == "push-again":
            return self.push(tool, ds, main, self.repo(tool, ds), "v1", ds.dir)
        if scenario == "push-sibling":
            # a new repository of R, which holds the data set in the tool's own repository
            # (pushed in setup): ocimodel and skopeo remember where they saw each blob and mount
            return self.push(tool, ds, main, self.repo(tool, ds, suffix=f"-sib{run}"), "v1", ds.dir)
        if scenario == "startup":
            return measure([self.ocimodel, "--version"], self.env, self.logs, 60)
        if scenario == "push-v2":
            with self.fresh_registry() as reg:
                repo = self.repo(tool, ds, suffix=f"-r{run}")
                first = self.push(tool, ds, reg.host, repo, "v1", ds.dir)  # untimed
                if first.error:
                    return Sample(error=f"v1 push failed: {first.error}")
                return self.push(tool, ds, reg.host, repo, "v2", ds.v2_dir)
        if scenario in ("pull-cold", "pull-4g"):
            dest = self.scratch(run, tool) / "out"
            home = self.fresh_home(run, tool)
            try:
                return self.pull(tool, ds, self.repo(tool, ds), "v1", dest, ds.size, env=self.env_with_home(home))
            finally:
                shutil.rmtree(dest.parent, ignore_errors=True)
                shutil.rmtree(home, ignore_errors=True)
        if scenario == "pull-into-v1":
            dest = self.scratch(run, tool) / "out"
            try:
                first = self.pull(tool, ds, self.repo(tool, ds), "v1", dest, ds.size)  # untimed
                if first.error:
                    return Sample(error=f"v1 pull failed: {first.error}")
                return self.pull(tool, ds, self.repo(tool, ds), "v2", dest, ds.v2_size)
            finally:
                shutil.rmtree(dest.parent, ignore_errors=True)
        if scenario == "pull-cached":
            # `--blob-cache` (OCIMODEL_BLOB_CACHE=1) as a CI runner would use it: an earlier
            # job pulled this model into another directory (untimed), which filled the
            # cache; the timed pull goes into a new directory and links every file (each
            # link is hashed before use).
            home = self.fresh_home(run, tool)
            work = self.scratch(run, tool)
            env = {**self.env_with_home(home), "OCIMODEL_BLOB_CACHE": "1"}
            try:
                s = self.pull(tool, ds, self.repo(tool, ds), "v1", work / "job1", ds.size, env=env)
                if s.error:
                    return Sample(error=f"the earlier pull failed: {s.error}")
                return self.pull(tool, ds, self.repo(tool, ds), "v1", work / "out", ds.size, env=env)
            finally:
                shutil.rmtree(work, ignore_errors=True)
                shutil.rmtree(home, ignore_errors=True)
        if scenario == "copy":
            with self.fresh_registry() as reg:
                dst = f"{reg.host}/{self.repo(tool, ds, suffix=f'-r{run}')}:v1"
                return self.copy(tool, ds, f"{main}/{self.repo(tool, ds)}:v1", dst)
        if scenario == "copy-mount":
            dst = f"{main}/{self.repo(tool, ds, suffix=f'-copy{run}')}:v1"
            return self.copy(tool, ds, f"{main}/{self.repo(tool, ds)}:v1", dst)
        raise AssertionError(scenario)

    # ---- ceilings

    def run_ceilings(self, ds: DataSet, run: int) -> None:
        assert self.main is not None
        paths = [str(ds.dir / f.relpath) for f in ds.files]
        timeout = self.timeout(ds.size)
        self.add_ceiling(ds, "sha256sum", measure(["sha256sum", *paths], self.env, self.logs, timeout))
        # what a Python tool can reach: hashlib (OpenSSL, SHA extensions) with 1 MiB reads
        self.add_ceiling(ds, "python hashlib", measure([self.python, "-c", HASHLIB_SCRIPT, *paths], self.env, self.logs, timeout))

        curl = ["curl", "-sS", "-H", "Expect:", "-w", "%{http_code}\\n"]
        with self.fresh_registry() as reg:
            argv = [*curl, "-X", "PUT", "-H", "Content-Type: application/octet-stream"]
            for f, path in zip(ds.files, paths):
                location = reg.start_upload(f"ceiling/{ds.key}")  # untimed POST
                sep = "&" if "?" in location else "?"
                argv += ["-T", path, f"{location}{sep}digest={urllib.parse.quote(f.digest)}"]
            s = measure(argv, self.env, self.logs, timeout)
            self.check_codes(s, "201", len(ds.files))
            self.add_ceiling(ds, "curl -T upload", s)

        dest = self.scratch(run, "ocimodel")
        try:
            argv = [*curl, "-f"]
            for i, f in enumerate(ds.files):
                argv += ["-o", str(dest / f"{i}"), f"http://{self.main.host}/v2/{self.repo('ocimodel', ds)}/blobs/{f.digest}"]
            s = measure(argv, self.env, self.logs, timeout)
            self.check_codes(s, "200", len(ds.files))
            if not s.error and tree_size(dest) != ds.size:
                s.error = "curl download: wrong size"
            self.add_ceiling(ds, "curl download", s)
        finally:
            shutil.rmtree(dest, ignore_errors=True)

    @staticmethod
    def check_codes(s: Sample, want: str, count: int) -> None:
        codes = s.stdout.split()
        if not s.error and (len(codes) != count or any(c != want for c in codes)):
            s.error = f"curl: HTTP status {sorted(set(codes))}, expected {want} x {count}"

    def add_ceiling(self, ds: DataSet, what: str, s: Sample) -> None:
        self.ceilings.setdefault((ds.key, what), []).append(s)
        self.report(f"ceiling · {ds.label} · {what}", ds.size, s)

    # ---- rounds

    def applies(self, scenario: str, ds: DataSet) -> bool:
        kind = SCENARIOS[scenario][2]
        if kind == "4g" or self.only_4g_pull(ds):
            return kind == "4g" and ds.key == "file-4g"
        return kind == "all" or ds.is_model

    def only_4g_pull(self, ds: DataSet) -> bool:
        """The 4 GiB file is here for the pull-4g scenario only (no --with-4g)."""
        return ds.key == "file-4g" and not self.args.with_4g

    def tools_for(self, ds: DataSet) -> list[str]:
        return [t for t in self.tools if not self.only_4g_pull(ds) or t in SCENARIOS["pull-4g"][1]]

    def run_all(self) -> None:
        runs = self.args.runs
        for run in range(runs):
            log(f"\n== round {run + 1}/{runs} ==")
            for ds in self.datasets:
                if not self.args.no_ceilings:
                    self.run_ceilings(ds, run)
                for scenario in self.scenarios:
                    if not self.applies(scenario, ds):
                        continue
                    tools = [t for t in self.tools if t in SCENARIOS[scenario][1]]
                    k = run % len(tools) if tools else 0
                    for tool in tools[k:] + tools[:k]:  # rotate who goes first each round
                        s = self.run_one(scenario, tool, ds, run)
                        result = self.results.setdefault((ds.key, scenario, tool), Result(ds, scenario, tool))
                        result.samples.append(s)
                        nbytes = ds.v2_size if scenario in ("push-v2", "pull-into-v1") else ds.size
                        self.report(f"{ds.label} · {SCENARIOS[scenario][0]} · {tool}", nbytes, s)

    def report(self, what: str, nbytes: int, s: Sample) -> None:
        if s.error:
            log(f"  {what}: FAILED: {s.error}")
            return
        moved = f", moved {s.moved:,} B" if s.moved is not None else ""
        log(f"  {what}: {s.wall:.2f} s, {nbytes / MB / s.wall:.0f} MB/s, cpu {s.cpu:.2f} s (sys {s.sys_cpu:.2f}), "
            f"rss {rss_text([s])} MiB{moved}")

    # ---- tables

    def ceiling_table(self) -> str:
        rows = ["| data set | ceiling | wall s | MB/s | CPU s | peak RSS MiB | runs |",
                "|---|---|---:|---:|---:|---:|---:|"]
        for ds in self.datasets:
            for what in ("sha256sum", "python hashlib", "curl -T upload", "curl download"):
                samples = self.ceilings.get((ds.key, what), [])
                ok = [s for s in samples if not s.error]
                if not samples:
                    continue
                if not ok:
                    rows.append(f"| {ds.label} | {what} | FAILED | | | | 0/{len(samples)} |")
                    continue
                wall = statistics.median(s.wall for s in ok)
                rows.append(
                    f"| {ds.label} | {what} | {wall:.2f} | {ds.size / MB / wall:.0f} | "
                    f"{statistics.median(s.cpu for s in ok):.2f} | {rss_text(ok)} | "
                    f"{len(ok)}/{len(samples)} |"
                )
        return "\n".join(rows)

    def median_table(self) -> str:
        rows = ["| data set | scenario | tool | wall s | MB/s | CPU s | peak RSS MiB | bytes moved | wall vs ocimodel | runs |",
                "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for ds in self.datasets:
            for scenario in self.scenarios:
                if not self.applies(scenario, ds):
                    continue
                label = SCENARIOS[scenario][0]
                nbytes = ds.v2_size if scenario in ("push-v2", "pull-into-v1") else ds.size
                base = self.median_wall(ds, scenario, "ocimodel")
                for tool in self.tools:
                    if tool not in SCENARIOS[scenario][1]:
                        rows.append(f"| {ds.label} | {label} | {tool} | n/a | n/a | n/a | n/a | n/a | n/a | - |")
                        continue
                    samples = self.results.get((ds.key, scenario, tool), Result(ds, scenario, tool)).samples
                    ok = [s for s in samples if not s.error]
                    if not ok:
                        rows.append(f"| {ds.label} | {label} | {tool} | FAILED | | | | | | 0/{len(samples)} |")
                        continue
                    wall = statistics.median(s.wall for s in ok)
                    moved = [s.moved for s in ok if s.moved is not None]
                    moved_text = f"{statistics.median_low(moved):,}" if moved else "?"
                    ratio = "1.00x" if tool == "ocimodel" else (f"{wall / base:.2f}x" if base else "n/a")
                    rows.append(
                        f"| {ds.label} | {label} | {tool} | {wall:.2f} | {nbytes / MB / wall:.0f} | "
                        f"{statistics.median(s.cpu for s in ok):.2f} | {rss_text(ok)} | "
                        f"{moved_text} | {ratio} | {len(ok)}/{len(samples)} |"
                    )
        return "\n".join(rows)

    def median_wall(self, ds: DataSet, scenario: str, tool: str) -> float | None:
        r = self.results.get((ds.key, scenario, tool))
        ok = [s.wall for s in r.samples if not s.error] if r else []
        return statistics.median(ok) if ok else None


# -- reporting helpers ------------------------------------------------------------------


def rss_text(samples: list[Sample]) -> str:
    """Median peak RSS in MiB; "<=" when some run ended too fast to read its own peak."""
    value = f"{statistics.median(s.rss_mib for s in samples):.0f}"
    return ("<=" if any(s.rss_is_bound for s in samples) else "") + value


def first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, subprocess.TimeoutExpired, IndexError):
        return "?"


def machine_info(bench: Bench) -> list[str]:
    mem = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB RAM"
    except OSError:
        pass
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    oras_version = first_line([sys.executable, "-c", "import oras.version as v; print(v.__version__)"])
    return [
        f"- machine: {len(os.sched_getaffinity(0))} cores ({cpu}), {mem}, {platform.system()} {platform.release()}",
        (f"- tools: {first_line([bench.ocimodel, '--version'])}; {first_line(['skopeo', '--version'])}; "
        f"oras-py {oras_version}; {first_line(['docker-registry', '--version'])}; "
        f"{' '.join(first_line(['curl', '--version']).split()[:2])}; Python {platform.python_version()}"),
    ]


def check_prerequisites(tools: list[str]) -> None:
    needed = ["docker-registry", "curl", "sha256sum"] + (["skopeo"] if "skopeo" in tools else [])
    missing = [t for t in needed if shutil.which(t) is None]
    if missing:
        raise BenchError(f"missing: {', '.join(missing)} (run `make deps`, or apt-get install docker-registry skopeo curl)")
    if "oras-py" in tools:
        probe = subprocess.run([sys.executable, "-c", "import oras.client"], capture_output=True, timeout=60, check=False)
        if probe.returncode != 0:
            raise BenchError(f"oras-py is not importable by {sys.executable}: pip install oras")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small data (256 MiB file, 40-file ~60 MB model), 1 run: a smoke check")
    p.add_argument("--with-4g", action="store_true", help="also the 4 GiB single-file data set (slow)")
    p.add_argument("--runs", type=int, default=None, help="rounds per scenario and tool (default 3; 1 with --quick)")
    p.add_argument("--out", type=Path, help="also write the markdown report to this file")
    p.add_argument("--tools", default=",".join(TOOLS), help=f"comma list from {','.join(TOOLS)} (default: all)")
    p.add_argument("--scenarios", default=",".join(DEFAULT_SCENARIOS),
                   help=f"comma list from {','.join(SCENARIOS)} (default: all but pull-4g)")
    p.add_argument("--concurrency", type=int, default=None, help="pass -j N to ocimodel (default: its own default)")
    p.add_argument("--no-ceilings", action="store_true", help="skip the sha256sum / curl ceilings")
    p.add_argument("--workdir", type=Path, default=None, help="where the temp dir goes (default: the system temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (data, logs) for inspection")
    args = p.parse_args(argv)
    if args.runs is None:
        args.runs = 1 if args.quick else 3
    if not 1 <= args.runs <= 50:
        p.error("--runs must be between 1 and 50")
    args.tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    if bad := [t for t in args.tools if t not in TOOLS]:
        p.error(f"unknown tool(s) {bad}; choose from {list(TOOLS)}")
    if "ocimodel" not in args.tools:
        args.tools.insert(0, "ocimodel")  # the subject: ratios are relative to it
    if bad := [s for s in args.scenarios if s not in SCENARIOS]:
        p.error(f"unknown scenario(s) {bad}; choose from {list(SCENARIOS)}")
    if args.concurrency is not None and not 1 <= args.concurrency <= 32:
        p.error("--concurrency must be between 1 and 32")
    return args


def disk_needed(quick: bool, with_4g: bool) -> int:
    single = (256 * MiB if quick else GiB) + (4 * GiB if with_4g else 0)
    model = sum(s for _, s in model_layout(quick))
    biggest = 4 * GiB if with_4g else single
    # data + v2 copy, layouts, main registry, plus one data set in flight twice
    return (single + 2 * model) * 3 + 2 * biggest + GiB


def _raise_interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    check_prerequisites(args.tools)
    parent = args.workdir or Path(tempfile.gettempdir())
    parent.mkdir(parents=True, exist_ok=True)
    need = disk_needed(args.quick, args.with_4g or "pull-4g" in args.scenarios)
    free = shutil.disk_usage(parent).free
    if free < need:
        raise BenchError(f"{parent}: {free / GiB:.1f} GiB free, the benchmark needs about {need / GiB:.1f} GiB (--workdir)")
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # SIGINT too: a background job may start with it ignored
        signal.signal(sig, _raise_interrupt)
    base = Path(tempfile.mkdtemp(prefix="ocimodel-bench-", dir=parent))
    started = time.perf_counter()
    bench = Bench(args, base)
    interrupted = False
    try:
        log(f"benchmark temp dir: {base}")
        load_before = os.getloadavg()
        bench.setup()
        bench.run_all()
        load_after = os.getloadavg()
        elapsed = time.perf_counter() - started
        command = "python benchmarks/run.py" + ("" if not argv else " " + shlex.join(argv))
        model = next(ds for ds in bench.datasets if ds.is_model)
        header = [
            (f"Benchmark run {_dt.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}: `{command}` "
            f"({args.runs} run{'s' if args.runs > 1 else ''} per cell, medians; {elapsed / 60:.1f} min in all)"),
            "",
            *machine_info(bench),
            f"- load average (1 min) before / after: {load_before[0]:.2f} / {load_after[0]:.2f}",
            (f"- model v2 changes {len(model.changed)} files = {model.changed_bytes:,} bytes "
            f"({', '.join(model.changed)})"),
        ]
        report = "\n".join([
            *header, "",
            "Ceilings on this machine (same bytes, same registry):", "",
            bench.ceiling_table() if not args.no_ceilings else "(skipped: --no-ceilings)", "",
            "Medians per data set, scenario and tool:", "",
            bench.median_table(), "",
        ])
        print("\n" + report)
        if args.out:
            args.out.write_text(report)
            log(f"written to {args.out}")
        failed = sum(1 for r in bench.results.values() for s in r.samples if s.error)
        return 1 if failed else 0
    except KeyboardInterrupt:
        interrupted = True
        log("\ninterrupted: cleaning up")
        return 130
    finally:
        for proc in list(_current):
            if proc.poll() is None:
                proc.kill()
        for reg in list(Registry.live):
            reg.stop()
        if args.keep and not interrupted:
            log(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except BenchError as exc:
        log(f"error: {exc}")
        sys.exit(2)
