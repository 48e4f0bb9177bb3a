"""What the scenario measures: a version's mAP50 on its own weights, and reporting runs.

The weights come out of the version's ``.mar``, the file TorchServe serves, so scoring them
scores that version. The reporting runs go through the reporting service's own CLI, so the
figures are the ones the dashboard shows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from scripts.scenario.errors import ScenarioError
from scripts.scenario.output import console
from yoloserve import paths
from yoloserve.modelserver.packaging import PackagingError, extract_weights
from yoloserve.modelserver.registry import Registry


def weights_of(version: str, registry: Registry, store_dir: Path, workdir: Path) -> Path:
    """The weights served as ``version``: taken out of its ``.mar``, checked against the registry.

    Raises:
        ScenarioError: the ``.mar`` is missing or holds no weights with the sha256 the registry
            recorded for ``version``.
    """
    record = registry.get(version)
    mar = store_dir / record.mar
    try:
        return extract_weights(mar, record.sha256, workdir / f"v{version}.pt")
    except PackagingError as exc:
        # The store is the machine's own build output: elsewhere it is simply not there.
        hint = "" if mar.is_file() else "; run the scenario on the machine of `make demo`"
        raise ScenarioError(f"weights of v{version} not found: {exc}{hint}") from exc


def map50(weights: Path, data_yaml: Path) -> float:
    """mAP50 on the ``test`` split of ``data_yaml``."""
    from yoloserve.training.train import evaluate  # imports torch and Ultralytics: only when needed

    return float(evaluate(weights, data_yaml, split="test").map50)


def reporting_run(rows: int, workspace: Path | None) -> dict[str, float]:
    """Add a reporting run over the last ``rows`` prod rows and read its values back.

    Runs the reporting service's own CLI (the scenario imports no other service): the run goes
    into the Evidently workspace the dashboard shows, and its values come back read from that
    workspace by run id, not recomputed here.
    """
    command = [sys.executable, "-m", "reporting", "run-once", "--window-rows", str(rows), "--json"]
    if workspace:
        command += ["--workspace", str(workspace)]
    env = {**os.environ, "DO_NOT_TRACK": "1"}
    run = subprocess.run(command, capture_output=True, text=True, cwd=paths.ROOT, env=env)
    if run.returncode != 0:
        raise ScenarioError(f"reporting run failed: {(run.stdout + run.stderr)[-800:]}")
    for line in run.stderr.splitlines():
        if "run added" in line or "html:" in line:
            console.log(line.strip())
    answer = json.loads(run.stdout.strip().splitlines()[-1])
    return {k: float(v) for k, v in answer["values"].items()}
