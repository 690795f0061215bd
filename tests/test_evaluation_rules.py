"""The pure parts of `eval check` (issue 18), without a registry: rule syntax and
verdicts, the state machine of alerts, the webhook delivery (a real loopback server),
the Prometheus exposition read back by prometheus-client's own parser, and the policy's
evaluations rule over signed statements."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from ocimodel.errors import UsageError
from ocimodel.monitoring import alerts
from ocimodel.monitoring.policy import EvaluationRule, Signed
from ocimodel.monitoring.policy import judge as judge_policy
from ocimodel.monitoring.prometheus import Sample, exposition
from ocimodel.monitoring.rules import Measure, Point, judge, parse_duration, parse_rule, parse_rules
from tests.support.webhook import Receiver

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=timezone.utc)
DIGEST = "sha256:" + "a" * 64


def _point(hours_ago: float, **metrics: float) -> Point:
    return Point(time=NOW - timedelta(hours=hours_ago), digest=DIGEST, version="1.0",
                 measures=tuple(Measure(k, v) for k, v in metrics.items()))


def _baseline(**metrics: float) -> Point:
    return Point(time=NOW - timedelta(days=30), digest=DIGEST, version="1.0",
                 measures=tuple(Measure(k, v) for k, v in metrics.items()), baseline=True)


SERIES = [_point(3, accuracy=0.93), _point(2, accuracy=0.91), _point(1, accuracy=0.78)]


@pytest.mark.parametrize(("text", "shown"), [
    ("accuracy>=0.90", "accuracy>=0.9"),
    (" accuracy >= .9 ", "accuracy>=0.9"),
    ("loss<0.5", "loss<0.5"),
    ("accuracy drop<=0.02 from baseline", "accuracy drop<=0.02 from baseline"),
    ("accuracy drop <= 2% from previous", "accuracy drop<=2% from previous"),
    ("latency_p99 rise<=10 from baseline", "latency_p99 rise<=10 from baseline"),
])
def test_rules_parse(text, shown):
    assert parse_rule(text).text == shown


@pytest.mark.parametrize("text", [
    "accuracy", "accuracy=>0.9", "accuracy>=nan", "accuracy>=inf", "accuracy drop<=0.02",
    "accuracy drop<=0.02 from yesterday", "accuracy drop<=-1 from baseline", "acc uracy>=1", "",
])
def test_a_rule_that_does_not_parse_is_a_usage_error_showing_the_syntax(text):
    with pytest.raises(UsageError) as error:
        parse_rule(text)
    assert "accuracy>=0.90" in error.value.hint and "drop<=" in error.value.hint


def test_no_rule_at_all_is_a_usage_error():
    with pytest.raises(UsageError):
        parse_rules([])


def test_the_latest_record_decides_and_the_failure_names_value_and_version():
    [outcome] = judge(SERIES, [parse_rule("accuracy>=0.9")], now=NOW)
    assert not outcome.passed and outcome.kind == "threshold"
    assert outcome.value == 0.78 and outcome.version == "1.0" and "0.78" in outcome.detail
    # the two good records before it do not outvote it; without it, the rule holds
    assert all(o.passed for o in judge(SERIES[:2], [parse_rule("accuracy>=0.9")], now=NOW))


def test_window_judges_each_of_the_last_records():
    rule = [parse_rule("accuracy>=0.9")]
    recovered = [*SERIES, _point(0.5, accuracy=0.92)]
    assert all(o.passed for o in judge(recovered, rule, now=NOW))
    outcomes = judge(recovered, rule, window=2, now=NOW)
    assert [o.value for o in outcomes] == [0.78, 0.92] and [o.passed for o in outcomes] == [False, True]


def test_drop_from_baseline_and_previous():
    points = [_baseline(accuracy=0.93), *SERIES[:2]]
    [ok] = judge(points, [parse_rule("accuracy drop<=0.02 from baseline")], now=NOW)
    assert ok.passed and ok.reference_value == 0.93  # 0.93 - 0.91 is 0.02, not 0.0200000001
    [bad] = judge([_baseline(accuracy=0.93), *SERIES], [parse_rule("accuracy drop<=0.02 from baseline")], now=NOW)
    assert not bad.passed and bad.kind == "change" and "0.78" in bad.detail
    [relative] = judge(SERIES, [parse_rule("accuracy drop<=10% from previous")], now=NOW)
    assert not relative.passed and relative.reference_value == 0.91
    [missing] = judge(SERIES, [parse_rule("accuracy drop<=0.02 from baseline")], now=NOW)
    assert not missing.passed and missing.kind == "missing" and "no baseline" in missing.detail


def test_a_drop_compares_only_values_on_the_same_dataset():
    rule = [parse_rule("accuracy drop<=0.02 from baseline")]
    on_test = Point(time=NOW - timedelta(days=30), digest=DIGEST, version="1.0",
                    measures=(Measure("accuracy", 0.99, "imdb:test"),), baseline=True)
    # A record without a dataset is not compared with a baseline measured on imdb:test.
    [missing] = judge([on_test, *SERIES[:2]], rule, now=NOW)
    assert (missing.passed, missing.kind, missing.reference_value) == (False, "missing", None)
    assert "imdb:test" in missing.detail and "without a dataset" in missing.detail
    same = Point(time=NOW, digest=DIGEST, version="1.0", measures=(Measure("accuracy", 0.98, "imdb:test"),))
    [ok] = judge([on_test, same], rule, now=NOW)
    assert ok.passed and ok.reference_value == 0.99
    other = Point(time=NOW, digest=DIGEST, version="1.0", measures=(Measure("accuracy", 0.5, "sst2"),))
    [refused] = judge([on_test, other], rule, now=NOW)
    assert refused.kind == "missing" and refused.reference_value is None
    # the split too: a value on imdb's train split is not a baseline measured on its test split
    split_base = Point(time=NOW - timedelta(days=30), digest=DIGEST, version="1.0",
                       measures=(Measure("accuracy", 0.99, "imdb", "test"),), baseline=True)
    train = Point(time=NOW, digest=DIGEST, version="1.0", measures=(Measure("accuracy", 0.98, "imdb", "train"),))
    [other_split] = judge([split_base, train], rule, now=NOW)
    assert other_split.kind == "missing" and "imdb (test)" in other_split.detail
    test = Point(time=NOW, digest=DIGEST, version="1.0", measures=(Measure("accuracy", 0.98, "imdb", "test"),))
    assert judge([split_base, test], rule, now=NOW)[0].passed


def test_a_missing_metric_and_a_stale_record_are_failures_of_their_own():
    [missing] = judge(SERIES, [parse_rule("f1>=0.5")], now=NOW)
    assert (missing.passed, missing.kind) == (False, "missing")
    [stale] = judge(SERIES, [parse_rule("accuracy>=0.5")], max_age=parse_duration("30m"), now=NOW)
    assert (stale.passed, stale.kind) == (False, "stale") and "older than 30m" in stale.detail
    assert judge(SERIES, [parse_rule("accuracy>=0.5")], max_age=parse_duration("2h"), now=NOW)[0].passed
    with pytest.raises(UsageError):
        parse_duration("7 days")


# -- alerts --------------------------------------------------------------------------------


def test_state_transitions_alert_on_changes_only():
    ok = alerts.State("ok", frozenset())
    failing = alerts.State("failing", frozenset({("accuracy>=0.9", "threshold", DIGEST)}))
    other = alerts.State("failing", frozenset({("accuracy>=0.9", "stale", DIGEST)}))
    assert alerts.transition(None, failing) == "firing"
    assert alerts.transition(ok, failing) == "firing"
    assert alerts.transition(failing, failing) is None
    assert alerts.transition(failing, other) == "firing"
    assert alerts.transition(failing, ok) == "resolved"
    assert alerts.transition(None, ok) is None and alerts.transition(ok, ok) is None


def test_state_file_round_trip_and_refusals(tmp_path):
    path = tmp_path / "state.json"
    state = alerts.State("failing", frozenset({("accuracy>=0.9", "threshold", DIGEST)}), since="2026-12-06T12:00:00Z")
    alerts.write_state(path, "reg/m:prod", state)
    assert alerts.read_state(path, "reg/m:prod") == state
    with pytest.raises(UsageError, match="not of reg/other"):
        alerts.read_state(path, "reg/other:prod")
    for broken in ("{not json", '{"version": 1, "failures": ' + "[" * 100_000):
        path.write_text(broken)
        with pytest.raises(UsageError, match="not a state this command wrote"):
            alerts.read_state(path, "reg/m:prod")
    assert alerts.read_state(tmp_path / "absent.json", "reg/m:prod") is None


def test_redact_keeps_only_scheme_and_host():
    assert alerts.redact("https://hooks.slack.com/services/T0/B0/secret") == "https://hooks.slack.com"
    assert alerts.redact("http://user:pw@127.0.0.1:8080/x?token=1") == "http://127.0.0.1:8080"
    for bad in ("ftp://x/y", "not a url", "https:///path"):
        with pytest.raises(UsageError) as error:
            alerts.check_url(bad)
        assert bad not in error.value.message


def test_post_alert_retries_then_delivers_and_never_names_the_path():
    document = alerts.alert_document("firing", "reg/m", "reg/m:prod", "1.0", DIGEST,
                                     [{"metric": "accuracy", "rule": "accuracy>=0.9", "detail": "accuracy is 0.78"}],
                                     "2026-12-06T12:00:00Z", "")
    slept: list[float] = []
    with Receiver([503, 429, 200]) as receiver:
        delivery = alerts.post_alert(receiver.url(), document, sleep=slept.append)
        assert delivery.attempts == 3 and len(slept) == 2 and slept[1] >= slept[0]
        assert receiver.received == [document] and "accuracy is 0.78" in document["text"]
        assert receiver.paths[-1] == "/services/T000/B000/s3cr3t-token"
    with Receiver([500] * 10) as receiver:
        with pytest.raises(alerts.AlertFailed) as failed:
            alerts.post_alert(receiver.url(), document, sleep=slept.append)
        assert "s3cr3t" not in failed.value.message and "HTTP 500" in failed.value.message
        assert len(receiver.paths) == alerts.ATTEMPTS
    with Receiver([404]) as receiver:  # not retried: the URL is wrong, not the service busy
        with pytest.raises(alerts.AlertFailed):
            alerts.post_alert(receiver.url(), document, sleep=slept.append)
        assert len(receiver.paths) == 1


# -- Prometheus ----------------------------------------------------------------------------


def test_post_alert_reads_a_bounded_part_of_a_huge_answer():
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    size, sent, done = 256 * 1024 * 1024, [], threading.Event()

    class Huge(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            self.rfile.read(int(self.headers.get("content-length") or 0))
            self.send_response(200)
            self.send_header("content-length", str(size))
            self.end_headers()
            chunk, total = b"x" * 65536, 0
            try:
                while total < size:
                    self.wfile.write(chunk)
                    total += len(chunk)
            except OSError:  # the client closed: it read no more
                pass
            sent.append(total)
            done.set()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Huge)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        document = alerts.alert_document("firing", "reg/m", "reg/m:prod", "1.0", DIGEST, [], "2026-12-06T12:00:00Z", "")
        delivery = alerts.post_alert(f"http://127.0.0.1:{server.server_port}/hook", document, sleep=lambda _: None)
        assert delivery.status == 200
    finally:
        done.wait(30)  # the handler ends when the client has closed the connection
        server.shutdown()
        server.server_close()
        thread.join()
    # the socket buffers take a few MiB at most; the whole answer is never read
    assert sent and sent[0] < size // 4


def test_the_exposition_parses_back_with_labels_and_values():
    from prometheus_client.parser import text_string_to_metric_families

    samples = [
        Sample("reg/team/m", "1.0", "", "accuracy", "", 0.78, 1765022400.0),
        Sample("reg/team/m", "1.1", "production", "accuracy", 'https://d.example/"x"', 0.92, 1765026000.0),
    ]
    families = {f.name: f for f in text_string_to_metric_families(exposition(samples).decode())}
    values = {(s.labels["version"], s.labels["alias"], s.labels["dataset"]): s.value
              for s in families["ocimodel_evaluation_value"].samples}
    assert values == {("1.0", "", ""): 0.78, ("1.1", "production", 'https://d.example/"x"'): 0.92}
    stamps = [s for s in families["ocimodel_evaluation_timestamp_seconds"].samples]
    assert {s.labels["metric"] for s in stamps} == {"accuracy"} and {s.labels["model"] for s in stamps} == {"reg/team/m"}
    assert sorted(s.value for s in stamps) == [1765022400.0, 1765026000.0]


# -- the policy's evaluations rule ---------------------------------------------------------


def _signed(signers: set[str], value: float, hours_ago: float, environment: str = "production") -> Signed:
    predicate = {"metrics": [{"name": "accuracy", "value": value}], "environment": environment,
                 "time": (NOW - timedelta(hours=hours_ago)).isoformat().replace("+00:00", "Z")}
    return Signed(referrer="sha256:" + "b" * 64, signers=frozenset(signers), predicate=predicate)


def test_policy_rule_reads_the_latest_record_of_a_trusted_signer():
    rule = EvaluationRule(metric="accuracy", min=0.9, max_age="7d", signers=["ci"], environment="production")
    assert judge_policy(rule, [_signed({"ci"}, 0.93, 48)], ["ci"], NOW).passed
    # a later bad record by the trusted signer decides
    verdict = judge_policy(rule, [_signed({"ci"}, 0.93, 48), _signed({"ci"}, 0.78, 1)], ["ci"], NOW)
    assert not verdict.passed and "0.78" in verdict.detail and "below 0.9" in verdict.detail
    # a later good record by another signer does not count, nor hide the bad one
    assert not judge_policy(rule, [_signed({"ci"}, 0.78, 2), _signed({"other"}, 0.99, 1)], ["ci"], NOW).passed
    # nor does a record of another environment
    assert not judge_policy(rule, [_signed({"ci"}, 0.78, 2), _signed({"ci"}, 0.99, 1, "staging")], ["ci"], NOW).passed
    old = judge_policy(rule, [_signed({"ci"}, 0.95, 24 * 8)], ["ci"], NOW)
    assert not old.passed and "older than 7d" in old.detail
    assert not judge_policy(rule, [_signed({"other"}, 0.95, 1)], ["ci"], NOW).passed
    future = judge_policy(rule, [_signed({"ci"}, 0.95, -24)], ["ci"], NOW)
    assert not future.passed and "future" in future.detail


def test_policy_rule_refuses_a_rule_without_limits():
    with pytest.raises(ValueError):
        EvaluationRule(metric="accuracy")
    with pytest.raises(ValueError):
        EvaluationRule(metric="accuracy", min=True)
    assert json.loads(EvaluationRule(metric="loss", max=0.5).model_dump_json())["max"] == 0.5


def test_the_policy_reads_the_predicate_type_the_records_are_written_with():
    from ocimodel.api.evaluations import EVALUATION_PREDICATE as written
    from ocimodel.monitoring.policy import EVALUATION_PREDICATE as judged

    assert judged == written


def test_the_policy_section_is_checked_like_the_others():
    from ocimodel.trust.policy import PolicyError, parse_policy

    signers = {"ci": {"key": "ci.pub"}}
    policy = parse_policy({"signers": signers, "evaluations": [{"metric": "accuracy", "min": 0.9, "max_age": "7d"}],
                           "aliases": {"production": {"require": ["evaluations"]}}})
    assert policy.evaluations[0].name == "evaluation accuracy (>= 0.9, within 7d)"
    for bad, said in (
        ({"evaluations": [{"metric": "accuracy", "min": 0.9, "signers": ["nobody"]}]}, "nobody"),
        ({"evaluations": [{"metric": "accuracy", "min": 0.9, "max_age": "a week"}]}, "max_age"),
        ({"evaluations": [{"metric": "accuracy", "min": 0.9, "max_age": "0s"}]}, "max_age"),
        ({"evaluations": [{"metric": "accuracy", "min": 0.9, "max_age": "99999w"}]}, "max_age"),
        ({"evaluations": [{"metric": "accuracy", "minimum": 0.9}]}, "minimum"),
        ({"aliases": {"production": {"require": ["evaluations"]}}}, "no evaluation rules"),
    ):
        with pytest.raises(PolicyError) as error:
            parse_policy({"signers": signers, **bad})
        assert said in error.value.message, error.value.message
