"""A fresh platform for one budget run: ``devstack.LocalStack`` (real TorchServe and gateway on
free ports, over copies of ``models/`` and ``data/`` in a temporary folder).

Each budget mode must start from version 1 with no feedback yet, so each run gets its own stack:
the developer's ``make demo``, registry and CSVs are never touched. The stack's gateway runs
with the settings a comparison needs: no retrain started by the loop itself, and a review-queue
rate limit that the pool's traffic does not reach (the modes compare *which* images get labelled,
not how fast the queue fills).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from devstack.stack import LocalStack
from devstack.waiting import NotReady
from scripts.scenario.errors import ScenarioError
from scripts.scenario.output import console
from yoloserve import paths

#: No feedback of a budget run may start a retrain by itself.
NO_RETRAIN_EVERY_K = 1_000_000_000


def isolated_env(ref_dir: Path, pool: int) -> dict[str, str]:
    """Gateway (and retrain job) variables of a budget run's stack."""
    return {
        "RETRAIN_EVERY_K": str(NO_RETRAIN_EVERY_K),
        "RETRAIN_REF_DIR": str(ref_dir),
        "GATEWAY_REVIEW_MAX_PER_MINUTE": str(max(10, 2 * pool)),
        "GATEWAY_REVIEW_MAX_ITEMS": str(max(500, 2 * pool)),
    }


@contextmanager
def isolated_stack(
    ref_data: Path, ref_dir: Path, pool: int, workdir: Path | None = None
) -> Iterator[LocalStack]:
    """Start TorchServe and the gateway on a fresh copy of the models; stop them at the end.

    Args:
        ref_data: ``ref_data.csv`` for the rare and novel strategies (copied into the stack).
        ref_dir: The reference dataset retrain jobs mix in (``RETRAIN_REF_DIR``).
        pool: Pool size (sets the review queue's bounds above it).
        workdir: Where the stack lives; a temporary folder (removed afterwards) when None.

    Raises:
        ScenarioError: No reference data, or the stack did not come up.
    """
    if not ref_data.is_file():
        raise ScenarioError(f"no {ref_data}: build the reference data first (make ref-data)")
    with tempfile.TemporaryDirectory(prefix="scenario-stack-") as tmp:
        root = workdir or Path(tmp) / "stack"
        stack = LocalStack.create(root, extra_env=isolated_env(ref_dir, pool))
        shutil.copy(ref_data, stack.data_dir / "ref_data.csv")
        console.log(f"starting an isolated TorchServe + gateway under {root} ...")
        try:
            with stack:
                console.log(f"isolated gateway on {stack.gateway_url}")
                yield stack
        except NotReady as exc:
            raise ScenarioError(f"the isolated stack did not come up: {exc}") from exc


DEFAULT_REF_DATA = paths.DATA_DIR / "ref_data.csv"
DEFAULT_REF_DIR = paths.DATA_DIR / "shapes"
