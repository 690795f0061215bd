"""Records you can trust: signed promotion records, a history that hides nothing, and
promotion gates, on the real registry (distribution 2.8: no referrers API, the fallback
tag) and on an OCI layout.

The forgery is the one the issue reports, replayed command for command: alice and bob
promote, another tool re-tags production to 1.2, and someone attaches an unsigned
record claiming a "security-officer" approved it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

import ocimodel
from ocimodel.api import functions as reg
from ocimodel.api.promotions import PROMOTION_PREDICATE, PromotionDenied
from ocimodel.oci import mediatypes as mt
from ocimodel.signing.bundle import sign_statement_with_key
from ocimodel.signing.keys import load_private_key
from ocimodel.signing.statement import attestation_statement
from ocimodel.trust.policy import PolicyError, parse_policy
from ocimodel.trust.store import write_bundle
from tests.test_cli import json_of, ocimodel_cli, ok


def _variant(model_dir: Path, tmp_path: Path, name: str, marker: bytes) -> Path:
    copy = tmp_path / name
    shutil.copytree(model_dir, copy)
    weights = copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-len(marker)] + marker)
    return copy


def _versions(repo: str, model_dir: Path, tmp_path: Path, count: int) -> list[str]:
    """Push versions 1.0, 1.1... of different models; their digests."""
    return [
        ocimodel.push(_variant(model_dir, tmp_path, f"v{i}", bytes([i + 1]) * 8), f"{repo}:1.{i}").digest
        for i in range(count)
    ]


def _keys(tmp_path: Path, *names: str) -> dict[str, Path]:
    for name in names:
        ocimodel.generate_key_pair(tmp_path / f"{name}.key", tmp_path / f"{name}.pub")
    return {name: tmp_path / f"{name}.key" for name in names}


def _policy(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return path


PEOPLE_POLICY = """\
version: 1
signers:
  alice: {key: alice.pub}
  bob: {key: bob.pub}
aliases:
  production:
    require: [signature]
    promoters: [alice, bob]
"""


@pytest.fixture(params=["registry", "layout"])
def repo(request, registry, repo_name, tmp_path) -> str:
    return f"{registry.host}/{repo_name}" if request.param == "registry" else f"oci:{tmp_path / 'store'}"


def _recorded(history: dict) -> list[dict]:
    return [e for e in history["events"] if e["recorded"]]


def test_the_forgery_replayed_leaves_every_record_listed_and_untrusted_under_a_policy(repo, model_dir, tmp_path):
    v10, v11, v12 = _versions(repo, model_dir, tmp_path, 3)
    keys = _keys(tmp_path, "alice", "bob")
    policy = _policy(tmp_path, PEOPLE_POLICY)
    for version in ("1.0", "1.1"):  # the gate of production asks for a signature
        ocimodel.sign(f"{repo}:{version}", key=keys["alice"])

    ok("promote", f"{repo}:1.0", "--to", "production", "--key", keys["alice"], env={"OCIMODEL_ACTOR": "alice"})
    ok("promote", f"{repo}:1.1", "--to", "production", "--key", keys["bob"], env={"OCIMODEL_ACTOR": "bob"})
    ok("tag", f"{repo}:1.2", "production")
    ok("attach", f"{repo}:1.2", "--artifact-type", "application/vnd.ocimodel.promotion.v1+json",
       "-a", "dev.ocimodel.promotion.alias=production", "-a", f"dev.ocimodel.promotion.to={v12}",
       "-a", f"dev.ocimodel.promotion.from={v11}", "-a", "dev.ocimodel.promotion.actor=security-officer",
       "-a", "dev.ocimodel.promotion.time=2026-12-06T08:00:00Z", "-a", "dev.ocimodel.promotion.reason=approved by CAB")

    # Without a policy: every record is listed, the forgery's missing link is named, and
    # the move to 1.1 is not called unrecorded (bob's record explains it).
    plain = json_of(ok("history", repo, "--alias", "production", "--json"))
    assert [(e["actor"], e["digest"], e["trust"]) for e in _recorded(plain)] == [
        ("alice", v10, "signed"), ("bob", v11, "signed"), ("security-officer", v12, "unsigned"),
    ]
    forged = _recorded(plain)[2]
    assert forged["conflicts"] and forged["conflicts"][0].startswith("unlinked: ")
    assert not any(e["flagged"] for e in plain["events"]), plain["events"]
    assert not any("without a record" in w for w in plain["warnings"]), plain["warnings"]

    # With a policy that trusts alice and bob: the forgery is untrusted, the timeline is
    # alice -> bob, and the move to 1.2 is flagged.
    judged = json_of(ok("history", repo, "--alias", "production", "--policy", policy, "--json"))
    jsonschema.validate(judged, json.loads((Path(__file__).resolve().parents[1] / "schemas" / "history.schema.json").read_text()))
    assert [(e["actor"], e["trust"], e["in_timeline"]) for e in _recorded(judged)] == [
        ("alice", "trusted", True), ("bob", "trusted", True), ("security-officer", "untrusted", False),
    ]
    assert [e["signers"] for e in _recorded(judged)] == [["alice"], ["bob"], []]
    flagged = [e for e in judged["events"] if e["flagged"]]
    assert [(e["from_digest"], e["digest"], e["action"]) for e in flagged] == [(v11, v12, "moved without a trusted record")]
    assert judged["policy"].startswith("sha256:")
    text = ok("history", repo, "--alias", "production", "--policy", policy, env={"COLUMNS": "300"}).out
    assert "security-officer" in text and "untrusted (unsigned)" in text and "FLAGGED" in text

    # rollback --policy goes back to the last trusted state, never to what only the forgery names.
    back = json_of(ok("rollback", repo, "--alias", "production", "--policy", policy, "--key", keys["alice"], "--json",
                      env={"OCIMODEL_ACTOR": "alice"}))
    assert (back["from_digest"], back["to_digest"], back["signed"]) == (v12, v11, True)
    assert ocimodel.inspect(f"{repo}:production").digest == v11
    after = reg.history(repo, "production", policy=policy)
    assert [e.actor for e in after.events if e.recorded] == ["alice", "bob", "security-officer", "alice"]
    assert after.current == v11 and after.events[-1].action == "rollback" and after.events[-1].trust == "trusted"
    assert not after.events[-1].flagged


def test_promote_policy_gate_refuses_an_unsigned_model_until_it_is_signed(registry, repo_name, model_dir, tmp_path):
    repo = f"{registry.host}/{repo_name}"
    v10, v11 = _versions(repo, model_dir, tmp_path, 2)
    keys = _keys(tmp_path, "release", "intern", "stranger")
    (tmp_path / "stranger.pub").unlink()  # the policy does not know this one
    policy = _policy(tmp_path, """\
version: 1
signers:
  release: {key: release.pub}
  intern: {key: intern.pub}
aliases:
  production:
    require: [signature]
    promoters: [release]
""")
    denied = ocimodel_cli("promote", f"{repo}:1.0", "--to", "production", "--policy", policy, "--key", keys["release"])
    assert denied.code == 1, str(denied)
    assert "signature: unsigned" in denied.err and "Traceback" not in denied.err
    assert ocimodel_cli("inspect", f"{repo}:production").code != 0  # nothing moved
    assert ocimodel.referrers(f"{repo}:1.0").referrers == []  # and no record was written

    ocimodel.sign(f"{repo}:1.0", key=keys["intern"])
    promoted = json_of(ok("promote", f"{repo}:1.0", "--to", "production", "--policy", policy, "--key", keys["release"], "--json"))
    assert promoted["to_digest"] == v10 and promoted["signed"]
    assert promoted["gate"]["allowed"] and [r["rule"] for r in promoted["gate"]["reasons"]] == ["signature"]

    # Only release may move production: intern's key (in the policy) and a stranger's
    # key (not in it) are refused before anything moves; so is an unsigned record.
    ocimodel.sign(f"{repo}:1.1", key=keys["release"])
    for key, says in ((keys["intern"], "promoters of production are release"), (keys["stranger"], "lists no signer")):
        refused = ocimodel_cli("promote", f"{repo}:1.1", "--to", "production", "--policy", policy, "--key", key)
        assert refused.code == 1 and says in refused.err, str(refused)
    refused = ocimodel_cli("promote", f"{repo}:1.1", "--to", "production", "--policy", policy)
    assert refused.code == 1 and "would be unsigned" in refused.err, str(refused)
    assert ocimodel.inspect(f"{repo}:production").digest == v10

    # The record carries the decision, signed.
    event = reg.history(repo, "production", policy=policy).events[-1]
    assert event.trust == "trusted" and event.gate is not None and event.gate.allowed
    assert event.gate.policy == promoted["gate"]["policy"]


def test_signed_records_are_in_toto_bundles_that_travel_and_judge_their_signers(model_dir, tmp_path, monkeypatch):
    """The record is a cosign v3 bundle referrer whose statement is about the model;
    a well-signed record by someone the policy does not trust (or not a promoter) is
    untrusted; the records travel with copy --with-referrers."""
    repo = f"oci:{tmp_path / 'store'}"
    v10, v11, v12 = _versions(repo, model_dir, tmp_path, 3)
    keys = _keys(tmp_path, "alice", "bob", "carol", "mallory")
    policy = _policy(tmp_path, PEOPLE_POLICY.replace("  bob: {key: bob.pub}\n", "  bob: {key: bob.pub}\n  carol: {key: carol.pub}\n"))
    for version in ("1.0", "1.1", "1.2"):
        ocimodel.sign(f"{repo}:{version}", key=keys["alice"])

    monkeypatch.setenv("OCIMODEL_ACTOR", "alice")
    first = reg.promote(f"{repo}:1.0", "production", key=keys["alice"], reason="first")
    listed = ocimodel.referrers(f"{repo}@{v10}").referrers
    bundle_referrer = next(r for r in listed if r.digest == first.record)
    assert bundle_referrer.artifact_type == mt.BUNDLE_MEDIA_TYPE
    assert bundle_referrer.annotations[mt.ANNOTATION_BUNDLE_PREDICATE_TYPE] == PROMOTION_PREDICATE
    # What a cosign-format tool reads: a DSSE in-toto statement about the model's digest.
    from ocimodel.oci.reference import parse_reference
    from ocimodel.signing.bundle import unverified_statement
    from ocimodel.targets.open import open_target
    from ocimodel.trust.store import read_bundles

    with open_target(parse_reference(f"{repo}:1.0")) as target:
        [stored] = [b for b in read_bundles(target, v10) if b.referrer.digest == first.record]
    statement = unverified_statement(stored.bundle)
    assert statement.subject[0].digest == {"sha256": v10.removeprefix("sha256:")}
    assert statement.predicate_type == PROMOTION_PREDICATE
    assert {k: statement.predicate[k] for k in ("alias", "action", "from", "to", "actor", "reason")} == {
        "alias": "production", "action": "promote", "from": None, "to": v10, "actor": "alice", "reason": "first"}
    schema = json.loads((Path(__file__).resolve().parents[1] / "schemas" / "promotion-predicate.schema.json").read_text())
    jsonschema.validate(statement.predicate, schema)
    # carol is in the policy but not a promoter of production: her record is untrusted.
    monkeypatch.setenv("OCIMODEL_ACTOR", "carol")
    second = reg.promote(f"{repo}:1.1", "production", key=keys["carol"])
    # mallory forges a properly signed record following carol's, with her own key.
    predicate = {"alias": "production", "action": "promote", "from": v11, "to": v12, "actor": "security-officer",
                 "time": "2026-12-06T08:00:00Z", "reason": "approved by CAB", "previous": second.record}
    bundle = sign_statement_with_key(attestation_statement(v12, PROMOTION_PREDICATE, predicate).to_json(),
                                     load_private_key(keys["mallory"]))

    with open_target(parse_reference(f"{repo}:1.2"), for_write=True) as target:
        model = target.resolve("1.2")
        write_bundle(target, model, bundle, PROMOTION_PREDICATE)
        target.tag(model, "production")

    judged = reg.history(repo, "production", policy=policy)
    rows = [(e.actor, e.trust, e.signed, e.in_timeline) for e in judged.events if e.recorded]
    assert rows == [("alice", "trusted", True, True), ("carol", "untrusted", True, False),
                    ("security-officer", "untrusted", True, False)]
    carol, forged = [e for e in judged.events if e.recorded][1:]
    assert "not by a promoter of production" in carol.trust_detail and carol.signers == ["carol"]
    assert "untrusted-signature" in forged.trust_detail
    # The tag went v10 -> v11 -> v12 on untrusted records: one move no trusted record explains.
    assert [(e.from_digest, e.digest, e.action) for e in judged.events if e.flagged] == [
        (v10, v12, "moved without a trusted record")]
    with pytest.raises(PromotionDenied):
        reg.rollback(repo, "production", policy=policy)  # unsigned: production has promoters
    assert reg.rollback(repo, "production", policy=policy, key=keys["bob"]).to_digest == v10

    # The records (bundles) travel with the model: the copy has the same trusted history.
    copy = f"oci:{tmp_path / 'copy'}"
    for version in ("1.0", "1.1", "1.2", "production"):
        ocimodel.copy(f"{repo}:{version}", f"{copy}:{version}", with_referrers=True)
    copied = reg.history(copy, "production", policy=policy)
    assert [(e.actor, e.trust) for e in copied.events if e.recorded] == [(e.actor, e.trust) for e in reg.history(
        repo, "production", policy=policy).events if e.recorded]


def test_old_unsigned_annotation_records_are_still_read(model_dir, tmp_path):
    repo = f"oci:{tmp_path / 'store'}"
    v10, v11 = _versions(repo, model_dir, tmp_path, 2)
    reg.promote(f"{repo}:1.0", "production")
    reg.promote(f"{repo}:1.1", "production")
    records = [r for r in ocimodel.referrers(f"{repo}@{v11}").referrers]
    assert [r.artifact_type for r in records] == [mt.PROMOTION_ARTIFACT]
    history = reg.history(repo, "production")
    assert [(e.digest, e.trust, e.signed) for e in history.events] == [(v10, "unsigned", False), (v11, "unsigned", False)]
    assert history.conflicts == [] and history.warnings == []


_RACER = r"""
import io, json, sys
import ocimodel.api.functions, ocimodel.api.registry, ocimodel.api.trust, ocimodel.cli.app, ocimodel.cli.registry
from ocimodel.cli.app import main
print("READY", flush=True)
line = sys.stdin.readline()
out, err = io.StringIO(), io.StringIO()
sys.stdout, sys.stderr = out, err
try:
    sys.argv = ["ocimodel", *json.loads(line)]
    main()
    code = 0
except SystemExit as exc:
    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
except BaseException as exc:
    code = 99
    err.write(repr(exc))
finally:
    sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
print(json.dumps({"code": code, "out": out.getvalue(), "err": err.getvalue()}), flush=True)
"""


@pytest.mark.serial  # eight racing processes: `make test` runs it alone (tests/conftest.py)
def test_eight_concurrent_promotions_leave_every_record_listed_and_the_conflict_reported(registry, repo_name, model_dir, tmp_path):
    """Eight processes promote eight versions to one alias at once, on a registry without
    the referrers API (every record is found through the fallback tags): half sign their
    record, half do not. All eight succeed (an alias moves, last writer wins); history
    lists all eight, names the race, and follows the one the tag holds."""
    repo = f"{registry.host}/{repo_name}"
    digests = _versions(repo, model_dir, tmp_path, 9)
    keys = _keys(tmp_path, "release")
    first = reg.promote(f"{repo}:1.0", "production")
    # The writers of the fallback index race here: its protection must be on (the suite
    # turns it off for tests that race nothing, docs/testing.md).
    env = {**os.environ, "COLUMNS": "200", "OCIMODEL_REFERRERS_SETTLE": "0.2"}
    procs = [subprocess.Popen([sys.executable, "-c", _RACER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for _ in range(8)]
    try:
        for proc in procs:
            assert proc.stdout.readline() == "READY\n", proc.stderr.read()
        for i, proc in enumerate(procs, start=1):
            argv = ["promote", f"{repo}:1.{i}", "--to", "production", "--json"]
            argv += ["--key", str(keys["release"])] if i % 2 else []
            proc.stdin.write(json.dumps(argv) + "\n")
        for proc in procs:
            proc.stdin.flush()  # all eight lines go out back to back
        runs = [json.loads(proc.stdout.readline()) for proc in procs]
    finally:
        for proc in procs:
            proc.stdin.close()
            proc.wait(timeout=60)
    assert [r["code"] for r in runs] == [0] * 8, runs
    records = {json.loads(r["out"])["record"] for r in runs}
    assert len(records) == 8

    history = reg.history(repo, "production")
    listed = [e for e in history.events if e.recorded]
    assert {e.record for e in listed} == records | {first.record}
    assert sorted(e.digest for e in listed) == sorted(digests)
    assert [(e.trust, e.signed) for e in listed].count(("signed", True)) == 4
    # A racer that read the alias after another had moved it follows that one: the race
    # may fork at more than one record, but every fork is named, and every record the
    # timeline does not follow says why.
    races = [c for c in history.conflicts if c.kind == "same-previous"]
    assert races and all(len(c.records) >= 2 for c in races), history.conflicts
    assert {d for c in races for d in c.records} <= records
    for event in listed:
        assert event.in_timeline or event.conflicts, event
    followed = [e for e in listed if e.in_timeline]
    assert followed[0].record == first.record and len(followed) >= 2
    assert followed[-1].digest == history.current == ocimodel.inspect(f"{repo}:production").digest
    # A racer that found the alias where another racer left it, but listed the records
    # before that racer's record was visible, continues it (a stale-previous link), so
    # no move of the tag is flagged as unexplained.
    assert not any(e.flagged for e in history.events), (history.warnings, history.conflicts)
    text = ok("history", repo, "--alias", "production", env={"COLUMNS": "300"}).out
    assert "conflict (same-previous): " in text and "records follow the same record" in text


@pytest.mark.parametrize("text, message", [
    ("signers: {a: {key: k.pub}}\naliases: {production: {require: [license]}}\n", "aliases.production.require.0"),
    ("signers: {a: {key: k.pub}}\naliases: {production: {require: [scan]}}\n", "no scan rule"),
    ("signers: {a: {key: k.pub}}\naliases: {production: {promoters: [b]}}\n", "names the signer 'b'"),
    ("signers: {a: {key: k.pub}}\naliases: {'1.0': {promoters: [a]}}\n", "is a version, not an alias"),
    ("signers: {a: {key: k.pub}}\naliases: {production: {require: [attestations]}}\n", "no attestation rules"),
    ("signers: {a: {key: k.pub}}\naliases: {production: {require: []}}\n", "aliases.production.require"),
    ("signers: {a: {key: k.pub}}\naliases: {production: {requires: [signature]}}\n", "Extra inputs"),
    ("signers: {a: {key: k.pub}}\naliases: {production: {require: [signature, signature]}}\n", "twice"),
    ("signers: {a: {key: k.pub}}\naliases: {'prod/x': {}}\n", "aliases.prod/x"),
])
def test_alias_rules_are_validated_strictly(text, message):
    from ocimodel.strict_yaml import loads_yaml_strict

    with pytest.raises(PolicyError, match=message.replace(".", r"\.").replace("[", r"\[")) as raised:
        parse_policy(loads_yaml_strict(text.encode()))
    assert raised.value.hint and "require" in raised.value.hint
    assert parse_policy(loads_yaml_strict(
        b"signers: {a: {key: k.pub}}\naliases: {production: {require: [signature], promoters: [a]}}\n"
    )).aliases["production"].promoters == ["a"]


def test_keyless_records_are_judged_by_the_identity_in_their_certificate(tmp_path, model_dir, monkeypatch):
    """Keyless signing as `sign` does it (the test Sigstore instance in place of the public
    one): who signed is known only after Fulcio issued the certificate, so a keyless
    signer that is not a promoter is refused after signing and before anything is written."""
    from ocimodel.trust import keyless
    from tests.support.sigstore_instance import SigstoreInstance

    for var in ("HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_STATE_HOME"):
        (tmp_path / "home" / var).mkdir(parents=True)
        monkeypatch.setenv(var, str(tmp_path / "home" / var))
    instance = SigstoreInstance.create(tmp_path / "sigstore")
    monkeypatch.setattr(keyless, "_signing_context", lambda trust_config, staging: instance.signing_context())
    repo = f"oci:{tmp_path / 'store'}"
    v10, v11 = _versions(repo, model_dir, tmp_path, 2)
    issuer = "https://issuer.example"
    policy = _policy(tmp_path, f"""\
signers:
  ci: {{identity: ci@example.com, issuer: {issuer}}}
  dev: {{identity: dev@example.com, issuer: {issuer}}}
aliases:
  production: {{promoters: [ci]}}
""")
    ci, dev = instance.oidc_jwt("ci@example.com", issuer), instance.oidc_jwt("dev@example.com", issuer)
    for version in ("1.0", "1.1"):
        ocimodel.sign(f"{repo}:{version}", identity_token=ci)
    root = instance.trusted_root_path
    with pytest.raises(PromotionDenied, match="promoters of production are ci"):
        reg.promote(f"{repo}:1.0", "production", policy=policy, identity_token=dev, trusted_root=root)
    written = [r for r in ocimodel.referrers(f"{repo}:1.0").referrers
               if (r.annotations or {}).get(mt.ANNOTATION_BUNDLE_PREDICATE_TYPE) == PROMOTION_PREDICATE]
    assert written == [] and not reg.versions(repo).aliases  # signed, refused, nothing written or moved
    promoted = reg.promote(f"{repo}:1.0", "production", policy=policy, identity_token=ci, trusted_root=root)
    assert promoted.signed and promoted.signer == "keyless (Sigstore)"
    reg.promote(f"{repo}:1.1", "production", identity_token=dev)  # no policy: not checked when written
    judged = reg.history(repo, "production", policy=policy, trusted_root=root)
    assert [(e.digest, e.trust, e.signers) for e in judged.events if e.recorded] == [
        (v10, "trusted", ["ci"]), (v11, "untrusted", ["dev"])]
    assert [(e.from_digest, e.digest) for e in judged.events if e.flagged] == [(v10, v11)]


def _rec(name: str, to: str, frm: str | None, previous: str | None, time: str, trust: str = "unsigned"):
    from ocimodel.api.promotions import PromotionRecord

    return PromotionRecord(alias="production", action="promote", from_digest=frm, to_digest=to, actor=name,
                           time=time, reason=None, record=name, previous=previous, trust=trust)


def test_order_names_every_conflict_and_drops_nothing():
    """Without a registry: two first records, a race whose loser has a follower, and a
    record that does not continue where its predecessor left the alias."""
    from ocimodel.api.promotions import TrustContext, order

    records = [
        _rec("a", "m1", None, None, "t1"), _rec("x", "m9", None, None, "t0"),   # two first moves
        _rec("b", "m2", "m1", "a", "t2"), _rec("c", "m3", "m1", "a", "t3"),       # a race after a
        _rec("d", "m4", "m2", "b", "t4"),                                         # follows the loser
        _rec("e", "m5", "m7", "c", "t5"),                                         # a gap: c left m3
    ]
    result = order({r.record: r for r in records}, "m5", TrustContext())
    assert sorted(r.record for r in result.records) == ["a", "b", "c", "d", "e", "x"]
    assert [r.record for r in result.chain] == ["a", "c", "e"]
    kinds = {(c.kind, tuple(sorted(c.records))) for c in result.conflicts}
    assert kinds == {("several-first", ("a", "x")), ("same-previous", ("b", "c")), ("gap", ("c", "e"))}
    assert result.by_record["d"][0].startswith("branch: follows b")
    order_of = [r.record for r in result.records]
    assert order_of.index("a") < order_of.index("b") < order_of.index("d") and order_of.index("c") < order_of.index("e")


def test_a_record_that_found_a_later_move_continues_it_not_its_stale_previous():
    """Without a registry: in a race, c listed the records before b's could be seen (so it
    names a), but found the alias where b left it. The timeline goes a, b, c with no gap;
    the stale link is named; a gap no record explains stays a gap."""
    from ocimodel.api.promotions import TrustContext, order

    records = [
        _rec("a", "m1", None, None, "t1"),
        _rec("b", "m2", "m1", "a", "t2"),
        _rec("c", "m3", "m2", "a", "t3"),   # names a, found the alias at m2 (b's move)
        _rec("d", "m4", "m9", "c", "t4"),   # a true gap: nothing left the alias at m9
        _rec("e", "m5", "m4", "c", "t5"),   # in a race with d, names c, found d's move
        _rec("f", "m6", "m5", "b", "t6"),   # names b (a sibling of e's line), found e's move
    ]
    result = order({r.record: r for r in records}, "m6", TrustContext())
    assert [r.record for r in result.chain] == ["a", "b", "c", "d", "e", "f"]
    kinds = {(c.kind, tuple(c.records)) for c in result.conflicts}
    assert kinds == {("stale-previous", ("c", "b")), ("gap", ("d", "c")), ("stale-previous", ("e", "d")),
                     ("stale-previous", ("f", "e"))}
    assert result.by_record["c"][0].startswith("stale-previous: record c")
    assert "b" not in result.by_record
