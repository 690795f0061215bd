"""What every command of the CLI shares: the options they all take (--json, --quiet,
--plain-http, --progress...), the state the global options and those options' callbacks
fill, and the plumbing that runs an API call and prints its result or its error.

A leaf: the root (ocimodel.cli.app) and every group of commands import it, it imports
neither. Nothing here imports the API or rich at start-up (see ocimodel.cli.lazy)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from contextlib import nullcontext
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from ocimodel.cli.lazy import LazyConsole, plain_table
from ocimodel.errors import OcimodelError, UsageError

if TYPE_CHECKING:
    from rich.table import Table

    from ocimodel.transport.connection import ConnectionOptions

stdout = LazyConsole(soft_wrap=True)
stderr = LazyConsole(stderr=True, soft_wrap=True)
# Filled as the command line is parsed: by the global options (debug, connection), by the
# callbacks of --json and --progress, and by main() (exits, watchdog).
state: dict[str, Any] = {"debug": False, "connection": None, "tls": None, "json": None, "progress": None}

T = TypeVar("T")

# -- shared options -----------------------------------------------------------------------

def _json_chosen(value: bool) -> bool:
    """Remembers --json for the error report of `run` (which every command calls without
    passing its options)."""
    state["json"] = value
    return value


JsonOpt = Annotated[
    bool,
    typer.Option(
        "--json", callback=_json_chosen,
        help='Print the result as JSON on stdout; an error as {"error": {"type", "message", "hint", "exit_code"}}.',
    ),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress (unless --progress is given); print only the digest.")]
PlainHttpOpt = Annotated[
    bool | None,
    typer.Option(
        "--plain-http/--no-plain-http",
        help="Talk HTTP instead of HTTPS (default: only for loopback hosts, or OCIMODEL_PLAIN_HTTP=1).",
        show_default=False,
    ),
]


def _progress_chosen(value: str | None) -> str | None:
    """Remembers --progress for `run`, as _json_chosen does --json."""
    if value is not None:
        value = value.lower()
        if value not in ("auto", "plain", "none"):
            raise typer.BadParameter(f"{value!r}: expected auto, plain or none")
    state["progress"] = value
    return value


ProgressOpt = Annotated[
    str | None,
    typer.Option(
        "--progress", metavar="auto|plain|none", callback=_progress_chosen, show_default=False,
        help="auto: bars on a terminal, else a line every few seconds (bytes, rate) and one at the end; "
        "plain: those lines; none. Default: OCIMODEL_PROGRESS, else auto; none with -q or --json.",
    ),
]
ForceOpt = Annotated[bool, typer.Option("--force", help="Move a version tag (1.0, v2...) that holds another model; versions are immutable otherwise.")]
ConcurrencyOpt = Annotated[int, typer.Option("--concurrency", "-j", min=1, max=32, metavar="N", help="Files transferred at once.")]


# -- plumbing ---------------------------------------------------------------------------


def run(action: Callable[[Any], T], *, verb: str, show_progress: bool) -> T:
    """Run an API call with progress (bars or lines, see `_progress`); turn our errors into
    one line and an exit code."""
    progress = _progress(verb, show_progress)
    try:
        with progress or nullcontext():
            return action(progress)
    except OcimodelError as exc:
        if state["debug"]:
            stderr.print_exception()
        code = 2 if isinstance(exc, UsageError) else 1
        report_error(type(exc).__name__, exc.message, exc.hint, code)
        raise typer.Exit(code) from None
    except OSError as exc:  # a full disk or a permission the library did not foresee
        if state["debug"]:
            stderr.print_exception()
        where = f": {exc.filename}" if exc.filename else ""
        report_error(type(exc).__name__, f"{exc.strerror or exc}{where}", None, 1)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        report_error("Interrupted", "interrupted", None, 130, prefix="")
        raise typer.Exit(130) from None


def _progress(verb: str, show_progress: bool) -> Any:
    """The progress reporter: --progress when given (it wins over -q and --json, which
    otherwise turn progress off: their stdout is for scripts, and so is their silence),
    else OCIMODEL_PROGRESS, else auto. `show_progress` is False for -q, --json and the
    commands that transfer nothing."""
    from ocimodel import settings

    mode = state.get("progress")
    if mode is None:
        if not show_progress:
            return None
        mode = settings.progress()
    if mode == "none":
        return None
    from ocimodel.cli import progress

    console = stderr.get() if mode == "auto" and stderr.is_terminal else None
    return progress.reporter(mode, verb, console, sys.stderr, settings.progress_interval())


def report_error(kind: str, message: str, hint: str | None, code: int, *, prefix: str = "error: ") -> None:
    """The one-line error (and hint) on stderr; with --json, also the error as one JSON
    object on stdout, so a script reading stdout gets a document on failure too (an empty
    stdout gave `json.loads` nothing to say what went wrong)."""
    stderr.print(f"{prefix}{message}", highlight=False, markup=False)
    if hint:
        stderr.print(f"hint: {hint}", highlight=False, markup=False)
    if json_requested():
        print_json({"error": {"type": kind, "message": message, "hint": hint, "exit_code": code}})


def json_requested() -> bool:
    """--json as the command's parser read it; before the parser got to it (a bad option,
    a missing argument, a bad OCIMODEL_* value found first), as written on the command line
    (before a `--`)."""
    if state.get("json") is not None:
        return bool(state["json"])
    args = sys.argv[1:]
    return "--json" in (args[: args.index("--")] if "--" in args else args)


def connection() -> ConnectionOptions:
    """The connection settings the global options chose (TLS; the rest per command)."""
    if state["connection"] is not None:
        return state["connection"]
    from ocimodel.transport.connection import ConnectionOptions, TlsOptions

    if state.get("tls") is None:  # no global options were read (a leaf run on its own)
        return ConnectionOptions()
    state["connection"] = ConnectionOptions(
        tls=TlsOptions(**state["tls"]),
        on_wait=lambda line: stderr.print(line, highlight=False, markup=False),  # a silent wait looks like a hang
    )
    return state["connection"]


def print_result(result: Any, as_json: bool, quiet: bool, lines: list[str]) -> None:
    """--json: the whole result; --quiet: the digest alone; else a few lines for people."""
    if as_json:
        print_json(result)
    elif quiet:
        stdout.print(result.digest, highlight=False)
    else:
        for line in lines:
            stdout.print(line, highlight=False, markup=False)


def print_names(names: list[str], as_json: bool, document: dict[str, Any]) -> None:
    """A list for people (one name a line) or for machines (one JSON object)."""
    if as_json:
        print_json(document)
    else:
        for name in names:
            stdout.print(name, highlight=False, markup=False)


def new_table() -> Table:
    """A borderless table with bold headers whose cells are shown as typed (see
    ocimodel.cli.lazy). rich is loaded here, by the commands that print one, not at start-up."""
    return plain_table()(show_edge=False, box=None, header_style="bold")


def print_json(value: Any) -> None:
    if hasattr(value, "model_dump_json"):  # an API result (pydantic, not imported for this)
        text = value.model_dump_json(by_alias=True, indent=2)
    else:
        text = json.dumps(value, indent=2)
    sys.stdout.write(text + "\n")


def parse_pairs(values: list[str], option: str) -> dict[str, str]:
    """Repeated KEY=VALUE options (--annotation) as a dict; a value without = is a usage error."""
    pairs: dict[str, str] = {}
    for value in values:
        key, sep, item = value.partition("=")
        if not sep or not key:
            raise UsageError(f"{option} expects KEY=VALUE, got {value!r}")
        pairs[key] = item
    return pairs


def size(n: int) -> str:
    """A byte count for people: 512 B, 1.5 MiB."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def identity_pairs(identities: list[str], issuers: list[str]) -> list[tuple[str, str]]:
    """--certificate-identity and --certificate-oidc-issuer as (identity, issuer) pairs
    (`verify` and `pull --verify` take them both)."""
    if not identities and not issuers:
        return []
    if not identities or not issuers:
        raise UsageError("keyless trust needs both --certificate-identity and --certificate-oidc-issuer")
    if len(issuers) == 1:
        return [(identity, issuers[0]) for identity in identities]
    if len(issuers) != len(identities):
        raise UsageError("give one --certificate-oidc-issuer for all identities, or one per --certificate-identity")
    return list(zip(identities, issuers))
