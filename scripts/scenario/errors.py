"""The one error that stops the scenario, and how a failed gateway call becomes it.

Example:
    >>> from gateway_client import GatewayUnreachable
    >>> try:
    ...     with calling("GET /models"):
    ...         raise GatewayUnreachable(None, "gateway_unreachable", "Cannot reach it.")
    ... except ScenarioError as exc:
    ...     print(exc)
    GET /models: Cannot reach it. [gateway_unreachable, no answer]; is the platform up (make demo)?
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from gateway_client import GatewayError, GatewayUnreachable


class ScenarioError(RuntimeError):
    """The scenario cannot go on (gateway down, refused key, job failed to start, ...)."""


@contextmanager
def calling(what: str) -> Iterator[None]:
    """Turn a :class:`GatewayError` raised inside into a :class:`ScenarioError` naming ``what``.

    Args:
        what: The call, as ``METHOD /path``, so the message says which one failed.
    """
    try:
        yield
    except GatewayUnreachable as exc:
        raise ScenarioError(f"{what}: {exc}; is the platform up (make demo)?") from exc
    except GatewayError as exc:
        raise ScenarioError(f"{what}: {exc}") from exc
