"""Licenses identified by their real texts (tests/data/licenses/SOURCES.md names each source)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ocimodel.licensing.detect import LICENSE_REFS, candidates, from_hf_license, identify

DATA = Path(__file__).parent / "data" / "licenses"

EXPECTED = {
    "apache-2.0-LICENSE": "Apache-2.0",
    "bsd-3-clause-LICENSE": "BSD-3-Clause",
    "cc0-1.0-LICENSE": "CC0-1.0",
    "gpl-3.0-COPYING": "GPL-3.0-only",  # it names the LGPL near its end: not LGPL
    "mpl-2.0-LICENSE": "MPL-2.0",
    "mit-LICENSE": "MIT",
    "cc-by-nc-4.0-LICENSE_weights": "CC-BY-NC-4.0",
    "cc-by-4.0-legalcode-LICENSE-CC-BY-4.0": "CC-BY-4.0",  # the legal code alone, no CC preamble
    "cc-by-sa-4.0-LICENSE-CC-BY-SA-4.0": "CC-BY-SA-4.0",
    "cc-by-nc-sa-4.0-LICENSE-CC-BY-NC-SA-4.0": "CC-BY-NC-SA-4.0",  # not CC-BY-NC, nor CC-BY-SA
    "creativeml-openrail-m-LICENSE": "LicenseRef-creativeml-openrail-m",
    "llama2-LICENSE": "LicenseRef-llama2-community-license",
    "llama3-LICENSE": "LicenseRef-llama3-community-license",
    "llama3_1-LICENSE": "LicenseRef-llama3.1-community-license",
    "llama3_2-LICENSE": "LicenseRef-llama3.2-community-license",
    "llama3_3-LICENSE": "LicenseRef-llama3.3-community-license",
    "gemma-GEMMA_TERMS_OF_USE.txt": "LicenseRef-gemma-terms-of-use",
    "bigscience-bloom-rail-1.0-BLOOMLICENSE.txt": "LicenseRef-bigscience-bloom-rail-1.0",  # opens with a BOM
    "openrail-plus-plus-m-sd2-LICENSE-MODEL": "LicenseRef-openrail-plus-plus",
    "openrail-plus-plus-m-sdxl-LICENSE-SDXL1.0": "LicenseRef-openrail-plus-plus",
    "openrail-m-ai-pubs-model-license.md": "LicenseRef-openrail",  # an Open RAIL-M of no family of ours
}
# Every Open RAIL-M is also an Open RAIL: the generic one matches the specific texts whole,
# which is why the specific ones are tried first.
_RAIL = {"LicenseRef-creativeml-openrail-m", "LicenseRef-openrail-plus-plus", "LicenseRef-bigscience-openrail-m"}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_text_identified(name):
    found = identify((DATA / name).read_text(encoding="utf-8"))
    assert found is not None and found.license == EXPECTED[name] and found.confidence == 1.0


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_no_other_license_fully_matches_a_real_text(name):
    # Whatever the order of the signatures: the BLOOM RAIL names the Apache 2.0 license in
    # its first paragraph, the RAIL-M texts share clauses; none is wholly another license.
    whole = {c.license for c in candidates((DATA / name).read_text(encoding="utf-8")) if c.confidence == 1.0}
    assert whole == {EXPECTED[name]} | ({"LicenseRef-openrail"} if EXPECTED[name] in _RAIL else set())


def test_a_license_named_is_not_its_text():
    # A NOTICE or a README line names the license without being it: never confidence 1.0.
    for line in ("Gemma is provided under and subject to the Gemma Terms of Use found at ai.google.dev/gemma/terms",
                 "# BigScience RAIL License v1.0\nThis model is released under the BigScience RAIL License v1.0.",
                 "Llama 3.1 is licensed under the Llama 3.1 Community License Agreement, Copyright (c) Meta Platforms, Inc.",
                 "CreativeML Open RAIL++-M License: see https://huggingface.co/stabilityai/stable-diffusion-2/blob/main/LICENSE-MODEL",
                 "The weights are licensed under Creative Commons Attribution-NonCommercial 4.0 International."):
        found = identify(line)
        assert found is not None and found.confidence < 1.0, line


def test_ml_license_ids_are_not_on_the_spdx_list():
    # Our LicenseRef- ids stand for licenses SPDX does not list: when a packaging upgrade
    # brings one onto the list, this fails, and the SPDX id should replace ours.
    from packaging.licenses import InvalidLicenseExpression, canonicalize_license_expression

    for ref in set(LICENSE_REFS.values()):
        name = ref.removeprefix("LicenseRef-")
        for spelling in (name, name.replace("-license", ""), name.replace("openrail", "OpenRAIL")):
            with pytest.raises(InvalidLicenseExpression):
                canonicalize_license_expression(spelling)
        assert canonicalize_license_expression(ref) == ref  # and ours is a valid expression
    for spdx_like in ("CreativeML-OpenRAIL-M", "OpenRAIL", "OpenRAIL-M", "BigScience-OpenRAIL-M",
                      "BigScience-RAIL-1.0", "Llama-2", "Gemma"):
        with pytest.raises(InvalidLicenseExpression):
            canonicalize_license_expression(spdx_like)


def test_every_shipped_text_is_tested():
    assert {p.name for p in DATA.iterdir()} - {"SOURCES.md"} == set(EXPECTED)
    sources = (DATA / "SOURCES.md").read_text()
    assert all(name in sources for name in EXPECTED)  # each one's source named


def test_bsd_2_is_not_bsd_3_and_prose_is_nothing():
    bsd3 = (DATA / "bsd-3-clause-LICENSE").read_text()
    start = bsd3.index("3. Neither")
    end = bsd3.index("THIS SOFTWARE")
    assert identify(bsd3[:start] + bsd3[end:]).license == "BSD-2-Clause"
    assert identify("This model card describes a model. It was trained on text.") is None
    # A README that mentions a license later on is not that license's text.
    assert identify("# My model\n" + "Some words about training. " * 100 + "See the Apache License, Version 2.0, January 2004") is None


def test_hugging_face_license_values():
    assert from_hf_license("apache-2.0") == "Apache-2.0"
    assert from_hf_license("llama3.1") == "LicenseRef-llama3.1-community-license"
    assert from_hf_license("creativeml-openrail-m") == "LicenseRef-creativeml-openrail-m"
    assert from_hf_license("gemma") == "LicenseRef-gemma-terms-of-use"
    assert from_hf_license("bigscience-bloom-rail-1.0") == "LicenseRef-bigscience-bloom-rail-1.0"
    assert from_hf_license("openrail++") == "LicenseRef-openrail-plus-plus"
    assert from_hf_license("other") == "other"


def test_local_directory_report_kitfile_front_matter_and_a_contradiction(tmp_path):
    import ocimodel

    (tmp_path / "LICENSE.txt").write_text((DATA / "apache-2.0-LICENSE").read_text())
    (tmp_path / "TERMS").write_text((DATA / "llama3_2-LICENSE").read_text())  # any name: found by its text
    (tmp_path / "README.md").write_text("---\nlicense: apache-2.0\nlibrary_name: x\n---\n# A model\n")
    (tmp_path / "Kitfile").write_text("manifestVersion: 1.0.0\npackage:\n  name: m\n  license: Apache-2.0\n")
    (tmp_path / "weights.bin").write_bytes(b"\0" * 64)
    report = ocimodel.license_report(tmp_path)  # no registry: the directory's own files
    assert report.declared == ["Apache-2.0"]
    assert [(d.file, d.license, d.how) for d in report.detected] == [
        ("LICENSE.txt", "Apache-2.0", "text"), ("README.md", "Apache-2.0", "front-matter"),
        ("TERMS", "LicenseRef-llama3.2-community-license", "text")]
    assert report.findings == [
        "TERMS is LicenseRef-llama3.2-community-license (its text), which the declared license Apache-2.0 does not name"]


def test_a_missing_path_is_a_usage_error_not_a_reference(tmp_path):
    import ocimodel
    from ocimodel.errors import UsageError

    with pytest.raises(UsageError, match="does not exist"):
        ocimodel.license_report(f"{tmp_path}/typo")
