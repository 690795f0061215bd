"""Which tags are versions (immutable) and in which order `versions` lists them, without a
registry: the rules of versiontags.py, then the same on an OCI layout end to end.

What a user relies on: release candidates sort by their number (rc.9 before rc.10) and
before the release; 1.2 before 1.10; dates in calendar order; a tag that is no version and
no date (``7b-instruct``) moves like ``latest``, while a version refuses another model."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest

import ocimodel
from ocimodel.api import functions as reg
from ocimodel.errors import VersionExists
from ocimodel.versiontags import is_version_tag, version_key

ORDER = ["1.0-rc.9", "1.0-rc.10", "1.0", "1.2", "1.10"]


def test_versions_sort_by_number_and_release_candidates_first():
    for seed in range(5):
        shuffled = random.Random(seed).sample(ORDER, len(ORDER))
        assert sorted(shuffled, key=version_key) == ORDER
    # Other spellings of pre-releases order the same way; equal versions keep a fixed order.
    assert sorted(["1.0", "1.0.0-beta.2", "1.0a1", "v1.0.0-rc1", "0.9"], key=version_key) == [
        "0.9", "1.0a1", "1.0.0-beta.2", "v1.0.0-rc1", "1.0"]
    assert sorted(["v1.0", "1.0.0", "1.0"], key=version_key) == ["1.0", "1.0.0", "v1.0"]


def test_dates_are_versions_in_calendar_order():
    dates = ["2023-12-31", "2024-02", "2024-02-10", "2024-10-01", "2024-11", "2025-01-01"]
    assert all(is_version_tag(d) for d in dates)
    assert sorted(random.Random(0).sample(dates, len(dates)), key=version_key) == dates


@pytest.mark.parametrize(
    "tag",
    ["1", "1.2", "1.10", "v3", "V3", "1.0rc1", "1.0-rc.1", "1.0.0-rc.1", "v3.0.0-rc1", "1.0.0-beta.2",
     "1.0.dev1", "1.0+build.7", "2024-05-01", "20240501"],
)
def test_version_tags(tag):
    assert is_version_tag(tag)


@pytest.mark.parametrize(
    "tag",
    ["latest", "production", "champion", "7b-instruct", "3-small", "1.0-foo", "1.2.3-SNAPSHOT", "2024-13-45",
     "sha256-" + "a" * 64, "v", ""],
)
def test_alias_tags(tag):
    assert not is_version_tag(tag)
    assert version_key(tag) > version_key("99999")  # aliases after every version


def _other_model(model_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "other"
    shutil.copytree(model_dir, copy)
    (copy / "empty.txt").write_bytes(b"not empty\n")
    return copy


def test_layout_lists_versions_in_order_and_moves_a_non_version_tag(model_dir, tmp_path):
    store = f"oci:{tmp_path / 'store'}"
    for tag in ["1.10", "1.0", "2024-05-01", "1.0-rc.10", "1.2", "1.0-rc.9", "7b-instruct"]:
        ocimodel.push(model_dir, f"{store}:{tag}")
    listed = reg.versions(store)
    assert [v.tag for v in listed.versions] == [*ORDER, "2024-05-01"]
    assert "7b-instruct" in listed.aliases

    other = _other_model(model_dir, tmp_path)
    moved = ocimodel.push(other, f"{store}:7b-instruct")  # an alias: moved on purpose
    assert ocimodel.inspect(f"{store}:7b-instruct").digest == moved.digest
    with pytest.raises(VersionExists, match="versions are immutable"):
        ocimodel.push(other, f"{store}:1.0-rc.10")
