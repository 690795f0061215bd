"""Evaluation records without a registry: what `eval record` accepts (--metric, --from JSON
and CSV) and refuses (a usage error naming the bad value, nothing written), the text chart,
and `--plot` writing an SVG that parses and a PNG with its signature."""

from __future__ import annotations

import io
import json
import sys
import xml.etree.ElementTree as ET

import pytest

from ocimodel.api.evaluation_charts import check_plot_path, plot, text_chart
from ocimodel.api.evaluations import (
    EvaluationHistory,
    EvaluationMetric,
    EvaluationRecord,
    build_predicate,
    read_input,
)
from ocimodel.errors import UsageError
from tests.test_cli import Run, usage_error_problems

DIGEST = "sha256:" + "a" * 64


def test_metrics_from_options_json_and_csv_make_one_predicate(tmp_path, monkeypatch):
    monkeypatch.setenv("OCIMODEL_ACTOR", "nightly-job")
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"metrics": [{"name": "accuracy", "value": 0.93}, {"name": "f1", "value": 1, "split": "dev"}],
                                  "environment": "staging", "time": "2026-10-01T02:00:00+02:00"}))
    predicate = build_predicate(["latency_ms=41.5"], from_file=report, dataset=f"s3://evals/x.parquet@{DIGEST}",
                                split="test", environment="production")
    assert [(m.name, m.value, m.dataset, m.split) for m in predicate.metrics] == [
        ("accuracy", 0.93, f"s3://evals/x.parquet@{DIGEST}", "test"),
        ("f1", 1.0, f"s3://evals/x.parquet@{DIGEST}", "dev"),  # the file's split stays
        ("latency_ms", 41.5, f"s3://evals/x.parquet@{DIGEST}", "test"),
    ]
    # The option wins over the file; the time is kept as the instant, in UTC.
    assert (predicate.environment, predicate.time, predicate.recorder) == ("production", "2026-10-01T00:00:00Z", "nightly-job")

    table = tmp_path / "metrics.csv"
    table.write_text("\ufeffMetric, Value ,dataset\naccuracy,0.78,imdb\n\nf1,7e-1,\n")
    assert read_input(table) == {"metrics": [{"name": "accuracy", "value": 0.78, "dataset": "imdb"}, {"name": "f1", "value": 0.7}]}
    assert build_predicate({"accuracy": 0.9}).time.endswith("Z")  # no time given: now
    # `--from -`: what a job pipes in.
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b'{"metrics": [{"name": "auc", "value": 0.7}]}')))
    assert read_input("-") == {"metrics": [{"name": "auc", "value": 0.7}]}


@pytest.mark.parametrize(("metrics", "options", "named"), [
    (["accuracy=nan"], {}, "'nan' is not a finite number"),
    (["accuracy=inf"], {}, "'inf' is not a finite number"),
    ({"accuracy": float("nan")}, {}, "not a finite number"),
    ({"accuracy": True}, {}, "not a number: 'True'"),
    (["acc uracy=0.9"], {}, "'acc uracy' is not a valid name"),
    (["accuracy"], {}, "--metric expects NAME=VALUE, got 'accuracy'"),
    (["accuracy=0.9"], {"time": "yesterday"}, "'yesterday' is not an RFC 3339 time"),
    (["accuracy=0.9"], {"time": "2026-10-01T00:00:00"}, "is not an RFC 3339 time with a zone"),
    (["accuracy=0.9"], {"time": "2999-01-01T00:00:00Z"}, "time 2999-01-01T00:00:00Z is in the future"),
    (["accuracy=0.9"], {"dataset": "s3://x@sha256:abc"}, "'sha256:abc' is not a sha256:<64 hex>"),
    (["accuracy=0.9"], {"environment": "prod env"}, "'prod env' is not a valid environment"),
    (["accuracy=0.9", "accuracy=0.8"], {}, "metric accuracy is given twice"),
    ([], {}, "no metric to record"),
])
def test_malformed_input_is_refused_naming_it(metrics, options, named):
    with pytest.raises(UsageError) as caught:
        build_predicate(metrics, **options)
    assert named in caught.value.message, caught.value.message


@pytest.mark.parametrize(("content", "named"), [
    ("", "is empty"),
    ("  \n", "is empty"),
    ('{"metrics": [{"name": "accuracy", "value": NaN}]}', "NaN is not a value a metric can have"),
    ('{"metrics": [{"name": "accuracy", "value": "0.9"}]}', "metric accuracy value: not a number: '0.9'"),
    ('{"metrics": [{"name": "accuracy", "value": 0.9}], "enviroment": "prod"}', "unknown field 'enviroment'"),
    ('{"metrics": [{"name": "accuracy", "value": 0.9, "dataset": "x@sha256:12"}]}', "'sha256:12' is not a sha256:<64 hex>"),
    ('{"metrics": []}', "no metric to record"),
    ('{"metrics": [{"name": "accuracy", "value": 0.9}], "time": "June"}', "'June' is not an RFC 3339 time"),
    ("[1, 2]", "the JSON must be an object"),
    ("{", "is not valid JSON"),
    ('{"metrics": ' + "[" * 100_000, "nested too deeply"),
    ("name,score\naccuracy,0.9\n", "the CSV header must name metric and value"),
    ("metric,value\n", "has a header and no metric"),
    ("metric,value\naccuracy,high\n", "row 2 (accuracy): 'high' is not a number"),
    ("metric,value\naccuracy,0.9,extra\n", "row 2 has 3 cells, the header 2"),
])
def test_a_malformed_from_file_is_refused_naming_it(tmp_path, content, named):
    path = tmp_path / "in.txt"
    path.write_text(content)
    with pytest.raises(UsageError) as caught:
        build_predicate(None, from_file=path)
    assert named in caught.value.message, caught.value.message


def _in_process(monkeypatch, capsys, *args: object) -> Run:
    """The command run by main() in this process (a subprocess costs a second or more)."""
    from ocimodel.cli import app as cli_app

    argv = [str(a) for a in args]
    monkeypatch.setattr(sys, "argv", ["ocimodel", *argv])
    with pytest.raises(SystemExit) as exit_:
        cli_app.main()
    captured = capsys.readouterr()
    return Run(argv, exit_.value.code or 0, captured.out, captured.err)


def test_cli_malformed_input_is_a_usage_error_and_writes_nothing(tmp_path, monkeypatch, capsys):
    # The checks run before the store is opened: the layout is never created.
    store = tmp_path / "store"
    empty = tmp_path / "empty.json"
    empty.write_text("")
    for args, named in (
        (["--metric", "accuracy=NaN"], "'NaN' is not a finite number"),
        (["--metric", "top-1 accuracy=0.9"], "'top-1 accuracy' is not a valid name"),
        (["--metric", "accuracy=0.9", "--time", "last tuesday"], "'last tuesday' is not an RFC 3339 time"),
        (["--metric", "accuracy=0.9", "--dataset", "hf://d/x@sha256:0000"], "'sha256:0000' is not a sha256:<64 hex>"),
        (["--from", empty], f"--from {empty} is empty"),
    ):
        run = _in_process(monkeypatch, capsys, "eval", "record", f"oci:{store}:1.0", *args)
        assert usage_error_problems(run) == [], str(run)
        assert named in run.err, str(run)
    assert not store.exists()
    run = _in_process(monkeypatch, capsys, "eval", "record", f"oci:{store}:1.0", "--metric", "accuracy=nan", "--json")
    assert run.code == 2 and json.loads(run.out)["error"]["message"] == "metric accuracy: 'nan' is not a finite number"


def _history() -> EvaluationHistory:
    def point(time: str, value: float, *, version="1.0", baseline=False, trust="trusted") -> EvaluationRecord:
        return EvaluationRecord(repository="r.example/team/s", version=version, digest=DIGEST if version == "1.0" else "sha256:" + "b" * 64,
                                time=time, metrics=[EvaluationMetric(name="accuracy", value=value)], baseline=baseline,
                                trust=None if baseline else trust, referrer=None if baseline else DIGEST)

    return EvaluationHistory(reference="r.example/team/s:production", kind="alias", records=[
        point("", 0.95, baseline=True),
        point("2026-10-01T00:00:00Z", 0.93),
        point("2026-11-01T00:00:00Z", 0.91, trust="unsigned"),
        point("2026-12-01T00:00:00Z", 0.78),
        point("2026-12-02T00:00:00Z", 0.92, version="1.1"),
    ])


def test_the_text_chart_draws_one_bar_a_point_scaled_between_min_and_max():
    lines = text_chart(_history(), height=4)
    assert lines[0] == "accuracy: 5 points, first 0.95, last 0.92, min 0.78, max 0.95"
    bars = [line.split("|", 1)[1] for line in lines[1:5]]
    assert [line.split("|", 1)[0].strip() for line in lines[1:5]] == ["0.95", "", "", "0.78"]
    columns = ["".join(row[i] for row in bars) for i in range(5)]
    assert columns[0] == "████"  # the maximum: full height
    assert columns[3] == "   ▁"  # the minimum: a sliver, never nothing
    assert columns[1] > columns[2] or columns[1].count("█") > columns[2].count("█")  # 0.93 over 0.91
    assert lines[5].strip() == "b"  # the baseline is marked
    assert lines[6].strip() == "2026-10-01 .. 2026-12-02"


def test_plot_writes_an_svg_that_parses_and_a_png(tmp_path):
    svg = plot(_history(), tmp_path / "history.svg")
    root = ET.parse(svg).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert "accuracy" in svg.read_text()
    png = plot(_history(), tmp_path / "history.PNG")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # An existing file is replaced only when asked (ocimodel.outputs, as export's output).
    with pytest.raises(UsageError, match="already exists"):
        plot(_history(), svg)
    assert plot(_history(), svg, overwrite=True) == svg and ET.parse(svg).getroot().tag.endswith("svg")
    with pytest.raises(UsageError, match="must end in .svg or .png"):
        plot(_history(), tmp_path / "history.pdf")
    with pytest.raises(UsageError, match="nothing to plot"):
        plot(EvaluationHistory(reference="x", records=[]), tmp_path / "empty.svg")


def test_without_the_plot_extra_plot_is_a_usage_error_naming_it(tmp_path, monkeypatch, capsys):
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(UsageError) as caught:
        check_plot_path(tmp_path / "h.svg")
    assert caught.value.hint == "pip install 'ocimodel[plot]'"
    # The command says so before reading anything (the layout here does not exist).
    run = _in_process(monkeypatch, capsys, "eval", "history", f"oci:{tmp_path / 'nowhere'}:1.0", "--plot", tmp_path / "h.svg")
    assert usage_error_problems(run) == [], str(run)
    assert "--plot needs matplotlib" in run.err and "pip install 'ocimodel[plot]'" in run.err


def test_eval_help_names_the_from_formats(monkeypatch, capsys):
    text = _in_process(monkeypatch, capsys, "eval", "record", "--help").out
    assert "metric,value[,dataset,split]" in " ".join(text.split())


def test_eval_record_keyless_takes_the_token_from_the_environment(tmp_path, monkeypatch, capsys):
    """--keyless reads $SIGSTORE_ID_TOKEN (as sign does), so the token need not be on the
    command line where `ps` shows it; the environment alone signs nothing (--keyless asks)."""
    import ocimodel

    for name in ("OCIMODEL_IDENTITY_TOKEN", "GITHUB_ACTIONS", "GITLAB_CI", "ACTIONS_ID_TOKEN_REQUEST_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SIGSTORE_ID_TOKEN", "not.a-valid.jwt")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "w.bin").write_bytes(b"w")
    ref = f"oci:{tmp_path / 'store'}:1.0"
    ocimodel.push(tmp_path / "m", ref)
    help_text = " ".join(_in_process(monkeypatch, capsys, "eval", "record", "--help").out.split())
    assert "SIGSTORE_ID_TOKEN" in help_text
    run = _in_process(monkeypatch, capsys, "eval", "record", ref, "--metric", "accuracy=0.9", "--keyless")
    # the token of the environment was read (and refused, offline): not "no OIDC identity token"
    assert run.code == 1 and "the OIDC identity token was refused" in run.err, str(run)
    run = _in_process(monkeypatch, capsys, "eval", "record", ref, "--metric", "accuracy=0.9", "--json")
    assert run.code == 0 and json.loads(run.out)["signed"] is False, str(run)
