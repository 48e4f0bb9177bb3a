"""What the platform writes while it runs is ignored by git: ``make demo`` leaves a clean tree.

The session's stack runs a whole platform in a folder laid out like the repository (``models/``,
``data/``; its run folder is the repository's ``.run/``). After real traffic through it (a
prediction, feedback with an ``Idempotency-Key``, a review read), every file there that git does
not track in the repository must match the repository's ignore rules (``git check-ignore
--no-index``, so rules are judged on paths alone). A new kind of state file then fails here
instead of showing up as untracked in a user's ``git status``.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import USER_KEY, Stack
from yoloserve import paths

pytestmark = pytest.mark.integration

SAMPLE = paths.ROOT / "data" / "samples" / "shapes_1.jpg"
BOXES = [{"xyxy": [4.0, 4.0, 44.0, 40.0], "name": "circle"}]


def _git(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(paths.ROOT), *args], input=stdin,
                          capture_output=True, text=True, check=False)


def test_every_file_a_running_platform_writes_is_tracked_or_ignored(stack: Stack) -> None:
    if _git("rev-parse", "--is-inside-work-tree").returncode != 0:
        pytest.skip("not a git checkout")
    image = SAMPLE.read_bytes()
    with httpx.Client(base_url=stack.gateway_url, timeout=60,
                      headers={"X-API-Key": USER_KEY}) as client:
        assert client.post("/predict", files={"file": ("s.jpg", image)}).status_code == 200
        sent = client.post("/feedback", headers={"Idempotency-Key": "ignored-files/1"},
                           files={"file": ("s.jpg", image)},
                           data={"labels": json.dumps({"boxes": BOXES})})
        assert sent.status_code == 201, sent.text
        assert client.get("/review").status_code == 200

    written = {
        f"{area}/{path.relative_to(folder).as_posix()}"
        for area, folder in (("models", stack.models_dir), ("data", stack.data_dir))
        for path in Path(folder).rglob("*") if path.is_file()
    }
    assert any(p.startswith("data/") and p.endswith(".csv") for p in written), written
    tracked = set(_git("ls-files", "models", "data").stdout.splitlines())
    candidates = sorted(written - tracked)
    ignored = set(_git("check-ignore", "--no-index", "--stdin",
                       stdin="\n".join(candidates) + "\n").stdout.splitlines())
    loose = [p for p in candidates if p not in ignored]
    assert not loose, ("files the running platform wrote that git would show as untracked "
                       f"(add them to .gitignore): {loose}")
