"""The referrer commands as a user runs them: attach, discover, copy --with-referrers,
detach, delete, export and import, with their exit codes and --json."""

from __future__ import annotations

import json
from pathlib import Path

import ocimodel
from tests.test_cli import json_of, ocimodel_cli, ok, usage_error_problems

EVAL = "application/vnd.example.eval.v1+json"


def test_attach_discover_detach_round_trip(registry, model_dir, repo_name, tmp_path: Path):
    ref = f"{registry.host}/{repo_name}:1"
    ocimodel.push(model_dir, ref)
    report = tmp_path / "eval.json"
    report.write_text(json.dumps({"accuracy": 0.9}))

    digest = ok("attach", ref, report, "--artifact-type", EVAL, "-a", "dataset=imdb", "-q").out.strip()
    assert digest.startswith("sha256:") and len(digest) == 71

    tree = ok("discover", ref).out
    assert EVAL in tree and digest in tree
    document = json_of(ok("discover", ref, "--artifact-type", EVAL, "--json"))
    assert [(n["digest"], n["annotations"]["dataset"]) for n in document["referrers"]] == [(digest, "imdb")]

    copied = ok("copy", ref, f"oci:{tmp_path / 'store'}:1", "--with-referrers")
    assert "Referrers: 1 copied" in copied.out
    assert digest in ok("discover", f"oci:{tmp_path / 'store'}:1").out

    ok("detach", ref, digest)
    assert "no referrers" in ok("discover", ref).out


def test_export_import_and_delete(registry, model_dir, repo_name, tmp_path: Path):
    ref = f"{registry.host}/{repo_name}/a:1"
    ocimodel.push(model_dir, ref)
    ok("attach", ref, "--artifact-type", EVAL, "-a", "note=none")
    archive = tmp_path / "model.tar"
    exported = json_of(ok("export", ref, archive, "--json"))
    assert Path(exported["path"]) == archive and len(exported["referrers"]) == 1

    imported = json_of(ok("import", archive, f"{registry.host}/{repo_name}/b", "--json"))
    assert imported["digest"] == exported["digest"] and imported["destination"].endswith("/b:1")

    ok("tag", ref, "production")
    refused = ocimodel_cli("delete", ref)
    assert not usage_error_problems(refused) and "production" in refused.err and "--force" in refused.err
    deleted = json_of(ok("delete", ref, "--force", "--json"))
    assert sorted(deleted["tags_removed"]) == ["1", "production"]
    assert ok("ls", f"{registry.host}/{repo_name}/a").out.strip() == ""


def test_bad_input_is_a_usage_error(registry, model_dir, repo_name, tmp_path: Path):
    ref = f"oci:{tmp_path / 'store'}:1"
    ocimodel.push(model_dir, ref)
    for args in (
        ("attach", ref, "--artifact-type", "no-slash"),
        ("attach", ref, tmp_path / "missing.json", "--artifact-type", EVAL),
        ("attach", ref, "--artifact-type", EVAL, "-a", "novalue"),
        ("detach", ref, "not-a-digest"),
        ("import", tmp_path / "missing.tar", f"oci:{tmp_path / 'other'}"),
        ("export", ref, tmp_path),
    ):
        run = ocimodel_cli(*args)
        assert not usage_error_problems(run), (args, str(run))
    missing = ocimodel_cli("detach", ref, "sha256:" + "0" * 64)
    assert missing.code == 1 and "not a referrer" in missing.err and "Traceback" not in missing.err
