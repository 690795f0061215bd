"""The real format scanners behind `ocimodel scan` and the gates, end to end on the test
registry and a layout (the engine's own tests use a test-double scanner): a malicious
pickle hidden under a safetensors name, next to files the real libraries wrote, is found
in a directory, in a pushed model read back from the registry (streamed, verified) and by
`pull --scan`, and the benign files are not flagged."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

import ocimodel
from ocimodel.errors import ScanFailed
from tests.support.scan_corpus import malicious_pickle_corpus


def _model(root: Path) -> tuple[Path, bytes]:
    """A model directory: benign NumPy and safetensors-named weights... and one pickle
    from the malicious corpus that calls os.system, named model.safetensors."""
    np = pytest.importorskip("numpy")
    root.mkdir()
    (root / "config.json").write_text('{"model_type": "demo"}\n')
    np.save(root / "embeddings.npy", np.arange(16, dtype=np.float32))
    (root / "state.pkl").write_bytes(pickle.dumps({"lr": 0.1, "steps": [1, 2, 3]}, protocol=4))
    payload = next(data for _, name, data in malicious_pickle_corpus() if b"system" in data and name.endswith(".pkl"))
    (root / "model.safetensors").write_bytes(payload)
    return root, payload


def _critical(report) -> list:
    return [f for f in report.findings if f.severity.value == "critical"]


def test_a_malicious_pickle_is_found_locally_in_a_registry_and_in_a_layout(tmp_path, registry, repo_name, monkeypatch):
    monkeypatch.setenv("OCIMODEL_CACHE_DIR", str(tmp_path / "cache"))
    model, _ = _model(tmp_path / "m")
    local = ocimodel.scan(model)
    assert [(f.file, f.format, f.rule) for f in _critical(local)] == [
        ("model.safetensors", "pickle", "pickle.callable.dangerous")]
    assert _critical(local)[0].offset is not None and "system" in _critical(local)[0].detail
    flagged = {f.file for f in local.findings if f.severity.value in ("critical", "high")}
    assert flagged == {"model.safetensors"}  # the files NumPy and pickle wrote as data are clean

    for ref in (f"{registry.host}/{repo_name}:1.0", f"oci:{tmp_path / 'layout'}:1.0"):
        ocimodel.push(model, ref)
        remote = ocimodel.scan(ref)
        found = _critical(remote)
        assert [(f.file, f.rule) for f in found] == [("model.safetensors", "pickle.callable.dangerous")], ref
        assert found[0].offset == _critical(local)[0].offset  # the same bytes, streamed and verified

        out = tmp_path / "out"
        with pytest.raises(ScanFailed):
            ocimodel.pull(ref, out, scan=True)
        assert not out.exists()


def test_the_cli_exits_1_and_the_sarif_names_the_callable(tmp_path, monkeypatch):
    monkeypatch.setenv("OCIMODEL_CACHE_DIR", str(tmp_path / "cache"))
    model, _ = _model(tmp_path / "m")
    from tests.test_cli import ocimodel_cli

    sarif = tmp_path / "out.sarif"
    run = ocimodel_cli("scan", str(model), "--sarif", str(sarif))
    assert run.code == 1, run
    assert "model.safetensors" in run.out and "pickle.callable.dangerous" in run.out
    results = json.loads(sarif.read_text())["runs"][0]["results"]
    assert any("system" in r["message"]["text"] for r in results)
