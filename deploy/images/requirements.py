"""Pinned requirement files for each image, read from pyproject.toml (the one place pins live).

Runs inside the image build (standard library only, Python 3.11) and writes one file per layer
group into OUT: ``torch.txt`` (torch + torchvision, the heavy layer of the trainer image), then one
file per image, without torch: an image installs ``torch.txt`` (when it needs it) and its own file,
so editing any other pin leaves the multi-GB torch layer in the build cache. The serving image
installs no ``torch.txt``: a CPU build of torch, for TorchServe's worker only (its Dockerfile
stage).

    python3 requirements.py pyproject.toml OUT
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

# Which extras each image installs besides the base dependencies.
IMAGES: dict[str, list[str]] = {
    "serving": ["serving"],
    "trainer": ["ml"],
    "gateway": ["gateway"],
    "webapp": ["webapp"],
    "reporting": ["reporting"],
}
TORCH = ("torch", "torchvision")


def _name(requirement: str) -> str:
    return re.split(r"[\s\[=<>!~;]", requirement, maxsplit=1)[0].lower()


def expand(project: dict, extras: list[str]) -> list[str]:
    """The base dependencies plus ``extras``, self-references (``yoloserve[x]``) followed."""
    own = project["name"].lower()
    optional = project.get("optional-dependencies", {})
    out: list[str] = list(project.get("dependencies", []))
    pending = list(extras)
    seen: set[str] = set()
    while pending:
        extra = pending.pop(0)
        if extra in seen:
            continue
        seen.add(extra)
        for requirement in optional[extra]:
            if _name(requirement) == own:
                pending += re.findall(r"[\w-]+", requirement.split("[", 1)[1].split("]")[0])
            else:
                out.append(requirement)
    return list(dict.fromkeys(out))


def main(pyproject: Path, out: Path) -> None:
    project = tomllib.loads(pyproject.read_text())["project"]
    out.mkdir(parents=True, exist_ok=True)
    everything = expand(project, sorted(project.get("optional-dependencies", {})))
    torch = [r for r in everything if _name(r) in TORCH]
    (out / "torch.txt").write_text("".join(f"{r}\n" for r in torch))
    for image, extras in IMAGES.items():
        lines = [r for r in expand(project, extras) if _name(r) not in TORCH]
        (out / f"{image}.txt").write_text("".join(f"{r}\n" for r in lines))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
