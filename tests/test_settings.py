"""OCIMODEL_* environment variables: a value we cannot read is a usage error naming the
variable (exit 2 at the CLI), never a silent fallback to the default."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ocimodel import settings
from ocimodel.errors import UsageError
from ocimodel.transport.retry import RetryPolicy


def test_unset_and_empty_give_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OCIMODEL_RETRIES", raising=False)
    assert settings.RETRIES.integer(5, low=1, high=100) == 5
    monkeypatch.setenv("OCIMODEL_RETRIES", "")
    assert settings.RETRIES.integer(5, low=1, high=100) == 5


@pytest.mark.parametrize("value", ["five", "0", "1e3", "-2", "101"])
def test_bad_retries_name_the_variable(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("OCIMODEL_RETRIES", value)
    with pytest.raises(UsageError, match="OCIMODEL_RETRIES"):
        RetryPolicy.from_environment()


def test_good_values_are_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCIMODEL_RETRIES", "3")
    monkeypatch.setenv("OCIMODEL_RETRY_DELAY", "0.25")
    policy = RetryPolicy.from_environment()
    assert (policy.attempts, policy.base_delay) == (3, 0.25)


@pytest.mark.parametrize("value", ["nan", "inf", "soon", "-1"])
def test_bad_numbers_are_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("OCIMODEL_READ_TIMEOUT", value)
    with pytest.raises(UsageError, match="OCIMODEL_READ_TIMEOUT"):
        settings.READ_TIMEOUT.number(300.0, low=0.1, high=86400)


def test_tag_settle_is_its_own_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """Version tags no longer borrow the referrers index's settle time: a slow registry's
    tag writes can be given more time without slowing every referrers update."""
    monkeypatch.delenv("OCIMODEL_TAG_SETTLE", raising=False)
    monkeypatch.setenv("OCIMODEL_REFERRERS_SETTLE", "7")
    assert settings.tag_settle() == 1.0
    monkeypatch.setenv("OCIMODEL_TAG_SETTLE", "2.5")
    assert settings.tag_settle() == 2.5
    for bad in ("-0.1", "60.5", "slow"):
        monkeypatch.setenv("OCIMODEL_TAG_SETTLE", bad)
        with pytest.raises(UsageError, match="OCIMODEL_TAG_SETTLE"):
            settings.check_all()


@pytest.mark.parametrize(("value", "expected"), [("1", True), ("yes", True), ("TRUE", True), ("0", False), ("off", False)])
def test_flags(monkeypatch: pytest.MonkeyPatch, value: str, expected: bool) -> None:
    monkeypatch.setenv("OCIMODEL_PLAIN_HTTP", value)
    assert settings.PLAIN_HTTP.flag() is expected


def test_a_bad_flag_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCIMODEL_BLOB_CACHE", "maybe")
    with pytest.raises(UsageError, match="OCIMODEL_BLOB_CACHE"):
        settings.BLOB_CACHE.flag()


@pytest.mark.parametrize(
    ("variable", "value"),
    [("OCIMODEL_RETRIES", "five"), ("OCIMODEL_PLAIN_HTTP", "perhaps"), ("OCIMODEL_DEBUG", "loud"), ("OCIMODEL_NO_CACHE", "2"),
     ("OCIMODEL_TAG_SETTLE", "61")],
)
@pytest.mark.slow
def test_cli_exits_2_naming_the_variable(tmp_path: Path, variable: str, value: str) -> None:
    """A command that reads the variable stops with a usage error before it does anything."""
    model = tmp_path / "m"
    model.mkdir()
    (model / "weights.bin").write_bytes(b"x" * 10)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCIMODEL_")}
    env[variable] = value
    proc = subprocess.run(
        [sys.executable, "-m", "ocimodel", "push", str(model), f"oci:{tmp_path / 'store'}:1.0"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert variable in proc.stderr
    assert not (tmp_path / "store").exists()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the XDG paths are Linux's")
def test_the_cache_directory_stays_where_it_was_on_linux(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Users' caches must still be found after the move to platformdirs: the directory is
    ``OCIMODEL_CACHE_DIR``, else ``$XDG_CACHE_HOME/ocimodel``, else ``~/.cache/ocimodel``."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("OCIMODEL_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert settings.cache_dir() == tmp_path / "home" / ".cache" / "ocimodel"
    monkeypatch.setenv("XDG_CACHE_HOME", "")
    assert settings.cache_dir() == tmp_path / "home" / ".cache" / "ocimodel"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert settings.cache_dir() == tmp_path / "xdg" / "ocimodel"
    monkeypatch.setenv("OCIMODEL_CACHE_DIR", str(tmp_path / "mine"))
    assert settings.cache_dir() == tmp_path / "mine"
    # The caches are under it (names unchanged too).
    from ocimodel.packaging.blobcache import BlobCache

    assert BlobCache().root == tmp_path / "mine" / "blobs"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "conf"))
    assert settings.config_dir() == tmp_path / "conf" / "ocimodel"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    assert settings.config_dir() == tmp_path / "home" / ".config" / "ocimodel"


def test_the_certs_d_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("OCIMODEL_CERTS_D", raising=False)
    assert settings.certs_d() == Path("/etc/docker/certs.d")
    monkeypatch.setenv("OCIMODEL_CERTS_D", str(tmp_path))
    assert settings.certs_d() == tmp_path


def test_environment_credentials_go_only_to_the_registry_named_by_OCIMODEL_REGISTRY(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from ocimodel.transport.connection import ConnectionOptions

    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))  # no stored credentials anywhere
    monkeypatch.setenv("OCIMODEL_USERNAME", "ci")
    monkeypatch.setenv("OCIMODEL_PASSWORD", "secret")
    monkeypatch.setenv("OCIMODEL_REGISTRY", "registry.example:5000")
    options = ConnectionOptions()
    found = options.credentials_for("registry.example:5000")
    assert found is not None and found.username == "ci"
    assert options.credentials_for("other.example") is None
