"""The gateway's OpenAPI document says what the gateway accepts: schemathesis against the real one.

The schemathesis CLI (as a user runs it) reads ``/openapi.json`` from the stack's live gateway
(real TorchServe behind it) and sends generated requests to every operation, valid and invalid,
with every check on: no 5xx, a documented status, headers and body for each answer, and no
request the schema allows refused (so a client generated from the schema never sends what the
gateway then rejects: an empty upload or an empty ``labels`` part once were). What a schema
cannot make a generator draw (a decodable photo, boxes of the served classes) comes from
``schemathesis_hooks.py`` in positive cases only. Valid feedback is stored; the session's gateway
never starts a retrain from feedback (``tests/conftest.py``), so none starts mid-suite.

Left out: ``POST /retrain`` and ``POST /models/{version}/activate`` would start a real retrain
and swap the model that every other test of the session shares; tests/gateway covers their input
handling, tests/integration their effects. ``/labelstudio/{setup,predict,webhook}`` take Label
Studio's bodies (an XML labeling config, tasks naming image URLs), which no generator draws from
a schema; tests/gateway/test_gateway_labelstudio.py covers their input handling,
test_labelstudio_e2e.py a real Label Studio.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import ADMIN_KEY, Stack
from yoloserve import paths

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MAX_EXAMPLES = 20  # per operation and phase; a fixed seed makes the run repeatable
SKIPPED = r"^/retrain$|/activate$|^/labelstudio/(setup|predict|webhook)$"


def test_the_gateway_keeps_its_openapi_document(stack: Stack, tmp_path: Path) -> None:
    cli = Path(sys.executable).with_name("schemathesis")
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.integration.schemathesis_hooks",
           "PYTHONPATH": str(paths.ROOT)}
    # Run in tmp_path: the CLI keeps its cache (.schemathesis/) in its working folder.
    result = subprocess.run(
        [str(cli), "--no-color", "run", f"{stack.gateway_url}/openapi.json", "--checks", "all",
         "--header", f"X-API-Key: {ADMIN_KEY}", "--exclude-path-regex", SKIPPED,
         "--max-examples", str(MAX_EXAMPLES), "--seed", "20261207", "--workers", "1",
         "--request-timeout", "120", "--report-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=1200, check=False, env=env, cwd=tmp_path,
    )
    print(result.stdout, result.stderr[-3000:])  # pytest shows it with the failure
    assert result.returncode == 0, "schemathesis found problems: see the captured output"
