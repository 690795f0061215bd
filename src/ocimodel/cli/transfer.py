"""Commands that move a model's bytes: push, pull, copy, and export/import (an air-gapped
copy is a copy with referrers into a tar, and back)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ocimodel.cli.common import (
    ConcurrencyOpt,
    ForceOpt,
    JsonOpt,
    PlainHttpOpt,
    ProgressOpt,
    QuietOpt,
    connection,
    identity_pairs,
    parse_pairs,
    print_result,
    run,
    size,
    state,
    stderr,
)
from ocimodel.cli.lazy import lazy_import
from ocimodel.errors import UsageError

api = lazy_import("ocimodel")

# The scan gates of push and pull (docs/scanning-cli.md).
ScanOpt = Annotated[bool, typer.Option("--scan", help="Scan the files first; refuse (exit 1) on a finding at or above --fail-on.", rich_help_panel="Scanning")]
FailOnOpt = Annotated[str, typer.Option("--fail-on", metavar="SEVERITY", help="With --scan: critical, high (default), medium, low or info.", rich_help_panel="Scanning")]
AllowOpt = Annotated[list[str] | None, typer.Option("--allow", metavar="GLOB", help="With --scan: trust a callable reported for review (medium and below); repeatable.", rich_help_panel="Scanning")]
AllowFileOpt = Annotated[Path | None, typer.Option("--allow-file", metavar="FILE", help="With --scan: more --allow globs, one a line.", rich_help_panel="Scanning")]


def _scan_options(scan: bool, fail_on: str, allow: list[str] | None, allow_file: Path | None) -> dict:
    if not scan and (fail_on != "high" or allow or allow_file is not None):
        raise UsageError("--fail-on, --allow and --allow-file take effect with --scan")
    return {"scan": scan, "fail_on": fail_on, "allow": allow or (), "allow_file": allow_file}


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
    scan: ScanOpt = False,
    fail_on: FailOnOpt = "high",
    allow_unsafe: Annotated[bool, typer.Option("--allow-unsafe", help="With --scan: push even when the scan fails; the override is recorded in the model (annotation dev.ocimodel.scan.override).", rich_help_panel="Scanning")] = False,
    allow: AllowOpt = None,
    allow_file: AllowFileOpt = None,
    plain_http: PlainHttpOpt = None,
    concurrency: ConcurrencyOpt = 4,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    progress: ProgressOpt = None,  # read by run (through the option's callback)
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

    scanning = _scan_options(scan, fail_on, allow, allow_file)
    if allow_unsafe and not scan:
        raise UsageError("--allow-unsafe takes effect with --scan")

    def action(progress):
        card_flags = MetadataFlags(
            metrics=metric or (), params=param or (), datasets=dataset or (), bases=base or (),
            base_relations=base_relation or (), tags=model_tag or (), task=task, framework=framework,
            format=model_format,
        )
        return api.push(
            directory, reference, name=name, version=version, description=description, title=title,
            licenses=license or (), authors=author or (), source=source, revision=revision,
            created=created, kinds=kind or (),
            exclude=exclude or (), follow_symlinks=not no_follow_symlinks, annotations=parse_pairs(annotation or [], "--annotation"),
            metadata=card_flags, metadata_file=metadata_file, source_dir=source_dir,
            detect_git=not no_detect, record_environment=record_environment, force=force,
            plain_http=plain_http, concurrency=concurrency, progress=progress, options=connection(),
            allow_unsafe=allow_unsafe, **scanning,
        )

    result = run(action, verb="push", show_progress=not (quiet or as_json))
    total = sum(f.size for f in result.files)
    print_result(result, as_json, quiet, [
        f"Pushed {result.reference}",
        f"Digest: {result.digest}",
        f"Files: {len(result.files)} ({size(total)}); uploaded {size(result.bytes_uploaded)}, "
        + (f"mounted {size(result.bytes_mounted)}, " if result.mounted else "")
        + f"already there {size(result.bytes_skipped)}",
        *[f"Lineage: {link['parent']}: {link['status']}" for link in result.lineage],
    ])


def pull(
    reference: Annotated[str, typer.Argument(metavar="REF", help="What to pull: registry/repo:tag, repo@sha256:..., or oci:PATH:tag.")],
    directory: Annotated[Path, typer.Argument(metavar="DIR", help="Destination directory (created if missing).")],
    include: Annotated[
        list[str] | None,
        typer.Option("--include", metavar="GLOB", help="Only files whose path, name or directory matches GLOB, e.g. 'tokenizer*'; repeatable (any of them). With --kind, a file must match both."),
    ] = None,
    kind: Annotated[
        list[str] | None,
        typer.Option("--kind", metavar="KIND", help="Only files of this kind: weight, weight.config, doc, code, dataset (for a KitOps ModelKit also its words model, modelpart, docs, datasets); repeatable (any of them). With --include, a file must match both."),
    ] = None,
    variant: Annotated[
        list[str] | None,
        typer.Option("--variant", metavar="KEY=VALUE[,KEY=VALUE]", help="From a variant index, the variant with these labels, e.g. quant=q4; repeatable (all of them). `ocimodel inspect REF` lists the variants."),
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
    scan: Annotated[bool, typer.Option("--scan", help="Scan the downloaded files before they are moved into place; nothing is written to DIR when the scan fails.", rich_help_panel="Scanning")] = False,
    fail_on: FailOnOpt = "high",
    allow: AllowOpt = None,
    allow_file: AllowFileOpt = None,
    plain_http: PlainHttpOpt = None,
    concurrency: ConcurrencyOpt = 4,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    progress: ProgressOpt = None,  # read by run (through the option's callback)
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

      ocimodel pull localhost:5000/team/llm:1.0 ./llm --variant quant=q4,device=cpu
    """

    scanning = _scan_options(scan, fail_on, allow, allow_file)

    def action(progress):
        hook = None
        trust_given = bool(key or certificate_identity or certificate_oidc_issuer or policy)
        if trust_given and not verify:
            raise UsageError("--key, --certificate-identity and --policy take effect with --verify")
        if verify:
            from ocimodel.api.trust import verify_hook

            if not trust_given:
                raise UsageError("--verify needs --key, --certificate-identity with --certificate-oidc-issuer, or --policy")
            hook = verify_hook(
                keys=key or (), identities=identity_pairs(certificate_identity or [], certificate_oidc_issuer or []),
                policy=policy, trusted_root=trusted_root,
                # A policy's licenses rule reads the base models' cards: as pull connects.
                options=connection(),
            )
        return api.pull(
            reference, directory, plain_http=plain_http, concurrency=concurrency, progress=progress,
            options=connection(), include=include or (), kinds=kind or (), verify=hook, blob_cache=blob_cache,
            keep_local=keep_local, variant=variant or (), **scanning,
        )

    # Once the files are in place the pull has succeeded: an interrupt after that point must
    # not cut the report or turn the exit status into 130 (an interrupt before it puts the
    # old files back and exits 130). The hold ends with this block: the handlers are put
    # back, so a later pull in the same process (CliRunner, an embedding app) is protected
    # again; under main() the process exits next, so held signals are ignored until then.
    from ocimodel.packaging.unpack import hold_interrupts_after_commit, shown_paths

    with hold_interrupts_after_commit(until_exit=state.get("exits", False)) as interrupts:
        result = run(
            action,
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
        print_result(result, as_json, quiet, [
            f"Pulled {result.reference} into {result.destination}",
            *([f"Variant: {','.join(f'{k}={v}' for k, v in result.variant.items())} of index {result.index_digest}"] if result.index_digest else []),
            f"Digest: {result.digest}",
            f"Files: {len(result.files)} ({size(total)}); downloaded {size(result.bytes_downloaded)}, "
            f"{result.files_unchanged} already up to date{cached}{left_out}",
        ])
        if interrupts.pending is not None:
            stderr.print("note: the interrupt came after every file was in place; the pull is complete", highlight=False)


def copy(
    source: Annotated[str, typer.Argument(metavar="SRC", help="From: registry/repo:tag, repo@digest or oci:PATH:tag.")],
    destination: Annotated[str, typer.Argument(metavar="DEST", help="To: registry/repo[:tag] or oci:PATH[:tag] (tag defaults to the source's).")],
    plain_http: PlainHttpOpt = None,
    concurrency: ConcurrencyOpt = 4,
    with_referrers: Annotated[bool, typer.Option("--with-referrers", "-r", help="Also copy what refers to it (signatures, attestations...), recursively.")] = False,
    force: ForceOpt = False,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    progress: ProgressOpt = None,  # read by run (through the option's callback)
) -> None:
    """Copy a model between registries and OCI layouts, keeping its digest (so signatures
    made at the source verify at the destination).

      ocimodel copy localhost:5000/team/sentiment:1.0 oci:./store:sentiment-1.0

      ocimodel copy oci:./store:sentiment-1.0 registry.example.com/team/sentiment:1.0 --with-referrers
    """
    result = run(
        lambda progress: api.copy(
            source, destination, plain_http=plain_http, concurrency=concurrency, progress=progress,
            options=connection(), with_referrers=with_referrers, force=force,
        ),
        verb="copy",
        show_progress=not (quiet or as_json),
    )
    print_result(result, as_json, quiet, [
        f"Copied {result.source} -> {result.destination}",
        f"Digest: {result.digest}",
        f"Blobs: {result.blobs_copied} copied ({size(result.bytes_copied)}), {result.blobs_mounted} mounted, "
        f"{result.blobs_skipped} already there",
        *([f"Referrers: {len(result.referrers_copied)} copied"] if with_referrers else []),
    ])
    for line in result.referrers_ignored:
        stderr.print(f"warning: ignored {line}", highlight=False, markup=False)


def export(
    reference: Annotated[str, typer.Argument(metavar="REF", help="The model: registry/repo:tag, repo@digest or oci:PATH:tag.")],
    output: Annotated[str, typer.Argument(metavar="FILE", help="The archive to write, e.g. model.tar; - for standard output.")],
    no_referrers: Annotated[bool, typer.Option("--no-referrers", help="Leave signatures and other referrers out.")] = False,
    gzip: Annotated[bool, typer.Option("--gzip", help="Compress the archive (weights rarely shrink; slower).")] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace FILE if it is an existing regular file.")] = False,
    plain_http: PlainHttpOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    progress: ProgressOpt = None,  # read by run (through the option's callback)
) -> None:
    """Write a model and its referrers to one file for an air-gapped site: a deterministic
    tar of an OCI layout, which skopeo reads too (oci-archive:FILE:TAG).

      ocimodel export registry.example.com/team/sentiment:1.0 sentiment-1.0.tar

      ocimodel import sentiment-1.0.tar airgap-registry.local/team/sentiment

      ocimodel export localhost:5000/team/sentiment:1.0 - | ssh airgap 'cat > s.tar'

    FILE is written whole or not at all, and only as a regular file: an existing file is
    replaced only with --force; a symlink, directory, fifo, socket or device is refused
    and left as it is. With -, the tar goes to standard output and the summary to stderr.
    """
    to_stdout = output == "-"
    if to_stdout and as_json:
        run(_json_beside_stdout, verb="export", show_progress=False)
    result = run(
        lambda progress: api.export(
            reference, output, with_referrers=not no_referrers, compression="gzip" if gzip else "none",
            overwrite=force, progress=progress, plain_http=plain_http, options=connection(),
        ),
        verb="export",
        show_progress=not (quiet or as_json),
    )
    lines = [
        f"Exported {result.reference} -> {'standard output' if to_stdout else result.path} "
        f"({size(result.size)}, {result.blobs} blobs)",
        f"Digest: {result.digest}",
        f"Referrers: {len(result.referrers)}",
    ]
    if to_stdout:  # standard output holds the archive: the summary goes beside the progress
        for line in [] if quiet else lines:
            stderr.print(line, highlight=False, markup=False)
        return
    print_result(result, as_json, quiet, lines)


def _json_beside_stdout(_) -> None:
    raise UsageError("--json and FILE - both want standard output", hint="name a file to write, or drop --json")


def import_archive(
    archive: Annotated[Path, typer.Argument(metavar="FILE", help="An archive `ocimodel export` (or skopeo's oci-archive) wrote.")],
    destination: Annotated[str, typer.Argument(metavar="DEST", help="registry/repo[:tag] or oci:PATH[:tag] (tag defaults to the archive's).")],
    force: Annotated[bool, typer.Option("--force", help="Move a version tag that holds another model.")] = False,
    plain_http: PlainHttpOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    progress: ProgressOpt = None,  # read by run (through the option's callback)
) -> None:
    """Copy the model in an export archive, with its referrers, into a registry or a
    layout. Every digest is verified before anything is written to the destination.

      ocimodel import sentiment-1.0.tar airgap-registry.local/team/sentiment
    """
    result = run(
        lambda progress: api.import_(
            archive, destination, force=force, progress=progress, plain_http=plain_http, options=connection()
        ),
        verb="import",
        show_progress=not (quiet or as_json),
    )
    print_result(result, as_json, quiet, [
        f"Imported {result.archive} -> {result.destination}",
        f"Digest: {result.digest}",
        f"Blobs: {result.blobs_copied} copied ({size(result.bytes_copied)}), {result.blobs_skipped} already there",
        f"Referrers: {len(result.referrers)}",
    ])
