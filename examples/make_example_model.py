#!/usr/bin/env python3
"""Write a small but realistic example model directory to DEST.

Stdlib only and deterministic: the same bytes on every run and every machine
(fixed-seed pseudo-random weights, no timestamps), so digests are reproducible.

    python examples/make_example_model.py demo/model
"""

from __future__ import annotations

import argparse
import json
import random
import struct
from pathlib import Path

SEED = 20240601
VOCAB = [
    "[PAD]", "[UNK]", "[BOS]", "[EOS]", "the", "a", "model", "registry", "oci", "artifact",
    "push", "pull", "tag", "digest", "layer", "manifest", "weights", "tensor", "config",
    "token", "hello", "world", ".", ",", "!", "?",
]
VOCAB_SIZE = 512  # rows of the embedding (the named vocab plus reserved ids)
HIDDEN = 128
INTERMEDIATE = 256


def _tensor_bytes(rng: random.Random, dtype: str, count: int, scale: float) -> bytes:
    values = [rng.gauss(0.0, scale) for _ in range(count)]
    fmt = {"F32": "f", "F16": "e"}[dtype]
    return struct.pack(f"<{count}{fmt}", *values)


def safetensors_bytes() -> bytes:
    """A valid safetensors file: u64 LE header length, JSON header, contiguous data."""
    rng = random.Random(SEED)
    specs = [  # name, dtype, shape, init scale
        ("embed_tokens.weight", "F16", [VOCAB_SIZE, HIDDEN], 0.02),
        ("mlp.up_proj.weight", "F32", [INTERMEDIATE, HIDDEN], 0.05),
        ("mlp.up_proj.bias", "F32", [INTERMEDIATE], 0.01),
    ]
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    chunks: list[bytes] = []
    offset = 0
    for name, dtype, shape, scale in specs:
        count = 1
        for dim in shape:
            count *= dim
        data = _tensor_bytes(rng, dtype, count, scale)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + b"".join(chunks)


def _json(obj: object) -> bytes:
    return (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode()


CONFIG = {
    "architectures": ["TinyMLPForCausalLM"],
    "model_type": "tiny-mlp",
    "vocab_size": VOCAB_SIZE,
    "hidden_size": HIDDEN,
    "intermediate_size": INTERMEDIATE,
    "num_hidden_layers": 1,
    "hidden_act": "gelu",
    "bos_token_id": 2,
    "eos_token_id": 3,
    "pad_token_id": 0,
    "torch_dtype": "float32",
    "tie_word_embeddings": True,
}

GENERATION_CONFIG = {
    "bos_token_id": 2,
    "eos_token_id": 3,
    "pad_token_id": 0,
    "do_sample": True,
    "temperature": 0.7,
    "top_p": 0.9,
    "max_new_tokens": 64,
}


def tokenizer() -> dict:
    vocab = {tok: i for i, tok in enumerate(VOCAB)}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {"id": vocab[t], "content": t, "single_word": False, "lstrip": False,
             "rstrip": False, "normalized": False, "special": True}
            for t in ("[PAD]", "[UNK]", "[BOS]", "[EOS]")
        ],
        "normalizer": {"type": "Lowercase"},
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": None,
        "decoder": None,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "[UNK]"},
    }


README = """\
---
license: apache-2.0
language: en
library_name: ocimodel-example
tags:
  - example
  - tiny
---

# example-tiny-mlp

A deliberately tiny model used to demonstrate `ocimodel`: pushing a model directory
to an OCI registry or layout, inspecting it, listing versions and pulling it back.

## Model details

| | |
|---|---|
| Architecture | token embedding + one MLP projection |
| Parameters | {params:,} |
| Vocabulary | {vocab} tokens ({named} named) |
| Weights | `model.safetensors` (float16 embeddings, float32 projection) |
| License | Apache-2.0 |

The weights are pseudo-random (fixed seed {seed}): the model predicts nothing useful.

## Files

- `model.safetensors`: the weights
- `config.json`, `generation_config.json`: architecture and sampling defaults
- `tokenizer.json`: a word-level tokenizer
- `src/inference.py`: a dependency-free reader of the weights
- `eval/metrics.csv`: evaluation results

## Evaluation

See `eval/metrics.csv`. The numbers are illustrative.
"""

LICENSE = """\
Copyright 2024 The ocimodel authors

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
"""

INFERENCE = '''\
#!/usr/bin/env python3
"""Read model.safetensors without third-party packages and print its tensors."""

import json
import struct
import sys
from pathlib import Path


def read_safetensors(path):
    raw = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    header.pop("__metadata__", None)
    data = raw[8 + n :]
    fmt = {"F32": "f", "F16": "e"}
    tensors = {}
    for name, info in header.items():
        start, end = info["data_offsets"]
        size = struct.calcsize(fmt[info["dtype"]])
        tensors[name] = (info["shape"], struct.unpack(f"<{(end - start) // size}{fmt[info['dtype']]}", data[start:end]))
    return tensors


def main():
    here = Path(__file__).resolve().parent.parent
    for name, (shape, values) in read_safetensors(here / "model.safetensors").items():
        mean = sum(values) / len(values)
        print(f"{name:24} shape={shape} mean={mean:+.5f}")


if __name__ == "__main__":
    sys.exit(main())
'''

METRICS = """\
benchmark,split,metric,value
tiny-lm-eval,validation,perplexity,812.4
tiny-lm-eval,validation,accuracy,0.031
tiny-lm-eval,test,perplexity,830.9
tiny-lm-eval,test,accuracy,0.029
"""


def files() -> dict[str, tuple[bytes, int]]:
    params = VOCAB_SIZE * HIDDEN + INTERMEDIATE * HIDDEN + INTERMEDIATE
    readme = README.format(params=params, vocab=VOCAB_SIZE, named=len(VOCAB), seed=SEED)
    return {
        "model.safetensors": (safetensors_bytes(), 0o644),
        "config.json": (_json(CONFIG), 0o644),
        "generation_config.json": (_json(GENERATION_CONFIG), 0o644),
        "tokenizer.json": (_json(tokenizer()), 0o644),
        "README.md": (readme.encode(), 0o644),
        "LICENSE": (LICENSE.encode(), 0o644),
        "src/inference.py": (INFERENCE.encode(), 0o755),
        "eval/metrics.csv": (METRICS.encode(), 0o644),
    }


def write_model(dest: Path) -> int:
    """Write the example model into ``dest``; returns its size in bytes."""
    for rel, (content, mode) in files().items():
        path = dest / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        path.chmod(mode)
    return sum(len(c) for c, _ in files().values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dest", type=Path, help="directory to write (created if missing)")
    args = parser.parse_args()
    total = write_model(args.dest)
    print(f"wrote {len(files())} files ({total / 1024:.0f} KiB) to {args.dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
