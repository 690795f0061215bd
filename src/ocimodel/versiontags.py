"""What a tag means to the model registry: a version (immutable, ordered) or an alias
(``latest``, ``production``: moved on purpose). Its own module so that push, tag and copy
can check a version tag without loading the lineage and model-card code.

Setting a version tag is a check-and-set: the tag is written only if it is free or already
holds the same model, and of two writers racing for one version exactly one succeeds. An
OCI layout does it under its index lock; a registry has no compare-and-swap, so
:func:`set_version_tag` writes, waits and reads again (docs/version-tags.md)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from ocimodel.errors import TRANSIENT_STATUS, RegistryError, TransportError, VersionExists

_VERSION_TAG = re.compile(r"^[vV]?[0-9]")
# Attempts when the tag is found free again after our write (the write failed, timed out
# or was deleted) or our check was too old to write on.
MAX_TAG_ATTEMPTS = 5


def is_version_tag(tag: str) -> bool:
    """A tag that starts with a digit, or v and a digit: ``1``, ``1.2``, ``2024-05-01``,
    ``v3.0.0-rc1``. Any other tag (latest, production, champion) is an alias."""
    return bool(_VERSION_TAG.match(tag))


def is_guarded(tag: str | None, force: bool) -> bool:
    """Whether writing ``tag`` must be a check-and-set: a version, and no ``force``."""
    return tag is not None and not force and is_version_tag(tag)


def version_key(tag: str) -> tuple:
    """Semver-aware order: 1.2 < 1.10 < 2.0; 1.0-rc1 < 1.0; text parts compare as text."""
    base, _, pre = tag.removeprefix("v").partition("-")
    parts = [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"[.+_]", base)]
    while len(parts) > 1 and parts[-1] == (0, 0, ""):
        parts.pop()  # 1.0.0 == 1.0 == 1
    # A release sorts after its pre-releases (1.0-rc1 < 1.0).
    return (tuple(parts), (1, "") if not pre else (0, pre))


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
    settle: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Point a registry's version tag at ``digest`` unless it holds another model, such
    that of writers racing for the tag exactly one returns and the others raise
    VersionExists naming the model the tag keeps.

    ``read`` gives the digest the tag holds (None: free); ``write(deadline)`` puts the tag,
    sent once and given up after ``deadline`` seconds. A writer writes only on a check
    that found the tag free, and only if the check started less than ``settle`` ago, so its
    write lands within 2 x ``settle`` of a moment the tag was free. Every writer then waits
    2 x ``settle`` and reads the tag again: by then every racer's write has landed (they
    all checked before the first write, or they would have seen it), so all of them read
    the same final digest, and only its writer returns. A writer that found its own model
    already there waits and reads again too: a racer's late write may still replace it.

    The guarantee rests on every writer using the same ``settle``
    (OCIMODEL_REFERRERS_SETTLE, default 1 s) and on no write landing after its client gave
    up on it; ``--force`` writers ignore the protocol."""
    if settle is None:
        from ocimodel.targets.referrers import settle_time  # only registries need it

        settle = settle_time()
    for _ in range(MAX_TAG_ATTEMPTS):
        started = clock()
        holder = read()
        if holder is not None and holder != digest:
            raise version_taken(where, holder, digest)
        if holder is None:
            if settle and clock() - started > settle:
                continue  # the check is stale: a racer may have written since
            try:
                write(settle or None)
            except (RegistryError, TransportError) as exc:
                transient = isinstance(exc, TransportError) or exc.transient or exc.status in TRANSIENT_STATUS
                if not transient:
                    raise
                # A write that failed or timed out may still have landed: look, as below.
        sleep(2 * settle)
        holder = read()
        if holder == digest:
            return
        if holder is not None:
            raise version_taken(where, holder, digest, raced=True)
        # Free again: our write never landed (or someone deleted the tag). Start over.
    raise RegistryError(
        f"{where}: could not set the version tag in {MAX_TAG_ATTEMPTS} attempts (each check of it took "
        f"longer than OCIMODEL_REFERRERS_SETTLE, or the tag kept disappearing)",
        hint="try again; on a slow registry raise OCIMODEL_REFERRERS_SETTLE for every writer",
    )
