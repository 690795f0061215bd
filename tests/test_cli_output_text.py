"""The CLI shows user text as typed. Names, references, descriptions, file names, reasons
and annotations come from users and from whoever pushed to a registry; printed through rich,
``:smile:`` became an emoji (``push DIR oci:smile:smile:1.0`` printed "Pushed oci😄smile:1.0"),
``[red]x[/red]`` vanished into colour and an ESC sequence reached the terminal. Every command
that echoes such text is run here on OCI layouts (no registry) and must print it unchanged,
with control characters escaped (``\\x1b``) and never a raw ESC."""

from __future__ import annotations

import io
import json
import re
import sys
from pathlib import Path

import pytest

from ocimodel.cli import app as cli_app
from ocimodel.cli import common
from ocimodel.cli.progress import TransferBars
from ocimodel.oci.models import Descriptor

ESC = "\x1b[31m"
SHOWN_ESC = "\\x1b[31m"
# Brackets that rich reads as markup, and emoji codes, in every kind of user text. A file
# name or a directory cannot hold "/" (so no closing tag there); references refuse control
# characters (so ESC comes in through descriptions, reasons and annotations).
LAYOUT_DIR = "[red]L[bold]"
TAG = "x:smile:1.0"  # a layout tag may hold ":"; ":smile:" is an emoji code
TAG2 = "x:smile:2.0"
FILE_NAME = "w:smile:[red]x[bold].bin"
NAME = "n:smile:[red]n[/red]"
DESCRIPTION = f"d :smile: [red]r[/red] [bold]b {ESC}E"
REASON = f"why :smile: [red]r[/red] {ESC}!"
CODES = ("😄", "\x1b")  # what must never come out


@pytest.fixture
def cli(monkeypatch, capsys):
    """Run ``ocimodel ARGS`` in this process (a subprocess per command would take many
    seconds): returns (exit code, stdout, stderr). The consoles are made afresh at a
    width that keeps table cells whole."""
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setenv("OCIMODEL_PROGRESS", "none")
    monkeypatch.setenv("OCIMODEL_KEY_PASSWORD", "pw")
    for console in (common.stdout, common.stderr):
        monkeypatch.setattr(console, "_console", None)

    def run(*args: object, code: int = 0) -> tuple[str, str]:
        monkeypatch.setattr(sys, "argv", ["ocimodel", *map(str, args)])
        with pytest.raises(SystemExit) as exit_:
            cli_app.main()
        out, err = capsys.readouterr()
        assert exit_.value.code == code, (args, out, err)
        for text in CODES:
            assert text not in out and text not in err, (args, out, err)
        return out, err

    return run


def _model(root: Path, description: str) -> Path:
    root.mkdir()
    (root / FILE_NAME).write_bytes(b"weights")
    (root / "config.json").write_text("{}\n")
    return root


@pytest.mark.slow  # every command once, 2 s and more
def test_every_command_prints_user_text_as_typed(cli, tmp_path: Path) -> None:
    layout = tmp_path / LAYOUT_DIR
    ref = f"oci:{layout}:{TAG}"
    model = _model(tmp_path / "m", DESCRIPTION)

    out, _ = cli("push", model, ref, "--name", NAME, "--description", DESCRIPTION, "--annotation", f"k=:smile:[red]{ESC}")
    assert f"Pushed {ref}\n" in out

    out, _ = cli("inspect", ref)
    assert f"Reference:     {ref}\n" in out
    assert f"Name:          {NAME}\n" in out
    assert f"Description:   d :smile: [red]r[/red] [bold]b {SHOWN_ESC}E\n" in out
    assert f" {FILE_NAME} " in out  # the files table
    # --json stays the exact values (json.dumps escapes the ESC itself).
    out, _ = cli("inspect", ref, "--json")
    assert json.loads(out)["annotations"]["k"] == f":smile:[red]{ESC}"

    dest = tmp_path / "[bold]out:smile:"
    out, _ = cli("pull", ref, dest)
    assert f"Pulled {ref} into {dest}\n" in out
    assert (dest / FILE_NAME).read_bytes() == b"weights"

    out, _ = cli("tag", ref, TAG2)
    assert out.rstrip().endswith(f" as {TAG2}")
    out, _ = cli("ls", f"oci:{layout}")
    assert out.split() == [TAG, TAG2]
    out, _ = cli("versions", f"oci:{layout}")
    assert f"no versions in oci:{layout}\n" in out and f"alias {TAG} -> " in out

    copy_ref = f"oci:{tmp_path / '[red]C[bold]'}:{TAG}"
    out, _ = cli("copy", ref, copy_ref)
    assert ref in out and copy_ref in out

    # A second model, derived from the first, with another description: diff, lineage.
    other = _model(tmp_path / "m2", DESCRIPTION)
    child = f"oci:{layout}:child:smile:1.0"
    cli("push", other, child, "--name", NAME, "--description", f"other {ESC}:smile:", "--base", ref)
    out, _ = cli("diff", ref, child)
    assert f"A: {ref}  " in out and f"B: {child}  " in out
    assert f"d :smile: [red]r[/red] [bold]b {SHOWN_ESC}E" in out and f"other {SHOWN_ESC}:smile:" in out
    out, _ = cli("lineage", child)
    assert f"oci:{layout}@sha256:" in out and f"({NAME} )" in out

    out, _ = cli("search", f"oci:{layout}")
    assert f" {NAME} " in out and f" {ref} " in out

    out, _ = cli("promote", ref, "--to", "prod", "--reason", REASON)
    assert f"{layout}:prod -> " in out
    cli("promote", child, "--to", "prod", "--reason", REASON)
    out, _ = cli("history", f"oci:{layout}", "--alias", "prod")
    assert f"why :smile: [red]r[/red] {SHOWN_ESC}!" in out
    out, _ = cli("rollback", f"oci:{layout}", "--alias", "prod")
    assert f"{layout}:prod -> " in out

    attached = tmp_path / "eval:smile:[red].json"
    attached.write_text("{}")
    out, _ = cli("attach", ref, attached, "--artifact-type", "application/vnd.example.eval.v1+json", "-a", f"note=:smile:{ESC}")
    assert f"Attached application/vnd.example.eval.v1+json to oci:{layout}@sha256:" in out
    referrer = re.search(r"^Digest: (sha256:[0-9a-f]{64})$", out, re.M).group(1)
    out, _ = cli("discover", ref)
    assert out.startswith(f"{ref}@sha256:")
    cli("detach", ref, referrer)

    prefix = tmp_path / "k"
    cli("key", "generate", "--output-key-prefix", prefix)
    out, _ = cli("sign", ref, "--key", f"{prefix}.key")
    assert f"Signed {ref} (" in out
    predicate = tmp_path / "p.json"
    predicate.write_text(json.dumps({"note": f":smile: [red]{ESC}"}))
    cli("attest", ref, "--predicate", predicate, "--type", "https://example.com/eval", "--key", f"{prefix}.key")
    out, _ = cli("verify", ref, "--key", f"{prefix}.pub")
    assert f": {ref} (sha256:" in out

    archive = tmp_path / "[red]a:smile:.tar"
    out, _ = cli("export", ref, archive)
    assert ref in out and str(archive) in out
    imported = f"oci:{tmp_path / '[red]I[bold]'}:{TAG}"
    out, _ = cli("import", archive, imported)
    assert imported in out

    out, _ = cli("delete", copy_ref, "--force")
    assert copy_ref in out


def test_errors_and_hints_print_user_text_as_typed(cli, tmp_path: Path) -> None:
    missing = tmp_path / "[red]none[bold]"
    _, err = cli("inspect", f"oci:{missing}:{TAG}", code=1)
    assert f"error: no OCI layout at {missing}\n" in err
    nowhere = tmp_path / "[bold]nowhere:smile:"
    _, err = cli("push", nowhere, f"oci:{tmp_path / 'L'}:{TAG}", code=1)
    assert f"{nowhere} does not exist\n" in err
    _, err = cli("push", tmp_path, f"oci:{tmp_path / 'L'}:{TAG}", "--annotation", f":smile:[red]{ESC}", code=2)
    assert ":smile:[red]\\x1b[31m" in err


def test_progress_bars_show_file_names_as_typed() -> None:
    from rich.console import Console

    stream = io.StringIO()
    console = Console(file=stream, force_terminal=True, width=200, color_system=None)
    bars = TransferBars(console, "push")
    blob = Descriptor(media_type="application/octet-stream", digest="sha256:" + "a" * 64, size=8 * 1024 * 1024)
    with bars:
        bars.transfer_started([blob])
        bars.blob_started(blob, f"w:smile:[red]x{ESC}y")
        console.file.flush()
        bars._bars.refresh()
    shown = stream.getvalue()
    assert "w:smile:[red]x\\x1b[31my" in shown
    assert "😄" not in shown
