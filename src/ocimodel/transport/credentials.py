"""Registry credentials where docker, oras, crane and skopeo keep them: the docker config.

The config is ``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``. For a
registry, in docker's order:

1. ``credHelpers[<server address>]`` -> ``docker-credential-<name> get``;
2. else ``credsStore`` -> the same protocol with that helper;
3. else ``auths[<server address>]``: base64 ``auth`` (``user:password``), or ``username``
   and ``password``, and ``identitytoken``.

A configured helper is the only place looked at for its registries, as in docker: a
helper that has nothing means anonymous, not a fall back to ``auths``.

The server address is ``host[:port]``, and ``https://index.docker.io/v1/`` for Docker Hub
(``docker.io``). ``auths`` keys written by older tools as ``https://host``,
``http://host/v2/`` and the like match too (docker's ``ConvertToHostname``);
``credHelpers`` keys must match exactly, as in docker.

The helper protocol (docker-credential-helpers): ``get`` and ``erase`` read the server
address on stdin; ``store`` reads ``{"ServerURL", "Username", "Secret"}``; ``get`` answers
the same JSON on stdout, or fails with "credentials not found". ``Username`` ``<token>``
means ``Secret`` is an identity token.

Errors name the helper or the file, never a secret read from or written to them."""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ocimodel.atomicwrite import atomic_file
from ocimodel.errors import OcimodelError
from ocimodel.transport.auth import Credentials

__all__ = [
    "CredentialHelperError",
    "CredentialStoreError",
    "Location",
    "config_path",
    "erase",
    "find",
    "normalize_registry",
    "server_address",
    "store",
]

CONFIG_ENV = "DOCKER_CONFIG"
CONFIG_NAME = "config.json"
DOCKER_HUB = "docker.io"
DOCKER_HUB_SERVER = "https://index.docker.io/v1/"
_DOCKER_HUB_NAMES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
HELPER_PREFIX = "docker-credential-"
HELPER_TIMEOUT = 30.0  # seconds; a helper may ask a keychain or a cloud service
TOKEN_USERNAME = "<token>"  # docker-credential-helpers: Secret is an identity token
_NOT_FOUND = "credentials not found"  # docker-credential-helpers' ErrCredentialsNotFound
_HELPER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class CredentialStoreError(OcimodelError):
    """The docker config cannot be read or written, or holds a malformed entry."""


class CredentialHelperError(CredentialStoreError):
    """A ``docker-credential-<name>`` helper is missing, failed, timed out or answered
    something unreadable. ``helper`` is its name."""

    def __init__(self, message: str, *, helper: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.helper = helper


@dataclass(frozen=True)
class Location:
    """Where a registry's credentials are kept: a credential helper, or ``auths`` of the
    config file ``path``."""

    path: Path
    helper: str | None = None

    def __str__(self) -> str:
        return f"credential helper '{self.helper}'" if self.helper else str(self.path)


# -- names ------------------------------------------------------------------------------------


def config_path() -> Path:
    """``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``."""
    # Read here, not in ocimodel.settings: this is docker's variable with docker's rules
    # (no platformdirs, ~ expanded), and docker login and ocimodel must find the same file.
    directory = os.environ.get(CONFIG_ENV)
    base = Path(directory).expanduser() if directory else Path.home() / ".docker"
    return base / CONFIG_NAME


def normalize_registry(text: str) -> str:
    """The registry a user typed, as references name it: ``https://ghcr.io/`` -> ``ghcr.io``;
    ``index.docker.io`` or ``https://index.docker.io/v1/`` -> ``docker.io``."""
    host = _hostname(text.strip())
    return DOCKER_HUB if host.lower() in _DOCKER_HUB_NAMES else host


def server_address(registry: str) -> str:
    """The key docker uses for ``registry``: ``https://index.docker.io/v1/`` for Docker
    Hub, else ``host[:port]``."""
    registry = normalize_registry(registry)
    return DOCKER_HUB_SERVER if registry == DOCKER_HUB else registry


def _hostname(key: str) -> str:
    """docker's ConvertToHostname: drop an http(s):// prefix and any path."""
    for prefix in ("http://", "https://"):
        if key.startswith(prefix):
            key = key[len(prefix):]
            break
    return key.partition("/")[0]


def _same_registry(key: str, address: str) -> bool:
    def canonical(text: str) -> str:
        host = _hostname(text).lower()
        return DOCKER_HUB if host in _DOCKER_HUB_NAMES else host

    return canonical(key) == canonical(address)


# -- the three operations ----------------------------------------------------------------------


def find(registry: str) -> Credentials | None:
    """The stored credentials for ``registry`` (``host[:port]`` or ``docker.io``), or None."""
    path = config_path()
    config = _load(path)
    address = server_address(registry)
    helper = _helper_for(config, address, path)
    if helper is not None:
        return _helper_get(helper, address, path)
    entry = _auth_entry(config, address)
    if entry is None:
        return None
    return _decode_entry(*entry, path)


def store(registry: str, username: str, secret: str) -> Location:
    """Store credentials for ``registry`` where docker would: through the helper the config
    names for it, else as base64 ``auth`` in the config file (written atomically, mode
    0600; every other setting and registry of the file is kept). Returns where."""
    path = config_path()
    config = _load(path)
    address = server_address(registry)
    helper = _helper_for(config, address, path)
    if helper is not None:
        payload = json.dumps({"ServerURL": address, "Username": username, "Secret": secret})
        _run_helper(helper, "store", payload, registry=registry, config=path, secret=secret)
        if _drop_entries(config, address):
            _save(path, config)  # a secret now kept by the helper must not linger in plain text
        return Location(path, helper)
    auths = config.get("auths")
    if not isinstance(auths, dict):
        auths = config["auths"] = {}
    _drop_entries(config, address)  # one entry per registry: no stale https:// duplicate
    auths[address] = {"auth": base64.b64encode(f"{username}:{secret}".encode()).decode()}
    _save(path, config)
    return Location(path)


def erase(registry: str) -> Location | None:
    """Remove the stored credentials for ``registry``. Returns where they were, or None if
    there were none."""
    path = config_path()
    config = _load(path)
    address = server_address(registry)
    helper = _helper_for(config, address, path)
    removed: Location | None = None
    erased = helper is not None and _run_helper(
        helper, "erase", address, registry=registry, config=path, missing_ok=True
    ) is not None
    if erased:
        removed = Location(path, helper)
    if _drop_entries(config, address):
        _save(path, config)
        removed = removed or Location(path)
    return removed


# -- the config file ---------------------------------------------------------------------------


def _load(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise CredentialStoreError(
            f"cannot read the docker config {path}: {reason}",
            hint=f"fix it, or point {CONFIG_ENV} at another directory",
        ) from None
    if not text.strip():
        return {}
    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        # exc.msg and the position only: the message must not quote the file (secrets).
        raise CredentialStoreError(
            f"the docker config {path} is not valid JSON ({exc.msg} at line {exc.lineno})",
            hint=f"fix it, or point {CONFIG_ENV} at another directory",
        ) from None
    if not isinstance(config, dict):
        raise CredentialStoreError(f"the docker config {path} is not a JSON object")
    return config


def _save(path: Path, config: dict[str, Any]) -> None:
    """Write atomically (a temporary file in the same directory, then a rename), mode 0600.
    A symlinked config.json is written through to its target, as docker does."""
    target = path.resolve() if path.is_symlink() else path
    directory = target.parent
    data = (json.dumps(config, indent="\t") + "\n").encode()
    try:
        if not directory.is_dir():
            directory.mkdir(mode=0o700, parents=True)
            directory.chmod(0o700)  # mkdir's mode is cut by the umask
        # durable: a power cut must not leave the user logged out of every registry.
        with atomic_file(target, durable=True, prefix=f".{target.name}.", suffix=".tmp") as file:  # 0600
            file.write(data)
            with contextlib.suppress(OSError):  # keep the owner when root edits a user's file
                stat = target.stat()
                os.chown(file.temp, stat.st_uid, stat.st_gid)
    except OSError as exc:
        raise CredentialStoreError(
            f"cannot write the docker config {target}: {exc.strerror or type(exc).__name__}",
            hint=f"check the permissions of {directory}, or point {CONFIG_ENV} elsewhere",
        ) from None


def _auth_entry(config: dict[str, Any], address: str) -> tuple[str, dict[str, Any]] | None:
    """The ``auths`` entry for ``address``: the exact key, else the first key naming the same host."""
    auths = config.get("auths")
    if not isinstance(auths, dict):
        return None
    entry = auths.get(address)
    if isinstance(entry, dict):
        return address, entry
    for key, entry in auths.items():
        if isinstance(entry, dict) and _same_registry(key, address):
            return key, entry
    return None


def _drop_entries(config: dict[str, Any], address: str) -> bool:
    """Remove every ``auths`` entry for ``address`` (under any of its spellings)."""
    auths = config.get("auths")
    if not isinstance(auths, dict):
        return False
    keys = [key for key in auths if key == address or _same_registry(key, address)]
    for key in keys:
        del auths[key]
    return bool(keys)


def _decode_entry(key: str, entry: dict[str, Any], path: Path) -> Credentials | None:
    username = password = ""
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        try:
            raw = base64.b64decode(auth + "=" * (-len(auth) % 4), validate=True).decode("utf-8")
        except (binascii.Error, ValueError, UnicodeDecodeError):
            raw = ""
        username, sep, password = raw.partition(":")
        if not sep:
            raise CredentialStoreError(
                f'the "auth" of {key} in {path} is not base64 of "user:password"',
                hint=f"log in again (`ocimodel login {normalize_registry(key)}`), or fix the entry",
            )
        password = password.strip("\x00")  # as docker's decodeAuth
    else:
        username = entry.get("username") if isinstance(entry.get("username"), str) else ""
        password = entry.get("password") if isinstance(entry.get("password"), str) else ""
    token = entry.get("identitytoken")
    token = token if isinstance(token, str) and token else None
    if not password and token is None:
        return None  # e.g. the empty entry docker leaves beside a credential helper
    return Credentials(username, password, identity_token=token, source=str(path))


# -- credential helpers ------------------------------------------------------------------------


def _helper_for(config: dict[str, Any], address: str, path: Path) -> str | None:
    helpers = config.get("credHelpers")
    name = helpers.get(address) if isinstance(helpers, dict) else None
    setting = "credHelpers"
    if not (isinstance(name, str) and name):
        name, setting = config.get("credsStore"), "credsStore"
    if not (isinstance(name, str) and name):
        return None
    if not _HELPER_NAME.fullmatch(name):
        # The name becomes part of a program name: no paths, no odd characters.
        raise CredentialHelperError(
            f"the docker config {path} names an invalid credential helper in {setting}",
            helper=name[:64], hint="a helper name is letters, digits, '.', '_' or '-' (e.g. \"desktop\")",
        )
    return name


def _helper_get(name: str, address: str, path: Path) -> Credentials | None:
    answer = _run_helper(name, "get", address, registry=address, config=path, missing_ok=True)
    if answer is None:
        return None
    try:
        document = json.loads(answer)
        username, secret = document.get("Username"), document.get("Secret")
    except (ValueError, AttributeError):
        username = secret = None
        document = None
    if not isinstance(document, dict):
        raise CredentialHelperError(
            f"credential helper {HELPER_PREFIX}{name} gave an unreadable answer for {address}", helper=name
        )
    if not isinstance(secret, str) or not secret:
        return None
    username = username if isinstance(username, str) else ""
    source = f"credential helper '{name}'"
    if username == TOKEN_USERNAME:
        return Credentials("", "", identity_token=secret, source=source)
    return Credentials(username, secret, source=source)


def _run_helper(
    name: str,
    action: str,
    payload: str,
    *,
    registry: str,
    config: Path,
    secret: str | None = None,
    missing_ok: bool = False,
) -> str | None:
    """Run ``docker-credential-<name> <action>`` with ``payload`` on stdin; its stdout, or
    None when it answers "credentials not found" and ``missing_ok``."""
    program = HELPER_PREFIX + name
    executable = shutil.which(program)
    if executable is None:
        raise CredentialHelperError(
            f"credential helper {program} not found on PATH (set in {config})",
            helper=name, hint=f"install {program}, or remove it from {config}",
        )
    try:
        process = subprocess.run(
            [executable, action], input=payload.encode(), capture_output=True,
            timeout=HELPER_TIMEOUT, check=False,
        )
    except subprocess.TimeoutExpired:
        raise CredentialHelperError(
            f"credential helper {program} did not answer within {HELPER_TIMEOUT:g} s ({action} for {registry})",
            helper=name, hint="is it waiting for a keychain to be unlocked?",
        ) from None
    except OSError as exc:
        raise CredentialHelperError(
            f"cannot run credential helper {program}: {exc.strerror or type(exc).__name__}", helper=name
        ) from None
    if process.returncode == 0:
        return process.stdout.decode("utf-8", "replace")
    # docker-credential-helpers print their error on stdout; others use stderr.
    said = (process.stdout + b"\n" + process.stderr).decode("utf-8", "replace")
    if missing_ok and _NOT_FOUND in said.lower():
        return None
    detail = _helper_message(said, secret)
    raise CredentialHelperError(
        f"credential helper {program} failed ({action} for {registry}, exit {process.returncode})"
        + (f": {detail}" if detail else ""),
        helper=name,
    )


def _helper_message(said: str, secret: str | None) -> str:
    """The helper's first line, for the user -- unless it could hold a secret: JSON is left
    out, and the secret that was sent (``store``) is masked."""
    line = next((ln.strip() for ln in said.splitlines() if ln.strip()), "")
    if line.startswith("{"):
        return ""
    if secret:
        line = line.replace(secret, "***")
    return "".join(ch if ch.isprintable() else " " for ch in line)[:200]
