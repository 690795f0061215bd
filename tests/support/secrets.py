"""Searching text for a secret in every form it travels in (docs/threats.md 8).

A password rarely leaks as itself: a docker config's ``auth`` entry and an HTTP Basic
header carry it as base64 of ``user:password``, and a URL carries it percent-encoded. A
check that looks only for the raw string passes while ``Authorization: Basic dXNlcjpw...``
sits in a log line. :func:`assert_no_secret` looks for all of these.

Base64 is found whatever came before the secret (a user name of any length, ``user:``,
a JSON prefix): base64 encodes 3 bytes as 4 characters, so the secret starts at one of 3
offsets within a group, and for each offset the groups that hold only secret bytes always
encode to the same characters. Those three fragments (in the standard and the URL-safe
alphabet) are searched for; ``Basic <base64 of user:password>`` for the users named is
searched for whole as well, so a failure message says which form leaked.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from urllib.parse import quote

__all__ = ["assert_no_secret", "secret_forms"]

# Fragments shorter than this could occur by chance in unrelated base64 (a digest, a token).
_MIN_FRAGMENT = 8


def _base64_fragments(secret: bytes) -> set[str]:
    fragments = set()
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + secret).decode()
        first_group = 0 if offset == 0 else 1  # groups holding only secret bytes
        last_group = (offset + len(secret)) // 3
        fragment = encoded[first_group * 4 : last_group * 4]
        if len(fragment) >= _MIN_FRAGMENT:
            fragments.add(fragment)
            fragments.add(fragment.replace("+", "-").replace("/", "_"))
    return fragments


def secret_forms(secret: str, users: Iterable[str] = ()) -> dict[str, str]:
    """Every form of ``secret`` to search for, each with a name for failure messages (the
    most specific forms first, so a message names the form that leaked)."""
    fragments = _base64_fragments(secret.encode())
    if not fragments:
        raise ValueError(f"a test secret must be long enough to find in base64 (>= 9 bytes): {secret!r}")
    forms: dict[str, str] = {}
    for user in users:
        pair = base64.b64encode(f"{user}:{secret}".encode()).decode()
        forms[f"Basic {pair}"] = f"a Basic header for {user!r}"
        forms.setdefault(pair, f"base64 of {user!r}:password (a docker auth entry)")
    forms.setdefault(secret, "raw")
    forms.setdefault(quote(secret, safe=""), "percent-encoded")
    for fragment in sorted(fragments):
        forms.setdefault(fragment, "base64, inside any base64 text")
    return forms


def assert_no_secret(texts: Iterable[str | bytes], secrets: Iterable[str], users: Iterable[str] = ()) -> None:
    """Fail if any of ``texts`` holds any of ``secrets``, raw, percent-encoded or base64
    (alone, as ``user:password`` or in a ``Basic`` header)."""
    users = tuple(users)
    forms: dict[str, str] = {}
    for secret in secrets:
        forms.update(secret_forms(secret, users))
    for text in texts:
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        for form, how in forms.items():
            at = text.find(form)
            assert at < 0, f"a secret leaked ({how}) into: ...{text[max(0, at - 120) : at + 120]!r}..."
