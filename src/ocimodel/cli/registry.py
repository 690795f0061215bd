"""Commands of the model registry: tag, versions, promote, rollback, history, lineage."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from ocimodel.cli.common import (
    ForceOpt,
    JsonOpt,
    PlainHttpOpt,
    QuietOpt,
    connection,
    new_table,
    print_json,
    run,
    size,
    stdout,
)
from ocimodel.cli.lazy import lazy_import
from ocimodel.cli.signing import (
    IdentityTokenOpt,
    RecordKeyOpt,
    StagingOpt,
    TrustConfigOpt,
    password_for,
)
from ocimodel.cli.trust import OfflineOpt, TrustedRootOpt
from ocimodel.errors import UsageError

AliasOpt = Annotated[str, typer.Option("--alias", metavar="ALIAS", help="The alias, e.g. production.")]
ReasonOpt = Annotated[str | None, typer.Option("--reason", metavar="TEXT", help="Why: kept in the promotion record.")]
GatePolicyOpt = Annotated[
    Path | None,
    typer.Option("--policy", metavar="FILE", help="A verify policy: the model must pass the alias's gate (aliases: in the policy) and the signer must be one it lists, or nothing moves."),
]
HistoryPolicyOpt = Annotated[
    Path | None,
    typer.Option("--policy", metavar="FILE", help="A verify policy: mark each record trusted, untrusted or unsigned, and follow trusted records only."),
]

api = lazy_import("ocimodel")


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
    digest = run(lambda _: api.tag(reference, new_tag, plain_http=plain_http, options=connection(), force=force), verb="tag", show_progress=False)
    if as_json:
        print_json({"reference": reference, "tag": new_tag, "digest": digest})  # as typed: already validated
    else:
        stdout.print(f"Tagged {digest} as {new_tag}", highlight=False)


def versions(
    repository: Annotated[str, typer.Argument(metavar="REPO", help="registry/team/model or oci:PATH.")],
    plain_http: PlainHttpOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List every version of a model, oldest first (1.2 < 1.10), with its digest, size,
    key metrics and the aliases (production, champion...) that point at it.

      ocimodel versions localhost:5000/team/sentiment
    """
    result = run(lambda _: api.versions(repository, plain_http=plain_http, options=connection()), verb="versions", show_progress=False)
    if as_json:
        print_json(result)
        return
    if not result.versions:
        stdout.print(f"no versions in {result.repository}", highlight=False, markup=False)
    table = new_table()
    for column in ("VERSION", "DIGEST", "CREATED", "SIZE", "METRICS", "ALIASES"):
        table.add_column(column, justify="right" if column == "SIZE" else "left")
    for v in result.versions:
        metrics = " ".join(f"{k}={val:g}" for k, val in list(v.metrics.items())[:4])
        table.add_row(v.tag, v.digest[:19], v.created or "-", size(v.size), metrics or "-", ", ".join(v.aliases) or "-")
    if result.versions:
        stdout.print(table)
    orphans = {a: d for a, d in result.aliases.items() if all(d != v.digest for v in result.versions)}
    for alias, digest in sorted(orphans.items()):
        stdout.print(f"alias {alias} -> {digest} (no version tag)", highlight=False, markup=False)


def promote(
    reference: Annotated[str, typer.Argument(metavar="REF", help="The version to promote: registry/repo:1.2 or repo@digest.")],
    to: Annotated[str, typer.Option("--to", metavar="ALIAS", help="The alias to move, e.g. production.")],
    reason: ReasonOpt = None,
    policy: GatePolicyOpt = None,
    key: RecordKeyOpt = None,
    identity_token: IdentityTokenOpt = None,
    trust_config: TrustConfigOpt = None,
    staging: StagingOpt = False,
    trusted_root: TrustedRootOpt = None,
    offline: OfflineOpt = True,
    plain_http: PlainHttpOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Point an alias (production, champion...) at a version, recording who moved it,
    from which version, when and why (a promotion record attached to the model).

      ocimodel promote localhost:5000/team/sentiment:1.2 --to production --reason "beats 1.1 on imdb"

      ocimodel promote localhost:5000/team/sentiment:1.2 --to production --key release.key --policy policy.yaml

    The actor is OCIMODEL_ACTOR, else the GitHub Actions user, else user@host. With
    --key (or keyless: --identity-token) the record is a signed in-toto statement in a
    Sigstore bundle. With --policy the model is verified against the alias's gate first:
    a denial exits 1 and moves nothing.
    """
    result = run(
        lambda _: api.promote(
            reference, to, reason=reason, policy=policy, key=key, password=password_for(key),
            identity_token=identity_token, trust_config=trust_config, staging=staging,
            trusted_root=trusted_root, offline=offline, plain_http=plain_http, options=connection(),
        ),
        verb="promote", show_progress=False,
    )
    _print_move(result, as_json, quiet)


def rollback(
    repository: Annotated[str, typer.Argument(metavar="REPO", help="registry/team/model or oci:PATH.")],
    alias: AliasOpt,
    reason: ReasonOpt = None,
    policy: GatePolicyOpt = None,
    key: RecordKeyOpt = None,
    identity_token: IdentityTokenOpt = None,
    trust_config: TrustConfigOpt = None,
    staging: StagingOpt = False,
    trusted_root: TrustedRootOpt = None,
    offline: OfflineOpt = True,
    plain_http: PlainHttpOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Point an alias back at the version it held before its last move, recorded as a
    rollback.

      ocimodel rollback localhost:5000/team/sentiment --alias production --reason "latency regression"

    With --policy only trusted records count: an alias moved by anything no trusted
    record explains goes back to the last trusted state. Signing as for promote.
    """
    result = run(
        lambda _: api.rollback(
            repository, alias, reason=reason, policy=policy, key=key, password=password_for(key),
            identity_token=identity_token, trust_config=trust_config, staging=staging,
            trusted_root=trusted_root, offline=offline, plain_http=plain_http, options=connection(),
        ),
        verb="rollback", show_progress=False,
    )
    _print_move(result, as_json, quiet)


def history(
    repository: Annotated[str, typer.Argument(metavar="REPO", help="registry/team/model or oci:PATH.")],
    alias: AliasOpt,
    policy: HistoryPolicyOpt = None,
    trusted_root: TrustedRootOpt = None,
    offline: OfflineOpt = True,
    plain_http: PlainHttpOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show which version held an alias when, who moved it and why, oldest first. Moves
    made by other tools (a plain re-tag) have no record and are flagged. Every record is
    listed; records in conflict (two following the same record, a record that does not
    continue where the previous one left the alias) are named.

      ocimodel history localhost:5000/team/sentiment --alias production

      ocimodel history localhost:5000/team/sentiment --alias production --policy policy.yaml

    With --policy each record is trusted, untrusted or unsigned; the timeline follows
    trusted records only, and a move no trusted record explains is flagged.
    """
    result = run(
        lambda _: api.history(repository, alias, policy=policy, trusted_root=trusted_root, offline=offline,
                              plain_http=plain_http, options=connection()),
        verb="history", show_progress=False,
    )
    if as_json:
        print_json(result)
        return
    table = new_table()
    for column in ("TIME", "ACTION", "DIGEST", "FROM", "ACTOR", "TRUST", "REASON", "NOTE"):
        table.add_column(column)
    for e in result.events:
        trust = e.trust or "-"
        if e.signers:
            trust += f" ({', '.join(e.signers)})"
        elif e.recorded and e.trust == "untrusted" and not e.signed:
            trust += " (unsigned)"
        notes = []
        if e.flagged:
            notes.append("FLAGGED")
        if e.recorded and not e.in_timeline:
            notes.append("not followed")
        if e.conflicts:
            notes.append("conflict: " + ", ".join(sorted({c.split(":", 1)[0] for c in e.conflicts})))
        table.add_row(e.time or "?", e.action, (e.digest or "-")[:19], (e.from_digest or "-")[:19], e.actor or "?",
                      trust, e.reason or "", "; ".join(notes))
    stdout.print(table)
    stdout.print(f"{result.alias} now: {result.current or '(no such tag)'}", highlight=False, markup=False)
    if result.policy:
        stdout.print(f"judged by the policy {result.policy}", highlight=False, markup=False)
    for conflict in result.conflicts:
        stdout.print(f"conflict ({conflict.kind}): {conflict.message}", highlight=False, markup=False)
    for event in result.events:
        if event.trust == "untrusted" and event.trust_detail:
            stdout.print(f"untrusted record {event.record}: {event.trust_detail}", highlight=False, markup=False)
    for warning in result.warnings:
        stdout.print(f"warning: {warning}", highlight=False, markup=False)


def lineage(
    reference: Annotated[str, typer.Argument(metavar="REF", help="The model: registry/repo:tag, repo@digest or oci:PATH:tag.")],
    up: Annotated[bool, typer.Option("--up", help="Only the models it derives from.")] = False,
    down: Annotated[bool, typer.Option("--down", help="Only the models derived from it.")] = False,
    depth: Annotated[int, typer.Option("--depth", min=1, max=16, metavar="N", help="Generations to follow.")] = 4,
    output_format: Annotated[str, typer.Option("--format", metavar="FORMAT", help="text, dot (Graphviz) or mermaid.")] = "text",
    plain_http: PlainHttpOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a model's lineage by digest: its base models (from its model card) and the
    models derived from it (lineage links their pushes left on it).

      ocimodel lineage localhost:5000/team/base:1.0 --down

      ocimodel lineage localhost:5000/team/sentiment:1.2 --format mermaid
    """
    if output_format not in ("text", "dot", "mermaid"):
        run(lambda _: _refuse(f"--format must be text, dot or mermaid, not {output_format!r}"), verb="lineage", show_progress=False)
    both = not up and not down
    graph = run(
        lambda _: api.lineage(reference, up=up or both, down=down or both, depth=depth, plain_http=plain_http, options=connection()),
        verb="lineage", show_progress=False,
    )
    if as_json:
        sys.stdout.write(json.dumps(graph.model_dump(), indent=2) + "\n")
        return
    if output_format == "dot":
        sys.stdout.write(graph.to_dot())
        return
    if output_format == "mermaid":
        sys.stdout.write(graph.to_mermaid())
        return
    def label(digest: str) -> str:
        node = graph.nodes.get(digest)
        return f"{node.reference}" + (f" ({node.name} {node.version or ''})".rstrip() if node and node.name else "") if node else digest

    for edge in graph.edges:
        mark = "" if edge.verified else "  [unverified: the child does not name this parent]"
        stdout.print(f"{label(edge.parent)}  --{edge.relation}-->  {label(edge.child)}{mark}", highlight=False, markup=False)
    if not graph.edges:
        stdout.print("no lineage recorded", highlight=False, markup=False)
    for note in graph.notes:
        stdout.print(f"note: {note}", highlight=False, markup=False)


def _refuse(message: str) -> None:
    raise UsageError(message)


def _print_move(result: api.PromoteResult, as_json: bool, quiet: bool) -> None:
    if as_json:
        print_json(result)
    elif quiet:
        stdout.print(result.to_digest, highlight=False)
    else:
        verb = "Rolled back" if result.action == "rollback" else "Promoted"
        stdout.print(f"{verb} {result.repository}:{result.alias} -> {result.to_digest}", highlight=False, markup=False)
        stdout.print(f"Was: {result.from_digest or '(new alias)'}", highlight=False, markup=False)
        stdout.print(f"Record: {result.record} ({'signed with ' + result.signer if result.signed else 'unsigned'})", highlight=False, markup=False)
        if result.gate is not None:
            stdout.print(f"Gate: allowed by the policy {result.gate.policy}", highlight=False, markup=False)
            for rule in result.gate.reasons:
                stdout.print(f"  pass {rule.rule}: {rule.detail}", highlight=False, markup=False)
