"""The environment of an ``ocimodel`` subprocess that runs as a user would run it.

Tests that run the CLI in a subprocess drop every ``OCIMODEL_*`` variable of the test
run (a user's own settings, and the ones conftest sets for the library calls of the tests,
such as ``OCIMODEL_RETRIES=1``), so the command runs with its defaults. Two settings stay:
the settle times that conftest shortens for the whole suite (``OCIMODEL_TAG_SETTLE``,
``OCIMODEL_REFERRERS_SETTLE``). They only make a version-tag or referrers-index write wait
(2 x the setting) for racing writers that these tests do not have; with the defaults
every CLI push of a version tag to the registry would wait 2 s for nothing. The tests of
racing writers set their own (tests/test_version_races.py, tests/test_referrers.py).
"""

from __future__ import annotations

import os

__all__ = ["KEPT_SETTINGS", "user_env"]

KEPT_SETTINGS = ("OCIMODEL_TAG_SETTLE", "OCIMODEL_REFERRERS_SETTLE")


def user_env(**extra: str) -> dict[str, str]:
    """``os.environ`` without ``OCIMODEL_*`` (but the settle times), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCIMODEL_") or k in KEPT_SETTINGS}
    env.update(extra)
    return env
