"""The one wait-until-ready loop of the local stacks.

Example:
    >>> wait_until(lambda: True, timeout=1.0, what="nothing")  # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx


class NotReady(RuntimeError):
    """A service did not become ready: it died, or the timeout passed."""


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """Whether ``url`` answers 200 right now."""
    try:
        return httpx.get(url, timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def url_ready(url: str) -> Callable[[], bool]:
    """A ready check: ``url`` answers 200."""
    return lambda: http_ok(url)


def wait_until(
    ready: Callable[[], bool],
    timeout: float,
    *,
    what: str,
    alive: Callable[[], bool] | None = None,
    poll_s: float = 0.25,
) -> float:
    """Poll ``ready()`` until it is true; returns the seconds it took.

    Args:
        ready: the check, e.g. ``lambda: http_ok(url)``.
        timeout: seconds to wait at most.
        what: the service's name, for the error message.
        alive: whether the service's process still lives; a dead one fails at once.
        poll_s: pause between checks.

    Raises:
        NotReady: ``alive()`` turned false, or ``timeout`` passed.
    """
    start = time.monotonic()
    while True:
        if ready():
            return time.monotonic() - start
        if alive is not None and not alive():
            raise NotReady(f"{what} exited before it was ready")
        if time.monotonic() - start > timeout:
            raise NotReady(f"{what} not ready after {timeout:.0f} s")
        time.sleep(poll_s)


def wait_http(
    url: str, timeout: float, *, what: str | None = None, alive: Callable[[], bool] | None = None
) -> float:
    """Wait until ``url`` answers 200; see :func:`wait_until`."""
    return wait_until(lambda: http_ok(url), timeout, what=what or url, alive=alive)
