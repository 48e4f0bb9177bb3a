"""At most ``n`` admissions per sliding minute, process-local.

Example:
    >>> clock = iter([0.0, 1.0, 2.0, 61.5]).__next__
    >>> limiter = RateLimiter(2, clock=clock)
    >>> [limiter.try_acquire() for _ in range(4)]
    [True, True, False, True]
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

WINDOW_S = 60.0


class RateLimiter:
    """A sliding-window limit: the queue must not fill with one burst of traffic.

    Per process on purpose: several gateway replicas each admit ``per_minute``, and a restart
    starts a fresh window; both only change how fast the bounded queue fills.

    Args:
        per_minute: Admissions allowed in any 60 s window.
        clock: Seconds, monotonic (tests pass their own).
    """

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._admitted: deque[float] = deque()
        self._lock = threading.Lock()

    def _forget_old(self, now: float) -> None:
        while self._admitted and now - self._admitted[0] >= WINDOW_S:
            self._admitted.popleft()

    def has_room(self) -> bool:
        """Whether an admission now would pass (checked before any costly work)."""
        with self._lock:
            self._forget_old(self._clock())
            return len(self._admitted) < self.per_minute

    def try_acquire(self) -> bool:
        """Admit one if the window has room; True when admitted."""
        with self._lock:
            now = self._clock()
            self._forget_old(now)
            if len(self._admitted) >= self.per_minute:
                return False
            self._admitted.append(now)
            return True
