"""The ``ocimodel`` command: the root of the command tree. It makes the typer app, reads
the global options (--debug, TLS, --version), registers every command of its leaves (from
a table: a run builds, and imports the leaf of, only the command it names; see
docs/startup.md), and runs them from `main` with our exit codes and Ctrl-C handling. The
commands themselves live in the leaves (one module per group of verbs); what they share
lives in ocimodel.cli.common. No leaf imports this module.

Exit codes: 0 success, 1 failure (the registry, the network, the data), 2 usage error."""

from __future__ import annotations

import copy
import dataclasses
import functools
import importlib
import logging
import sys
import typing
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.exceptions import TyperException

from ocimodel.cli.common import report_error, state, stderr
from ocimodel.errors import UsageError, escape_controls

_root = typer.Typer(  # the root alone: its help, settings and options (main_options)
    name="ocimodel",
    help=(
        "Store ML models as OCI artifacts (CNCF ModelPack) in any OCI registry, "
        "or in a local OCI layout directory (oci:PATH:TAG) with no server at all.\n\n"
        "Quick start:\n\n"
        "  ocimodel push ./my-model oci:./store:sentiment:1.0 --name sentiment --version 1.0\n\n"
        "  ocimodel inspect oci:./store:sentiment:1.0\n\n"
        "  ocimodel pull localhost:5000/team/sentiment:1.0 ./out\n\n"
        "References: [registry/]repository[:tag][@sha256:...] or oci:PATH[:tag][@digest]. "
        "Plain HTTP is used for localhost/127.0.0.1/::1, or with --plain-http / OCIMODEL_PLAIN_HTTP=1. "
        "Credentials: OCIMODEL_USERNAME and OCIMODEL_PASSWORD, else what `ocimodel login` "
        "(or docker login) stored: docker's config.json and its credential helpers. "
        "Proxies: HTTPS_PROXY, HTTP_PROXY and NO_PROXY, as docker reads them (never for localhost)."
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


class _EscapedFormatter(logging.Formatter):
    """--debug log lines with control characters escaped, like everything else printed."""

    def format(self, record: logging.LogRecord) -> str:
        return escape_controls(super().format(record))


def _print_version(value: bool) -> None:
    if value:
        from ocimodel import __version__

        sys.stdout.write(f"ocimodel {__version__}\n")  # as stdout.print would, without loading rich
        raise typer.Exit(0)


@_root.callback()
def main_options(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and transport logs (never secrets).")] = False,
    ca_file: Annotated[
        Path | None,
        typer.Option("--ca-file", metavar="PEM", envvar="OCIMODEL_CA_FILE", help="Also trust the CAs in this PEM file (e.g. a corporate CA)."),
    ] = None,
    insecure: Annotated[
        bool,
        typer.Option("--insecure", envvar="OCIMODEL_INSECURE", help="Do not verify TLS certificates. Dangerous: for tests only."),
    ] = False,
    client_cert: Annotated[
        Path | None,
        typer.Option("--cert", metavar="PEM", envvar="OCIMODEL_CLIENT_CERT", help="Client certificate for registries that require mutual TLS."),
    ] = None,
    client_key: Annotated[
        Path | None,
        typer.Option("--key", metavar="PEM", envvar="OCIMODEL_CLIENT_KEY", help="Private key of --cert (if not in the same file)."),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", is_eager=True, callback=_print_version, help="Print the version and exit.")
    ] = False,
) -> None:
    from ocimodel import settings

    settings.check_all()  # a bad OCIMODEL_* value is a usage error before any work starts
    state["debug"] = debug or settings.debug()
    if state["debug"]:
        if not logging.getLogger().handlers:  # as basicConfig: an embedding app's handlers stay
            handler = logging.StreamHandler()
            handler.setFormatter(_EscapedFormatter("%(name)s: %(message)s"))  # logs quote paths, registry answers
            logging.basicConfig(level=logging.WARNING, handlers=[handler])
        logging.getLogger("ocimodel").setLevel(logging.DEBUG)
    if insecure:
        stderr.print("warning: --insecure: TLS certificates are not verified", highlight=False)
    # Made by the first use (common.connection): a command's --help or a usage error needs
    # no transport (httpx, pydantic: ~0.1 s to import).
    state["connection"] = None
    state["tls"] = {"ca_file": ca_file, "insecure": insecure, "client_cert": client_cert, "client_key": client_key}


# -- the commands, in the order `ocimodel --help` lists them --------------------------------

# (name, leaf module, function, options of Typer.command) and (name, leaf module, sub-app).
# A leaf is imported when a tree that has one of its commands is made (cli_command).
COMMANDS: tuple[tuple[str, str, str, dict[str, Any]], ...] = (
    ("push", "transfer", "push", {}),
    ("pull", "transfer", "pull", {}),
    ("inspect", "browse", "inspect", {}),
    ("tag", "registry", "tag", {}),
    ("ls", "browse", "list_tags", {}),
    ("catalog", "browse", "catalog", {}),
    ("copy", "transfer", "copy", {}),
    ("login", "auth", "login", {}),
    ("logout", "auth", "logout", {}),
    ("attach", "referrers", "attach", {}),
    ("discover", "referrers", "discover", {}),
    ("detach", "referrers", "detach", {}),
    ("delete", "referrers", "delete", {}),
    ("export", "transfer", "export", {}),
    ("import", "transfer", "import_archive", {}),
    ("versions", "registry", "versions", {}),
    ("promote", "registry", "promote", {}),
    ("rollback", "registry", "rollback", {}),
    ("history", "registry", "history", {}),
    ("lineage", "registry", "lineage", {}),
    ("deployments", "deploy", "deployments", {}),
    ("audit", "audit", "audit", {}),
    ("sign", "trust", "sign", {}),
    ("attest", "trust", "attest", {}),
    ("verify", "trust", "verify", {}),
    ("scan", "scan", "scan", {}),
    ("sbom", "sbom", "sbom", {}),
    ("license", "license", "license_command", {}),
    ("generate-key-pair", "trust", "generate_key_pair", {"hidden": True}),  # cosign's name for `key generate`
    ("diff", "compare", "diff", {}),
    ("search", "compare", "search", {}),
)
GROUPS: tuple[tuple[str, str, str], ...] = (
    ("cache", "cache", "cache_app"),
    ("index", "index", "index_app"),
    ("signature", "trust", "signature_app"),
    ("key", "trust", "key_app"),
    ("deploy", "deploy", "deploy_app"),
    ("admission", "admission", "admission_app"),
    ("eval", "evaluation", "eval_app"),
)


def _leaf(module: str) -> Any:
    leaf = importlib.import_module(f"ocimodel.cli.{module}")
    if module == "evaluation" and not getattr(leaf, "_checks_registered", False):
        from ocimodel.cli import evaluation_checks  # `eval check` and `eval export` live apart

        leaf.eval_app.command("check")(evaluation_checks.check)
        leaf.eval_app.command("export")(evaluation_checks.export)
        leaf._checks_registered = True
    return leaf


def _tree(only: str | None = None) -> typer.Typer:
    """The root with every command and group, or with only the one named ``only``."""
    root = copy.copy(_root)  # the same settings, callback and options
    root.registered_commands, root.registered_groups = [], []
    for name, module, function, options in COMMANDS:
        if only is None or name == only:
            root.command(name, **options)(getattr(_leaf(module), function))
    for name, module, group in GROUPS:
        if only is None or name == only:
            root.add_typer(getattr(_leaf(module), group), name=name)
    return root


def __getattr__(name: str) -> Any:
    """``app``: the whole typer app (every leaf imported), for callers such as typer's
    CliRunner; made on first use, as `main` needs one branch of it."""
    if name == "app":
        globals()["app"] = whole = _tree()
        return whole
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# The root's options (main_options) that take a value, and its flags.
_ROOT_OPTIONS_WITH_VALUE = ("--ca-file", "--cert", "--key")
_ROOT_FLAGS = ("--debug", "--insecure", "--version")


def invoked_command(args: list[str]) -> str | None:
    """The command or group of the root that ``args`` (a command line) runs, when they
    plainly name one: the root's own options, then its name; "" for the root's options
    alone with --version (it answers before a command is looked up). None for anything
    else (--help, no command, an option or a name the root does not know), which needs
    the whole tree: the list of commands, "did you mean"."""
    words = iter(args)
    version = False
    for word in words:
        if word in _ROOT_OPTIONS_WITH_VALUE:
            if next(words, None) is None:
                return None
        elif word in _ROOT_FLAGS or word.partition("=")[0] in _ROOT_OPTIONS_WITH_VALUE:
            version = version or word == "--version"  # else a flag, or --ca-file=PEM
        elif word.startswith("-"):
            return None  # -h, --help, `--`, an option the root does not have
        else:
            return word if word in {entry[0] for entry in (*COMMANDS, *GROUPS)} else None
    return "" if version else None


# typer 0.29 checks each parameter's value with a pydantic TypeAdapter it builds on first
# use, for every parameter of the command run, None included: 36 for push, ~10 ms, and it
# imports pydantic for commands that have no other use for it. `quick_coercion` answers
# the plain cases below itself, each exactly as that adapter does (a str is returned as it
# is, digits are an int, a list of str a list), and hands anything else (a value out of
# range, a Path, an environment variable's string for a flag) to typer's own adapter, so
# what is accepted, refused and said about it is typer's. It reaches into typer's
# coercion classes, so it is limited to the typer versions it was checked against: with
# another, typer does all of it, as before.
QUICK_COERCION_TYPER = ("0.29.",)
_UNSURE = object()


def _quick_value(annotation: Any, info: Any, value: Any) -> Any:
    """``value`` as typer's adapter for ``annotation`` makes it, or _UNSURE."""
    if annotation is str:
        return value if type(value) is str else _UNSURE
    if annotation is int and not info.clamp:
        if type(value) is str and value.isascii() and value.isdigit():
            value = int(value)
        if type(value) is int and (info.min is None or value >= info.min) and (info.max is None or value <= info.max):
            return value
        return _UNSURE
    if typing.get_origin(annotation) is list and typing.get_args(annotation) == (str,):
        if type(value) in (list, tuple) and all(type(item) is str for item in value):
            return list(value)
    return _UNSURE


@functools.cache
def _quick_param_class() -> Any:
    from typer import _coercion

    @dataclasses.dataclass(frozen=True)
    class QuickParam(_coercion.RuntimeParam):
        descriptor: Any

        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            quick = _quick_value(self.annotation, self.parameter_info, value)
            if quick is not _UNSURE:
                return quick
            return _coercion.build_runtime_param(self.descriptor)._coerce_value(value, param=param, ctx=ctx)

    return QuickParam


def quick_coercion(command: Any) -> Any:
    """``command`` (a click command tree from typer) with the quick checks above in place of
    typer's adapters, where typer is a version they were checked against."""
    if not typer.__version__.startswith(QUICK_COERCION_TYPER):
        return command
    quick = _quick_param_class()

    def quicken(param: Any) -> Any:
        descriptor = getattr(param, "type_descriptor", None)
        if getattr(param, "_runtime_param", False) is not None or descriptor is None:
            return param  # not typer's parameter, or its adapter is already made
        if descriptor.file_annotation is None and descriptor.parameter_info.parser is None:
            param._runtime_param = quick(
                annotation=descriptor.annotation, parameter_info=descriptor.parameter_info, descriptor=descriptor
            )
        return param

    def help_option(get_help_option: Any) -> Any:  # --help is made when a context asks for it
        return lambda ctx: quicken(get_help_option(ctx))

    commands = [command]
    while commands:
        current = commands.pop()
        commands.extend(getattr(current, "commands", {}).values())
        for param in current.params:
            quicken(param)
        current.get_help_option = help_option(current.get_help_option)
    return command


def cli_command(args: list[str] | None = None) -> Any:
    """The command tree `main` runs: typer's, with help laid out so that example lines stay
    whole at any terminal width (ocimodel.cli.helptext).

    Given the command line (``args``) and when it names a command, the root has that
    command alone, and only its leaf is imported: typer makes a click command of every
    function's signature (about 0.1 s for the whole tree), and a run needs one. The command
    parses, runs, prints and fails as in the whole tree (it is made from the same table);
    what needs every command (the root's --help, a mistyped name) gets the whole tree."""
    from typer.main import get_command

    from ocimodel.cli.helptext import install

    only = invoked_command(args) if args is not None else None
    root = __getattr__("app") if only is None else _tree(only)  # "" (--version): no command
    return install(quick_coercion(get_command(root)))


# Seconds the clean-up after Ctrl-C (cancelling upload sessions, letting transfer threads
# stop) may take before the process exits anyway: a thread stuck in a stalled socket must
# not hold the user's Ctrl-C for the length of a network timeout.
INTERRUPT_GRACE = 10.0


def _interrupt_with_deadline(signum: int, frame: object) -> None:
    """SIGINT as Python's own handler (a KeyboardInterrupt), plus a watchdog that ends the
    process with 130 if the clean-up the interrupt starts has not finished in time."""
    import os
    import threading

    if not state.get("watchdog"):

        def give_up() -> None:
            sys.stderr.write(f"interrupted (clean-up did not finish within {INTERRUPT_GRACE:g} s)\n")
            sys.stderr.flush()
            os._exit(130)

        watchdog = threading.Timer(INTERRUPT_GRACE, give_up)
        watchdog.daemon = True
        watchdog.start()
        state["watchdog"] = watchdog
    raise KeyboardInterrupt


def _install_interrupt_handler() -> None:
    import signal
    import threading

    current = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is threading.main_thread() and current in (signal.default_int_handler, _interrupt_with_deadline):
        signal.signal(signal.SIGINT, _interrupt_with_deadline)


def main() -> None:
    """Entry point: our own exit codes and one-line errors, also for mistakes the option
    parser catches (an unknown option, a missing argument, a value out of range)."""
    import signal

    # A pull run by an earlier main() in this process left SIGINT/SIGTERM ignored (it was
    # about to exit): the handlers come back now. Only if a pull ever ran here: importing
    # the unpacking code for --version or --help would cost start-up for nothing.
    unpack = sys.modules.get("ocimodel.packaging.unpack")
    if unpack is not None:
        unpack.INTERRUPTS.reset()
    previous = signal.getsignal(signal.SIGINT)
    if previous is _interrupt_with_deadline:  # left by an earlier main() in this process
        previous = signal.default_int_handler
    _install_interrupt_handler()
    try:
        _main()
    finally:
        # In-process callers (tests, an embedding app) get their handler back, and no
        # watchdog outlives the command whose clean-up it guarded.
        watchdog = state.pop("watchdog", None)
        if watchdog is not None:
            watchdog.cancel()
        if signal.getsignal(signal.SIGINT) is _interrupt_with_deadline:
            signal.signal(signal.SIGINT, previous)


def _main() -> None:
    state.update(json=None, progress=None)  # set by the options' callbacks as they are parsed
    state["exits"] = True
    try:
        code = cli_command(sys.argv[1:])(standalone_mode=False)
    except TyperException as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":
            exc.show()  # bare `ocimodel` or `ocimodel push`: the help is the answer
            sys.exit(2)
        command = getattr(getattr(exc, "ctx", None), "command_path", "ocimodel")
        code = getattr(exc, "exit_code", 2)
        report_error("UsageError", exc.format_message(), f"`{command} --help` shows the options, with examples", code)
        sys.exit(code)
    except UsageError as exc:
        report_error(type(exc).__name__, exc.message, exc.hint, 2)
        sys.exit(2)
    except typer.Abort:  # Ctrl-C while the parser was still at work
        report_error("Interrupted", "interrupted", None, 130, prefix="")
        sys.exit(130)
    finally:
        state["exits"] = False  # a command run in-process after this one (CliRunner) does not exit
    sys.exit(code if isinstance(code, int) else 0)



if __name__ == "__main__":
    main()
