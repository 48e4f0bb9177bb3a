"""``python -m yoloserve.retrain trainer-health``: the trainer image's healthcheck."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from yoloserve.retrain.heartbeat import Heartbeater
from yoloserve.retrain.settings import RetrainSettings


def test_trainer_health_follows_this_hosts_heartbeat(tmp_path: Path) -> None:
    env = {**os.environ, "RETRAIN_RUN_DIR": str(tmp_path), "RETRAIN_TRAINER_HEARTBEAT_S": "1"}
    cmd = [sys.executable, "-m", "yoloserve.retrain", "trainer-health"]
    assert subprocess.run(cmd, env=env, capture_output=True, check=False).returncode == 1
    settings = RetrainSettings(run_dir=tmp_path, trainer_heartbeat_s=1)
    with Heartbeater(settings):
        ok = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        assert ok.returncode == 0, ok.stderr
        assert "beat" in ok.stdout
    # A stopped trainer removes its beat: unhealthy at once.
    assert subprocess.run(cmd, env=env, capture_output=True, check=False).returncode == 1
