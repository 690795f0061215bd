"""Each model reference resolved to a digest and judged by the policy, through the API's
``verify`` (the rules of ``ocimodel verify --policy``: signatures, attestations, scan,
licenses), with caches and a deadline (docs/admission.md).

Caches:

- verdicts, by (registry/repository, digest, policy digest), for ``cache_ttl`` seconds.
  The repository is part of the key because signatures are referrers in a repository:
  the same digest elsewhere may be signed by nobody. A changed policy file has another
  digest, so its verdicts are never those of the old one.
- what a digest is (a model or an ordinary container image), for as long as the process
  lives (bounded): a digest names fixed bytes.
- tag -> digest, for ``resolve_ttl`` seconds (default 0: not cached). A tag can move at
  any moment; the mutating webhook pins what was verified, so a cached resolution never
  lets an unverified digest run, but a validating-only set-up would judge a tag that has
  since moved. Off by default.

Fail closed: anything that stops a verdict (a registry down or slow past the deadline,
an error, a policy that no longer loads) is a deny naming the model and the cause."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ocimodel.admission.review import Found
from ocimodel.api.common import DEFAULT_TAG, open_store
from ocimodel.api.trust import verify
from ocimodel.errors import OcimodelError
from ocimodel.oci.kind import artifact_kind
from ocimodel.oci.models import parse_manifest
from ocimodel.oci.reference import RegistryReference, parse_registry_reference
from ocimodel.transport.connection import ConnectionOptions
from ocimodel.trust.policy import Policy, PolicyError, load_policy

MODEL_KINDS = ("model", "modelkit", "variants")  # what a container image must be to be judged
MAX_ENTRIES = 4096  # per cache: a bounded memory, oldest out first
# Distinct references one request may name (more: every one denied, nothing asked of a
# registry), and how many of them are checked at once: a request naming hundreds of models
# on slow registries holds at most PER_REQUEST of the workers, so the next requests still
# find free ones.
MAX_MODELS = 64
PER_REQUEST = 8


@dataclass(frozen=True)
class ModelVerdict:
    reference: str  # as written in the object
    source: str  # where: "volume weights", "container app", "annotation"
    pointer: str
    digest: str | None  # what was judged (None: it could not be resolved)
    model: bool  # False: an ordinary container image, left alone
    allowed: bool
    rule: str | None  # the first failed rule; "registry", "deadline", "policy", "reference", "error" for the others
    reason: str | None  # a stable code (ocimodel's Reason values) or the error's type
    detail: str
    cached: bool = False

    @property
    def repository(self) -> str:
        return self.reference.rsplit("@", 1)[0]

    def message(self) -> str:
        """One line for the user: the model, the rule, the reason."""
        at = f" ({self.digest})" if self.digest else ""
        if self.allowed:
            return f"model {self.reference}{at} allowed"
        code = f" [{self.reason}]" if self.reason else ""
        return f"model {self.reference}{at} in {self.source} denied by {self.rule}: {self.detail}{code}"


class _PastDeadline(Exception):
    """The request's deadline passed before this check began: it is not started."""


class PolicyUnavailable(Exception):
    """The policy file does not load (any more): every model is denied until it does."""


class PolicyHolder:
    """The policy file, loaded with its keys, and reloaded when the file changes (a
    ConfigMap update swaps it under a running server). ``digest`` identifies the policy
    and its keys' contents: the verdict cache key."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[Any, ...] | None = None
        self._keys: list[Path] = []  # the key files the policy names: a change to one reloads it too
        self.policy: Policy | None = None
        self.digest: str = ""
        # The policy and its digest in one attribute, assigned at once: a reader never gets
        # one policy with another's digest (its verdicts would be cached under that digest).
        self._loaded: tuple[Policy, str] | None = None
        self.error: str | None = None
        self.load()  # raises: a server must not start on a policy it cannot read

    def load(self) -> None:
        """Load the file now; raises its PolicyError (a UsageError)."""
        for _ in range(3):
            stamp = _stamp(self.path)
            data = self.path.read_bytes() if stamp is not None else b""
            policy = load_policy(self.path)
            # The file read twice: swapped in between (a ConfigMap update), the bytes hashed
            # would not be those parsed, and this policy's verdicts cached under another's digest.
            if _stamp(self.path) == stamp:
                break
        else:
            raise PolicyError(f"the policy {self.path} kept changing while it was read",
                              hint="it is read again on the next request")
        # Key paths are relative to the policy file, as compile() reads them. Stamped before
        # they are read, so a key replaced meanwhile is read again on the next request.
        keys = [self.path.parent / key for key in (getattr(s, "key", None) for s in policy.signers.values()) if key]
        stamp = (stamp, *(_stamp(key) for key in keys))
        trust = policy.compile()  # every key loaded: a missing key fails here, not per request
        hints = sorted(k.hint for k in trust.keys.values())
        digest = hashlib.sha256(hashlib.sha256(data).hexdigest().encode() + "".join(hints).encode()).hexdigest()
        self._keys = keys
        self._loaded = (policy, f"sha256:{digest}")
        self.policy, self.digest, self.error, self._stamp = policy, f"sha256:{digest}", None, stamp

    def current(self) -> tuple[Policy, str]:
        """The policy and its digest; reloads a changed file (the policy or a key it names).
        Raises PolicyUnavailable."""
        stamp = (_stamp(self.path), *(_stamp(key) for key in self._keys))
        if stamp != self._stamp:
            with self._lock:
                if stamp != self._stamp:
                    try:
                        self.load()
                    except (OcimodelError, OSError) as exc:
                        self._loaded, self._stamp, self.policy = None, stamp, None
                        self.error = f"the policy {self.path} does not load: {getattr(exc, 'message', exc)}"
        loaded = self._loaded
        if loaded is None:
            raise PolicyUnavailable(self.error or f"the policy {self.path} does not load")
        return loaded


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()  # follows the symlinks a ConfigMap mount swaps
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class _TtlCache:
    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.clock = clock
        self._items: OrderedDict[Any, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any | None:
        if self.ttl <= 0:
            return None
        with self._lock:
            entry = self._items.get(key)
            if entry is None:
                return None
            if entry[0] < self.clock():
                del self._items[key]
                return None
            self._items.move_to_end(key)
            return entry[1]

    def put(self, key: Any, value: Any) -> None:
        if self.ttl <= 0:
            return
        with self._lock:
            self._items[key] = (self.clock() + self.ttl, value)
            self._items.move_to_end(key)
            while len(self._items) > MAX_ENTRIES:
                self._items.popitem(last=False)


class Verdicts:
    """Judges the models of one request within ``deadline`` seconds. ``on_cache(name,
    hit)`` is told of every cache lookup (the metrics count them)."""

    def __init__(
        self,
        policy: PolicyHolder,
        connection: ConnectionOptions,
        *,
        deadline: float = 8.0,
        cache_ttl: float = 300.0,
        resolve_ttl: float = 0.0,
        workers: int = 32,
        on_cache: Callable[[str, bool], None] | None = None,
    ) -> None:
        self.policy = policy
        # No one registry request may outlast the whole answer's deadline.
        self.connection = connection.with_overrides(request_timeout=deadline)
        self.deadline = deadline
        self.verdicts = _TtlCache(cache_ttl)
        self.resolved = _TtlCache(resolve_ttl)
        self.kinds = _TtlCache(float("inf"))
        self.on_cache = on_cache or (lambda name, hit: None)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ocimodel-admission")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def cached(self, found: list[Found]) -> list[ModelVerdict] | None:
        """The verdicts when the caches hold every one of them, else None (then
        :meth:`judge`). No thread, no registry: the answer to an object whose models were
        judged before (the validating webhook after /mutate pinned them) costs a few dict
        lookups, on the event loop."""
        try:
            _, policy_digest = self.policy.current()
        except PolicyUnavailable:
            return None
        lookups: list[tuple[str, bool]] = []
        by_key: dict[str, ModelVerdict] = {}
        if len(_distinct(found)) > MAX_MODELS:
            return None  # judge denies them all
        for f in _distinct(found):
            try:
                ref = parse_registry_reference(f.reference)
            except OcimodelError:
                return None
            verdict = self._from_caches(f, ref, ref.digest, policy_digest, lookups)
            if verdict is None:
                return None
            by_key[f.reference] = verdict
        for name, hit in lookups:  # counted once, here or by judge, never both
            self.on_cache(name, hit)
        return [replace(by_key[f.reference], source=f.source, pointer=f.pointer) for f in found]

    def judge(self, found: list[Found], started: float | None = None) -> list[ModelVerdict]:
        """A verdict per place found, in order (each distinct reference judged once); those
        not done within the deadline are denied as such. Never raises for a registry's or
        the policy's sake."""
        # From the request's arrival (``started``, time.monotonic()) when given: a request that
        # waited for a thread has less time left, not a fresh deadline.
        started = time.monotonic() if started is None else started
        try:
            policy, digest = self.policy.current()
        except PolicyUnavailable as exc:
            return [_deny(f, None, "policy", "policy-unavailable", str(exc)) for f in found]
        distinct = _distinct(found)
        if len(distinct) > MAX_MODELS:
            return [_deny(f, None, "limit", "too-many-models",
                          f"the object names {len(distinct)} distinct models and images, more than the "
                          f"{MAX_MODELS} the webhook checks in one request") for f in found]
        ends = started + self.deadline
        pending = list(distinct)
        running: dict[Future[ModelVerdict], Found] = {}
        by_key: dict[str, ModelVerdict] = {}
        while pending or running:
            while pending and len(running) < PER_REQUEST:
                f = pending.pop(0)
                running[self._pool.submit(self._one, f, policy, digest, ends)] = f
            left = ends - time.monotonic()
            if left <= 0:
                break
            done, _ = wait_for(running, timeout=left, return_when=FIRST_COMPLETED)
            for job in done:
                by_key[running.pop(job).reference] = job.result()
        for job, f in running.items():
            job.cancel()  # a queued one never starts; a running one stops at its next stage
        for f in [*running.values(), *pending]:
            where = _registry_of(f.reference)
            by_key[f.reference] = _deny(
                f, None, "deadline", "deadline",
                f"no verdict within the deadline of {self.deadline:g} s (is {where} down or slow?)")
        # One verdict per place, so each place can be pinned.
        return [replace(by_key[f.reference], source=f.source, pointer=f.pointer) for f in found]

    # -- one reference -------------------------------------------------------------------

    def _one(self, found: Found, policy: Policy, policy_digest: str, ends: float) -> ModelVerdict:
        try:
            ref = parse_registry_reference(found.reference)
        except OcimodelError as exc:
            return _deny(found, None, "reference", "invalid-reference", exc.message)
        try:
            return self._judge(found, ref, policy, policy_digest, ends)
        except _PastDeadline:
            return _deny(found, None, "deadline", "deadline", f"no verdict within the deadline of {self.deadline:g} s")
        except OcimodelError as exc:
            return _deny(found, None, "registry", type(exc).__name__, exc.message)
        except Exception as exc:  # noqa: BLE001 - fail closed on what nobody foresaw, and say it
            return _deny(found, None, "error", type(exc).__name__, str(exc)[:300] or type(exc).__name__)

    def _from_caches(self, found: Found, ref: RegistryReference, digest: str | None, policy_digest: str,
                     lookups: list[tuple[str, bool]]) -> ModelVerdict | None:
        """The verdict from the caches alone (None: the registry must be asked). Each
        lookup is noted in ``lookups`` as (cache, hit)."""
        repository = f"{ref.registry}/{ref.repository}"
        if digest is None and self.resolved.ttl > 0:
            digest = self.resolved.get((repository, ref.tag))
            lookups.append(("resolve", digest is not None))
        if digest is None:
            return None
        if found.candidate:
            model = self.kinds.get((repository, digest))
            lookups.append(("kind", model is not None))
            if model is None:
                return None
            if not model:
                return _image(found, digest)
        hit = self.verdicts.get((repository, digest, policy_digest))
        lookups.append(("verdict", hit is not None))
        return _from_cache(found, hit) if hit is not None else None

    def _judge(self, found: Found, ref: RegistryReference, policy: Policy, policy_digest: str,
               ends: float) -> ModelVerdict:
        repository = f"{ref.registry}/{ref.repository}"
        lookups: list[tuple[str, bool]] = []
        verdict = self._from_caches(found, ref, ref.digest, policy_digest, lookups)
        for name, hit in lookups:
            self.on_cache(name, hit)
        if verdict is not None:
            return verdict
        digest = ref.digest
        _in_time(ends)  # the request already answered: no registry is asked for it
        # The registry is asked: the tag's digest, and (for a container image) what it is.
        with open_store(self.connection, ref) as store:
            root = store.resolve(digest or ref.tag or DEFAULT_TAG)
            digest = root.digest
            if ref.digest is None:
                self.resolved.put((repository, ref.tag), digest)
            if found.candidate:
                model = self.kinds.get((repository, digest))
                if model is None:
                    kind = artifact_kind(parse_manifest(store.fetch_manifest(root), root.media_type))
                    model = kind.kind in MODEL_KINDS
                    self.kinds.put((repository, digest), model)
                if not model:
                    return _image(found, digest)
        hit = self.verdicts.get((repository, digest, policy_digest))  # a tag's digest, judged meanwhile
        if hit is not None:
            return _from_cache(found, hit)
        _in_time(ends)
        decision = verify(self.connection, f"{repository}@{digest}", policy=policy)
        failed = [r for r in decision.reasons if not r.passed]
        if failed:
            first = failed[0]
            more = f" (and {len(failed) - 1} more rule{'s' if len(failed) > 2 else ''})" if len(failed) > 1 else ""
            outcome = (False, first.rule, first.reason, first.detail + more)
        else:
            outcome = (True, None, None, "; ".join(f"{r.rule}: {r.detail}" for r in decision.reasons))
        self.verdicts.put((repository, digest, policy_digest), (digest, *outcome))
        allowed, rule, reason, detail = outcome
        return ModelVerdict(found.reference, found.source, found.pointer, digest, True, allowed, rule, reason, detail)


def _in_time(ends: float) -> None:
    if time.monotonic() >= ends:
        raise _PastDeadline()


def _distinct(found: list[Found]) -> list[Found]:
    """One Found per reference; a candidate only if every place is one (a reference that
    a volume or the annotation names is a model, wherever else it appears)."""
    seen: dict[str, Found] = {}
    for f in found:
        first = seen.setdefault(f.reference, f)
        if first.candidate and not f.candidate:
            seen[f.reference] = f
    return list(seen.values())


def _deny(found: Found, digest: str | None, rule: str, reason: str, detail: str) -> ModelVerdict:
    return ModelVerdict(found.reference, found.source, found.pointer, digest, True, False, rule, reason, detail)


def _image(found: Found, digest: str) -> ModelVerdict:
    return ModelVerdict(found.reference, found.source, found.pointer, digest, False, True, None, None,
                        "not a model artifact: left alone")


def _from_cache(found: Found, hit: tuple) -> ModelVerdict:
    digest, allowed, rule, reason, detail = hit
    return ModelVerdict(found.reference, found.source, found.pointer, digest, True, allowed, rule, reason, detail,
                        cached=True)


def _registry_of(reference: str) -> str:
    try:
        return parse_registry_reference(reference).registry
    except OcimodelError:
        return "the registry"
