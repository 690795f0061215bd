"""License rules of a policy, judged over expressions: no registry."""

from __future__ import annotations

import pytest

from ocimodel.licensing.expression import closest_ids, parse
from ocimodel.licensing.policy import LicenseRule, judge
from ocimodel.trust.policy import PolicyError, parse_policy

RULES = LicenseRule(
    allow=["Apache-2.0", "MIT", "BSD-3-Clause", "GPL-2.0-only WITH Classpath-exception-2.0"],
    deny=["CC-BY-NC-4.0", "LicenseRef-*-community-license", "GPL-2.0-only"],
)


def verdict(*expressions: str, rules: LicenseRule = RULES):
    return judge([(e, "card") for e in expressions], rules)


def test_or_is_allowed_when_one_choice_is():
    assert verdict("MIT OR GPL-3.0-only").allowed
    assert verdict("GPL-3.0-only OR mit").allowed  # ids compared canonically
    assert verdict("CC-BY-NC-4.0 OR Apache-2.0").allowed


def test_and_needs_every_part():
    v = verdict("MIT AND CC-BY-NC-4.0")
    assert not v.allowed and v.status == "denied"
    assert v.reasons == ["card: CC-BY-NC-4.0 is denied (deny: CC-BY-NC-4.0)"]
    v = verdict("MIT AND GPL-3.0-only")
    assert not v.allowed and v.status == "unknown" and "GPL-3.0-only is not in allow" in v.reasons[0]


def test_precedence_and_parentheses():
    # AND binds tighter than OR: MIT OR (CC-BY-NC-4.0 AND Apache-2.0) -> MIT can be chosen.
    assert verdict("MIT OR CC-BY-NC-4.0 AND Apache-2.0").allowed
    assert not verdict("(MIT OR CC-BY-NC-4.0) AND LicenseRef-llama3-community-license").allowed


def test_with_exception_matched_whole_before_the_license():
    assert not verdict("GPL-2.0-only").allowed
    assert verdict("GPL-2.0-only WITH Classpath-exception-2.0").allowed
    assert not verdict("GPL-2.0-only WITH Autoconf-exception-2.0").allowed


def test_glob_denies_license_refs():
    v = verdict("LicenseRef-llama3.1-community-license")
    assert v.status == "denied" and "LicenseRef-*-community-license" in v.reasons[0]


def test_every_expression_applies():
    assert not verdict("MIT", "CC-BY-NC-4.0").allowed


def test_unknown_deny_or_warn():
    assert not verdict("GPL-3.0-only").allowed
    assert not verdict().allowed and verdict().reasons == ["no license declared or detected"]
    warn = LicenseRule(allow=["MIT"], unknown="warn")
    v = verdict("GPL-3.0-only", rules=warn)
    assert v.allowed and v.status == "unknown" and v.warnings
    assert not verdict("not a license", rules=warn).reasons
    assert verdict("not a license", rules=warn).warnings == ["card: 'not a license' is not an SPDX license expression"]


def test_no_allow_list_allows_what_is_not_denied():
    rules = LicenseRule(deny=["CC-BY-NC-*"])
    assert verdict("GPL-3.0-only", rules=rules).allowed
    assert not verdict("CC-BY-NC-SA-4.0", rules=rules).allowed


def test_parse_tree():
    assert str(parse("mit or apache-2.0".replace("or", "OR"))) == "MIT OR Apache-2.0"
    with pytest.raises(ValueError):
        parse("Apache2")


def test_closest_ids_for_a_typo():
    assert closest_ids("Apache2")[0] == "Apache-2.0"
    assert "MIT" in closest_ids("MTI") or "MIT" in closest_ids("MIT-")


def test_policy_file_section():
    doc = {"signers": {"a": {"key": "k.pub"}},
           "licenses": {"allow": ["MIT"], "deny": ["CC-BY-NC-*"], "unknown": "warn", "base_models": False}}
    policy = parse_policy(doc)
    assert policy.licenses is not None and policy.licenses.unknown == "warn" and not policy.licenses.base_models
    for bad in ({"unknown": "allow"}, {"allow": "MIT"}, {"base_models": "false"}, {"alow": ["MIT"]},
                {"deny": ["MIT", "mit"]}):
        with pytest.raises(PolicyError):
            parse_policy({**doc, "licenses": bad})


def test_unknown_id_is_a_usage_error_naming_the_closest_ids(tmp_path):
    import subprocess
    import sys

    (tmp_path / "w.bin").write_bytes(b"x")
    # Refused before any connection: port 9 (discard) on loopback is never asked.
    run = subprocess.run(
        [sys.executable, "-m", "ocimodel", "push", str(tmp_path), "127.0.0.1:9/m/x:1", "--plain-http", "--license", "Apache2"],
        capture_output=True, text=True,
    )
    assert run.returncode == 2
    assert "'Apache2': did you mean Apache-2.0" in run.stderr
    assert closest_ids("GPL3")[:2] == ["GPL-3.0-only", "GPL-3.0-or-later"]  # current ids, not deprecated GPL-3.0
