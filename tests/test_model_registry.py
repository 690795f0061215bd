"""The model registry workflow end to end, on the real registry and on an OCI layout:
versions with metadata, promotion and rollback with an audit trail, lineage, immutability."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import ocimodel
from ocimodel.api import functions as reg
from ocimodel.errors import DestinationExists, NotFound, UsageError
from ocimodel.metadata.encoding import METRICS
from tests.test_cli import json_of, ocimodel_cli, ok, usage_error_problems


def _variant(model_dir: Path, tmp_path: Path, name: str, weights: bytes) -> Path:
    """A copy of the model with different weights."""
    import shutil

    copy = tmp_path / name
    shutil.copytree(model_dir, copy)
    (copy / "model.safetensors").write_bytes((copy / "model.safetensors").read_bytes()[:-len(weights)] + weights)
    return copy


@pytest.fixture(params=["registry", "layout"])
def repo(request, registry, repo_name, tmp_path) -> str:
    return f"{registry.host}/{repo_name}" if request.param == "registry" else f"oci:{tmp_path / 'store'}"


def test_versions_promotion_rollback_history_and_lineage(repo, model_dir, tmp_path, monkeypatch):
    v1 = ocimodel.push(model_dir, f"{repo}:1.0", name="sentiment", version="1.0",
                       metadata={"metrics": {"accuracy": 0.90}, "task": "text-classification"})
    v2_dir = _variant(model_dir, tmp_path, "v2", b"\x00" * 8)
    v2 = ocimodel.push(v2_dir, f"{repo}:1.1", name="sentiment", version="1.1",
                       metadata={"metrics": {"accuracy": 0.93}, "base_models": [{"reference": f"{repo}:1.0"}]})
    v3_dir = _variant(model_dir, tmp_path, "v3", b"\x01" * 8)
    v3 = ocimodel.push(v3_dir, f"{repo}:1.10", name="sentiment", version="1.10", metadata={"metrics": {"accuracy": 0.95}})

    # The child pinned its parent's digest and left a lineage link on it.
    assert v2.lineage == [{"parent": f"{repo}:1.0@{v1.digest}", "status": "linked"}]
    card = json.loads(ocimodel.inspect(f"{repo}:1.1").annotations["dev.ocimodel.base-models+json"])
    assert card == [{"digest": v1.digest, "reference": f"{repo}:1.0", "relation": "fine-tune"}]

    monkeypatch.setenv("OCIMODEL_ACTOR", "alice")
    reg.promote(f"{repo}:1.1", "production", reason="better accuracy")
    monkeypatch.setenv("OCIMODEL_ACTOR", "bob")
    moved = reg.promote(f"{repo}:1.10", "production", reason="even better")
    assert (moved.from_digest, moved.to_digest) == (v2.digest, v3.digest)
    monkeypatch.setenv("OCIMODEL_ACTOR", "carol")
    back = reg.rollback(repo, "production", reason="latency regression")
    assert (back.from_digest, back.to_digest, back.action) == (v3.digest, v2.digest, "rollback")
    assert ocimodel.inspect(f"{repo}:production").digest == v2.digest

    history = reg.history(repo, "production")
    assert [(e.action, e.digest, e.actor, e.reason) for e in history.events] == [
        ("promote", v2.digest, "alice", "better accuracy"),
        ("promote", v3.digest, "bob", "even better"),
        ("rollback", v2.digest, "carol", "latency regression"),
    ]
    assert history.warnings == [] and history.current == v2.digest

    listed = reg.versions(repo)
    assert [v.tag for v in listed.versions] == ["1.0", "1.1", "1.10"]  # 1.10 after 1.1, not before
    by_tag = {v.tag: v for v in listed.versions}
    assert by_tag["1.1"].aliases == ["production"] and by_tag["1.10"].aliases == []
    assert by_tag["1.0"].metrics == {"accuracy": 0.90} and by_tag["1.10"].metrics == {"accuracy": 0.95}
    assert by_tag["1.0"].size == sum(f.size for f in v1.files)

    down = reg.lineage(f"{repo}:1.0", up=False)
    assert [(e.parent, e.child, e.relation, e.verified) for e in down.edges] == [(v1.digest, v2.digest, "fine-tune", True)]
    up = reg.lineage(f"{repo}:1.1", down=False)
    assert [(e.parent, e.child) for e in up.edges] == [(v1.digest, v2.digest)]


def test_a_tag_moved_by_another_tool_is_flagged_in_history(registry, repo_name, model_dir, tmp_path):
    repo = f"{registry.host}/{repo_name}"
    ocimodel.push(model_dir, f"{repo}:1")
    other = ocimodel.push(_variant(model_dir, tmp_path, "b", b"\x02" * 8), f"{repo}:2")
    reg.promote(f"{repo}:1", "production")
    ocimodel.tag(f"{repo}:2", "production")  # a plain re-tag, no record

    history = reg.history(repo, "production")
    assert [e.action for e in history.events] == ["promote", "moved outside ocimodel"]
    assert history.current == other.digest
    assert any("no promotion record" in w for w in history.warnings)
    with pytest.raises(NotFound, match="without a promotion record"):
        reg.rollback(repo, "production")


def test_versions_are_immutable_unless_forced(registry, repo_name, model_dir, tmp_path):
    ref = f"{registry.host}/{repo_name}:1.0"
    first = ocimodel.push(model_dir, ref)
    assert ocimodel.push(model_dir, ref).digest == first.digest  # the same model again is fine
    changed = _variant(model_dir, tmp_path, "changed", b"\x03" * 8)
    with pytest.raises(DestinationExists, match="immutable"):
        ocimodel.push(changed, ref)
    assert ocimodel.inspect(ref).digest == first.digest
    assert ocimodel.push(changed, ref, force=True).digest != first.digest
    # Aliases move freely.
    ocimodel.push(model_dir, f"{registry.host}/{repo_name}:latest")
    ocimodel.push(changed, f"{registry.host}/{repo_name}:latest")
    # Nor can tag, copy or import move a version tag to another model.
    other = ocimodel.push(model_dir, f"{registry.host}/{repo_name}:2.0")
    with pytest.raises(DestinationExists):
        ocimodel.tag(f"{registry.host}/{repo_name}:2.0", "1.0")
    with pytest.raises(DestinationExists):
        ocimodel.copy(f"{registry.host}/{repo_name}:2.0", ref)
    from ocimodel.api import functions as api_referrers

    api_referrers.export(f"{registry.host}/{repo_name}:2.0", tmp_path / "two.tar")
    with pytest.raises(DestinationExists):
        api_referrers.import_(tmp_path / "two.tar", ref)
    assert ocimodel.inspect(ref).digest != other.digest
    ocimodel.tag(f"{registry.host}/{repo_name}:2.0", "1.0", force=True)
    assert ocimodel.inspect(ref).digest == other.digest


def test_promote_refuses_versions_as_aliases_and_no_ops(registry, repo_name, model_dir):
    repo = f"{registry.host}/{repo_name}"
    ocimodel.push(model_dir, f"{repo}:1.0")
    with pytest.raises(UsageError, match="looks like a version"):
        reg.promote(f"{repo}:1.0", "2.0")
    reg.promote(f"{repo}:1.0", "production")
    with pytest.raises(UsageError, match="already points"):
        reg.promote(f"{repo}:1.0", "production")
    with pytest.raises(NotFound, match="held nothing before"):
        reg.rollback(repo, "production")


def test_cli_registry_workflow(registry, repo_name, model_dir, tmp_path):
    repo = f"{registry.host}/{repo_name}"
    ok("push", model_dir, f"{repo}:1.0", "--metric", "accuracy=0.9@imdb:test", "--param", "lr=3e-4", "--task", "text-classification", "-q")
    v2 = _variant(model_dir, tmp_path, "v2", b"\x04" * 8)
    pushed = json_of(ok("push", v2, f"{repo}:1.1", "--metric", "accuracy=0.93", "--base", f"{repo}:1.0", "--json"))
    assert pushed["lineage"][0]["status"] == "linked"
    metrics = json.loads(ocimodel.inspect(f"{repo}:1.0").annotations[METRICS])
    assert metrics == {"accuracy": {"dataset": "imdb", "split": "test", "value": 0.9}}

    env = {"OCIMODEL_ACTOR": "ci-bot"}
    ok("promote", f"{repo}:1.0", "--to", "production", "--reason", "first", env=env)
    ok("promote", f"{repo}:1.1", "--to", "production", "--reason", "second", env=env)
    ok("rollback", repo, "--alias", "production", env=env)
    events = json_of(ok("history", repo, "--alias", "production", "--json"))["events"]
    assert [e["action"] for e in events] == ["promote", "promote", "rollback"]
    assert all(e["actor"] == "ci-bot" for e in events)
    table = ok("versions", repo).out
    assert "1.0" in table and "production" in table and "accuracy=0.9" in table
    assert "fine-tune" in ok("lineage", f"{repo}:1.0", "--down").out
    assert ok("lineage", f"{repo}:1.1", "--format", "mermaid").out.startswith("graph LR")
    assert "digraph lineage" in ok("lineage", f"{repo}:1.1", "--format", "dot").out

    refused = ocimodel_cli("push", v2, f"{repo}:1.0")
    assert refused.code == 1 and "immutable" in refused.err and "--force" in refused.err
    unreachable = ocimodel_cli("lineage", "127.0.0.1:1/team/model:1", env={"OCIMODEL_RETRIES": "1"})
    assert unreachable.code == 1 and "cannot reach 127.0.0.1:1" in unreachable.err and "Traceback" not in unreachable.err
    for args in (("push", model_dir, f"{repo}:2.0", "--metric", "accuracy=high"), ("promote", f"{repo}:1.0", "--to", "3.0"),
                 ("lineage", f"{repo}:1.0", "--format", "png")):
        assert not usage_error_problems(ocimodel_cli(*args)), args


def test_history_and_rollback_follow_the_record_chain_not_the_clocks(registry, repo_name, model_dir, tmp_path, monkeypatch):
    """Promotions made on machines whose clocks disagree (one an hour fast), a second
    rollback, and a re-tag by another tool."""
    from datetime import datetime as real_datetime
    from datetime import timedelta

    repo = f"{registry.host}/{repo_name}"
    v1 = ocimodel.push(model_dir, f"{repo}:1")
    v2 = ocimodel.push(_variant(model_dir, tmp_path, "b", b"\x05" * 8), f"{repo}:2")
    v3 = ocimodel.push(_variant(model_dir, tmp_path, "c", b"\x06" * 8), f"{repo}:3")
    skews = iter([timedelta(hours=1), timedelta(0), timedelta(hours=-1), timedelta(0), timedelta(0)])

    class Skewed(real_datetime):
        @classmethod
        def now(cls, tz=None):
            return real_datetime.now(tz) + next(skews)

    from ocimodel.api import registry as registry_ops  # where the records' times are taken

    monkeypatch.setattr(registry_ops, "datetime", Skewed)
    reg.promote(f"{repo}:1", "production")          # clock an hour fast
    reg.promote(f"{repo}:2", "production")
    reg.promote(f"{repo}:3", "production")          # clock an hour slow
    assert [e.digest for e in reg.history(repo, "production").events] == [v1.digest, v2.digest, v3.digest]
    assert reg.rollback(repo, "production").to_digest == v2.digest
    assert reg.rollback(repo, "production").to_digest == v1.digest  # a second rollback goes further back
    assert next(skews, None) is None  # every record took its time from the skewed clock
    history = reg.history(repo, "production")
    assert [e.action for e in history.events] == ["promote", "promote", "promote", "rollback", "rollback"]
    assert history.warnings == []

    ocimodel.tag(f"{repo}:3", "production")  # another tool moves it, no record
    with pytest.raises(NotFound, match="without a promotion record"):
        reg.rollback(repo, "production")
    assert reg.history(repo, "production").events[-1].action == "moved outside ocimodel"
