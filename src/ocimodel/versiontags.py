"""What a tag means to the model registry: a version (immutable, ordered) or an alias
(``latest``, ``production``: moved on purpose). Its own module so that push, tag and copy
can check a version tag without loading the lineage and model-card code.

Setting a version tag is a check-and-set: the tag is written only if it is free or already
holds the same model, and of writers racing for one version exactly one succeeds (at most
one, if a write goes unanswered). An OCI layout does it under its index lock; a registry
has no compare-and-swap, so :func:`set_version_tag` writes, waits and reads again
(docs/version-tags.md)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import date

from packaging.version import InvalidVersion, Version

from ocimodel.errors import (
    TRANSIENT_STATUS,
    RegistryError,
    TooManyRequests,
    TransportError,
    VersionExists,
    WriteOutcomeUnknown,
)

# A date tag (2024-05-01, or a month: 2024-05). packaging.version reads 2024-05-01 as no
# version and 2024-05 as the post-release 2024.post5, which would sort before 2024-04-30.
_DATE_TAG = re.compile(r"^([0-9]{4})-([0-9]{2})(?:-([0-9]{2}))?$")
_NO_VERSION = Version("0")
# Attempts when the tag is found free again after our answered write (it was deleted) or
# our check was too old to write on.
MAX_TAG_ATTEMPTS = 5
# Reads of the tag answered 500 while a racer rewrites it (docs/registry-facts.md): tried
# this many times in all, READ_PAUSE seconds apart, whatever the retry setting.
READ_TRIES = 4
READ_PAUSE = 0.05


def is_version_tag(tag: str) -> bool:
    """A tag that names a version: one :class:`packaging.version.Version` reads (``1``,
    ``1.2``, ``v3``, ``1.0rc1``, ``1.0-rc.1``, ``1.0.0-beta.2``, ``1.0+build``) or a date
    (``2024-05-01``). Any other tag is an alias: ``latest``, ``production``, and also
    ``7b-instruct`` or ``1.0-foo``, which start with a digit but are no version."""
    return _parse(tag) is not None


def _parse(tag: str) -> Version | None:
    if tag != tag.strip():
        return None  # packaging ignores surrounding blanks; a tag has none
    if date_tag := _DATE_TAG.match(tag):
        year, month, day = date_tag.groups()
        try:
            date(int(year), int(month), int(day or 1))
        except ValueError:
            pass  # no date (2024-13-45): a version only if packaging reads it
        else:
            # The number year.month[.day], so dates keep their calendar order.
            return Version(f"{year}.{month}" + (f".{day}" if day else ""))
    try:
        return Version(tag)
    except InvalidVersion:
        return None


def is_guarded(tag: str | None, force: bool) -> bool:
    """Whether writing ``tag`` must be a check-and-set: a version, and no ``force``."""
    return tag is not None and not force and is_version_tag(tag)


def version_key(tag: str) -> tuple:
    """The order of version tags, by :class:`packaging.version.Version`:
    ``1.0-rc.9 < 1.0-rc.10 < 1.0 < 1.2 < 1.10``; ``1.0``, ``1.0.0`` and ``v1.0`` are equal
    versions and then ordered by their text, so the order is total. Aliases sort last."""
    version = _parse(tag)
    return (0, version, tag) if version is not None else (1, _NO_VERSION, tag)


def version_taken(where: str, holder: str, ours: str, *, raced: bool = False, stored: bool = True) -> VersionExists:
    """The error for a version tag ``where`` (``repo:1.0``) that holds ``holder``, not our
    ``ours``; ``stored``: our model is already in the store (only the tag failed)."""
    if raced:
        message = f"{where} was taken by another model ({holder}) written at the same time; versions are immutable"
    else:
        message = f"{where} already holds another model ({holder}); versions are immutable"
    if stored:
        hint = f"{ours} is stored without the tag: give it another version, or pass --force to replace {holder}"
    else:
        hint = "use a new version tag, or pass --force to replace it"
    return VersionExists(message, hint=hint)


def set_version_tag(
    read: Callable[[], str | None],
    write: Callable[[float | None], None],
    digest: str,
    where: str,
    *,
    settle: float,
    prepare: Callable[[], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Point a registry's version tag at ``digest`` unless it holds another model, such
    that of writers racing for the tag at most one returns and the others raise
    (VersionExists naming the model the tag keeps, or WriteOutcomeUnknown).

    ``read`` gives the digest the tag holds (None: free); ``write(deadline)`` puts the tag,
    sent once and given up after ``deadline`` seconds; ``prepare`` (optional) is called
    before each check, outside every timed step (the registry client gets its push token
    there, so a token round trip neither ages the check nor eats the write's time).

    A writer writes only on a check that found the tag free, and only if the check started
    at most ``settle`` ago; its write is answered within ``settle`` or it fails with
    WriteOutcomeUnknown, never retried or taken for success. So an answered write landed
    within 2 x ``settle`` of a moment the tag was free, and so does an unanswered one if
    it lands at all, given that a registry applies a write within ``settle`` of its being
    sent or not at all. Every writer whose write was answered then waits 2 x ``settle`` and
    reads the tag again: by then every racer's write has landed (they all checked before
    the first write, or they would have seen it), so all of them read the same final
    digest, and only its writer returns. A writer that found its own model already there
    waits and reads again too: a racer's late write may still replace it.

    The guarantee rests on every writer using the same ``settle`` (OCIMODEL_TAG_SETTLE,
    passed in by the caller) and on that landing bound; ``--force`` writers ignore the
    protocol (docs/version-tags.md)."""
    for _ in range(MAX_TAG_ATTEMPTS):
        if prepare is not None:
            prepare()
        started = clock()
        holder = _read_through_rewrites(read, sleep)
        if holder is not None and holder != digest:
            raise version_taken(where, holder, digest)
        if holder is None:
            if settle and clock() - started > settle:
                continue  # the check is stale: a racer may have written since
            try:
                write(settle or None)
            except (RegistryError, TransportError) as exc:
                if not _outcome_unknown(exc):
                    raise  # refused (denied, invalid): the tag was not written
                # Sent, unanswered: it may land after the last moment a racer looks, so
                # neither a read-back nor a second write can decide. Only this writer
                # fails; a racer that wrote is still judged by its own read-back.
                within = f" within {settle:g} s" if settle else ""
                raise WriteOutcomeUnknown(
                    f"{where}: the version tag write got no clear answer{within} ({exc.message}); "
                    f"it may have landed or may land later, so the version is not claimed",
                    hint=f"see what the version holds with `ocimodel versions` or `ocimodel inspect {where}`; "
                    f"if the registry is only slow, raise OCIMODEL_TAG_SETTLE (now {settle:g}) for every writer",
                ) from None
        sleep(2 * settle)
        holder = _read_through_rewrites(read, sleep)
        if holder == digest:
            return
        if holder is not None:
            raise version_taken(where, holder, digest, raced=True)
        # Free again: someone deleted the tag (or our answered write was lost). Start over.
    raise RegistryError(
        f"{where}: could not set the version tag in {MAX_TAG_ATTEMPTS} attempts (each check of it took "
        f"longer than OCIMODEL_TAG_SETTLE ({settle:g} s), or the tag kept disappearing)",
        hint="try again; on a slow registry raise OCIMODEL_TAG_SETTLE for every writer",
    )


def _read_through_rewrites(read: Callable[[], str | None], sleep: Callable[[float], None]) -> str | None:
    """``read()``, tried again when the registry answers 500: distribution writes a tag's
    link file in place, so a read that meets a racer's write half done fails with "500
    unknown error" (docs/registry-facts.md). That is the race this module exists for, not
    a broken registry, so it is tried again here even when the user turned retries off; a
    500 that persists is the registry's answer and is raised."""
    for attempt in range(1, READ_TRIES + 1):
        try:
            return read()
        except RegistryError as exc:
            if exc.status != 500 or attempt == READ_TRIES:
                raise
        sleep(READ_PAUSE)
    raise AssertionError("unreachable")  # the loop returns or raises


def _outcome_unknown(exc: RegistryError | TransportError) -> bool:
    """Whether a failed write may still land: no answer (timed out, connection cut) or an
    answer that does not say the registry refused it (a 5xx, often from a proxy whose
    backend may still apply it). A 429 or 4xx is a refusal: nothing was written."""
    if isinstance(exc, TransportError):
        return True
    if isinstance(exc, TooManyRequests) or exc.status is None or exc.status == 429:
        return False
    return exc.status in TRANSIENT_STATUS or exc.status >= 500
