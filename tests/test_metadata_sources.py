"""Where a model card comes from: the card file (YAML / JSON), push flags and their grammar,
git and environment detection, and the precedence flags > file > detected."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ocimodel.errors import UsageError
from ocimodel.metadata import (
    MetadataFlags,
    ModelCard,
    collect_card,
    detect_code,
    detect_environment,
    find_card_file,
    load_card_file,
    merge_cards,
    parse_flag_args,
    parse_flags,
    redact_url,
    validate_card,
)
from ocimodel.metadata.sources import MAX_CARD_FILE_BYTES, parse_metric, parse_param

SHA_A = "sha256:" + "a" * 64
SHA_B = "sha256:" + "b" * 64


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# --- card files ----------------------------------------------------------------------------

YAML_CARD = """\
# a card as a person writes it
name: sentiment-bert
version: "1.10"
licenses: [Apache-2.0]
framework: transformers
task: text-classification
tags: [nlp, "no", on]
metrics:
  accuracy: 0.931
  f1: {value: 0.9, dataset: sst2, split: validation}
hyperparameters:
  learning_rate: 3e-4
  epochs: 3
  warmup: .5
  fp16: true
  optimizer: adamw
  schedule: 1:20
  seed: ~
  octal: 017
  hex: 0x1F
datasets:
  - uri: hf://datasets/stanfordnlp/sst2@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
base_models:
  - reference: hf://google-bert/bert-base-uncased
    relation: fine-tune
created: 2024-06-01T12:00:00Z
"""


def test_yaml_card_file_with_core_schema(tmp_path):
    card = load_card_file(write(tmp_path / "ocimodel.yaml", YAML_CARD))
    assert card.name == "sentiment-bert" and card.version == "1.10"
    assert card.tags == ["nlp", "no", "on"]  # YAML 1.1 would have made these booleans
    assert card.hyperparameters == {
        "learning_rate": 3e-4, "epochs": 3, "warmup": 0.5, "fp16": True, "optimizer": "adamw",
        "schedule": "1:20", "seed": None, "octal": 17, "hex": 31,
    }
    assert card.metrics["accuracy"] == 0.931
    assert card.datasets[0].digest == SHA_A
    assert card.created == datetime(2024, 6, 1, 12, tzinfo=UTC)


def test_yml_and_json_card_files(tmp_path):
    card = load_card_file(write(tmp_path / "a" / "ocimodel.yml", "task: t\n"))
    assert card.task == "t"
    card = load_card_file(write(tmp_path / "b" / "ocimodel.json", json.dumps({"metrics": {"acc": 0.5}})))
    assert card.metrics == {"acc": 0.5}
    assert load_card_file(write(tmp_path / "c" / "ocimodel.yaml", "# nothing yet\n")) == ModelCard()


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("ocimodel.yaml", "name: a\nname: b\n", "duplicate key 'name'"),
        ("ocimodel.yaml", "metrics:\n  acc: 1\n  acc: 2\n", "duplicate key 'acc'"),
        ("ocimodel.yaml", "a: &x [1]\ntags: *x\n", "aliases"),
        # `1` and `"1"` would both become the JSON key "1" in the annotation.
        ("ocimodel.yaml", "metrics:\n  1: 0.5\n  '1': 0.6\n", "a key must be a string, not int"),
        ("ocimodel.yaml", "name: [unclosed\n", "not valid YAML"),
        ("ocimodel.yaml", "- a\n- b\n", "the card must be a mapping"),
        ("ocimodel.yaml", "metrics:\n  acc: abc\n", "metadata: metrics.acc: not a number: 'abc'"),
        ("ocimodel.yaml", "version: 1.0\n", "metadata: version: not a string: 1.0"),
        ("ocimodel.yaml", "tags: !!python/object:os.system x\n", "not valid YAML"),
        ("ocimodel.json", '{"name": "a", "name": "b"}', "duplicate key 'name'"),
        ("ocimodel.json", "{nope", "not valid JSON"),
        ("ocimodel.json", '{"metrics": {"acc": NaN}}', "metadata: metrics.acc: not a finite number"),
    ],
)
def test_bad_card_files(tmp_path, name, text, message):
    path = write(tmp_path / name, text)
    with pytest.raises(UsageError) as info:
        load_card_file(path)
    assert message in info.value.message
    assert info.value.message.startswith("metadata: ")


def test_card_file_errors_say_which_file(tmp_path):
    path = write(tmp_path / "ocimodel.yaml", "metrics:\n  acc: abc\n")
    with pytest.raises(UsageError) as info:
        load_card_file(path)
    assert info.value.message == "metadata: metrics.acc: not a number: 'abc'"
    assert str(path) in info.value.hint


def test_card_file_size_cap(tmp_path):
    path = write(tmp_path / "ocimodel.yaml", "# " + "x" * MAX_CARD_FILE_BYTES + "\n")
    with pytest.raises(UsageError, match="limit"):
        load_card_file(path)


def test_card_file_must_be_regular(tmp_path):
    fifo = tmp_path / "ocimodel.yaml"
    os.mkfifo(fifo)
    with pytest.raises(UsageError, match="not a regular file"):
        load_card_file(fifo)


def test_find_card_file(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    assert find_card_file(model) is None
    card = write(model / "ocimodel.yml", "name: m\n")
    assert find_card_file(model) == card
    weights = write(model / "model.safetensors", "x")
    assert find_card_file(weights) == card  # a single-file model: next to it
    write(model / "ocimodel.json", "{}")
    with pytest.raises(UsageError, match="both"):
        find_card_file(model)


# --- flags ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("acc=0.93", ("acc", 0.93)),
        ("steps=1200", ("steps", 1200)),
        ("loss=-1.5e-3", ("loss", -1.5e-3)),
        ("acc=.5", ("acc", 0.5)),
        ("f1=0.9@squad", ("f1", {"value": 0.9, "dataset": "squad"})),
        ("f1=0.9@squad:validation", ("f1", {"value": 0.9, "dataset": "squad", "split": "validation"})),
        ("f1=0.9@hf://datasets/squad:test", ("f1", {"value": 0.9, "dataset": "hf://datasets/squad", "split": "test"})),
        ("f1=0.9@s3://bucket/eval", ("f1", {"value": 0.9, "dataset": "s3://bucket/eval"})),
        ("f1=0.9@https://h:8080/x", ("f1", {"value": 0.9, "dataset": "https://h:8080/x"})),
        ("f1=0.9@host:8080:", ("f1", {"value": 0.9, "dataset": "host:8080"})),
        ("eval/acc=1@d:s", ("eval/acc", {"value": 1, "dataset": "d", "split": "s"})),
    ],
)
def test_metric_grammar(text, expected):
    assert parse_metric(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("lr=3e-4", ("lr", 3e-4)),
        ("epochs=3", ("epochs", 3)),
        ("fp16=true", ("fp16", True)),
        ("seed=null", ("seed", None)),
        ("opt=adamw", ("opt", "adamw")),
        ('label="1"', ("label", "1")),
        ("layers=[1,2]", ("layers", "[1,2]")),
        ("x=NaN", ("x", "NaN")),
        ("x=", ("x", "")),
        ("expr=a=b", ("expr", "a=b")),
    ],
)
def test_param_grammar(text, expected):
    assert parse_param(text) == expected


def test_flags_to_card():
    flags = parse_flag_args([
        "--name", "m", "--version=2.0", "--license", "MIT", "--license", "Apache-2.0 WITH LLVM-exception",
        "--tag", "nlp", "--task", "text-generation", "--framework", "pytorch", "--format", "gguf",
        "--metric", "acc=0.93@squad:validation", "--metric", "loss=0.2",
        "--param", "lr=3e-4", "--param", "opt=adamw",
        "--dataset", f"s3://b/train@{SHA_A}", "--dataset", "hf://datasets/x",
        "--base", f"registry.example.com/base/llama:3@{SHA_B}", "--base", "hf://meta/x",
        "--base-relation", "quantize", "--base-relation", "merge",
        "--author", "Jane", "--created", "2024-01-02T03:04:05",
    ])
    card = parse_flags(flags)
    assert card.model_dump(mode="json", exclude_none=True, exclude_defaults=True) == {
        "name": "m", "version": "2.0", "licenses": ["MIT", "Apache-2.0 WITH LLVM-exception"],
        "tags": ["nlp"], "task": "text-generation", "framework": "pytorch", "format": "gguf",
        "metrics": {"acc": {"value": 0.93, "dataset": "squad", "split": "validation"}, "loss": 0.2},
        "hyperparameters": {"lr": 3e-4, "opt": "adamw"},
        "datasets": [{"uri": "s3://b/train", "digest": SHA_A}, {"uri": "hf://datasets/x"}],
        "base_models": [
            {"reference": "registry.example.com/base/llama:3", "digest": SHA_B, "relation": "quantize"},
            {"reference": "hf://meta/x", "relation": "merge"},
        ],
        "authors": ["Jane"],
        "created": "2024-01-02T03:04:05Z",  # no zone: UTC, as push --created does
    }


def test_source_and_revision_flags_fill_code_and_win_over_detection():
    card = parse_flags(parse_flag_args(["--source", "https://github.com/o/r", "--revision", "v1.2"]))
    assert card.code.repository == "https://github.com/o/r" and card.code.commit == "v1.2"
    detected = validate_card({"code": {"repository": "git@github.com:o/r.git", "commit": "a" * 40, "dirty": False}})
    merged = merge_cards(detected, card)
    assert (merged.code.repository, merged.code.commit, merged.code.dirty) == ("https://github.com/o/r", "v1.2", False)
    with pytest.raises(UsageError) as info:
        parse_flags(MetadataFlags(source="https://u:tok@github.com/o/r"))
    assert info.value.message.startswith("metadata: code.repository: contains credentials")
    assert "--source" in info.value.hint


def test_one_base_relation_applies_to_all_and_default_is_fine_tune():
    card = parse_flags(MetadataFlags(bases=("a", "b"), base_relations=("adapter",)))
    assert [b.relation for b in card.base_models] == ["adapter", "adapter"]
    card = parse_flags(MetadataFlags(bases=("a",)))
    assert card.base_models[0].relation == "fine-tune"


def test_created_now():
    card = parse_flags(MetadataFlags(created="now"))
    assert abs((datetime.now(UTC) - card.created).total_seconds()) < 60


@pytest.mark.parametrize(
    ("argv", "message", "hint"),
    [
        (["--metric", "acc=abc"], "metadata: metrics.acc: not a number: 'abc'", "from --metric"),
        (["--metric", "acc=nan"], "metadata: metrics.acc: not a number: 'nan'", "from --metric"),
        (["--metric", "acc=0.9@"], "metadata: metrics.acc: empty dataset", "from --metric"),
        (["--metric", "acc"], "metadata: --metric 'acc': expected NAME=NUMBER[@DATASET[:SPLIT]]", None),
        (["--metric", "=1"], "metadata: --metric '=1': expected", None),
        (["--metric", "bad name=1"], "metadata: metrics.bad name: invalid value", "from --metric"),
        (["--metric", "a=1", "--metric", "a=2"], "metadata: metrics.a: given twice", "from --metric"),
        (["--param", "lr"], "metadata: --param 'lr': expected NAME=VALUE", None),
        (["--param", "a=1", "--param", "a=2"], "metadata: hyperparameters.a: given twice", "from --param"),
        (["--license", "MIT and BSD"], "metadata: licenses[0]: not an SPDX license expression", "from --license"),
        (["--tag", "a,b"], "metadata: tags[0]: invalid value 'a,b'", "from --tag"),
        (["--dataset", "s3://b@sha256:123"], "metadata: datasets[0].digest: malformed digest", "from --dataset"),
        (["--dataset", "https://u:p@host/x"], "metadata: datasets[0].uri: contains credentials", "from --dataset"),
        (["--base", "r", "--base-relation", "copy"], "metadata: base_models[0].relation: 'copy' is not one of", "from --base-relation"),
        (["--base-relation", "merge"], "metadata: --base-relation without --base", None),
        (["--base", "a", "--base", "b", "--base", "c", "--base-relation", "merge", "--base-relation", "merge"],
         "metadata: 2 --base-relation for 3 --base", "once per --base"),
        (["--created", "yesterday"], "creation time must be 'now' or an ISO 8601 time", None),
        (["--version", "1", "--version", "2"], "metadata: --version given twice", None),
        (["--metrics", "a=1"], "metadata: unknown flag '--metrics'", "--metric"),
        (["--tag"], "metadata: --tag needs a value", None),
    ],
)
def test_bad_flags_name_the_field(argv, message, hint):
    with pytest.raises(UsageError) as info:
        parse_flags(parse_flag_args(argv))
    assert info.value.message.startswith(message), info.value.message
    if hint:
        assert hint in info.value.hint


# --- precedence ----------------------------------------------------------------------------


def test_precedence_flags_over_file_over_detected():
    detected = validate_card({
        "code": {"repository": "https://git.example/o/r.git", "commit": "a" * 40, "dirty": True},
        "environment": {"python": "3.11.9", "packages": {"torch": "2.3.1", "numpy": "1.26.4"}},
    })
    from_file = validate_card({
        "name": "file-name", "version": "1", "tags": ["a", "b"], "licenses": ["MIT"],
        "metrics": {"acc": 0.9, "f1": {"value": 0.8, "dataset": "d", "split": "s"}},
        "hyperparameters": {"lr": 0.1, "epochs": 3},
        "code": {"repository": "https://github.com/o/r"},
        "environment": {"packages": {"torch": "2.4.0"}},
    })
    flags = parse_flags(MetadataFlags(version="2", tags=("c",), metrics=("acc=0.95",), params=("lr=0.2",)))
    card = merge_cards(detected, from_file, flags)
    assert card.name == "file-name" and card.version == "2"
    assert card.tags == ["c"]  # lists are replaced, not merged
    assert card.licenses == ["MIT"]
    assert card.metrics["acc"] == 0.95  # merged name by name
    assert card.metrics["f1"].split == "s"
    assert card.hyperparameters == {"lr": 0.2, "epochs": 3}
    # code field by field: the file's repository with the detected commit and dirty flag
    assert card.code.repository == "https://github.com/o/r"
    assert card.code.commit == "a" * 40 and card.code.dirty is True
    assert card.environment.python == "3.11.9"
    assert card.environment.packages == {"torch": "2.4.0", "numpy": "1.26.4"}
    assert merge_cards() == ModelCard()
    assert merge_cards(None, flags) == flags


def test_collect_card_reads_the_file_and_flags(tmp_path):
    model = tmp_path / "model"
    write(model / "weights.bin", "x")
    write(model / "ocimodel.yaml", "name: m\nmetrics: {acc: 0.5, f1: 0.4}\n")
    card = collect_card(model, MetadataFlags(metrics=("acc=0.6",)), detect_git=False, detect_env=False)
    assert card.name == "m" and card.metrics == {"acc": 0.6, "f1": 0.4}
    assert card.environment is None and card.code is None
    # an explicit card file, and a mapping from Python callers as the top layer
    other = write(tmp_path / "elsewhere.json", '{"task": "t"}')
    card = collect_card(model, {"tags": ["x"]}, card_file=other, detect_git=False, detect_env=False)
    assert (card.name, card.task, card.tags) == (None, "t", ["x"])
    with pytest.raises(UsageError) as info:
        collect_card(model, {"tags": "x"}, detect_git=False, detect_env=False)
    assert info.value.message == "metadata: tags: not a list: 'x'"


def test_detect_environment_reads_metadata_only():
    env = detect_environment(("pydantic", "surely-not-installed-pkg"))
    assert env.python == platform.python_version()
    import pydantic

    assert env.packages == {"pydantic": pydantic.VERSION}
    assert set(detect_environment().packages) <= {
        "torch", "transformers", "safetensors", "numpy", "scikit-learn", "onnx", "tensorflow", "jax"}


# --- git -----------------------------------------------------------------------------------


@pytest.fixture
def git_env(tmp_path, monkeypatch):
    """Nobody's own git config, and no walking up past the test's directory."""
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    for name in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-C", str(repo), *args],
        check=True, capture_output=True, text=True,
    ).stdout.strip()


@pytest.fixture
def repo(git_env):
    """A checkout that tracks its model directory (model/), with a .gitignore for logs."""
    repo = git_env / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    write(repo / "train.py", "print('train')\n")
    write(repo / ".gitignore", "*.log\n")
    write(repo / "model" / "weights.bin", "w")
    git(repo, "add", "train.py", ".gitignore", "model/weights.bin")
    git(repo, "commit", "-q", "-m", "first")
    return repo


def test_detect_code_in_a_clean_repo_with_credentialed_remote(repo):
    git(repo, "remote", "add", "origin", "https://alice:s3cr3t-token@github.com/org/repo.git")
    code = detect_code(repo / "model")
    assert code.repository == "https://github.com/org/repo.git"
    assert code.commit == git(repo, "rev-parse", "HEAD")
    assert code.dirty is False
    card = collect_card(repo / "model", detect_env=False)
    assert "s3cr3t" not in card.model_dump_json()
    assert card.code == code


def test_detect_code_dirty_and_explicit_source_dir(repo, git_env):
    write(repo / "train.py", "print('changed')\n")
    code = detect_code(repo)
    assert code.dirty is True and code.repository is None
    assert detect_code(repo / "model").dirty is True  # the code that built it changed
    # the model elsewhere, the code in the repo
    model = git_env / "outside-model"
    write(model / "weights.bin", "w")
    assert detect_code(model) is None
    card = collect_card(model, source_dir=repo, detect_env=False)
    assert card.code == detect_code(repo, model_dir=False) and card.code.dirty is True


def test_an_untracked_model_directory_inside_another_checkout_records_no_revision(repo):
    """A model directory the checkout does not track (a download or a build output that
    happens to sit under some project's tree) was not made from that commit: recording
    the commit, clean, would be a false provenance."""
    for name in ("downloaded", "build/out"):
        model = repo / name
        write(model / "weights.bin", "w")
        assert detect_code(model) is None, name
        assert collect_card(model, detect_env=False).code is None
    # ignored rather than untracked: the same
    write(repo / ".gitignore", "*.log\nignored/\n")
    git(repo, "commit", "-q", "-am", "ignore")
    write(repo / "ignored" / "weights.bin", "w")
    assert detect_code(repo / "ignored") is None
    # once the checkout tracks it, it is the model's checkout
    git(repo, "add", "downloaded/weights.bin")
    git(repo, "commit", "-q", "-m", "track the model")
    code = detect_code(repo / "downloaded")
    assert code.commit == git(repo, "rev-parse", "HEAD") and code.dirty is False


def test_source_dir_names_the_checkout_even_when_the_model_is_not_tracked(repo):
    """--source-dir is the user saying which checkout built the model: recorded as is,
    and the model's own (untracked, ignored) files do not make it dirty."""
    build = repo / "build"
    write(build / "weights.bin", "w")
    card = collect_card(build, source_dir=repo, detect_env=False)
    assert card.code.commit == git(repo, "rev-parse", "HEAD") and card.code.dirty is False


def test_untracked_files_inside_the_model_directory_make_it_dirty(repo):
    """A new weight file the commit does not have: the recorded revision does not
    describe the model that is pushed."""
    write(repo / "model" / "extra.safetensors", "new")
    assert detect_code(repo / "model").dirty is True
    write(repo / "model" / "sub" / "deep.bin", "new")
    (repo / "model" / "extra.safetensors").unlink()
    assert detect_code(repo / "model").dirty is True


def test_untracked_files_outside_the_model_directory_do_not_make_it_dirty(repo):
    """An OCI layout or a notes file next to the model must not change the pushed digest
    (and then trip the immutability of the version tag on the next push)."""
    write(repo / "notes.txt", "new\n")
    write(repo / "store" / "index.json", "{}")
    assert detect_code(repo / "model").dirty is False
    # ignored files inside the model directory are not part of the source either
    write(repo / "model" / "train.log", "loss 0.1\n")
    assert detect_code(repo / "model").dirty is False


def test_repo_without_commits_or_remote_gives_no_code(git_env):
    empty = git_env / "empty"
    empty.mkdir()
    git(empty, "init", "-q")
    assert detect_code(empty) is None
    git(empty, "remote", "add", "origin", "git@github.com:org/x.git")
    code = detect_code(empty)
    assert code.repository == "git@github.com:org/x.git" and code.commit is None


def test_not_a_repo_and_no_git_give_no_code(git_env, repo, monkeypatch):
    plain = git_env / "plain"
    write(plain / "weights.bin", "w")
    assert detect_code(plain) is None
    assert detect_code(git_env / "does-not-exist") is None
    card = collect_card(plain, detect_env=False)
    assert card.code is None
    # no git on PATH at all
    monkeypatch.setenv("PATH", str(git_env / "no-bin"))
    assert detect_code(repo) is None


def test_a_file_config_cannot_run_commands_through_fsmonitor(repo, git_env):
    marker = git_env / "fsmonitor-ran"
    hook = write(git_env / "hook.sh", f"#!/bin/sh\ntouch {marker}\n")
    hook.chmod(0o755)
    git(repo, "config", "core.fsmonitor", str(hook))
    assert detect_code(repo) is not None
    assert not marker.exists()


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("https://github.com/org/repo.git", "https://github.com/org/repo.git"),
        ("https://user:token@github.com/org/repo.git", "https://github.com/org/repo.git"),
        ("https://x-access-token@github.com/org/repo.git", "https://github.com/org/repo.git"),
        ("https://gitlab.example:8443/g/r.git?private_token=abc#frag", "https://gitlab.example:8443/g/r.git"),
        ("ssh://git@github.com/org/repo.git", "ssh://git@github.com/org/repo.git"),
        ("ssh://git:pw@github.com/org/repo.git", "ssh://github.com/org/repo.git"),
        ("git@github.com:org/repo.git", "git@github.com:org/repo.git"),
        ("github.com:org/repo.git", "github.com:org/repo.git"),
        ("/srv/git/repo.git", None),
        ("../other", None),
        ("file:///srv/git/repo.git", None),
        ("C:/repos/x", None),
        ("", None),
    ],
)
def test_redact_url(url, redacted):
    assert redact_url(url) == redacted


def test_git_runs_only_where_a_checkout_can_be(repo, git_env, monkeypatch):
    """Outside any checkout no git process is started (a push pays for none); a model in a
    linked worktree (`.git` is a file there) or reached through a symlink into a checkout
    is still found, as git finds it."""
    log = git_env / "git-calls"
    real = shutil.which("git")
    wrapper = write(git_env / "bin" / "git", f'#!/bin/sh\necho "$@" >> {log}\nexec {real} "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{wrapper.parent}{os.pathsep}{os.environ['PATH']}")
    plain = git_env / "plain"
    write(plain / "weights.bin", "w")
    assert detect_code(plain) is None
    assert not log.exists()
    # a linked worktree: its `.git` is a file naming the main repository's git directory
    git(repo, "worktree", "add", "-q", str(git_env / "linked"))
    code = detect_code(git_env / "linked" / "model")
    assert code is not None and code.commit == git(repo, "rev-parse", "HEAD")
    assert log.exists()
    # a symlink from outside into the checkout: git works from the resolved directory
    (git_env / "via-link").symlink_to(repo / "model", target_is_directory=True)
    assert detect_code(git_env / "via-link") == detect_code(repo / "model")
