"""Feedback that is safe to retry: a repeated ``POST /feedback`` gets the first answer.

A client that sent feedback and got no answer (timeout, connection reset, the gateway killed)
cannot know whether its rows were stored. With an ``Idempotency-Key`` header, or without one but
with the prediction's ``request_id`` in ``labels``, it may simply send the same request again.

The key names the feedback: its rows are stored under ``feedback_id = idem-<hash>``
(:func:`feedback_id_for`, the hash is the key's row in the store), and the key commits in the
same store transaction as the rows (``yoloserve.feedback.ledger``): either both are stored or
neither is, and any gateway replica finds it. The first answer (body, ``X-Model-Version``) is
stored with the key before it is sent; a key stored by an attempt that was never answered (the
gateway died after the commit) is answered on retry from what its rows imply.

Scope: with the header, the key alone identifies the feedback (a client string up to 128
printable ASCII characters; the same key with another image or other labels is a 409
``idempotency_key_reused``, as long as the first request's fingerprint is known). Without it, a
``request_id`` plus the exact image and labels do: sending the identical correction of one
prediction twice stores it once, while a *different* correction of the same prediction is new
feedback. Without either, every request is new feedback, as before. Only a 201 is remembered: a
request that failed stored nothing and is simply run again.

Same-key requests in flight at once in one process wait for each other (:class:`KeyLocks`), so
the second replays the first without running the model; across processes the store's unique key
decides, and the later one replays the winner's answer.

Example:
    >>> check_key("order-42/try"), feedback_id_for(dedupe_scope("k", None, "f"))[:5]
    ('order-42/try', 'idem-')
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from yoloserve.errors import IdempotencyKeyReused, InvalidIdempotencyKey
from yoloserve.feedback.ledger import KeyClaim, StoredAnswer
from yoloserve.schemas import FeedbackLabels

KEY_HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 128
ID_PREFIX = "idem-"
_KEY = re.compile(r"[\x20-\x7e]+")


def check_key(raw: str | None) -> str | None:
    """The ``Idempotency-Key`` header's value, checked (None when it was not sent).

    Raises:
        InvalidIdempotencyKey: empty, longer than 128 characters, or not printable ASCII.
    """
    if raw is None:
        return None
    if not 0 < len(raw) <= MAX_KEY_LENGTH or not _KEY.fullmatch(raw) or not raw.strip():
        raise InvalidIdempotencyKey(
            f"{KEY_HEADER} must be 1 to {MAX_KEY_LENGTH} printable ASCII characters"
        )
    return raw


def fingerprint(image_digest: str, labels: FeedbackLabels) -> str:
    """What a retry must repeat: the image's sha256 and the labels, canonically."""
    canonical = json.dumps(labels.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"{image_digest}\n{canonical}".encode()).hexdigest()


def dedupe_scope(key: str | None, request_id: str | None, print_: str) -> str | None:
    """The string that names this feedback for retries, or None when it has no name.

    The header names it alone (and a reuse with other content is refused); a ``request_id``
    names it together with its content (another correction of that prediction is new feedback).
    """
    if key is not None:
        return f"key\n{key}"
    if request_id is not None:
        return f"request\n{request_id}\n{print_}"
    return None


def feedback_id_for(scope: str) -> str:
    """The ``feedback_id`` every attempt of the feedback named by ``scope`` stores under."""
    return ID_PREFIX + hashlib.sha256(scope.encode()).hexdigest()[:32]


def claim_for(scope: str, print_: str) -> KeyClaim:
    """The key row the feedback named by ``scope`` is stored under, with its fingerprint."""
    feedback_id = feedback_id_for(scope)
    return KeyClaim(feedback_id[len(ID_PREFIX):], feedback_id, print_)


def check_reuse(found: StoredAnswer, print_: str, *, strict: bool) -> None:
    """Refuse a key whose first request had another fingerprint (``strict``: a header key).

    Raises:
        IdempotencyKeyReused: the content differs from the first request's.
    """
    if strict and found.fingerprint not in (None, print_):
        raise IdempotencyKeyReused(
            f"this {KEY_HEADER} was used for another image or other labels; use a new key "
            "for new feedback"
        )


@dataclass
class _KeyLock:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class KeyLocks:
    """One asyncio lock per key in use, forgotten once nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, _KeyLock] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        """Serialise requests of one key: a concurrent retry waits, then finds the answer."""
        # Counted, not just looked at: a released lock may still have a waiter, and a new lock
        # for a third request would let it run beside that waiter.
        entry = self._locks.setdefault(key, _KeyLock())
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:
            entry.users -= 1
            if entry.users == 0:
                del self._locks[key]
