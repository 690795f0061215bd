"""Model references as a user types them.

Two forms are understood:

* registry references, with the grammar of Docker / ORAS / distribution:
  ``[registry/]repository[:tag][@digest]``. The first path component is a registry host
  when it contains ``.`` or ``:`` or is ``localhost`` (Docker's rule); otherwise the
  registry is ``docker.io`` and a one-component repository gets ``library/`` in front;
* OCI image layout references, with skopeo's ``oci:`` transport syntax:
  ``oci:PATH[:tag][@digest]``, where the tag is an ``org.opencontainers.image.ref.name``
  value and may itself contain ``:``.

Every malformed input raises :class:`~ocimodel.errors.InvalidReference` with a message that
quotes the offending part. ``parse_reference(str(ref)) == ref`` for every parsed ``ref``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from ocimodel.errors import InvalidDigest, InvalidReference
from ocimodel.oci.digest import validate_digest

__all__ = [
    "DEFAULT_REGISTRY",
    "LayoutReference",
    "Reference",
    "RegistryReference",
    "parse_reference",
    "parse_registry_reference",
    "validate_tag",
]

DEFAULT_REGISTRY = "docker.io"
_LEGACY_DEFAULT_REGISTRY = "index.docker.io"
_OFFICIAL_PREFIX = "library/"
_LAYOUT_PREFIX = "oci:"
_REPOSITORY_MAX = 255  # distribution's NameTotalLengthMax

_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_TAG_RULE = "tags are letters, digits, _ . - (max 128, not starting with . or -)"
_COMPONENT_RE = re.compile(r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*")
_COMPONENT_RULE = (
    'path components are lower-case letters and digits, separated by ".", "_", "__" or "-"'
)
_DNS_LABEL = r"(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])"
_DNS_NAME_RE = re.compile(rf"{_DNS_LABEL}(?:\.{_DNS_LABEL})*")
# image-spec annotations.md, org.opencontainers.image.ref.name
_REF_NAME_COMPONENT = r"[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*"
_REF_NAME_RE = re.compile(rf"{_REF_NAME_COMPONENT}(?:/{_REF_NAME_COMPONENT})*")
_REF_NAME_RULE = (
    'layout tags are letters and digits separated by one of - . _ : @ + or "--", '
    'in components joined by "/"'
)
# A trailing "@<algorithm>:<hex>" of a layout reference is its digest. Also taken as a
# (then refused) digest: anything after "@sha256:" / "@sha512:", so typos are not silently
# read as part of the path or tag.
_LAYOUT_DIGEST_RE = re.compile(
    r"@((?i:sha256|sha512):[^@/]*|[A-Za-z0-9]+(?:[+._-][A-Za-z0-9]+)*:[0-9A-Fa-f]*)\Z"
)
_HEX_LENGTH = {"sha256": 64, "sha512": 128}
_QUOTE_MAX = 200


def _q(text: str) -> str:
    """Double-quote ``text`` for a message, escaping control characters, capping its length."""
    if len(text) > _QUOTE_MAX:
        text = text[:_QUOTE_MAX] + "..."
    # JSON escaping (quotes, backslashes, control characters), then \uXXXX for whatever
    # else is unprintable (bidi overrides, zero-width spaces, ...), so a message cannot
    # reorder or hide text on the user's terminal.
    quoted = json.dumps(text, ensure_ascii=False)
    return "".join(c if c.isprintable() else _escape(c) for c in quoted)


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def _in(part: str, whole: str | None) -> str:
    """`` in "whole"`` when the whole reference says more than the part already quoted."""
    return "" if whole is None or whole == part else f" in {_q(whole)}"


def _fail(message: str) -> InvalidReference:
    return InvalidReference(message)


# --- field validators (``whole`` is the full text being parsed, for the message) ---------


def validate_tag(tag: str) -> str:
    """Return ``tag`` if it is a valid registry tag, else raise InvalidReference."""
    return _check_tag(tag, None)


def _check_tag(tag: object, whole: str | None) -> str:
    if not isinstance(tag, str):
        raise _fail(f"invalid tag {tag!r}: a tag is a string")
    if tag == "":
        raise _fail(f"empty tag{_in('', whole)}: {_TAG_RULE}")
    if _TAG_RE.fullmatch(tag) is None:
        raise _fail(f"invalid tag {_q(tag)}{_in(tag, whole)}: {_TAG_RULE}")
    return tag


def _check_layout_tag(tag: object, whole: str | None) -> str:
    if not isinstance(tag, str):
        raise _fail(f"invalid layout tag {tag!r}: a tag is a string")
    if tag == "":
        raise _fail(f"empty tag{_in('', whole)}: {_REF_NAME_RULE}")
    if _REF_NAME_RE.fullmatch(tag) is None:
        raise _fail(f"invalid layout tag {_q(tag)}{_in(tag, whole)}: {_REF_NAME_RULE}")
    return tag


def _check_digest(digest: object, whole: str | None) -> str:
    if not isinstance(digest, str):
        raise _fail(f"invalid digest {digest!r}: a digest is a string")
    if digest == "":
        raise _fail(f'missing digest after "@"{_in("", whole)}')
    try:
        return validate_digest(digest)
    except InvalidDigest as exc:
        problem = _digest_problem(digest)
        raise _fail(f"invalid digest {_q(digest)}{_in(digest, whole)}: {problem}") from exc


def _digest_problem(digest: str) -> str:
    algorithm, sep, encoded = digest.partition(":")
    if not sep:
        return "expected <algorithm>:<hex>, e.g. sha256:<64 lower-case hex digits>"
    if algorithm not in _HEX_LENGTH:
        return f"unsupported algorithm {_q(algorithm)} (only sha256 and sha512 are accepted)"
    needed = _HEX_LENGTH[algorithm]
    if re.fullmatch(r"[0-9a-fA-F]*", encoded) is None:
        return f"{algorithm} needs {needed} lower-case hex digits"
    if encoded != encoded.lower():
        return "hex digits must be lower-case"
    return f"{algorithm} needs {needed} hex digits, got {len(encoded)}"


def _split_host(registry: str, whole: str | None) -> tuple[str, str | None]:
    """Validate ``host[:port]`` / ``[ipv6][:port]``; return (host, port), the port without leading zeros."""
    if not isinstance(registry, str) or registry == "":
        raise _fail(f"missing registry host{_in('', whole)}")
    if registry.startswith("["):
        end = registry.find("]")
        host, rest = (registry[1:end], registry[end + 1 :]) if end > 0 else (registry[1:], "")
        try:
            if end < 0 or "%" in host:
                raise ValueError
            ipaddress.IPv6Address(host)
        except ValueError:
            raise _fail(
                f"invalid registry host {_q(registry)}{_in(registry, whole)}: "
                'expected a bracketed IPv6 address such as "[::1]:5000"'
            ) from None
        if rest and not rest.startswith(":"):
            raise _fail(
                f"invalid registry host {_q(registry)}{_in(registry, whole)}: "
                f'unexpected {_q(rest)} after "]"'
            )
        port = rest[1:] if rest else None
    else:
        if registry.count(":") > 1:
            raise _fail(
                f"invalid registry host {_q(registry)}{_in(registry, whole)}: "
                'IPv6 addresses must be in brackets, e.g. "[::1]:5000"'
            )
        host, sep, port_text = registry.partition(":")
        port = port_text if sep else None
        if _DNS_NAME_RE.fullmatch(host) is None:
            raise _fail(
                f"invalid registry host {_q(host)}{_in(host, whole)}: "
                "expected a DNS name, an IPv4 address or a bracketed IPv6 address"
            )
    if port is not None:
        # Leading zeros off and five digits at most before int(): a port of thousands of
        # digits would reach int()'s own limit and raise ValueError instead of this error.
        digits = port.lstrip("0")
        if not (port.isascii() and port.isdigit() and len(digits) <= 5) or not 1 <= int(digits or "0") <= 65535:
            raise _fail(
                f"invalid registry port {_q(port)}{_in(port, whole)}: ports are 1-65535"
            )
        port = digits
    return host, port


def _check_repository(repository: object, whole: str | None) -> str:
    if not isinstance(repository, str) or repository == "":
        raise _fail(f"missing repository{_in('', whole)}")
    if len(repository) > _REPOSITORY_MAX:
        raise _fail(
            f"repository name {_q(repository)}{_in(repository, whole)} is "
            f"{len(repository)} characters long; the limit is {_REPOSITORY_MAX}"
        )
    components = repository.split("/")
    if all(_COMPONENT_RE.fullmatch(c.lower()) for c in components) and any(
        c != c.lower() for c in components
    ):
        raise _fail(f"repository name must be lowercase: {_q(repository)}{_in(repository, whole)}")
    for component in components:
        if component == "":
            raise _fail(
                f'empty path component ("//" or a leading or trailing "/") in {_q(repository)}'
                f"{_in(repository, whole)}"
            )
        if _COMPONENT_RE.fullmatch(component) is None:
            raise _fail(
                f"invalid repository path component {_q(component)}{_in(component, whole)}: "
                f"{_COMPONENT_RULE}"
            )
    return repository


def _bad_character(text: str, *, allow_space: bool) -> str | None:
    for char in text:
        category = unicodedata.category(char)
        if category in ("Cc", "Cf", "Zl", "Zp"):
            return char
        if char.isspace() and not (allow_space and char == " "):
            return char
    return None


# --- the two reference kinds --------------------------------------------------------------


@dataclass(frozen=True)
class RegistryReference:
    """``registry/repository[:tag][@digest]``; ``registry`` is ``host[:port]`` as typed.

    Constructing one validates every field; ``docker.io`` (or ``index.docker.io``) with a
    one-component repository is normalised to ``docker.io/library/<name>`` as Docker does."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    def __post_init__(self) -> None:
        registry = self.registry
        repository = self.repository
        _split_host(registry, None)
        if registry == _LEGACY_DEFAULT_REGISTRY:
            registry = DEFAULT_REGISTRY
            object.__setattr__(self, "registry", registry)
        if (
            registry == DEFAULT_REGISTRY
            and isinstance(repository, str)
            and repository
            and "/" not in repository
        ):
            repository = _OFFICIAL_PREFIX + repository
            object.__setattr__(self, "repository", repository)
        _check_repository(repository, None)
        if self.tag is not None:
            _check_tag(self.tag, None)
        if self.digest is not None:
            _check_digest(self.digest, None)

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}"
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text

    def with_tag(self, tag: str | None) -> RegistryReference:
        """A copy with ``tag`` (validated; ``None`` drops it). The digest is kept."""
        return dataclasses.replace(self, tag=tag)

    def with_digest(self, digest: str | None) -> RegistryReference:
        """A copy with ``digest`` (validated; ``None`` drops it). The tag is kept."""
        return dataclasses.replace(self, digest=digest)

    @property
    def reference(self) -> str | None:
        """The digest if set, else the tag: the ``<reference>`` of ``/v2/<name>/manifests/``."""
        return self.digest if self.digest is not None else self.tag

    @property
    def host(self) -> str:
        """The host without port or brackets, e.g. ``::1`` for ``[::1]:5000``."""
        return _split_host(self.registry, None)[0]

    @property
    def port(self) -> int | None:
        port = _split_host(self.registry, None)[1]
        return int(port) if port is not None else None

    @property
    def is_loopback(self) -> bool:
        """True for localhost, 127.0.0.0/8 and ::1 (any port): where plain HTTP is allowed."""
        return is_loopback_host(self.registry)


@dataclass(frozen=True)
class LayoutReference:
    """``oci:PATH[:tag][@digest]``: a manifest in an OCI image layout directory.

    ``path`` is kept as given (a str is turned into a :class:`~pathlib.Path`, never resolved);
    ``tag`` is an ``org.opencontainers.image.ref.name`` value."""

    path: Path
    tag: str | None = None
    digest: str | None = None

    def __post_init__(self) -> None:
        path = self.path
        if isinstance(path, str) and path == "":
            raise _fail("missing layout path")
        if not isinstance(path, Path):
            try:
                path = Path(path)
            except TypeError:
                raise _fail(f"invalid layout path {path!r}") from None
            object.__setattr__(self, "path", path)
        if self.tag is not None:
            _check_layout_tag(self.tag, None)
        if self.digest is not None:
            _check_digest(self.digest, None)

    def __str__(self) -> str:
        text = f"{_LAYOUT_PREFIX}{self.path}"
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text

    def with_tag(self, tag: str | None) -> LayoutReference:
        """A copy with ``tag`` (a ref.name, validated; ``None`` drops it)."""
        return dataclasses.replace(self, tag=tag)

    def with_digest(self, digest: str | None) -> LayoutReference:
        """A copy with ``digest`` (validated; ``None`` drops it)."""
        return dataclasses.replace(self, digest=digest)

    @property
    def reference(self) -> str | None:
        """The digest if set, else the tag."""
        return self.digest if self.digest is not None else self.tag


Reference = RegistryReference | LayoutReference


def is_loopback_host(registry: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ::1 (also IPv4-mapped), with or without a port."""
    try:
        host = _split_host(registry, None)[0]
    except InvalidReference:
        return False
    if host.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


# --- parsing -------------------------------------------------------------------------------


def parse_reference(text: str) -> Reference:
    """Parse ``oci:PATH[:tag][@digest]`` or ``[registry/]repository[:tag][@digest]``."""
    _check_text(text)
    if text.startswith(_LAYOUT_PREFIX):
        return _parse_layout(text)
    return _parse_registry(text)


def parse_registry_reference(text: str) -> RegistryReference:
    """Like :func:`parse_reference`, but refuse OCI layout (``oci:``) references."""
    _check_text(text)
    if text.startswith(_LAYOUT_PREFIX):
        raise _fail(
            f"expected a registry reference, got the OCI layout reference {_q(text)}",
        )
    return _parse_registry(text)


def _check_text(text: object) -> None:
    if not isinstance(text, str):
        raise _fail(f"invalid reference {text!r}: a reference is a string")
    if text.strip() == "":
        raise _fail("empty reference" if text == "" else f"empty reference {_q(text)}")
    if text != text.strip():
        raise _fail(f"leading or trailing whitespace in {_q(text)}")
    bad = _bad_character(text, allow_space=text.startswith(_LAYOUT_PREFIX))
    if bad is not None:
        raise _fail(
            f"invalid character {_q(bad)} in {_q(text)}: "
            "references may not contain whitespace or control characters"
        )


def _parse_registry(text: str) -> RegistryReference:
    if "://" in text:
        scheme = text.split("://", 1)[0]
        raise _fail(
            f"unexpected URL scheme {_q(scheme + '://')} in {_q(text)}: "
            "write registry/repository[:tag], e.g. ghcr.io/org/model:1.0"
        )
    name, at, digest = text.partition("@")
    if at:
        if "@" in digest:
            raise _fail(f'extra "@" in {_q(text)}: a reference has at most one digest')
        _check_digest(digest, text)
    tag: str | None = None
    colon = name.rfind(":")
    if colon > name.rfind("/"):
        name, tag = name[:colon], name[colon + 1 :]
        if tag == "":
            raise _fail(f'empty tag after ":" in {_q(text)}')
        _check_tag(tag, text)
    if name == "":
        raise _fail(f"missing repository in {_q(text)}")
    if name.startswith("/"):
        raise _fail(f'leading "/" in {_q(text)}')
    if name.endswith("/"):
        raise _fail(f'trailing "/" in {_q(text)}: missing repository after it')
    if "//" in name:
        raise _fail(f'empty path component ("//") in {_q(text)}')

    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        registry, repository = first, rest
        _split_host(registry, text)
    else:
        registry, repository = DEFAULT_REGISTRY, name
    if registry in (DEFAULT_REGISTRY, _LEGACY_DEFAULT_REGISTRY) and "/" not in repository:
        if _COMPONENT_RE.fullmatch(repository.lower()) and repository != repository.lower():
            # Report the name as typed, not with the "library/" Docker puts in front.
            raise _fail(
                f"repository name must be lowercase: {_q(repository)}{_in(repository, text)}"
            )
        repository = _OFFICIAL_PREFIX + repository
    _check_repository(repository, text)
    return RegistryReference(registry, repository, tag, digest if at else None)


def _parse_layout(text: str) -> LayoutReference:
    rest = text[len(_LAYOUT_PREFIX) :]
    digest: str | None = None
    if rest.endswith("@"):
        raise _fail(f'missing digest after "@" in {_q(text)}')
    match = _LAYOUT_DIGEST_RE.search(rest)
    if match is not None:
        digest = match.group(1)
        rest = rest[: match.start()]
        if rest.endswith("@") or _LAYOUT_DIGEST_RE.search(rest):
            raise _fail(f'extra "@" in {_q(text)}: a reference has at most one digest')
        _check_digest(digest, text)
    path_text, colon, tag_text = rest.partition(":")
    if path_text == "":
        raise _fail(f"missing layout path in {_q(text)}: write oci:PATH[:tag][@digest]")
    tag: str | None = None
    if colon:
        if tag_text == "":
            raise _fail(f'empty tag after ":" in {_q(text)}')
        tag = _check_layout_tag(tag_text, text)
    return LayoutReference(Path(path_text), tag, digest)
