"""The ``OCIMODEL_*`` settings (behaviour, not secrets) and the directories ocimodel keeps
files in, read in one place.

Credentials and secrets (``OCIMODEL_USERNAME``, ``OCIMODEL_PASSWORD``,
``OCIMODEL_KEY_PASSWORD``, ``OCIMODEL_IDENTITY_TOKEN``) and the TLS options the command
line also takes (``OCIMODEL_CA_FILE``, ``OCIMODEL_CLIENT_CERT``/``KEY``) are read where
they are used, so that a secret never passes through a general-purpose reader that might
put its value in a message.

A setting the user gave but that we cannot read is a usage error naming the variable: a
typo in ``OCIMODEL_RETRIES=five`` used to be ignored silently, so the user believed a
setting was in force that was not. An empty value means "not set", as shells make it easy
to export an empty variable by accident.

Values are read when asked for, not at import: tests and long-lived processes change the
environment, and a command must see the environment it was started with, not the one the
module saw first.

Variables of other tools are read where those tools' rules live: docker's
``DOCKER_CONFIG`` in :mod:`ocimodel.transport.credentials` (docker's lookup order), the
CI's variables for provenance and keyless identity in :mod:`ocimodel.trust` (they are
data about the build, and tokens), git's in :mod:`ocimodel.metadata.sources` (handed on
to git). ``XDG_CACHE_HOME`` and the like are platformdirs' to read (:func:`cache_dir`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ocimodel.errors import UsageError

# The spellings the option parser accepts for a flag's environment variable
# (OCIMODEL_INSECURE is read by it too): one variable must not be valid to one reader only.
_TRUE = ("1", "true", "t", "yes", "y", "on")
_FALSE = ("0", "false", "f", "no", "n", "off")


@dataclass(frozen=True)
class Setting:
    """One environment variable: its name, what it means (for ``--help`` and docs) and
    the unit or form of its value."""

    name: str
    meaning: str

    def raw(self) -> str | None:
        value = os.environ.get(self.name)
        return value if value not in (None, "") else None

    def _bad(self, value: str, expected: str) -> UsageError:
        shown = value if len(value) <= 40 else value[:40] + "..."
        return UsageError(
            f"{self.name}={shown!r} is not valid: expected {expected}",
            hint=f"fix or unset {self.name} ({self.meaning})",
        )

    def flag(self, default: bool = False) -> bool:
        value = self.raw()
        if value is None:
            return default
        if value.lower() in _TRUE:
            return True
        if value.lower() in _FALSE:
            return False
        raise self._bad(value, "1 or 0 (true/false, yes/no, on/off)")

    def number(self, default: float, *, low: float, high: float) -> float:
        value = self.raw()
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            raise self._bad(value, f"a number between {low:g} and {high:g}") from None
        if not low <= number <= high or number != number:  # NaN compares false both ways
            raise self._bad(value, f"a number between {low:g} and {high:g}")
        return number

    def integer(self, default: int, *, low: int, high: int) -> int:
        value = self.raw()
        if value is None:
            return default
        try:
            number = int(value, 10)
        except ValueError:
            raise self._bad(value, f"a whole number between {low} and {high}") from None
        if not low <= number <= high:
            raise self._bad(value, f"a whole number between {low} and {high}")
        return number

    def text(self, default: str | None = None) -> str | None:
        value = self.raw()
        return default if value is None else value

    def choice(self, default: str, choices: tuple[str, ...]) -> str:
        value = self.raw()
        if value is None:
            return default
        if value.lower() not in choices:
            raise self._bad(value, " or ".join(choices))
        return value.lower()


PLAIN_HTTP = Setting("OCIMODEL_PLAIN_HTTP", "talk HTTP instead of HTTPS to every registry")
INSECURE = Setting("OCIMODEL_INSECURE", "do not verify TLS certificates")
DEBUG = Setting("OCIMODEL_DEBUG", "show tracebacks and transport logs")
RETRIES = Setting("OCIMODEL_RETRIES", "tries in all for a request that may pass when repeated")
RETRY_DELAY = Setting("OCIMODEL_RETRY_DELAY", "base seconds between tries, doubled each time")
READ_TIMEOUT = Setting("OCIMODEL_READ_TIMEOUT", "seconds a read may wait for its next byte")
REQUEST_TIMEOUT = Setting(
    "OCIMODEL_REQUEST_TIMEOUT", "seconds in all, retries included, for one small request (not a blob body)"
)
REFERRERS_SETTLE = Setting("OCIMODEL_REFERRERS_SETTLE", "seconds to wait before checking a written referrers index")
TAG_SETTLE = Setting(
    "OCIMODEL_TAG_SETTLE", "seconds a version-tag write on a registry may take; every racing writer must use the same"
)
CACHE_DIR = Setting("OCIMODEL_CACHE_DIR", "where digests, manifests and blobs are cached")
NO_CACHE = Setting("OCIMODEL_NO_CACHE", "use no local cache at all")
BLOB_CACHE = Setting("OCIMODEL_BLOB_CACHE", "pull through the local blob cache by default")
ACTOR = Setting("OCIMODEL_ACTOR", "who promotes or rolls back, in the records")
PROGRESS = Setting("OCIMODEL_PROGRESS", "how transfers show progress: auto (bars on a terminal, else lines), plain, none")
PROGRESS_INTERVAL = Setting("OCIMODEL_PROGRESS_INTERVAL", "seconds between plain progress lines")
CREDENTIALS_REGISTRY = Setting("OCIMODEL_REGISTRY", "the registry OCIMODEL_USERNAME / OCIMODEL_PASSWORD are for")
CERTS_D = Setting("OCIMODEL_CERTS_D", "the folder of per-registry CA folders, docker's certs.d layout")
PULL_CONNECTIONS = Setting("OCIMODEL_PULL_CONNECTIONS", "connections a large blob is downloaded over (1: one stream)")

APP_NAME = "ocimodel"
DEFAULT_CERTS_D = Path("/etc/docker/certs.d")
# Python's ssl module writes TLS session keys there for Wireshark when asked; ocimodel builds
# its own SSL context, so it honours the variable as ssl.create_default_context() would.
SSL_KEY_LOG = Setting("SSLKEYLOGFILE", "where to write TLS session keys for debugging")


# Each setting's type and bounds live in one accessor, used where the value is needed and
# by `check_all` up front.


def plain_http() -> bool:
    return PLAIN_HTTP.flag()


def debug() -> bool:
    return DEBUG.flag()


def retries(default: int = 5) -> int:
    return RETRIES.integer(default, low=1, high=100)


def retry_delay(default: float = 0.5) -> float:
    return RETRY_DELAY.number(default, low=0, high=600)


def read_timeout(default: float = 300.0) -> float:
    return READ_TIMEOUT.number(default, low=0.1, high=86400)


def request_timeout(default: float = 60.0) -> float:
    return REQUEST_TIMEOUT.number(default, low=0.1, high=86400)


def referrers_settle(default: float = 1.0) -> float:
    return REFERRERS_SETTLE.number(default, low=0, high=60)


def tag_settle(default: float = 1.0) -> float:
    return TAG_SETTLE.number(default, low=0, high=60)


def no_cache() -> bool:
    return NO_CACHE.flag()


def blob_cache() -> bool:
    return BLOB_CACHE.flag()


def progress() -> str:
    return PROGRESS.choice("auto", ("auto", "plain", "none"))


def progress_interval(default: float = 5.0) -> float:
    return PROGRESS_INTERVAL.number(default, low=0.05, high=3600)


def credentials_registry() -> str | None:
    return CREDENTIALS_REGISTRY.text()


def certs_d() -> Path:
    return Path(CERTS_D.text() or DEFAULT_CERTS_D)


def ssl_key_log_file() -> str | None:
    return SSL_KEY_LOG.text()


def pull_connections(default: int) -> int:
    return PULL_CONNECTIONS.integer(default, low=1, high=32)


# -- directories ---------------------------------------------------------------------------


def cache_dir() -> Path:
    """Where the caches live (digests, manifests, blobs): ``OCIMODEL_CACHE_DIR``, else the
    user's cache directory as platformdirs finds it. On Linux that is
    ``$XDG_CACHE_HOME/ocimodel`` (an absolute ``XDG_CACHE_HOME`` only, as the XDG spec
    says), else ``~/.cache/ocimodel``: the path ocimodel used before platformdirs. On macOS
    it is ``~/Library/Caches/ocimodel`` and on Windows ``%LOCALAPPDATA%\\ocimodel\\Cache``,
    where each system's tools look for caches to clean. Nothing is created here."""
    configured = CACHE_DIR.text()
    if configured:
        return Path(configured)
    # Imported here: a command that is given a cache directory, or uses no cache, never
    # pays for it (about 3 ms).
    import platformdirs

    return Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False))


def config_dir() -> Path:
    """Where a user's ocimodel configuration belongs (``$XDG_CONFIG_HOME/ocimodel`` or
    ``~/.config/ocimodel`` on Linux). ocimodel reads no file there yet; a feature that
    needs one takes this path rather than inventing another."""
    import platformdirs

    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False))


def check_all() -> None:
    """Read every setting once, so that a bad value stops a command before it does
    anything (a push that fails on OCIMODEL_RETRIES after creating its layout directory
    leaves a trace the user did not ask for)."""
    for read in (plain_http, debug, retries, retry_delay, read_timeout, request_timeout, referrers_settle,
                 tag_settle, no_cache, blob_cache, progress, progress_interval):
        read()
    INSECURE.flag()
    pull_connections(1)
