"""The ``ocimodel`` command. Parses, calls the API, prints. No logic of its own.

Exit codes: 0 success, 1 failure (the registry, the network, the data), 2 usage error."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from typer.exceptions import TyperException

from ocimodel.cli.lazy import LazyConsole, lazy_import
from ocimodel.errors import OcimodelError, UsageError

api = lazy_import("ocimodel.api")

if TYPE_CHECKING:
    from rich.table import Table

    from ocimodel.transport.connection import ConnectionOptions

app = typer.Typer(
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
        "(or docker login) stored: docker's config.json and its credential helpers."
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

stdout = LazyConsole(soft_wrap=True)
stderr = LazyConsole(stderr=True, soft_wrap=True)
_state: dict[str, Any] = {"debug": False, "connection": None, "json": None, "progress": None}

T = TypeVar("T")

# -- shared options -----------------------------------------------------------------------

def _json_chosen(value: bool) -> bool:
    """Remembers --json for the error report of `_run` (which every command calls without
    passing its options)."""
    _state["json"] = value
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
    """Remembers --progress for `_run`, as _json_chosen does --json."""
    if value is not None:
        value = value.lower()
        if value not in ("auto", "plain", "none"):
            raise typer.BadParameter(f"{value!r}: expected auto, plain or none")
    _state["progress"] = value
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


def _print_version(value: bool) -> None:
    if value:
        from ocimodel import __version__

        stdout.print(f"ocimodel {__version__}", highlight=False)
        raise typer.Exit(0)


@app.callback()
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
    _state["debug"] = debug or settings.debug()
    if _state["debug"]:
        logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
        logging.getLogger("ocimodel").setLevel(logging.DEBUG)
    if insecure:
        stderr.print("warning: --insecure: TLS certificates are not verified", highlight=False)
    # Imported here: --version and --help need no transport (httpx, pydantic).
    from ocimodel.transport.connection import ConnectionOptions, TlsOptions

    _state["connection"] = ConnectionOptions(
        tls=TlsOptions(ca_file=ca_file, insecure=insecure, client_cert=client_cert, client_key=client_key),
        on_wait=lambda line: stderr.print(line, highlight=False, markup=False),  # a silent wait looks like a hang
    )


# -- commands ---------------------------------------------------------------------------


@app.command()
def push(
    directory: Annotated[Path, typer.Argument(metavar="DIR", help="The model directory to push.", show_default=False)],
    reference: Annotated[str, typer.Argument(metavar="REF", help="Where to: registry/repo:tag or oci:PATH:tag (tag defaults to latest).")],
    name: Annotated[str | None, typer.Option(metavar="NAME", help="Model name (config and annotations).")] = None,
    version: Annotated[str | None, typer.Option("--version", metavar="VERSION", help="Model version, e.g. 1.0.")] = None,
    description: Annotated[str | None, typer.Option(metavar="TEXT", help="One-line description.")] = None,
    title: Annotated[str | None, typer.Option(metavar="TEXT", help="Human title (defaults to --name).")] = None,
    license: Annotated[list[str] | None, typer.Option("--license", metavar="SPDX", help="SPDX license id; repeatable.")] = None,
    author: Annotated[list[str] | None, typer.Option("--author", metavar="NAME", help="Author; repeatable.")] = None,
    source: Annotated[str | None, typer.Option(metavar="URL", help="Source URL (e.g. the git repository).")] = None,
    revision: Annotated[str | None, typer.Option(metavar="REV", help="Source revision (e.g. a git commit).")] = None,
    created: Annotated[
        str | None,
        typer.Option(metavar="TIME", help="Record a creation time: 'now' or an ISO 8601 time. Omitted by default so pushes are reproducible."),
    ] = None,
    kind: Annotated[
        list[str] | None,
        typer.Option("--kind", metavar="GLOB=KIND", help="Override a file's layer kind: 'GLOB=KIND' (weight, weight.config, doc, code, dataset); repeatable."),
    ] = None,
    exclude: Annotated[list[str] | None, typer.Option("--exclude", metavar="GLOB", help="Skip files matching GLOB; repeatable.")] = None,
    no_follow_symlinks: Annotated[
        bool,
        typer.Option("--no-follow-symlinks", help="Refuse symlinks that lead out of DIR (by default the files they point at are uploaded)."),
    ] = False,
    annotation: Annotated[list[str] | None, typer.Option("--annotation", "-a", metavar="KEY=VALUE", help="Extra manifest annotation KEY=VALUE; repeatable.")] = None,
    metric: Annotated[list[str] | None, typer.Option("--metric", metavar="NAME=NUMBER[@DATASET[:SPLIT]]", help="A metric, e.g. accuracy=0.93@imdb:test; repeatable.", rich_help_panel="Model card")] = None,
    param: Annotated[list[str] | None, typer.Option("--param", metavar="NAME=VALUE", help="A hyperparameter, e.g. lr=3e-4; repeatable.", rich_help_panel="Model card")] = None,
    dataset: Annotated[list[str] | None, typer.Option("--dataset", metavar="URI[@sha256:HEX]", help="A dataset used; repeatable.", rich_help_panel="Model card")] = None,
    base: Annotated[list[str] | None, typer.Option("--base", metavar="REF[@sha256:HEX]", help="A base model this one derives from; repeatable. Gets a lineage link back.", rich_help_panel="Model card")] = None,
    base_relation: Annotated[list[str] | None, typer.Option("--base-relation", metavar="REL", help="fine-tune, quantize, distill, merge or adapter (once for all --base, or once each).", rich_help_panel="Model card")] = None,
    model_tag: Annotated[list[str] | None, typer.Option("--tag", metavar="WORD", help="A keyword for search (not the OCI tag: that is in REF); repeatable.", rich_help_panel="Model card")] = None,
    task: Annotated[str | None, typer.Option("--task", metavar="WORD", help="e.g. text-classification.", rich_help_panel="Model card")] = None,
    framework: Annotated[str | None, typer.Option("--framework", metavar="WORD", help="e.g. pytorch.", rich_help_panel="Model card")] = None,
    model_format: Annotated[str | None, typer.Option("--format", metavar="WORD", help="Override the detected format, e.g. safetensors.", rich_help_panel="Model card")] = None,
    metadata_file: Annotated[Path | None, typer.Option("--metadata", metavar="FILE", help="A model card file (default: ocimodel.yaml/.json beside the model).", rich_help_panel="Model card")] = None,
    source_dir: Annotated[Path | None, typer.Option("--source-dir", metavar="DIR", help="The git checkout the model was built from (default: the checkout that tracks the model directory, if one does).", rich_help_panel="Model card")] = None,
    no_detect: Annotated[bool, typer.Option("--no-detect", help="Do not record the git repository, commit and dirty state.", rich_help_panel="Model card")] = False,
    record_environment: Annotated[bool, typer.Option("--record-environment", help="Record the Python and key package versions of this machine.", rich_help_panel="Model card")] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace a version tag that holds another model (versions are immutable otherwise).")] = False,
    plain_http: PlainHttpOpt = None,
    concurrency: ConcurrencyOpt = 4,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    progress: ProgressOpt = None,  # read by _run (through the option's callback)
) -> None:
    """Package a model directory as a ModelPack artifact and push it.

    One layer per file (its digest is the file's sha256), so files a registry already has
    are not sent again. Examples:

      ocimodel push ./my-model localhost:5000/team/sentiment:1.0 --name sentiment --version 1.0 --license Apache-2.0

      ocimodel push ./my-model oci:./store:sentiment:1.0

      ocimodel push ./my-model ghcr.io/org/m:2 --kind 'extra/*.bin=dataset' --exclude '*.log'

      ocimodel push ./ft localhost:5000/team/sentiment:1.1 --metric accuracy=0.94@imdb:test --param lr=3e-5 --base localhost:5000/team/base:1.0

    The model card (metrics, datasets, base models...) also comes from an ocimodel.yaml
    beside the model; flags win over it. The git commit of the model's checkout is
    recorded unless --no-detect. A version tag (1.0, v2...) is never moved to another
    model without --force; aliases (latest, production) move with `ocimodel promote`.
    """
    from ocimodel.metadata.sources import MetadataFlags

    def run(progress):
        card_flags = MetadataFlags(
            metrics=metric or (), params=param or (), datasets=dataset or (), bases=base or (),
            base_relations=base_relation or (), tags=model_tag or (), task=task, framework=framework,
            format=model_format,
        )
        return api.push(
            directory, reference, name=name, version=version, description=description, title=title,
            licenses=license or (), authors=author or (), source=source, revision=revision,
            created=created, kinds=kind or (),
            exclude=exclude or (), follow_symlinks=not no_follow_symlinks, annotations=_parse_pairs(annotation or [], "--annotation"),
            metadata=card_flags, metadata_file=metadata_file, source_dir=source_dir,
            detect_git=not no_detect, record_environment=record_environment, force=force,
            plain_http=plain_http, concurrency=concurrency, progress=progress, options=_connection(),
        )

    result = _run(run, verb="push", show_progress=not (quiet or as_json))
    total = sum(f.size for f in result.files)
    _print_result(result, as_json, quiet, [
        f"Pushed {result.reference}",
        f"Digest: {result.digest}",
        f"Files: {len(result.files)} ({_size(total)}); uploaded {_size(result.bytes_uploaded)}, "
        f"already there {_size(result.bytes_skipped)}",
        *[f"Lineage: {link['parent']}: {link['status']}" for link in result.lineage],
    ])


@app.command()
def pull(
    reference: Annotated[str, typer.Argument(metavar="REF", help="What to pull: registry/repo:tag, repo@sha256:..., or oci:PATH:tag.")],
    directory: Annotated[Path, typer.Argument(metavar="DIR", help="Destination directory (created if missing).")],
    include: Annotated[
        list[str] | None,
        typer.Option("--include", metavar="GLOB", help="Only files whose path, name or directory matches GLOB, e.g. 'tokenizer*'; repeatable (any of them). With --kind, a file must match both."),
    ] = None,
    kind: Annotated[
        list[str] | None,
        typer.Option("--kind", metavar="KIND", help="Only files of this kind: weight, weight.config, doc, code, dataset; repeatable (any of them). With --include, a file must match both."),
    ] = None,
    verify: Annotated[bool, typer.Option("--verify", help="Check signatures first (with --key, --certificate-identity/--certificate-oidc-issuer or --policy); nothing is downloaded when denied.", rich_help_panel="Verification")] = False,
    key: Annotated[list[Path] | None, typer.Option("--key", metavar="PUB", help="A trusted public key (PEM); repeatable.", rich_help_panel="Verification")] = None,
    certificate_identity: Annotated[list[str] | None, typer.Option("--certificate-identity", metavar="ID", help="A trusted keyless signer (cosign's flag); pairs with --certificate-oidc-issuer.", rich_help_panel="Verification")] = None,
    certificate_oidc_issuer: Annotated[list[str] | None, typer.Option("--certificate-oidc-issuer", metavar="URL", help="The OIDC issuer of each --certificate-identity.", rich_help_panel="Verification")] = None,
    policy: Annotated[Path | None, typer.Option("--policy", metavar="FILE", help="A policy file (YAML or JSON) naming trusted signers and required attestations.", rich_help_panel="Verification")] = None,
    trusted_root: Annotated[Path | None, typer.Option("--trusted-root", metavar="FILE", help="Sigstore trusted_root.json for keyless checks (default: the embedded public-good root).", rich_help_panel="Verification")] = None,
    blob_cache: Annotated[
        bool | None,
        typer.Option(
            "--blob-cache/--no-blob-cache",
            help="Link files from the local blob cache instead of downloading them, and keep what is downloaded there "
            "(hard links: no extra disk). Default: OCIMODEL_BLOB_CACHE=1. Edit pulled files by replacing them, not in place.",
            show_default=False,
        ),
    ] = None,
    keep_local: Annotated[
        bool,
        typer.Option("--keep-local", help="Refuse (exit 1, nothing changed) if a file in DIR differs from the model's, instead of replacing it."),
    ] = False,
    plain_http: PlainHttpOpt = None,
    concurrency: ConcurrencyOpt = 4,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    progress: ProgressOpt = None,  # read by _run (through the option's callback)
) -> None:
    """Download a model's files into a directory, verifying every byte.

    Paths are checked before anything is downloaded; files are moved into place only when
    all of them have been verified, and all or none of them (an error or Ctrl-C while they
    move puts the old ones back), so a failed pull leaves the destination as it was.
    Files already present with the right content are not downloaded again; files with
    other content are replaced and named (or refused with --keep-local). With --include
    only files matching one of the patterns are downloaded, with --kind only files of one
    of the kinds, with both only files matching both (other files in DIR are left alone).
    Examples:

      ocimodel pull localhost:5000/team/sentiment:1.0 ./out

      ocimodel pull oci:./store:sentiment:1.0 ./out

      ocimodel pull localhost:5000/team/sentiment:1.0 ./tok --include 'tokenizer*' --kind weight.config

      ocimodel pull localhost:5000/team/sentiment:1.0 ./out --verify --key release.pub

      ocimodel pull localhost:5000/team/sentiment:1.0 ./out2 --blob-cache
    """

    def run(progress):
        hook = None
        trust_given = bool(key or certificate_identity or certificate_oidc_issuer or policy)
        if trust_given and not verify:
            raise UsageError("--key, --certificate-identity and --policy take effect with --verify")
        if verify:
            from ocimodel.api.trust import verify_hook
            from ocimodel.cli.trust import identity_pairs

            if not trust_given:
                raise UsageError("--verify needs --key, --certificate-identity with --certificate-oidc-issuer, or --policy")
            hook = verify_hook(
                keys=key or (), identities=identity_pairs(certificate_identity or [], certificate_oidc_issuer or []),
                policy=policy, trusted_root=trusted_root,
            )
        return api.pull(
            reference, directory, plain_http=plain_http, concurrency=concurrency, progress=progress,
            options=_connection(), include=include or (), kinds=kind or (), verify=hook, blob_cache=blob_cache,
            keep_local=keep_local,
        )

    # Once the files are in place the pull has succeeded: an interrupt after that point must
    # not cut the report or turn the exit status into 130 (an interrupt before it puts the
    # old files back and exits 130). The hold ends with this block: the handlers are put
    # back, so a later pull in the same process (CliRunner, an embedding app) is protected
    # again; under main() the process exits next, so held signals are ignored until then.
    from ocimodel.packaging.unpack import hold_interrupts_after_commit, shown_paths

    with hold_interrupts_after_commit(until_exit=_state.get("exits", False)) as interrupts:
        result = _run(
            run,
            verb="pull",
            show_progress=not (quiet or as_json),
        )
        if result.files_replaced:
            stderr.print(
                f"warning: replaced {len(result.files_replaced)} local file(s) that differed: {shown_paths(result.files_replaced)}",
                highlight=False, markup=False,
            )
        total = sum(f.size for f in result.files)
        left_out = f"; {result.files_not_selected} not selected" if result.files_not_selected else ""
        cached = f", {result.files_from_cache} linked from the blob cache" if result.files_from_cache else ""
        _print_result(result, as_json, quiet, [
            f"Pulled {result.reference} into {result.destination}",
            f"Digest: {result.digest}",
            f"Files: {len(result.files)} ({_size(total)}); downloaded {_size(result.bytes_downloaded)}, "
            f"{result.files_unchanged} already up to date{cached}{left_out}",
        ])
        if interrupts.pending is not None:
            stderr.print("note: the interrupt came after every file was in place; the pull is complete", highlight=False)


@app.command()
def inspect(
    reference: Annotated[str, typer.Argument(metavar="REF", help="registry/repo:tag, repo@sha256:..., or oci:PATH:tag.")],
    plain_http: PlainHttpOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a model's digest, metadata and files without downloading them.

      ocimodel inspect localhost:5000/team/sentiment:1.0

      ocimodel inspect oci:./store:sentiment:1.0 --json | jq .config
    """
    info = _run(lambda _: api.inspect(reference, plain_http=plain_http, options=_connection()), verb="inspect", show_progress=False)
    if as_json:
        _print_json(info)
        return
    _print_info(info)


@app.command()
def tag(
    reference: Annotated[str, typer.Argument(metavar="REF", help="The model to tag: registry/repo:tag or oci:PATH:tag.")],
    new_tag: Annotated[str, typer.Argument(metavar="TAG", help="The new tag, in the same repository.")],
    force: ForceOpt = False,
    plain_http: PlainHttpOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Point another tag at the same model (no data is copied).

      ocimodel tag localhost:5000/team/sentiment:1.0 latest
    """
    digest = _run(lambda _: api.tag(reference, new_tag, plain_http=plain_http, options=_connection(), force=force), verb="tag", show_progress=False)
    if as_json:
        _print_json({"reference": reference, "tag": new_tag, "digest": digest})  # as typed: already validated
    else:
        stdout.print(f"Tagged {digest} as {new_tag}", highlight=False)


@app.command("ls")
def list_tags(
    repository: Annotated[str, typer.Argument(metavar="REPO", help="registry/repo or oci:PATH.")],
    plain_http: PlainHttpOpt = None,
    all_tags: Annotated[bool, typer.Option("--all", help="Also the sha256-... tags that index signatures and other referrers.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """List the tags of a repository or an OCI layout (a repository that does not exist is an error).

      ocimodel ls localhost:5000/team/sentiment

      ocimodel ls oci:./store
    """
    tags = _run(
        lambda _: api.list_tags(repository, plain_http=plain_http, options=_connection(), all_tags=all_tags),
        verb="ls", show_progress=False,
    )
    _print_names(tags, as_json, {"repository": repository, "tags": tags})


@app.command()
def catalog(
    registry: Annotated[str, typer.Argument(metavar="REGISTRY", help="host[:port], e.g. localhost:5000.")],
    plain_http: PlainHttpOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List the repositories of a registry (where the registry allows it).

      ocimodel catalog localhost:5000
    """
    names = _run(lambda _: api.catalog(registry, plain_http=plain_http, options=_connection()), verb="catalog", show_progress=False)
    _print_names(names, as_json, {"registry": registry, "repositories": names})


@app.command()
def copy(
    source: Annotated[str, typer.Argument(metavar="SRC", help="From: registry/repo:tag, repo@digest or oci:PATH:tag.")],
    destination: Annotated[str, typer.Argument(metavar="DEST", help="To: registry/repo[:tag] or oci:PATH[:tag] (tag defaults to the source's).")],
    plain_http: PlainHttpOpt = None,
    concurrency: ConcurrencyOpt = 4,
    with_referrers: Annotated[bool, typer.Option("--with-referrers", "-r", help="Also copy what refers to it (signatures, attestations...), recursively.")] = False,
    force: ForceOpt = False,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    progress: ProgressOpt = None,  # read by _run (through the option's callback)
) -> None:
    """Copy a model between registries and OCI layouts, keeping its digest (so signatures
    made at the source verify at the destination).

      ocimodel copy localhost:5000/team/sentiment:1.0 oci:./store:sentiment-1.0

      ocimodel copy oci:./store:sentiment-1.0 registry.example.com/team/sentiment:1.0 --with-referrers
    """
    result = _run(
        lambda progress: api.copy(
            source, destination, plain_http=plain_http, concurrency=concurrency, progress=progress,
            options=_connection(), with_referrers=with_referrers, force=force,
        ),
        verb="copy",
        show_progress=not (quiet or as_json),
    )
    _print_result(result, as_json, quiet, [
        f"Copied {result.source} -> {result.destination}",
        f"Digest: {result.digest}",
        f"Blobs: {result.blobs_copied} copied ({_size(result.bytes_copied)}), {result.blobs_mounted} mounted, "
        f"{result.blobs_skipped} already there",
        *([f"Referrers: {len(result.referrers_copied)} copied"] if with_referrers else []),
    ])
    for line in result.referrers_ignored:
        stderr.print(f"warning: ignored {line}", highlight=False, markup=False)


@app.command()
def login(
    registry: Annotated[str, typer.Argument(metavar="REGISTRY", help="host[:port]: ghcr.io, localhost:5000, docker.io for Docker Hub.")],
    username: Annotated[str | None, typer.Option("--username", "-u", metavar="USER", help="Username (asked for on a terminal if omitted).")] = None,
    password: Annotated[
        str | None,
        typer.Option("--password", "-p", metavar="PASSWORD", help="Password or token. Insecure: it lands in shell history and the process list; prefer --password-stdin."),
    ] = None,
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password or token from stdin.")] = False,
    plain_http: PlainHttpOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Check credentials against a registry, then store them where docker would.

    They go to the credential helper the docker config names for the registry
    (credHelpers, else credsStore), else into $DOCKER_CONFIG/config.json
    (~/.docker/config.json) with mode 0600. Every command finds them there, and so do
    docker, oras, crane and skopeo. A wrong password stores nothing. Examples:

      echo "$GITHUB_TOKEN" | ocimodel login ghcr.io -u octocat --password-stdin

      ocimodel login localhost:5000 -u builder          # asks for the password
    """

    def run(_):
        user, secret = _login_secret(username, password, password_stdin)
        return api.login(registry, user, secret, plain_http=plain_http, options=_connection())

    result = _run(run, verb="login", show_progress=False)
    if result.helper is None:
        stderr.print(
            f"warning: the password is stored unencrypted in {result.stored_in}; "
            "configure a credential helper (credsStore) to avoid this",
            highlight=False, markup=False,
        )
    if as_json:
        _print_json(result)
    else:
        stdout.print(f"Login succeeded: credentials for {result.registry} stored in {result.stored_in}", highlight=False, markup=False)


@app.command()
def logout(
    registry: Annotated[str, typer.Argument(metavar="REGISTRY", help="host[:port], as given to login.")],
    as_json: JsonOpt = False,
) -> None:
    """Remove the stored credentials for a registry (from its credential helper and from
    the docker config).

      ocimodel logout ghcr.io
    """
    result = _run(lambda _: api.logout(registry), verb="logout", show_progress=False)
    if as_json:
        _print_json(result)
    elif result.removed:
        stdout.print(f"Removed the credentials for {result.registry} from {result.removed_from}", highlight=False, markup=False)
    else:
        stdout.print(f"Not logged in to {result.registry}", highlight=False, markup=False)


cache_app = typer.Typer(
    name="cache",
    help="The local blob cache that `pull --blob-cache` links files from.\n\n  ocimodel cache info\n\n  ocimodel cache prune",
    no_args_is_help=True,
)
app.add_typer(cache_app, name="cache")


@cache_app.command("info")
def cache_info(as_json: JsonOpt = False) -> None:
    """Where the blob cache is, what it holds, and what `prune` would free."""
    result = _run(lambda _: api.blob_cache_info(), verb="cache", show_progress=False)
    if as_json:
        _print_json(result)
        return
    for line in (
        f"Blob cache: {result.path}",
        f"Entries: {result.entries} ({_size(result.bytes)}); {result.entries_in_use} shared with pulled files",
        f"Freed by `ocimodel cache prune`: {_size(result.bytes_not_in_use)}",
    ):
        stdout.print(line, highlight=False, markup=False)


@cache_app.command("prune")
def cache_prune(
    everything: Annotated[bool, typer.Option("--all", help="Remove every entry, also those pulled files share (they keep their bytes).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Remove the entries no pulled file shares any more, freeing their disk.

    Pulled files are never touched: an entry and a pulled file are hard links to one file,
    so removing the entry only removes the cache's name for it.
    """
    result = _run(lambda _: api.prune_blob_cache(everything=everything), verb="cache", show_progress=False)
    if as_json:
        _print_json(result)
        return
    stdout.print(f"Removed {result.removed} entries from {result.path}; freed {_size(result.bytes_freed)}", highlight=False, markup=False)


# -- plumbing ---------------------------------------------------------------------------


def _run(action: Callable[[Any], T], *, verb: str, show_progress: bool) -> T:
    """Run an API call with progress (bars or lines, see `_progress`); turn our errors into
    one line and an exit code."""
    progress = _progress(verb, show_progress)
    try:
        with progress or nullcontext():
            return action(progress)
    except OcimodelError as exc:
        if _state["debug"]:
            stderr.print_exception()
        code = 2 if isinstance(exc, UsageError) else 1
        _report_error(type(exc).__name__, exc.message, exc.hint, code)
        raise typer.Exit(code) from None
    except OSError as exc:  # a full disk or a permission the library did not foresee
        if _state["debug"]:
            stderr.print_exception()
        where = f": {exc.filename}" if exc.filename else ""
        _report_error(type(exc).__name__, f"{exc.strerror or exc}{where}", None, 1)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        _report_error("Interrupted", "interrupted", None, 130, prefix="")
        raise typer.Exit(130) from None


def _progress(verb: str, show_progress: bool) -> Any:
    """The progress reporter: --progress when given (it wins over -q and --json, which
    otherwise turn progress off: their stdout is for scripts, and so is their silence),
    else OCIMODEL_PROGRESS, else auto. `show_progress` is False for -q, --json and the
    commands that transfer nothing."""
    from ocimodel import settings

    mode = _state.get("progress")
    if mode is None:
        if not show_progress:
            return None
        mode = settings.progress()
    if mode == "none":
        return None
    from ocimodel.cli import progress

    console = stderr.get() if mode == "auto" and stderr.is_terminal else None
    return progress.reporter(mode, verb, console, sys.stderr, settings.progress_interval())


def _report_error(kind: str, message: str, hint: str | None, code: int, *, prefix: str = "error: ") -> None:
    """The one-line error (and hint) on stderr; with --json, also the error as one JSON
    object on stdout, so a script reading stdout gets a document on failure too (an empty
    stdout gave `json.loads` nothing to say what went wrong)."""
    stderr.print(f"{prefix}{message}", highlight=False, markup=False)
    if hint:
        stderr.print(f"hint: {hint}", highlight=False, markup=False)
    if _json_requested():
        _print_json({"error": {"type": kind, "message": message, "hint": hint, "exit_code": code}})


def _json_requested() -> bool:
    """--json as the command's parser read it; before the parser got to it (a bad option,
    a missing argument, a bad OCIMODEL_* value found first), as written on the command line
    (before a `--`)."""
    if _state.get("json") is not None:
        return bool(_state["json"])
    args = sys.argv[1:]
    return "--json" in (args[: args.index("--")] if "--" in args else args)


def _login_secret(username: str | None, password: str | None, password_stdin: bool) -> tuple[str, str]:
    """Username and password for `login`: from stdin, from -p (warned), or asked for on a
    terminal with the password hidden."""
    if password is not None and password_stdin:
        raise UsageError("--password and --password-stdin exclude each other")
    if password_stdin:
        if not username:
            raise UsageError("--password-stdin needs --username (stdin carries the password)")
        # As docker: one trailing newline (echo's) is not part of the password.
        return username, sys.stdin.read().removesuffix("\n").removesuffix("\r")
    if password is not None:
        stderr.print(
            "warning: --password is insecure: it lands in shell history and the process list; use --password-stdin",
            highlight=False, markup=False,
        )
    interactive = sys.stdin.isatty()
    example = 'e.g. echo "$TOKEN" | ocimodel login REGISTRY -u USER --password-stdin'
    if not username:
        if not interactive:
            raise UsageError("login needs --username (-u)", hint=example)
        username = typer.prompt("Username", err=True)
    if password is None:
        if not interactive:
            raise UsageError("no password: give it on stdin with --password-stdin", hint=example)
        password = typer.prompt("Password", hide_input=True, err=True)
    return username, password


def _connection() -> ConnectionOptions:
    """The connection settings the global options chose (TLS; the rest per command)."""
    if _state["connection"] is not None:
        return _state["connection"]
    from ocimodel.transport.connection import ConnectionOptions

    return ConnectionOptions()


def _print_result(result: Any, as_json: bool, quiet: bool, lines: list[str]) -> None:
    """--json: the whole result; --quiet: the digest alone; else a few lines for people."""
    if as_json:
        _print_json(result)
    elif quiet:
        stdout.print(result.digest, highlight=False)
    else:
        for line in lines:
            stdout.print(line, highlight=False, markup=False)


def _print_names(names: list[str], as_json: bool, document: dict[str, Any]) -> None:
    """A list for people (one name a line) or for machines (one JSON object)."""
    if as_json:
        _print_json(document)
    else:
        for name in names:
            stdout.print(name, highlight=False, markup=False)


def new_table() -> Table:
    """A borderless table with bold headers. rich is loaded here, by the commands that
    print one, not at start-up."""
    from rich.table import Table

    return Table(show_edge=False, box=None, header_style="bold")


def _print_json(value: Any) -> None:
    if hasattr(value, "model_dump_json"):  # an API result (pydantic, not imported for this)
        text = value.model_dump_json(by_alias=True, indent=2)
    else:
        text = json.dumps(value, indent=2)
    sys.stdout.write(text + "\n")


def _print_info(info: api.ModelInfo) -> None:
    from ocimodel.oci import mediatypes as mt

    a = info.annotations
    config = info.config or {}
    model = config.get("config", {}) if isinstance(config.get("config"), dict) else {}
    rows = [
        ("Reference", info.reference),
        ("Digest", info.digest),
        ("Artifact type", info.artifact_type or "-"),
        ("Name", a.get(mt.ANNOTATION_TITLE) or (config.get("descriptor") or {}).get("name")),
        ("Version", a.get(mt.ANNOTATION_VERSION)),
        ("Description", a.get(mt.ANNOTATION_DESCRIPTION)),
        ("Licenses", a.get(mt.ANNOTATION_LICENSES)),
        ("Created", a.get(mt.ANNOTATION_CREATED)),
        ("Source", a.get(mt.ANNOTATION_SOURCE)),
        ("Revision", a.get(mt.ANNOTATION_REVISION)),
        ("Format", model.get("format")),
        ("Parameters", model.get("paramSize")),
        ("Precision", model.get("precision")),
        ("Size", f"{_size(info.total_size)} in {len(info.files)} files"),
    ]
    # Plain lines, not a table: a digest must never be cut to fit the terminal.
    for label, value in rows:
        if value:
            stdout.print(f"{label + ':':<15}{value}", highlight=False, markup=False)
    if info.files:
        files = new_table()
        files.add_column("FILE")
        files.add_column("KIND")
        files.add_column("SIZE", justify="right")
        files.add_column("DIGEST")
        for entry in info.files:
            files.add_row(entry.path, entry.kind or entry.media_type, _size(entry.size), entry.digest[:19])
        stdout.print()
        stdout.print(files)


def _parse_pairs(values: list[str], option: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for value in values:
        key, sep, item = value.partition("=")
        if not sep or not key:
            raise UsageError(f"{option} expects KEY=VALUE, got {value!r}")
        pairs[key] = item
    return pairs


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def cli_command() -> Any:
    """The command tree `main` runs: typer's, with help laid out so that example lines stay
    whole at any terminal width (ocimodel.cli.helptext)."""
    from typer.main import get_command

    from ocimodel.cli.helptext import install

    return install(get_command(app))


# Seconds the clean-up after Ctrl-C (cancelling upload sessions, letting transfer threads
# stop) may take before the process exits anyway: a thread stuck in a stalled socket must
# not hold the user's Ctrl-C for the length of a network timeout.
INTERRUPT_GRACE = 10.0


def _interrupt_with_deadline(signum: int, frame: object) -> None:
    """SIGINT as Python's own handler (a KeyboardInterrupt), plus a watchdog that ends the
    process with 130 if the clean-up the interrupt starts has not finished in time."""
    import os
    import threading

    if not _state.get("watchdog"):

        def give_up() -> None:
            sys.stderr.write(f"interrupted (clean-up did not finish within {INTERRUPT_GRACE:g} s)\n")
            sys.stderr.flush()
            os._exit(130)

        watchdog = threading.Timer(INTERRUPT_GRACE, give_up)
        watchdog.daemon = True
        watchdog.start()
        _state["watchdog"] = watchdog
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
        watchdog = _state.pop("watchdog", None)
        if watchdog is not None:
            watchdog.cancel()
        if signal.getsignal(signal.SIGINT) is _interrupt_with_deadline:
            signal.signal(signal.SIGINT, previous)


def _main() -> None:
    _state.update(json=None, progress=None)  # set by the options' callbacks as they are parsed
    _state["exits"] = True
    try:
        code = cli_command()(standalone_mode=False)
    except TyperException as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":
            exc.show()  # bare `ocimodel` or `ocimodel push`: the help is the answer
            sys.exit(2)
        command = getattr(getattr(exc, "ctx", None), "command_path", "ocimodel")
        code = getattr(exc, "exit_code", 2)
        _report_error("UsageError", exc.format_message(), f"`{command} --help` shows the options, with examples", code)
        sys.exit(code)
    except UsageError as exc:
        _report_error(type(exc).__name__, exc.message, exc.hint, 2)
        sys.exit(2)
    except typer.Abort:  # Ctrl-C while the parser was still at work
        _report_error("Interrupted", "interrupted", None, 130, prefix="")
        sys.exit(130)
    finally:
        _state["exits"] = False  # a command run in-process after this one (CliRunner) does not exit
    sys.exit(code if isinstance(code, int) else 0)


# The referrer commands live in their own module; importing it registers them on `app`.
from ocimodel.cli import referrers as _referrer_commands  # noqa: E402,F401
from ocimodel.cli import registry as _registry_commands  # noqa: E402,F401
from ocimodel.cli import trust as _trust_commands  # noqa: E402,F401
from ocimodel.cli import compare as _compare_commands  # noqa: E402,F401

if __name__ == "__main__":
    main()
