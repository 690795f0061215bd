"""What a tag means to the model registry: a version (immutable, ordered) or an alias
(``latest``, ``production``: moved on purpose). Its own module so that push, tag and copy
can check a version tag without loading the lineage and model-card code."""

from __future__ import annotations

import re

_VERSION_TAG = re.compile(r"^[vV]?[0-9]")


def is_version_tag(tag: str) -> bool:
    """A tag that starts with a digit, or v and a digit: ``1``, ``1.2``, ``2024-05-01``,
    ``v3.0.0-rc1``. Any other tag (latest, production, champion) is an alias."""
    return bool(_VERSION_TAG.match(tag))


def version_key(tag: str) -> tuple:
    """Semver-aware order: 1.2 < 1.10 < 2.0; 1.0-rc1 < 1.0; text parts compare as text."""
    base, _, pre = tag.removeprefix("v").partition("-")
    parts = [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"[.+_]", base)]
    while len(parts) > 1 and parts[-1] == (0, 0, ""):
        parts.pop()  # 1.0.0 == 1.0 == 1
    # A release sorts after its pre-releases (1.0-rc1 < 1.0).
    return (tuple(parts), (1, "") if not pre else (0, pre))
