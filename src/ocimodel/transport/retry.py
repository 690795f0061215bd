"""When and how long to wait before trying a registry request again.

Only failures that may pass are retried: connection errors, timeouts, 408, 429 and 5xx;
only requests that are safe to repeat (their body can be sent again and doing them twice
does no harm). Waits grow exponentially with jitter, so many clients hit by one outage do
not come back in step, and a ``Retry-After`` the registry sends is honoured (capped)."""

from __future__ import annotations

import email.utils
import logging
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from ocimodel import settings

log = logging.getLogger("ocimodel.transport")


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5  # tries in all, the first included
    base_delay: float = 0.5  # seconds before the first retry (before jitter)
    max_delay: float = 30.0  # no wait is longer, whatever Retry-After says

    @classmethod
    def from_environment(cls) -> RetryPolicy:
        """``OCIMODEL_RETRIES`` (tries in all) and ``OCIMODEL_RETRY_DELAY`` (base seconds)."""
        policy = cls()
        return cls(
            attempts=settings.retries(policy.attempts),
            base_delay=settings.retry_delay(policy.base_delay),
            max_delay=policy.max_delay,
        )

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed try number ``attempt`` (1-based)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_delay)
        backoff = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return random.uniform(backoff / 2, backoff)


@dataclass
class RetryStats:
    """What was retried, for tests and --debug. Thread-safe."""

    counts: Counter = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, reason: str) -> None:
        with self._lock:
            self.counts[reason] += 1

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self.counts.values())


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: a number of seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - time.time())


def wait(
    policy: RetryPolicy, attempt: int, what: str, reason: str, retry_after: float | None = None,
    *, time_left: float | None = None,
) -> bool:
    """Sleep before the next try. False, without sleeping, when the wait would use up the
    ``time_left`` of the request (seconds; None: no limit): trying again with no time
    left only delays the failure."""
    seconds = policy.delay(attempt, retry_after)
    if time_left is not None and seconds >= time_left:
        log.debug("not retrying %s after %s: %.2fs left, the wait is %.2fs", what, reason, time_left, seconds)
        return False
    log.debug("retrying %s after %s (try %d of %d) in %.2fs", what, reason, attempt + 1, policy.attempts, seconds)
    time.sleep(seconds)
    return True
