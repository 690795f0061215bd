"""`ocimodel eval check` and `eval export` (issue 18's done-when) on a real registry and
a layout: records of 0.93, 0.91 and 0.78 fail `accuracy>=0.9` naming 0.78 and the
version; a webhook receiver on loopback gets exactly one alert across two runs with a
state file, and a recovery after a fourth record of 0.92; the webhook's URL never appears
in what the command prints. The Prometheus export is read back by prometheus-client."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import ocimodel
from ocimodel.cli import app as cli_app
from ocimodel.cli import common
from tests.support.webhook import Receiver

SECRET = "T0AAA/B0BBB/xoxb-s3cr3t-w3bh00k"


@pytest.fixture
def cli(monkeypatch, capsys):
    """``ocimodel ARGS`` in this process: (exit code, stdout, stderr)."""
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.delenv("OCIMODEL_NOTIFY_URL", raising=False)
    for console in (common.stdout, common.stderr):
        monkeypatch.setattr(console, "_console", None)

    def run(*args: object) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["ocimodel", *map(str, args)])
        with pytest.raises(SystemExit) as exit_:
            cli_app.main()
        out, err = capsys.readouterr()
        return exit_.value.code, out, err

    return run


def _at(hours_ago: float) -> str:
    return (datetime.now(timezone.utc) - timedelta(hours=hours_ago)).isoformat(timespec="seconds").replace("+00:00", "Z")


def _model(tmp_path: Path, name: str = "m") -> Path:
    root = tmp_path / name
    root.mkdir()
    (root / "weights.bin").write_bytes(b"weights")
    return root


@pytest.mark.registry
def test_check_alerts_once_then_recovers(registry, repo_name: str, tmp_path: Path, cli):
    ref = f"{registry.host}/{repo_name}:1.0"
    ocimodel.push(_model(tmp_path), ref)
    for accuracy, hours_ago in ((0.93, 3), (0.91, 2), (0.78, 1)):
        ocimodel.record_evaluation(ref, {"accuracy": accuracy}, environment="production", time=_at(hours_ago))
    state = tmp_path / "check.state"
    with Receiver() as receiver:
        url = receiver.url(SECRET)
        args = ("eval", "check", ref, "--rule", "accuracy>=0.9", "--notify", url, "--state-file", state)
        outputs = []
        for _ in range(2):
            code, out, err = cli(*args)
            outputs.append(out + err)
            assert code == 1, out + err
            assert "0.78" in out and "1.0" in out and "FAIL accuracy>=0.9" in out
        assert len(receiver.received) == 1  # the second run: same failure, no page
        alert = receiver.received[0]
        assert alert["status"] == "firing" and alert["version"] == "1.0" and "0.78" in alert["text"]
        [failure] = alert["failures"]
        assert (failure["metric"], failure["rule"], failure["value"], failure["version"]) == ("accuracy", "accuracy>=0.9", 0.78, "1.0")
        assert f"alert sent to http://127.0.0.1:{receiver.server.server_port} (firing)" in outputs[0]
        assert "did not change" in outputs[1]

        ocimodel.record_evaluation(ref, {"accuracy": 0.92}, environment="production", time=_at(0))
        code, out, err = cli(*args)
        outputs.append(out + err)
        assert code == 0, out + err
        assert [a["status"] for a in receiver.received] == ["firing", "resolved"]
        assert receiver.received[1]["failures"] == []
        code, out, err = cli(*args, "--json")  # ok and ok: nothing more
        outputs.append(out + err)
        assert code == 0 and json.loads(out)["notification"]["sent"] is False
        assert len(receiver.received) == 2
    for text in outputs:
        assert SECRET not in text and "/services/" not in text

    # --window 2 holds the 0.78 before the 0.92 against the model
    code, out, _ = cli("eval", "check", ref, "--rule", "accuracy>=0.9", "--window", "2", "--json")
    result = json.loads(out)
    assert code == 1 and [f["value"] for f in result["failures"]] == [0.78]


@pytest.mark.registry
def test_check_an_alias_judges_the_model_it_holds_now(registry, repo_name: str, tmp_path: Path, cli):
    repository = f"{registry.host}/{repo_name}"
    ocimodel.push(_model(tmp_path, "a"), f"{repository}:1.0")
    (tmp_path / "a" / "weights.bin").write_bytes(b"weights 2")
    ocimodel.push(tmp_path / "a", f"{repository}:1.1")
    ocimodel.record_evaluation(f"{repository}:1.0", {"accuracy": 0.95}, time=_at(2))
    ocimodel.promote(f"{repository}:1.0", "production")
    ocimodel.promote(f"{repository}:1.1", "production")
    # 1.1 holds the alias and has no record: 1.0's good record does not speak for it
    result = ocimodel.check_evaluations(f"{repository}:production", ["accuracy>=0.9"])
    assert not result.ok and result.version == "1.1" and result.alias == "production"
    assert [f.kind for f in result.failures] == ["missing"]
    ocimodel.record_evaluation(f"{repository}:1.1", {"accuracy": 0.91}, time=_at(30))
    result = ocimodel.check_evaluations(f"{repository}:production", ["accuracy>=0.9"], max_age="1d")
    assert [f.kind for f in result.failures] == ["stale"]
    assert ocimodel.check_evaluations(f"{repository}:production", ["accuracy>=0.9"], max_age="2d").ok
    code, out, err = cli("eval", "check", repository, "--rule", "accuracy>=0.9")  # no :latest here
    assert code == 1 and "name the version or alias to check" in err, out + err

    # the Prometheus export: every version's latest value, labelled, read back by the parser
    from prometheus_client.parser import text_string_to_metric_families

    out_file = tmp_path / "textfile" / "m.prom"
    out_file.parent.mkdir()
    code, out, err = cli("eval", "export", repository, "--format", "prometheus", "-o", out_file)
    assert code == 0, out + err
    families = {f.name: f for f in text_string_to_metric_families(out_file.read_text())}
    values = {(s.labels["model"], s.labels["version"], s.labels["alias"], s.labels["metric"], s.labels["dataset"]): s.value
              for s in families["ocimodel_evaluation_value"].samples}
    assert values == {(repository, "1.0", "", "accuracy", ""): 0.95, (repository, "1.1", "production", "accuracy", ""): 0.91}
    stamps = {s.labels["version"]: s.value for s in families["ocimodel_evaluation_timestamp_seconds"].samples}
    assert abs(stamps["1.1"] - (datetime.now(timezone.utc) - timedelta(hours=30)).timestamp()) < 600


def test_check_on_a_layout_and_usage_errors(tmp_path: Path, cli, monkeypatch):
    from ocimodel.monitoring import alerts

    monkeypatch.setattr(alerts, "BACKOFF", 0.01)  # the retries below need not wait
    ref = f"oci:{tmp_path / 'store'}:1.0"
    ocimodel.push(_model(tmp_path), ref)
    code, out, err = cli("eval", "check", ref, "--rule", "accuracy>=0.9")
    assert code == 1 and "no evaluation record measures accuracy" in out
    for accuracy, hours_ago in ((0.93, 3), (0.91, 2), (0.78, 1)):
        ocimodel.record_evaluation(ref, {"accuracy": accuracy}, time=_at(hours_ago))
    code, out, err = cli("eval", "check", ref, "--rule", "accuracy>=0.9", "--rule", "accuracy drop<=0.05 from previous")
    assert code == 1 and out.count("\nFAIL ") == 2 and "0.78" in out
    code, out, err = cli("eval", "check", ref, "--rule", "accuracy=>0.9")
    assert code == 2 and "does not parse" in err and "accuracy>=0.90" in err  # the hint shows the syntax
    code, out, err = cli("eval", "check", ref, "--rule", "accuracy>=0.9", "--max-age", "a week")
    assert code == 2 and "not a duration" in err
    code, out, err = cli("eval", "check", ref, "--rule", "accuracy>=0.9", "--notify", f"ftp://h/{SECRET}")
    assert code == 2 and SECRET not in out + err
    with Receiver() as receiver:  # without a state file, every failing run alerts
        for _ in range(2):
            assert cli("eval", "check", ref, "--rule", "accuracy>=0.9", "--notify", receiver.url(SECRET))[0] == 1
        assert [a["status"] for a in receiver.received] == ["firing", "firing"]
    with Receiver([500] * 10) as receiver:  # an alert that cannot be delivered: exit 1, said, no state moved
        state = tmp_path / "s.json"
        code, out, err = cli("eval", "check", ref, "--rule", "accuracy>=0.9", "--notify", receiver.url(SECRET),
                             "--state-file", state)
        assert code == 1 and "did not take the alert" in err and SECRET not in out + err
        assert not state.exists()
        code, out, err = cli("eval", "check", ref, "--rule", "accuracy>=0.9", "--notify", receiver.url(SECRET), "--json")
        assert code == 1 and "did not take the alert" in json.loads(out)["notification"]["error"]  # one document
        assert "state file" not in err  # there is none: the hint says what the user can do
        assert SECRET not in out + err


def test_export_of_an_alias_exports_what_check_of_it_judges(tmp_path: Path, cli):
    store = tmp_path / "store"
    ocimodel.push(_model(tmp_path), f"oci:{store}:1.0")
    ocimodel.record_evaluation(f"oci:{store}:1.0", {"accuracy": 0.95}, time=_at(2))
    ocimodel.promote(f"oci:{store}:1.0", "production")  # after the record: the alias held nothing then
    alias = f"oci:{store}:production"
    assert ocimodel.check_evaluations(alias, ["accuracy>=0.9"]).ok
    code, out, err = cli("eval", "export", alias)
    assert code == 0, out + err
    from prometheus_client.parser import text_string_to_metric_families

    families = {f.name: f for f in text_string_to_metric_families(out)}
    [sample] = families["ocimodel_evaluation_value"].samples
    assert (sample.labels["version"], sample.labels["alias"], sample.value) == ("1.0", "production", 0.95)

    # the hints: a file in a directory that is not there; a repository without a tag to check
    code, out, err = cli("eval", "export", alias, "-o", tmp_path / "missing" / "x.prom")
    assert code == 1 and "does not exist" in err and "hint: create the directory" in err
    code, out, err = cli("eval", "check", f"oci:{store}", "--rule", "accuracy>=0.9")
    assert code == 1 and "name the version or alias to check" in err and ":production" in err


def test_check_with_a_policy_counts_trusted_records_only(tmp_path: Path):
    ref = f"oci:{tmp_path / 'store'}:1.0"
    ocimodel.push(_model(tmp_path), ref)
    key, pub = tmp_path / "ci.key", tmp_path / "ci.pub"
    ocimodel.generate_key_pair(key, pub)
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"signers": {"ci": {"key": str(pub)}}}))
    ocimodel.record_evaluation(ref, {"accuracy": 0.80}, time=_at(2), key=key)
    ocimodel.record_evaluation(ref, {"accuracy": 0.99}, time=_at(1))  # newer, good, unsigned
    assert ocimodel.check_evaluations(ref, ["accuracy>=0.9"]).ok  # without a policy it counts
    result = ocimodel.check_evaluations(ref, ["accuracy>=0.9"], policy=policy)
    assert not result.ok and result.trusted_only and (result.records, result.ignored) == (1, 1)
    assert [f.value for f in result.failures] == [0.80]
