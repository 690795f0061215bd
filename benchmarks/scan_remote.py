#!/usr/bin/env python3
"""Scanning a model in a registry: bytes fetched and wall time for a 1 GiB safetensors
model (and a 1 GiB GGUF model), `scan REF --trust-ranges` against the default verified
`scan REF`, as a whole `ocimodel` process and through the API.

    PYTHONPATH=src .venv/bin/python benchmarks/scan_remote.py [--size-mib 1024] [--no-gguf]

Starts Debian's docker-registry on a free loopback port (tests/support/registry.py) and
pushes two models, each a config.json and one weights file of --size-mib MiB of tensor
data: `model.safetensors` (a Llama-style layout of F16 tensors; the header written as the
safetensors library writes it: sorted JSON padded with spaces to 8 bytes) and
`model.gguf` (header, key/values with a 32,000-token vocabulary and a chat template, and
tensor infos written by the gguf library's GGUFWriter). The tensor data is a hole in a
sparse file: the scan judges headers, and the registry stores and serves every byte.

Each scan runs with the cache off (`--no-cache` and a fresh OCIMODEL_CACHE_DIR) twice:
once through a pass-through counting proxy (tests/support/faultproxy.py) for the bytes
fetched (HTTP response bodies: manifest, config, blob ranges and streams; heads not
counted) and the requests, then once straight to the registry for the wall time (the
proxy relays in Python and would slow the 1 GiB stream). CLI runs are child processes
(start-up included, source compiled to bytecode first as an install would); API runs are
`ocimodel.scan(ref, cache=False, trust_ranges=...)` in this process. Goal (issue 16):
the safetensors model under 1 MiB fetched and under 0.2 s, with `--trust-ranges`.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
sys.path[:0] = [str(REPO_ROOT), str(REPO_ROOT / "src")]

MiB = 1 << 20
TIMEOUT = 600  # seconds a CLI scan may take

# Llama-style shapes: hidden 2048, MLP 8192, vocabulary 32,768, F16. With 6 layers the
# matrices are exactly 1 GiB (embeddings 128 MiB, 6 x 128 MiB of layers, lm_head 128 MiB),
# plus 13 norm vectors (4 KiB each). --size-mib scales the layer count.
HIDDEN, MLP, VOCAB = 2048, 8192, 32768


def _tensors(size_mib: int) -> list[tuple[str, str, list[int]]]:
    """(safetensors name, gguf name, shape) of every F16 tensor."""
    layers = max(1, (size_mib - 256) // 128)
    out = [("model.embed_tokens.weight", "token_embd.weight", [VOCAB, HIDDEN])]
    for i in range(layers):
        p, g = f"model.layers.{i}.", f"blk.{i}."
        out += [
            (p + "input_layernorm.weight", g + "attn_norm.weight", [HIDDEN]),
            (p + "self_attn.q_proj.weight", g + "attn_q.weight", [HIDDEN, HIDDEN]),
            (p + "self_attn.k_proj.weight", g + "attn_k.weight", [HIDDEN, HIDDEN]),
            (p + "self_attn.v_proj.weight", g + "attn_v.weight", [HIDDEN, HIDDEN]),
            (p + "self_attn.o_proj.weight", g + "attn_output.weight", [HIDDEN, HIDDEN]),
            (p + "post_attention_layernorm.weight", g + "ffn_norm.weight", [HIDDEN]),
            (p + "mlp.gate_proj.weight", g + "ffn_gate.weight", [MLP, HIDDEN]),
            (p + "mlp.up_proj.weight", g + "ffn_up.weight", [MLP, HIDDEN]),
            (p + "mlp.down_proj.weight", g + "ffn_down.weight", [HIDDEN, MLP]),
        ]
    out += [("model.norm.weight", "output_norm.weight", [HIDDEN]), ("lm_head.weight", "output.weight", [VOCAB, HIDDEN])]
    return out


def _nbytes(shape: list[int]) -> int:
    n = 2  # F16
    for d in shape:
        n *= d
    return n


def write_safetensors(path: Path, size_mib: int) -> tuple[int, int]:
    """The header as the safetensors library writes it (keys sorted, __metadata__ first,
    padded with spaces to a multiple of 8), then a hole of the tensors' size.
    Returns the file's size and its header's."""
    header: dict = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, _, shape in _tensors(size_mib):
        n = _nbytes(shape)
        header[name] = {"dtype": "F16", "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        f.truncate(8 + len(raw) + offset)
    return 8 + len(raw) + offset, 8 + len(raw)


def write_gguf(path: Path, size_mib: int) -> tuple[int, int]:
    """Header, key/values and tensor infos by the gguf library's writer, then the padding
    to its alignment and a hole of the tensors' (aligned) size. Returns the file's size
    and its header's (up to the tensor data)."""
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("bench-1g")
    writer.add_context_length(4096)
    writer.add_embedding_length(HIDDEN)
    writer.add_feed_forward_length(MLP)
    writer.add_block_count(max(1, (size_mib - 256) // 128))
    writer.add_head_count(16)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(1)  # mostly F16
    writer.add_tokenizer_model("llama")
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)]
    tokens += [f"\u2581tok{i}" for i in range(32000 - len(tokens))]
    writer.add_token_list(tokens)
    writer.add_token_scores([-float(i) for i in range(len(tokens))])
    writer.add_token_types([2, 3, 3] + [6] * 256 + [1] * (len(tokens) - 259))
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_chat_template(
        "{% for message in messages %}{{ '<|' + message['role'] + '|>\\n' + message['content'] | trim + '</s>\\n' }}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
    )
    data = 0
    for _, name, shape in _tensors(size_mib):
        n = _nbytes(shape)
        writer.add_tensor_info(name, shape, np.dtype(np.float16), n)
        data += gguf.GGUFWriter.ggml_pad(n, writer.data_alignment)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    writer.close()
    header = path.stat().st_size
    start = gguf.GGUFWriter.ggml_pad(header, writer.data_alignment)
    with open(path, "r+b") as f:
        f.truncate(start + data)
    return start + data, start


def _cli(ref: str, trust_ranges: bool, cache_dir: Path) -> dict:
    command = [sys.executable, "-m", "ocimodel", "scan", ref, "--no-cache", "--json"]
    command += ["--trust-ranges"] if trust_ranges else []
    env = {**os.environ, "OCIMODEL_CACHE_DIR": str(cache_dir),
           "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run(command, capture_output=True, env=env, timeout=TIMEOUT, check=False)
    if run.returncode != 0:
        raise RuntimeError(f"{' '.join(command[2:])} exited {run.returncode}: {run.stderr.decode()[-500:]}")
    return json.loads(run.stdout)


def _api(ref: str, trust_ranges: bool, cache_dir: Path) -> dict:
    import ocimodel

    os.environ["OCIMODEL_CACHE_DIR"] = str(cache_dir)
    return ocimodel.scan(ref, cache=False, trust_ranges=trust_ranges).model_dump(mode="json")


def _check(result: dict, trust_ranges: bool) -> str:
    """What the scan said: a benchmark of a scan that failed or misjudged measures nothing."""
    findings = [f for file in result["files"] for f in file["findings"]]
    rules = sorted({f["rule"] for f in findings})
    bad = [f for f in findings if f["severity"] in ("critical", "high")]
    if result.get("failed") or bad:
        raise RuntimeError(f"the scan of a benign model failed: {bad[:3]}")
    if trust_ranges != ("scan.unverified-ranges" in rules):
        raise RuntimeError(f"unexpected findings for trust_ranges={trust_ranges}: {rules}")
    return ", ".join(rules) or "none"


def run(size_mib: int = 1024, gguf: bool = True, workdir: str | None = None) -> list[str]:
    """Push the models, run every scan, return the markdown table (printed as it goes)."""
    import ocimodel
    from tests.support.faultproxy import FaultProxy
    from tests.support.registry import LocalRegistry

    package = REPO_ROOT / "src" / "ocimodel"
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)], check=True, timeout=300)
    saved_cache_dir = os.environ.get("OCIMODEL_CACHE_DIR")
    lines = [
        "| model (header bytes) | scan | via | wall s | bytes fetched | requests | findings |",
        "|---|---|---|---:|---:|---:|---|",
    ]
    with tempfile.TemporaryDirectory(prefix="ocimodel-scan-remote-", dir=workdir) as tmp, \
            LocalRegistry() as registry, FaultProxy(registry.host) as proxy:  # fmt: skip
        base = Path(tmp)
        os.environ["OCIMODEL_CACHE_DIR"] = str(base / "push-cache")
        writers = [("safetensors", "model.safetensors", write_safetensors)]
        writers += [("gguf", "model.gguf", write_gguf)] if gguf else []
        models = []
        for kind, filename, write in writers:
            folder = base / kind
            folder.mkdir()
            (folder / "config.json").write_text(json.dumps({"model_type": "llama", "torch_dtype": "float16"}) + "\n")
            size, header = write(folder / filename, size_mib)
            repo = f"bench/scan-{kind}:1"
            start = time.perf_counter()
            ocimodel.push(folder, f"{registry.host}/{repo}", detect_git=False)
            print(f"pushed {filename}: {size:,} bytes in {time.perf_counter() - start:.1f} s", file=sys.stderr)
            (folder / filename).unlink()  # the registry holds it now; free the disk
            models.append((f"{filename}, {size / (1 << 30):.2f} GiB ({header:,})", repo))
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "ocimodel", "--version"], capture_output=True, check=True, timeout=60,
                       env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")})
        lines.append(f"| (CLI start-up: `ocimodel --version`) | | CLI | {time.perf_counter() - start:.3f} | 0 | 0 | |")
        runs = 0
        for label, repo in models:
            for trust_ranges in (True, False):
                for via, call in (("CLI", _cli), ("API", _api)):
                    runs += 1
                    proxy.clear()
                    counted = call(f"{proxy.host}/{repo}", trust_ranges, base / f"cache-{runs}-counted")
                    fetched = sum(s.down for s in proxy.requests)
                    requests = len(proxy.requests)
                    start = time.perf_counter()
                    timed = call(f"{registry.host}/{repo}", trust_ranges, base / f"cache-{runs}-timed")
                    wall = time.perf_counter() - start
                    findings = _check(counted, trust_ranges)
                    _check(timed, trust_ranges)
                    scan = "`--trust-ranges`" if trust_ranges else "verified (default)"
                    lines.append(f"| {label} | {scan} | {via} | {wall:.3f} | {fetched:,} | {requests} | {findings} |")
                    print(lines[-1], file=sys.stderr)
    if saved_cache_dir is None:
        os.environ.pop("OCIMODEL_CACHE_DIR", None)
    else:
        os.environ["OCIMODEL_CACHE_DIR"] = saved_cache_dir
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="tensor data per model, MiB (default 1024; a multiple of 128)")
    parser.add_argument("--no-gguf", action="store_true", help="the safetensors model only")
    parser.add_argument("--workdir", help="where the temp dir goes (the weights are sparse files there)")
    args = parser.parse_args(argv)
    if args.size_mib < 384 or args.size_mib % 128:
        parser.error("--size-mib must be a multiple of 128, at least 384")
    print("\n".join(run(args.size_mib, gguf=not args.no_gguf, workdir=args.workdir)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
