"""The secret search every leak test uses (tests/support/secrets.py) finds a secret in the
forms it travels in, so a leak test cannot pass while the secret sits there encoded."""

from __future__ import annotations

import base64
import json

import pytest

from tests.support.secrets import assert_no_secret

SECRET = "pw-Zq81+/secret"


def _leaks(text: str, users: tuple[str, ...] = ()) -> bool:
    try:
        assert_no_secret([text], [SECRET], users)
    except AssertionError:
        return True
    return False


@pytest.mark.parametrize("user", ["a", "al", "alice", "builder-x", ""])
def test_every_encoded_form_is_found(user: str) -> None:
    pair = base64.b64encode(f"{user}:{SECRET}".encode()).decode()
    url_safe = base64.urlsafe_b64encode(f"{user}:{SECRET}".encode()).decode()
    for text in (
        f"error: {SECRET}",
        f"Authorization: Basic {pair}\r\n",
        json.dumps({"auths": {"reg.example": {"auth": pair}}}),
        f"token={url_safe}",
        "https://u:" + SECRET.replace("+", "%2B").replace("/", "%2F") + "@reg.example/",
    ):
        # Found whatever the user name (the base64 fragments do not depend on it)...
        assert _leaks(text), text
        # ...and named precisely when the user is known.
        assert _leaks(text, (user,)), text


def test_clean_text_passes() -> None:
    other = base64.b64encode(b"alice:another-password").decode()
    assert not _leaks(f"error: authentication required; Basic {other}; sha256:{'ab' * 32}", ("alice",))
    assert_no_secret([b"bytes are searched too"], [SECRET])


def test_bytes_are_searched() -> None:
    with pytest.raises(AssertionError, match="Basic header"):
        assert_no_secret([b"Basic " + base64.b64encode(f"u:{SECRET}".encode())], [SECRET], ["u"])


def test_a_secret_too_short_to_find_is_refused() -> None:
    with pytest.raises(ValueError, match="long enough"):
        assert_no_secret(["x"], ["pw"])
