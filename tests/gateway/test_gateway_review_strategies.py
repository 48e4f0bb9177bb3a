"""``gateway.review.strategies`` and ``ratelimit``: which predictions are picked, how strongly,
and how many per minute (the limit shared by replicas: ``test_gateway_review_store.py``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gateway.review.ratelimit import RateLimiter
from gateway.review.strategies import Pick, choose, nearest_distances, novel, rare, uncertain
from yoloserve.schemas import Box
from yoloserve.store.engine import Store


def _boxes(*specs: tuple[float, str]) -> list[Box]:
    return [Box(xyxy=[0, 0, 9, 9], conf=conf, cls=0, name=name) for conf, name in specs]


@pytest.mark.parametrize(
    ("confs", "expected"),
    [
        ((0.25,), 1.0),  # on the threshold: the strongest pick
        ((0.9, 0.3), 0.5),  # the nearest box decides
        ((0.35,), 0.0),  # on the band's edge: picked, weakest
        ((0.36, 0.9), None),  # outside the band
        ((), None),  # nothing detected
    ],
)
def test_uncertain(confs: tuple[float, ...], expected: float | None) -> None:
    pick = uncertain(_boxes(*((c, "circle") for c in confs)), threshold=0.25, band=0.1)
    if expected is None:
        assert pick is None
    else:
        assert pick == Pick("uncertain", pytest.approx(expected, abs=1e-3))


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (("square",), None),  # common
        (("square", "circle"), 0.5),  # the rarest predicted class decides
        (("hexagon",), 1.0),  # never seen in the reference data
        ((), None),
    ],
)
def test_rare(names: tuple[str, ...], expected: float | None) -> None:
    shares = {"square": 0.9, "circle": 0.05, "triangle": 0.05}
    pick = rare(_boxes(*((0.9, n) for n in names)), shares, rare_share=0.1)
    assert (pick.priority if pick else None) == expected
    if pick:
        assert pick.reason == "rare"


def test_rare_without_reference_counts_picks_nothing() -> None:
    assert rare(_boxes((0.9, "hexagon")), {}, rare_share=0.1) is None


def test_nearest_distances() -> None:
    reference = np.array([[0.0, 0.0], [10.0, 0.0]])
    queries = np.array([[3.0, 4.0], [10.0, 1.0], [0.0, 0.0]])
    assert nearest_distances(queries, reference) == pytest.approx([5.0, 1.0, 0.0])


@pytest.mark.parametrize(
    ("distances", "expected"),
    [([1.0, 4.0], 0.5), ([2.0], None), ([], None), ([0.5, 1.9], None)],
)
def test_novel(distances: list[float], expected: float | None) -> None:
    pick = novel(distances, threshold=2.0)
    assert (pick.priority if pick else None) == expected


def test_choose_takes_the_strongest_and_the_first_on_a_tie() -> None:
    a, b, c = Pick("uncertain", 0.4), Pick("rare", 0.8), Pick("novel", 0.8)
    assert choose([a, None, b, c]) == b
    assert choose([None, None]) is None


def test_rate_limit_window_slides(tmp_path: Path) -> None:
    now = [0.0]
    limiter = RateLimiter(Store.sqlite(tmp_path / "yoloserve.db"), 2, clock=lambda: now[0])
    assert limiter.try_acquire()
    now[0] = 30.0
    assert limiter.try_acquire()
    assert not limiter.has_room() and not limiter.try_acquire()
    now[0] = 59.9
    assert not limiter.has_room()
    now[0] = 60.0  # the first admission left the window, the second has not
    assert limiter.has_room() and limiter.try_acquire()
    assert not limiter.try_acquire()
