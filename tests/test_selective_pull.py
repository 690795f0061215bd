"""Selective pull (issue 6): ``pull(..., include=[GLOB], kinds=[KIND])`` downloads only the
layers that match, leaves every other file in the destination alone, and refuses a
selection that matches nothing with a usage error naming what the model has. The bytes
counted and the blob requests the registry saw are both checked. Patterns are ORed among
themselves, kinds too, and the two options are ANDed (issue 12): each option narrows."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import ocimodel
from ocimodel.errors import NothingSelected, UsageError
from ocimodel.packaging.selection import matches_include
from tests.support.faultproxy import FaultProxy
from tests.support.files import tree_digest
from tests.test_cli import json_of, ocimodel_cli, ok, usage_error_problems


@pytest.fixture
def proxy(registry):
    with FaultProxy(registry.host) as p:
        yield p


@pytest.fixture
def pushed(registry, model_dir: Path, repo_name: str, proxy: FaultProxy):
    """The model pushed directly; returns (reference through the proxy, {path: FileEntry})."""
    result = ocimodel.push(model_dir, f"{registry.host}/{repo_name}:1")
    return f"{proxy.host}/{repo_name}:1", {f.path: f for f in result.files}


def _blob_gets(proxy: FaultProxy) -> list[str]:
    return sorted(s.path.rsplit("/", 1)[-1] for s in proxy.seen("GET", r"/blobs/"))


def _check_transfer(proxy, result, files, expected: set[str]) -> None:
    """Exactly the files of ``expected`` were listed, counted and fetched."""
    assert sorted(f.path for f in result.files) == sorted(expected)
    assert result.files_not_selected == len(files) - len(expected)
    wanted = {files[p].digest: files[p].size for p in expected}
    assert result.bytes_downloaded == sum(wanted.values())
    assert _blob_gets(proxy) == sorted(d for d, size in wanted.items())


def test_include_pulls_only_matching_files(pushed, proxy, model_dir: Path, tmp_path: Path):
    ref, files = pushed
    out = tmp_path / "out"
    result = ocimodel.pull(ref, out, include=["tokenizer*"])
    _check_transfer(proxy, result, files, {"tokenizer/tokenizer.json"})
    assert tree_digest(out) == {"tokenizer/tokenizer.json": tree_digest(model_dir)["tokenizer/tokenizer.json"]}


@pytest.mark.parametrize(
    ("include", "expected"),
    [
        (["*.json"], {"config.json", "tokenizer/tokenizer.json"}),  # the file name, at any depth
        (["src/*"], {"src/train.py"}),  # the whole path
        (["data"], {"data/eval.csv"}),  # a leading directory
        (["data/", "README.md"], {"data/eval.csv", "README.md"}),
        (["*.safetensors", "*.py"], {"model.safetensors", "src/train.py"}),
    ],
)
def test_include_patterns(pushed, proxy, tmp_path: Path, include, expected):
    ref, files = pushed
    result = ocimodel.pull(ref, tmp_path / "out", include=include)
    _check_transfer(proxy, result, files, expected)
    assert set(tree_digest(tmp_path / "out")) == expected


def test_kinds_pull_only_layers_of_those_kinds(pushed, proxy, tmp_path: Path):
    ref, files = pushed
    configs = {p for p, f in files.items() if f.kind == "weight.config"}
    assert configs and configs != set(files)
    result = ocimodel.pull(ref, tmp_path / "configs", kinds=["weight.config"])
    _check_transfer(proxy, result, files, configs)

    proxy.clear()
    wanted = {p for p, f in files.items() if f.kind in ("weight", "doc")}
    result = ocimodel.pull(ref, tmp_path / "weights", kinds=["weight", "DOC"])
    _check_transfer(proxy, result, files, wanted)
    assert {f.kind for f in result.files} == {"weight", "doc"}


def test_include_and_kind_together_take_files_matching_both(pushed, proxy, tmp_path: Path):
    ref, files = pushed
    # The README's example: the tokenizer files that are weight configs, not every config.
    assert files["config.json"].kind == files["tokenizer/tokenizer.json"].kind == "weight.config"
    result = ocimodel.pull(ref, tmp_path / "tok", include=["tokenizer*"], kinds=["weight.config"])
    _check_transfer(proxy, result, files, {"tokenizer/tokenizer.json"})
    assert set(tree_digest(tmp_path / "tok")) == {"tokenizer/tokenizer.json"}

    # OR within one option, AND between the two: README.md matches a pattern but is a doc.
    proxy.clear()
    result = ocimodel.pull(ref, tmp_path / "json", include=["*.json", "*.md"], kinds=["weight.config", "weight"])
    _check_transfer(proxy, result, files, {"config.json", "tokenizer/tokenizer.json"})

    # Each alone matches something, both together nothing: refused, naming the rule.
    proxy.clear()
    with pytest.raises(NothingSelected, match="must match a pattern and be of a kind"):
        ocimodel.pull(ref, tmp_path / "none", include=["tokenizer*"], kinds=["doc"])
    assert _blob_gets(proxy) == [] and not (tmp_path / "none").exists()


def test_nothing_selected_is_a_usage_error_listing_the_model(pushed, proxy, tmp_path: Path):
    ref, files = pushed
    out = tmp_path / "out"
    with pytest.raises(NothingSelected) as caught:
        ocimodel.pull(ref, out, include=["*.gguf", "Tokenizer"])
    error = caught.value
    assert isinstance(error, UsageError)
    assert "*.gguf" in error.message and all(p in error.message for p in files)
    assert sorted(p for p, _ in error.available) == sorted(files)
    assert "weight.config" in (error.hint or "")
    assert _blob_gets(proxy) == [] and not out.exists()

    with pytest.raises(UsageError, match="unknown file kind"):
        ocimodel.pull(ref, out, kinds=["weights"])
    with pytest.raises(UsageError, match="empty"):
        ocimodel.pull(ref, out, include=[""])
    assert _blob_gets(proxy) == []


def test_files_not_selected_are_left_alone(pushed, proxy, model_dir: Path, tmp_path: Path):
    ref, files = pushed
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.safetensors").write_bytes(b"my own weights, not the model's")
    (out / "notes.txt").write_text("mine\n")
    (out / "tokenizer").mkdir()
    (out / "tokenizer" / "tokenizer.json").write_text("stale")
    os.utime(out / "model.safetensors", (1_000_000_000, 1_000_000_000))
    before = {p: (out / p).stat() for p in ("model.safetensors", "notes.txt")}

    result = ocimodel.pull(ref, out, include=["tokenizer/*"])
    _check_transfer(proxy, result, files, {"tokenizer/tokenizer.json"})
    assert (out / "model.safetensors").read_bytes() == b"my own weights, not the model's"
    assert (out / "notes.txt").read_text() == "mine\n"
    for p, st in before.items():
        assert (out / p).stat().st_mtime_ns == st.st_mtime_ns and (out / p).stat().st_ino == st.st_ino
    assert (out / "tokenizer" / "tokenizer.json").read_bytes() == (model_dir / "tokenizer" / "tokenizer.json").read_bytes()

    proxy.clear()  # selected again: already there, nothing downloaded
    again = ocimodel.pull(ref, out, include=["tokenizer/*"])
    assert again.bytes_downloaded == 0 and again.files_unchanged == 1 and _blob_gets(proxy) == []


def test_selective_pull_from_a_layout(model_dir: Path, tmp_path: Path):
    store = f"oci:{tmp_path / 'store'}:1"
    files = {f.path: f for f in ocimodel.push(model_dir, store).files}
    result = ocimodel.pull(store, tmp_path / "out", include=["README*", "src"], kinds=["code", "doc"])
    expected = {"README.md", "src/train.py"}  # not empty.txt: a doc, but no pattern takes it
    assert files["empty.txt"].kind == "doc" and files["src/train.py"].kind == "code"
    assert {f.path for f in result.files} == expected == set(tree_digest(tmp_path / "out"))
    assert result.bytes_downloaded == sum(files[p].size for p in expected)


def test_cli_include_and_kind(pushed, proxy, tmp_path: Path):
    ref, files = pushed
    out = tmp_path / "out"
    document = json_of(ok("pull", ref, out, "--include", "tokenizer*", "--kind", "weight.config", "--json"))
    expected = {"tokenizer/tokenizer.json"}
    assert {f["path"] for f in document["files"]} == expected
    assert document["files_not_selected"] == len(files) - len(expected)
    assert document["bytes_downloaded"] == sum(files[p].size for p in expected)
    human = ok("pull", ref, tmp_path / "again", "--include", "config.json")
    assert f"{len(files) - 1} not selected" in human.out

    refused = ocimodel_cli("pull", ref, tmp_path / "none", "--include", "*.gguf")
    assert not usage_error_problems(refused)
    assert "model.safetensors" in refused.err and not (tmp_path / "none").exists()
    assert not usage_error_problems(ocimodel_cli("pull", ref, tmp_path / "none", "--kind", "weights"))
    both = ocimodel_cli("pull", ref, tmp_path / "none", "--include", "tokenizer*", "--kind", "doc")
    assert not usage_error_problems(both) and "must match a pattern and be of a kind" in both.err
    # --help states the rule where the options are described.
    help_text = " ".join(ok("pull", "--help").out.split())
    assert help_text.count("With --kind, a file must match both") == 1
    assert help_text.count("With --include, a file must match both") == 1


def test_include_matching_rules():
    assert matches_include("tokenizer/tokenizer.json", "tokenizer*")
    assert matches_include("tokenizer_config.json", "tokenizer*")
    assert matches_include("a/b/c.bin", "a/b")
    assert matches_include("a/b/c.bin", "a/*/c.bin")
    assert not matches_include("a/b/c.bin", "b/c")
    assert not matches_include("Config.json", "config.json")  # paths are case-sensitive
    assert not matches_include("data.csv", "data")  # a directory pattern needs a directory
