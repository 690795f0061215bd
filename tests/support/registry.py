"""A real OCI registry for tests: Debian's ``docker-registry`` (CNCF distribution 2.8).

Stdlib only (no ocimodel imports), so it can be used to test ocimodel itself.

    with LocalRegistry() as reg:
        reg.url        # "http://127.0.0.1:PORT"
        reg.host       # "127.0.0.1:PORT"
        reg.root       # Path of the filesystem storage
        reg.blob_path("sha256:...")  # on-disk data file of a stored blob

The registry is never skipped when missing: tests must fail loudly instead.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

__all__ = ["LocalRegistry", "RegistryStartError"]

_MISSING = (
    "docker-registry not installed: run `make test` (installs it) "
    "or apt-get install docker-registry"
)

START_TIMEOUT = 20.0  # seconds until GET /v2/ must answer
STOP_TIMEOUT = 5.0  # seconds between terminate() and kill()


class RegistryStartError(RuntimeError):
    """The registry process did not come up."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _q(value: object) -> str:
    """A YAML scalar: JSON strings are valid double-quoted YAML scalars."""
    return json.dumps(str(value))


_TOKEN_AUTH_KEYS = ("realm", "service", "issuer", "rootcertbundle")


def _check_token_auth(token_auth: dict) -> dict[str, str]:
    """The four settings of distribution's `auth: token:` section, all required."""
    missing = [k for k in _TOKEN_AUTH_KEYS if not token_auth.get(k)]
    extra = sorted(set(token_auth) - set(_TOKEN_AUTH_KEYS))
    if missing or extra:
        raise ValueError(
            f"token_auth needs exactly {', '.join(_TOKEN_AUTH_KEYS)}"
            + (f"; missing {', '.join(missing)}" if missing else "")
            + (f"; unknown {', '.join(extra)}" if extra else "")
        )
    bundle = Path(token_auth["rootcertbundle"]).resolve()
    if not bundle.is_file():
        raise ValueError(f"token_auth rootcertbundle {bundle} is not a file")
    result = {k: str(token_auth[k]) for k in _TOKEN_AUTH_KEYS}
    result["rootcertbundle"] = str(bundle)
    return result


class LocalRegistry:
    """Runs ``docker-registry serve CONFIG.yml`` on a free loopback port.

    ``htpasswd``: path of a bcrypt htpasswd file -> basic auth with realm ``basic-realm``.
    ``token_auth``: ``{"realm", "service", "issuer", "rootcertbundle"}`` -> Bearer token
    auth (``TokenServer.registry_auth()`` in tests/support/tokenserver.py gives one).
    ``tls``: ``(certificate, key)`` PEM files -> HTTPS only (``url`` is ``https://...``).
    ``client_ca``: with ``tls``, a PEM of CAs whose client certificates the registry
    requires (mutual TLS: distribution's ``http.tls.clientcas``).
    ``ca``: with ``tls``, the CA the readiness probe verifies the server with (None: the
    probe does not verify, for registries serving a deliberately bad certificate).
    The probe counts any TLS answer as "serving", including a verification failure or the
    alert of an mTLS registry that wants a client certificate the probe does not have.
    """

    BASIC_REALM = "basic-realm"

    def __init__(
        self,
        *,
        htpasswd: Path | None = None,
        token_auth: dict | None = None,
        tls: tuple[Path, Path] | None = None,
        client_ca: Path | None = None,
        ca: Path | None = None,
        deletes: bool = True,
    ) -> None:
        self.deletes = deletes  # distribution's own default is off
        if htpasswd is not None and token_auth is not None:
            raise ValueError("LocalRegistry: htpasswd and token_auth are exclusive")
        self.token_auth = _check_token_auth(token_auth) if token_auth is not None else None
        if tls is None and (client_ca is not None or ca is not None):
            raise ValueError("LocalRegistry: client_ca and ca need tls=(certificate, key)")
        self.tls: tuple[Path, Path] | None = None
        if tls is not None:
            cert, key = (Path(p).resolve() for p in tls)
            for path in (cert, key):
                if not path.is_file():
                    raise ValueError(f"LocalRegistry tls file {path} is not a file")
            self.tls = (cert, key)
        self.client_ca = Path(client_ca).resolve() if client_ca is not None else None
        self.ca = Path(ca).resolve() if ca is not None else None
        for path in (self.client_ca, self.ca):
            if path is not None and not path.is_file():
                raise ValueError(f"LocalRegistry CA file {path} is not a file")
        binary = shutil.which("docker-registry")
        if binary is None:
            raise RuntimeError(_MISSING)
        self._binary = binary
        self.htpasswd = Path(htpasswd).resolve() if htpasswd is not None else None
        self._tmp: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: Path | None = None
        self.port: int = 0
        self.host: str = ""
        self.url: str = ""
        self.root: Path = Path()

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> "LocalRegistry":
        if self._proc is not None:
            raise RuntimeError("LocalRegistry already started")
        self._tmp = Path(tempfile.mkdtemp(prefix="ocimodel-registry-"))
        self.root = self._tmp / "data"
        self.root.mkdir()
        self._log = self._tmp / "registry.log"
        last_error: Exception | None = None
        # The free port is found by binding and releasing it; another process may grab it
        # in between, so retry a few times on an early exit.
        for _ in range(3):
            try:
                self._spawn(_free_port())
                self._wait_ready()
                return self
            except _EarlyExit as exc:
                last_error = exc
                self._reap()
                if "address already in use" not in exc.tail.lower():
                    break
            except BaseException:
                self.stop()
                raise
        self.stop()
        raise RegistryStartError(str(last_error))

    def stop(self) -> None:
        self._reap()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> "LocalRegistry":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __del__(self) -> None:  # last resort: never leave a registry running
        proc = getattr(self, "_proc", None)
        if proc is not None and proc.poll() is None:
            proc.kill()

    # -- helpers for tests ---------------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        """The on-disk data file of blob ``digest`` ("sha256:<hex>")."""
        algo, sep, hexpart = digest.partition(":")
        if not sep or algo != "sha256" or len(hexpart) != 64:
            raise ValueError(f"expected a sha256:<64 hex> digest, got {digest!r}")
        return (
            self.root / "docker" / "registry" / "v2" / "blobs" / "sha256"
            / hexpart[:2] / hexpart / "data"
        )

    def log_tail(self, max_bytes: int = 4000) -> str:
        """The last bytes of the registry's stdout+stderr."""
        if self._log is None or not self._log.exists():
            return ""
        data = self._log.read_bytes()[-max_bytes:]
        return data.decode("utf-8", "replace")

    # -- internals -----------------------------------------------------------------------

    def _config(self) -> str:
        assert self._tmp is not None
        lines = [
            "version: 0.1",
            "log:",
            "  level: warn",
            "  accesslog: {disabled: true}",
            "storage:",
            f"  filesystem: {{rootdirectory: {_q(self.root)}}}",
            f"  delete: {{enabled: {'true' if self.deletes else 'false'}}}",
            "  maintenance:",
            "    uploadpurging: {enabled: false}",
            "http:",
            f"  addr: {_q(self.host)}",
            "  secret: local-test-only",
        ]
        if self.tls is not None:
            lines += [
                "  tls:",
                f"    certificate: {_q(self.tls[0])}",
                f"    key: {_q(self.tls[1])}",
            ]
            if self.client_ca is not None:
                lines += ["    clientcas:", f"      - {_q(self.client_ca)}"]
        lines += [
            # health checks and notifications off: no background probes, no endpoints
            "health:",
            "  storagedriver: {enabled: false}",
            "notifications:",
            "  endpoints: []",
        ]
        if self.htpasswd is not None:
            lines += [
                "auth:",
                f"  htpasswd: {{realm: {_q(self.BASIC_REALM)}, path: {_q(self.htpasswd)}}}",
            ]
        if self.token_auth is not None:
            t = self.token_auth
            lines += [
                "auth:",
                "  token:",
                f"    realm: {_q(t['realm'])}",
                f"    service: {_q(t['service'])}",
                f"    issuer: {_q(t['issuer'])}",
                f"    rootcertbundle: {_q(t['rootcertbundle'])}",
            ]
        return "\n".join(lines) + "\n"

    def _spawn(self, port: int) -> None:
        assert self._tmp is not None and self._log is not None
        self.port = port
        self.host = f"127.0.0.1:{port}"
        self.url = f"{'https' if self.tls is not None else 'http'}://{self.host}"
        config = self._tmp / "config.yml"
        config.write_text(self._config())
        # REGISTRY_* variables would override the config file: drop them.
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        with open(self._log, "ab") as log:
            self._proc = subprocess.Popen(
                [self._binary, "serve", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self._tmp,
                env=env,
            )

    def _probe_context(self) -> ssl.SSLContext | None:
        """The TLS context of the readiness probe: the registry's CA, or no verification."""
        if self.tls is None:
            return None
        if self.ca is not None:
            return ssl.create_default_context(cafile=str(self.ca))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + START_TIMEOUT
        context = self._probe_context()
        while True:
            if self._proc.poll() is not None:
                raise _EarlyExit(
                    f"docker-registry exited with code {self._proc.returncode} before "
                    f"answering on {self.url}/v2/; its output ends with:\n{self.log_tail()}",
                    self.log_tail(),
                )
            try:
                with urllib.request.urlopen(f"{self.url}/v2/", timeout=1, context=context) as resp:
                    resp.read()
                return
            except urllib.error.HTTPError:
                return  # any HTTP answer (e.g. 401 with auth) means it is serving
            except (urllib.error.URLError, OSError) as exc:
                cause = exc.reason if isinstance(exc, urllib.error.URLError) else exc
                if isinstance(cause, ssl.SSLError):
                    return  # a TLS answer (bad certificate, client certificate wanted)
            if time.monotonic() > deadline:
                raise RegistryStartError(
                    f"docker-registry did not answer GET {self.url}/v2/ within "
                    f"{START_TIMEOUT:.0f} s; its output ends with:\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def _reap(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def __repr__(self) -> str:
        state = "running" if self._proc is not None and self._proc.poll() is None else "stopped"
        return f"<LocalRegistry {self.url or '(not started)'} {state}>"


class _EarlyExit(RegistryStartError):
    def __init__(self, message: str, tail: str) -> None:
        super().__init__(message)
        self.tail = tail
