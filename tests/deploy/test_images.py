"""deploy/images/requirements.py: each image's pins, read from pyproject.toml."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "images" / "requirements.py"


def build(tmp_path: Path, pyproject: Path = ROOT / "pyproject.toml") -> dict[str, list[str]]:
    # Run as the image build runs it: a plain interpreter, no project imports.
    subprocess.run([sys.executable, "-I", str(SCRIPT), str(pyproject), str(tmp_path)],
                   check=True)
    return {p.stem: p.read_text().split() for p in tmp_path.glob("*.txt")}


def test_every_image_gets_the_pins_of_its_extras(tmp_path: Path) -> None:
    files = build(tmp_path)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = project["dependencies"]
    assert set(files) == {"torch", "serving", "trainer", "gateway", "webapp", "reporting"}
    for image in ("gateway", "webapp", "reporting"):
        assert files[image][: len(base)] == base
        assert not any(r.startswith(("torch", "ultralytics")) for r in files[image]), image
    assert sorted(files["torch"]) == ["torch==2.14.1", "torchvision==0.29.1"]
    # ml pulls serving's runtime through its self-reference, exactly pinned.
    assert set(files["serving"]) < set(files["trainer"])
    # The serving worker: no Ultralytics, no torchvision, and torch only as its own CPU build.
    lean = files["serving"]
    assert not any(r.startswith(("torch==", "torchvision", "ultralytics")) for r in lean)
    assert any(r.startswith("onnxruntime==") for r in files["serving"])
    assert "scikit-learn==1.9.1" in files["trainer"]
    assert all("==" in r for f in files.values() for r in f)


def test_self_references_are_followed_once(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[project]\nname = "yoloserve"\ndependencies = ["a==1"]\n'
        '[project.optional-dependencies]\n'
        'serving = ["torch==2", "b==1"]\n'
        'ml = ["yoloserve[serving]", "c==1", "yoloserve[serving,ml]"]\n'
        'gateway = ["d==1"]\nwebapp = []\nreporting = []\n'
    )
    files = build(tmp_path / "out", pyproject)
    assert files["trainer"] == ["a==1", "c==1", "b==1"]  # torch comes from torch.txt
    assert files["torch"] == ["torch==2"]
