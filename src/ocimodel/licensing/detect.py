"""Licenses identified by the text of a file, whatever its name.

No license-text package is a dependency: the full reference texts (SPDX license-list data,
scancode's rules) are megabytes, and SPDX lists none of the ML licenses that models ship
with most (OpenRAIL, Llama, Gemma; tests/test_licensing_detect.py checks this against the
installed list). A license text is instead recognised by the phrases that only it
contains, in the text normalised (case, whitespace, quotes and dashes folded): the title a
license must carry, a phrase of its body (so a NOTICE or README that names the license is
not taken for its text), and for short permissive texts without a title (MIT, BSD) their
characteristic clauses. ``confidence`` is the share of the license's phrases found; 1.0
means every one. The licenses without SPDX ids get ``LicenseRef-`` ids of ours
(LICENSE_REFS)."""

from __future__ import annotations

import re
from dataclasses import dataclass

# Our ids for licenses SPDX does not list, by the Hugging Face `license:` value that names
# them (so a README front matter maps to the same id as the text).
LICENSE_REFS: dict[str, str] = {
    "openrail": "LicenseRef-openrail",
    "openrail++": "LicenseRef-openrail-plus-plus",
    "creativeml-openrail-m": "LicenseRef-creativeml-openrail-m",
    "bigscience-openrail-m": "LicenseRef-bigscience-openrail-m",
    "bigscience-bloom-rail-1.0": "LicenseRef-bigscience-bloom-rail-1.0",
    "bigcode-openrail-m": "LicenseRef-bigcode-openrail-m",
    "llama2": "LicenseRef-llama2-community-license",
    "llama3": "LicenseRef-llama3-community-license",
    "llama3.1": "LicenseRef-llama3.1-community-license",
    "llama3.2": "LicenseRef-llama3.2-community-license",
    "llama3.3": "LicenseRef-llama3.3-community-license",
    "gemma": "LicenseRef-gemma-terms-of-use",
}

# (id, phrases), most specific first: the first license whose title phrase is found wins,
# so "Llama 3.1" is tried before "Llama 3", CC BY-NC-SA before CC BY-NC before CC BY, and
# the ML licenses before Apache and CC (a RAIL text names the Apache license it departs from).
# A title alone is a mention (a NOTICE, a README line): each ML license also needs a phrase
# of its body, so only the whole text reaches confidence 1.0.
_LLAMA_DOCS = "means the specifications, manuals and documentation accompanying "
_RAIL_USE = "you agree not to use the model or derivatives of the model"  # its Attachment A
# The opening of every CC 4.0 public license (not Creative Commons' preamble, which many
# copies leave out).
_CC_BODY = "by exercising the licensed rights (defined below), you accept and agree"
_SIGNATURES: list[tuple[str, tuple[str, ...]]] = [
    ("LicenseRef-llama3.3-community-license", ("llama 3.3 community license agreement", _LLAMA_DOCS + "llama 3.3")),
    ("LicenseRef-llama3.2-community-license", ("llama 3.2 community license agreement", _LLAMA_DOCS + "llama 3.2")),
    ("LicenseRef-llama3.1-community-license", ("llama 3.1 community license agreement", _LLAMA_DOCS + "llama 3.1")),
    ("LicenseRef-llama3-community-license", ("meta llama 3 community license agreement", _LLAMA_DOCS + "meta llama 3")),
    ("LicenseRef-llama2-community-license", ("llama 2 community license agreement", _LLAMA_DOCS + "llama 2")),
    ("LicenseRef-gemma-terms-of-use", ("gemma terms of use", "(i) modifications to gemma, (ii) works based on gemma")),
    ("LicenseRef-openrail-plus-plus", ("creativeml open rail++-m license", _RAIL_USE)),
    ("LicenseRef-creativeml-openrail-m", ("creativeml open rail-m", _RAIL_USE)),
    ("LicenseRef-bigscience-bloom-rail-1.0", ("bigscience rail license v1.0", "bigscience bloom models", _RAIL_USE)),
    ("LicenseRef-bigscience-openrail-m", ("bigscience open rail-m license", _RAIL_USE)),
    # No real text of it is in the tests: its title alone.
    ("LicenseRef-bigcode-openrail-m", ("bigcode open rail-m license agreement",)),
    # Any other Open RAIL-M (AI Pubs, or one a model adapted): its title and its use clauses.
    ("LicenseRef-openrail", ("open rail", "use-based restrictions", "you agree not to use the model or")),
    ("CC-BY-NC-SA-4.0", ("attribution-noncommercial-sharealike 4.0 international", _CC_BODY)),
    ("CC-BY-NC-ND-4.0", ("attribution-noncommercial-noderivatives 4.0 international", _CC_BODY)),
    ("CC-BY-NC-4.0", ("attribution-noncommercial 4.0 international", _CC_BODY)),
    ("CC-BY-SA-4.0", ("attribution-sharealike 4.0 international", _CC_BODY)),
    ("CC-BY-ND-4.0", ("attribution-noderivatives 4.0 international", _CC_BODY)),
    ("CC-BY-4.0", ("attribution 4.0 international", _CC_BODY)),
    ("CC0-1.0", ("cc0 1.0 universal", "statement of purpose")),
    ("Apache-2.0", ("apache license", "version 2.0, january 2004")),
    ("AGPL-3.0-only", ("gnu affero general public license", "version 3, 19 november 2007")),
    ("LGPL-3.0-only", ("gnu lesser general public license", "version 3, 29 june 2007")),
    ("LGPL-2.1-only", ("gnu lesser general public license", "version 2.1, february 1999")),
    ("GPL-3.0-only", ("gnu general public license", "version 3, 29 june 2007")),
    ("GPL-2.0-only", ("gnu general public license", "version 2, june 1991")),
    ("MPL-2.0", ("mozilla public license version 2.0",)),
    ("BSD-3-Clause", ("redistribution and use in source and binary forms",
                      "neither the name of", "in no event shall")),
    ("BSD-2-Clause", ("redistribution and use in source and binary forms", "in no event shall")),
    ("MIT", ("permission is hereby granted, free of charge, to any person obtaining a copy",
             "the above copyright notice and this permission notice shall be included")),
]
# BSD-2-Clause's phrases are all in BSD-3-Clause: it is BSD-2 only without "neither the name of".
_EXCLUDES = {"BSD-2-Clause": "neither the name of"}

# Names a license file usually has; any other file is read only when it is small text that
# starts like a license (see looks_like_license).
LICENSE_NAMES = re.compile(r"^(licen[cs]e|copying|notice|copyright|use[_-]?policy)([._-].*)?$", re.IGNORECASE)
MAX_LICENSE_BYTES = 512 * 1024
_HEAD = 2000  # characters of normalised text in which a license's first phrase must be


@dataclass(frozen=True)
class Detected:
    license: str
    confidence: float


def normalize(text: str) -> str:
    text = text.lower()
    text = re.sub(r"[\u2018\u2019\u201c\u201d\"'`]", "", text)
    text = re.sub(r"[\u2010-\u2015]", "-", text)
    text = re.sub(r"[#*_>|]", " ", text)  # markdown decoration around titles
    return re.sub(r"\s+", " ", text)


def candidates(text: str) -> list[Detected]:
    """Every license whose title opens the text, in signature order, with the share of its
    phrases found: what identify() chooses from (and what a test checks no other license
    fully matches)."""
    norm = normalize(text)
    found_all = []
    for license_id, phrases in _SIGNATURES:
        # The first phrase (the title, for most) must open the text: the GPL names the
        # LGPL near its end, and a README may mention a license it is not.
        if phrases[0] not in norm[:_HEAD]:
            continue
        exclude = _EXCLUDES.get(license_id)
        if exclude and exclude in norm:
            continue
        found = sum(1 for p in phrases if p in norm)
        found_all.append(Detected(license_id, round(found / len(phrases), 2)))
    return found_all


def identify(text: str) -> Detected | None:
    """The license whose phrases the text holds (the first with all of them; else the one
    with the largest share); None when no license's title opens the text."""
    best: Detected | None = None
    for found in candidates(text):
        if found.confidence == 1.0:
            return found
        if best is None or found.confidence > best.confidence:
            best = found
    return best


def from_hf_license(value: str) -> str:
    """The SPDX expression (or LicenseRef) for a Hugging Face `license:` value; the value
    itself when it is neither (judged as not an SPDX expression)."""
    key = value.strip().lower()
    if key in LICENSE_REFS:
        return LICENSE_REFS[key]
    from packaging.licenses import InvalidLicenseExpression, canonicalize_license_expression

    try:
        return canonicalize_license_expression(value.strip())
    except InvalidLicenseExpression:
        return value.strip()
