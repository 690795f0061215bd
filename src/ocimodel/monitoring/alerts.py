"""Alerts: one JSON document POSTed to a webhook, and the state file that makes a cron
job alert on a change of state instead of on every run.

The document has a ``text`` field, which is what Slack and Microsoft Teams incoming
webhooks (and most chat bridges) display, plus structured fields for anything that
parses it (status firing or resolved, model, version, digest, failures).

A webhook's URL is a secret: Slack, Teams and Discord put the token in its path. It is
never printed, logged or put in an error: everything shows ``scheme://host`` alone
(:func:`redact`), and the request is sent below httpx's client, whose log line would name
the whole URL.

State file (``--state-file``), written whole or not at all (``atomicwrite``):
``{"version": 1, "reference": ..., "status": "ok"|"failing", "failures": [[rule, kind,
digest], ...], "since": time}``. ok -> failing alerts, failing -> ok sends a recovery,
failing -> failing with other failures alerts again, the same failures send nothing. The
state moves only once the webhook took the alert, so a failed delivery is tried again on
the next run."""

from __future__ import annotations

import json
import random
import time as clock
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ocimodel.atomicwrite import atomic_write
from ocimodel.errors import OcimodelError, UsageError

STATE_VERSION = 1
MAX_STATE_BYTES = 1024 * 1024
ATTEMPTS = 4  # the first try and three retries
BACKOFF = 0.5  # seconds before the first retry, doubled each time (plus up to 25 % jitter)
MAX_WAIT = 10.0  # the most a Retry-After is honoured for: a cron job must end
TIMEOUT = 10.0  # seconds for each attempt
MAX_RESPONSE_BYTES = 64 * 1024  # of a webhook's answer read: its body is not used, a huge one must not be taken in
RETRIED_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class AlertFailed(OcimodelError):
    """The webhook did not take the alert after every attempt. The message names the
    webhook by scheme and host only."""


def redact(url: str) -> str:
    """``scheme://host[:port]`` of a URL: what may be shown of a webhook."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "the webhook"
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme or '?'}://{host}{port}"


def check_url(url: str) -> str:
    """The webhook URL, refused (without showing it) unless it is http(s) with a host."""
    try:
        parts = urlsplit(url)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:
        ok = False
    if not ok or any(c.isspace() or ord(c) < 0x20 for c in url):
        raise UsageError("the --notify URL is not an http(s) URL with a host", hint="e.g. --notify https://hooks.slack.com/services/...")
    return url


# -- the document ----------------------------------------------------------------------------


def alert_document(status: str, model: str, reference: str, version: str | None, digest: str | None,
                   failures: Sequence[dict[str, Any]], checked: str, summary: str) -> dict[str, Any]:
    """The alert: ``text`` for people (chat webhooks show it), the rest for programs."""
    name = f"{model}:{version}" if version else f"{model}@{digest}" if digest else model
    if status == "firing":
        lines = [f"ocimodel eval check FAILING: {name}"] + [f"- {f['detail']} [{f['rule']}]" for f in failures[:10]]
        if len(failures) > 10:
            lines.append(f"- and {len(failures) - 10} more")
    else:
        lines = [f"ocimodel eval check RESOLVED: {name}: {summary}"]
    return {
        "text": "\n".join(lines),
        "status": status,
        "model": model,
        "reference": reference,
        "version": version,
        "digest": digest,
        "checked": checked,
        "failures": list(failures),
    }


# -- the state file --------------------------------------------------------------------------


@dataclass(frozen=True)
class State:
    status: str  # ok or failing
    failures: frozenset[tuple[str, str, str]]
    since: str | None = None


def read_state(path: Path, reference: str) -> State | None:
    """The state a previous run left (None: no file yet). A file that is not ours, or is
    about another reference, is a usage error: overwriting it could lose another job's
    state, and reading it as "ok" could swallow an alert."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_STATE_BYTES + 1)
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise UsageError(f"state file {path} is a directory") from None
    except OSError as exc:
        raise UsageError(f"cannot read state file {path}: {exc.strerror}") from None
    hint = f"remove {path} to start afresh (the next failure then alerts)"
    try:
        document = json.loads(data) if len(data) <= MAX_STATE_BYTES else None
        if not isinstance(document, dict) or document.get("version") != STATE_VERSION:
            raise ValueError("not an ocimodel eval check state file")
        status = document["status"]
        if status not in ("ok", "failing"):
            raise ValueError(f"unknown status {status!r}")
        failures = frozenset(tuple(str(x) for x in f) for f in document.get("failures", []))
        if any(len(f) != 3 for f in failures):
            raise ValueError("malformed failures")
    except (ValueError, KeyError, TypeError, RecursionError) as exc:  # Recursion: nested past the parser
        raise UsageError(f"state file {path} is not a state this command wrote: {str(exc)[:200]}", hint=hint) from None
    if document.get("reference") != reference:
        raise UsageError(
            f"state file {path} holds the state of {str(document.get('reference'))[:200]}, not of {reference}",
            hint="give each checked model its own --state-file",
        )
    return State(status=status, failures=failures, since=document.get("since"))


def write_state(path: Path, reference: str, state: State) -> None:
    document = {
        "version": STATE_VERSION, "reference": reference, "status": state.status,
        "failures": sorted(list(f) for f in state.failures), "since": state.since,
    }
    try:
        atomic_write(path, (json.dumps(document, indent=2, sort_keys=True) + "\n").encode(), mode=0o644)
    except OSError as exc:
        raise OcimodelError(f"cannot write state file {path}: {exc.strerror}") from None


def transition(previous: State | None, current: State) -> str | None:
    """What to send for going from ``previous`` to ``current``: firing, resolved or None."""
    before = previous.status if previous is not None else "ok"
    if current.status == "failing":
        if before == "ok" or previous is None or previous.failures != current.failures:
            return "firing"
        return None
    return "resolved" if before == "failing" else None


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


# -- sending ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    webhook: str  # scheme://host only
    status: int
    attempts: int


def post_alert(url: str, document: dict[str, Any], *, verify: Any = True, attempts: int = ATTEMPTS,
               sleep: Callable[[float], None] = clock.sleep) -> Delivery:
    """POST ``document`` as JSON; retried on connection errors, timeouts, 408, 425, 429
    and 5xx, with doubling delays (Retry-After honoured up to MAX_WAIT). Raises
    AlertFailed naming only the webhook's scheme and host."""
    import httpx

    from ocimodel.transport.proxies import ProxyRefused, ProxyTrouble, proxied_transport

    shown = redact(url)
    body = json.dumps(document).encode()
    headers = {"content-type": "application/json", "user-agent": "ocimodel-eval-check"}
    problem = "no attempt made"
    # The transport, not httpx.Client: the client logs every request with its full URL.
    # It honours HTTPS_PROXY / HTTP_PROXY / NO_PROXY, as the registry client does.
    with proxied_transport(verify, httpx.Limits()) as transport:
        for attempt in range(1, attempts + 1):
            wait = BACKOFF * 2 ** (attempt - 1) * (1 + random.random() / 4)
            try:
                request = httpx.Request("POST", url, content=body, headers=headers,
                                        extensions={"timeout": httpx.Timeout(TIMEOUT).as_dict()})
                response = transport.handle_request(request)
                try:
                    taken = 0
                    for chunk in response.iter_raw():
                        taken += len(chunk)
                        if taken >= MAX_RESPONSE_BYTES:
                            break  # closing drops the rest unread
                finally:
                    response.close()
            except ProxyTrouble as exc:  # names the proxy's host alone
                problem = exc.brief
                if isinstance(exc, ProxyRefused):
                    break  # asking the same proxy again gets the same answer
            except httpx.TimeoutException:
                problem = "timed out"
            except httpx.TransportError as exc:
                # The exception's text may quote the URL: only its kind is said.
                problem = f"could not connect ({type(exc).__name__})"
            else:
                if 200 <= response.status_code < 300:
                    return Delivery(webhook=shown, status=response.status_code, attempts=attempt)
                problem = f"answered HTTP {response.status_code}"
                if response.status_code not in RETRIED_STATUSES:
                    break
                wait = max(wait, _retry_after(response.headers.get("retry-after")))
            if attempt < attempts:
                sleep(min(wait, MAX_WAIT))
    raise AlertFailed(
        f"the webhook at {shown} did not take the alert: {problem} (after {attempt} attempt{'s' * (attempt > 1)})",
        hint="the state file was left as it was, so the next run tries again",
    )


def _retry_after(value: str | None) -> float:
    try:
        return max(0.0, float(value)) if value else 0.0
    except ValueError:
        return 0.0
