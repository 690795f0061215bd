"""The pickle family of format scanners (issue 16): every malicious file of the corpus is
critical, no file written by NumPy, joblib, scikit-learn or PyTorch is flagged, findings
name the callable and the opcode's offset, formats are known by their bytes, and nothing
is ever loaded. No registry: these run in seconds."""

from __future__ import annotations

import os
import pickle
import pickletools

import pytest

from ocimodel.scanning.findings import Severity, worst
from ocimodel.scanning.formats.catalog import all_scanners
from tests.support.scan_corpus import (
    CMD,
    MaliciousPayload,
    benign_corpus,
    malicious_pickle_corpus,
    scan_bytes,
)

CANARY = "/tmp/ocimodel-scan-canary"
MALICIOUS = malicious_pickle_corpus()


@pytest.fixture(scope="module")
def benign():
    return benign_corpus(require=("numpy", "sklearn", "torch"))


def _offset_of(data: bytes, opcode: str) -> int:
    return next(pos for op, _, pos in pickletools.genops(data) if op.name == opcode)


def test_the_corpus_covers_at_least_thirty_gadget_classes():
    labels = {label for label, _, _ in MALICIOUS}
    assert len(labels) == len(MALICIOUS) >= 60


@pytest.mark.parametrize("label,name,data", MALICIOUS, ids=[label for label, _, _ in MALICIOUS])
def test_every_malicious_file_is_critical(label, name, data):
    findings = scan_bytes(data, name)
    assert worst(findings) is Severity.CRITICAL, [(f.rule, f.detail) for f in findings]


def test_scanning_never_runs_what_it_reads():
    if os.path.exists(CANARY):
        os.unlink(CANARY)
    for _, name, data in MALICIOUS:
        scan_bytes(data, name)
    assert not os.path.exists(CANARY)


def test_no_file_the_libraries_write_is_flagged(benign):
    assert len(benign) >= 20
    labels = {label.split("-")[0] for label, _, _ in benign}
    assert {"numpy", "sklearn", "torch", "npy", "npz"} <= labels
    for label, name, data in benign:
        findings = scan_bytes(data, name)
        assert findings == [] or not worst(findings).at_least(Severity.HIGH), (label, findings)
        # the allowlist covers what they write: not even a review
        assert all(f.severity in (Severity.INFO, Severity.LOW) for f in findings), (label, findings)


def test_the_benign_files_are_recognised_by_their_bytes(benign):
    formats = {}
    for label, name, data in benign:
        formats[label] = {s.name for s in all_scanners() if s.detect(data[:4096], len(data))}
    assert formats["torch-state-dict-zip"] == {"pytorch-zip"}
    assert formats["torch-state-dict-legacy"] == {"pytorch-legacy"}
    assert formats["sklearn-forest-joblib-plain"] == {"pickle"}
    assert formats["sklearn-forest-joblib-zlib"] == {"joblib"}
    assert formats["sklearn-forest-joblib-xz"] == {"joblib"}
    assert formats["npy-<f4"] == {"numpy"}
    assert formats["npz-compressed"] == {"numpy-npz"}
    assert formats["numpy-pickle-p0"] == {"pickle"}


def test_a_finding_names_the_callable_its_literal_arguments_and_the_opcode_offset():
    data = pickle.dumps(MaliciousPayload(), protocol=2)
    (finding,) = scan_bytes(data, "weights.bin")
    assert finding.severity is Severity.CRITICAL
    assert finding.rule == "pickle.callable.dangerous"
    assert finding.detail.startswith(f"posix.system is called with ({CMD!r},)")
    assert finding.offset == _offset_of(data, "REDUCE")
    assert (finding.file, finding.format) == ("weights.bin", "pickle")


def test_a_pickle_named_safetensors_is_scanned_as_a_pickle():
    data = pickle.dumps(MaliciousPayload(), protocol=4)
    findings = scan_bytes(data, "model.safetensors")
    assert {f.format for f in findings} == {"pickle"}
    assert worst(findings) is Severity.CRITICAL


def test_text_and_json_are_not_pickles():
    for data in (b'{"__metadata__": {}}' + b" " * 10, b"config = 1\nname = 2\n", b"cos\nsystem\n is prose", b"\x80\x09rubbish"):
        assert not [s.name for s in all_scanners() if s.name == "pickle" and s.detect(data, len(data))]


def test_a_payload_after_a_benign_pickle_is_found_past_the_first_one():
    first = pickle.dumps({"weights": [1.0, 2.0]}, protocol=2)
    data = first + pickle.dumps(MaliciousPayload(), protocol=2)
    (finding,) = [f for f in scan_bytes(data) if f.severity is Severity.CRITICAL]
    assert finding.offset >= len(first)
    assert "posix.system" in finding.detail


def test_the_memo_carries_a_global_into_the_next_pickle():
    # pickle 1 stores os.system in the memo; pickle 2 calls it through BINGET
    first = b"\x80\x02cos\nsystem\nq\x00N."
    second = b"\x80\x02h\x00(X\x02\x00\x00\x00idtR."
    findings = scan_bytes(first + second)
    called = [f for f in findings if "is called" in f.detail]
    assert called and called[0].offset == len(first) + _offset_of(second, "REDUCE")


def test_a_truncated_pickle_is_judged_on_what_ran_before_the_break():
    payload = pickle.dumps([MaliciousPayload(), "x" * 50], protocol=2)
    cut = payload[: payload.index(b"x" * 10)]
    findings = scan_bytes(cut)
    assert worst(findings) is Severity.CRITICAL
    assert "pickle.truncated" in {f.rule for f in findings}
    # cut before the GLOBAL: a load imports and calls nothing, nothing critical
    benign_prefix = payload[: payload.index(b"posix")]
    findings = scan_bytes(benign_prefix + b"\x00" * 5000)
    assert findings and worst(findings) is Severity.MEDIUM
    assert {f.rule for f in findings} == {"pickle.truncated"}


def test_an_unknown_callable_is_for_review_and_a_user_allowlist_trusts_it():
    data = b"\x80\x02cmylab.models\nTinyNet\n)\x81}X\x01\x00\x00\x00wK\x01sb."
    (finding,) = scan_bytes(data)
    assert (finding.severity, finding.rule) == (Severity.MEDIUM, "pickle.callable.unknown")
    assert "mylab.models.TinyNet" in finding.detail
    assert scan_bytes(data, allow=("mylab.models.*",)) == []
    assert scan_bytes(data, allow=("other.*",)) != []


def test_a_user_allowlist_never_trusts_a_dangerous_callable():
    data = pickle.dumps(MaliciousPayload(), protocol=2)
    findings = scan_bytes(data, allow=("*", "posix.*", "posix.system"))
    assert worst(findings) is Severity.CRITICAL


def test_names_built_on_the_stack_are_resolved():
    findings = scan_bytes(dict((label, data) for label, _, data in MALICIOUS)["stack-global-rot13-names"])
    assert any("os.system" in f.detail for f in findings if f.rule == "pickle.callable.dangerous")
    findings = scan_bytes(dict((label, data) for label, _, data in MALICIOUS)["stack-global-computed-name"])
    assert "pickle.global.dynamic" in {f.rule for f in findings}


def test_ext_codes_and_mutated_globals_have_their_own_rules():
    by_label = {label: data for label, _, data in MALICIOUS}
    assert {f.rule for f in scan_bytes(by_label["ext1-code"])} >= {"pickle.ext-code"}
    rules = {f.rule for f in scan_bytes(by_label["build-patches-module"])}
    assert "pickle.global.mutated" in rules
    rules = {f.rule for f in scan_bytes(by_label["build-setstate-os-system"])}
    assert "pickle.state.dunder" in rules


def test_a_pickle_in_a_pytorch_zip_member_not_named_data_pkl_is_found():
    by_label = {label: data for label, _, data in MALICIOUS}
    findings = scan_bytes(by_label["pytorch-zip-other-member"], "pytorch_model.bin")
    critical = [f for f in findings if f.severity is Severity.CRITICAL]
    assert critical and {f.member for f in critical} == {"archive/extra/aux.bin"}
    assert {f.format for f in critical} == {"pytorch-zip"}


def test_joblib_array_data_is_skipped_as_joblib_reads_it():
    np = pytest.importorskip("numpy")
    joblib = pytest.importorskip("joblib")
    import io

    out = io.BytesIO()
    # array bytes that would parse as a pickle opcode stream if they were not skipped
    joblib.dump([np.frombuffer(b"cos\nsystem\n(S'id'\ntR." * 100, dtype=np.uint8), MaliciousPayload()], out)
    data = out.getvalue()
    findings = scan_bytes(data, "model.joblib")
    assert [f.rule for f in findings] == ["pickle.callable.dangerous"]
    assert "posix.system" in findings[0].detail and findings[0].offset > 2100


def test_an_object_npy_payload_is_found_after_its_header():
    by_label = {label: data for label, _, data in MALICIOUS}
    data = by_label["npy-object-array"]
    findings = scan_bytes(data, "weights.npy")
    critical = [f for f in findings if f.severity is Severity.CRITICAL]
    assert critical and all(f.offset > 64 and f.format == "numpy" for f in critical)


def test_a_storage_that_starts_like_a_pickle_is_not_scanned_as_one():
    # float weights whose first bytes happen to read \x80\x02 (PROTO 2): raw data, no import
    from tests.support.scan_corpus import benign_torch_members, torch_zip

    members = {**benign_torch_members(), "data/0": b"\x80\x02" + bytes(range(256)) * 64}
    findings = scan_bytes(torch_zip(members), "pytorch_model.bin")
    assert findings == []


def test_a_dangerous_callable_reached_through_an_allowed_module_is_critical():
    by_label = {label: data for label, _, data in MALICIOUS}
    (finding,) = [f for f in scan_bytes(by_label["attribute-walk-torch-os-system"]) if f.rule == "pickle.callable.dangerous"]
    assert finding.detail.startswith("torch.os.system is called")
    assert "reaches os through torch" in finding.detail


def test_a_callable_handed_to_an_allowed_constructor_is_judged_as_called():
    # NumPy's __randomstate_ctor calls its second argument: an unknown function there is
    # called on load, a review; the allowed MT19937 class there is not
    ctor = b"cnumpy.random._pickle\n__randomstate_ctor\n"
    unknown = b"\x80\x02" + ctor + b"(X\x01\x00\x00\x00xcmylab.rng\nmake\ntR."
    (finding,) = scan_bytes(unknown)
    assert (finding.rule, finding.detail.split()[0]) == ("pickle.callable.unknown", "mylab.rng.make")
    assert "is called" in finding.detail
    allowed = b"\x80\x02" + ctor + b"(cnumpy.random._mt19937\nMT19937\ncnumpy.random._pickle\n__bit_generator_ctor\ntR."
    assert scan_bytes(allowed) == []


def test_hostile_bytes_are_findings_never_a_crash():
    # seeded mutations (bytes changed, cut, inserted) of the corpus: each scan returns
    import random

    corpus = MALICIOUS + [c for c in benign_corpus() if len(c[2]) < 100_000]
    rng = random.Random(16)
    for _ in range(400):
        label, name, data = rng.choice(corpus)
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 6)):
            choice = rng.random()
            if choice < 0.5 and mutated:
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            elif choice < 0.75:
                mutated = mutated[: rng.randrange(len(mutated) + 1)]
            else:
                at = rng.randrange(len(mutated) + 1)
                mutated[at:at] = rng.randbytes(rng.randint(1, 8))
        scan_bytes(bytes(mutated), name)  # raises on a crash


def test_bytes_after_the_last_pickle_are_noted_not_judged():
    data = pickle.dumps({"weights": [1.0]}, protocol=2) + b"\x00\x01 raw tail, not a pickle"
    findings = scan_bytes(data)
    assert [(f.severity, f.rule) for f in findings] == [(Severity.INFO, "pickle.trailing-data")]
