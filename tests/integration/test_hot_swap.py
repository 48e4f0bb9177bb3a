"""Zero-downtime hot swap on the real TorchServe, under load through the real gateway.

Eight client threads loop on ``POST /predict`` while version 2 (the shipped weights packaged
again) is hot-registered and made the default, and then while version 1 is activated again
(rollback). Not one request may fail, and ``X-Model-Version`` must follow each swap.
"""

from __future__ import annotations

import time

import pytest

from tests.integration.conftest import Stack
from tests.integration.loop_support import (
    Traffic,
    loaded_versions,
    restore_default,
    wait_no_active_job,
)
from yoloserve.modelserver.deploy import hot_swap_sync
from yoloserve.modelserver.packaging import package

pytestmark = pytest.mark.integration

THREADS = 8
MIN_REQUESTS = 200


def test_hot_swap_and_rollback_under_load_drop_no_request(stack: Stack) -> None:
    registry = stack.registry
    wait_no_active_job(registry)
    first = registry.load().default_version
    assert first is not None
    second = package(stack.weights, registry, store_dir=stack.store_dir, reuse=False)
    assert second.version != first and second.status == "ready"
    urls = (stack.torchserve.management_url, stack.torchserve.inference_url)
    image = (stack.data_dir / "samples" / "shapes_1.jpg").read_bytes()

    try:
        with Traffic(stack.gateway_url, image, threads=THREADS) as load:
            load.wait_for(20)
            t0 = time.monotonic()
            hot_swap_sync(*urls, registry, second.version, drain_s=2.0)
            swapped_at = time.monotonic()
            load.wait_for(load.count() + 40)
            assert loaded_versions(stack) == [second.version]
            assert registry.load().default_version == second.version

            rollback_from = time.monotonic()
            hot_swap_sync(*urls, registry, first, drain_s=2.0)
            rolled_back_at = time.monotonic()
            load.wait_for(max(MIN_REQUESTS, load.count() + 40))
    finally:
        restore_default(stack, first)

    outcomes = sorted(load.answers, key=lambda o: o.ended)
    failed = [o for o in outcomes if o.status != 200]
    assert len(outcomes) >= MIN_REQUESTS
    assert failed == [], f"{len(failed)} of {len(outcomes)} failed, first: {failed[:3]}"
    # Once a swap has returned, every answer comes from the new default (the old version's
    # queue was drained before it was unregistered).
    between = {o.version for o in outcomes if swapped_at < o.ended < rollback_from}
    after = {o.version for o in outcomes if o.ended > rolled_back_at}
    assert between == {second.version}
    assert after == {first}
    assert loaded_versions(stack) == [first]
    data = registry.load()
    assert data.default_version == first
    assert data.get(first).status == "serving" and data.get(second.version).status == "ready"
    print(f"\nhot swap: {len(outcomes)} requests, 0 failed; swap to v{second.version} took "
          f"{swapped_at - t0:.1f} s, rollback {rolled_back_at - rollback_from:.1f} s")
