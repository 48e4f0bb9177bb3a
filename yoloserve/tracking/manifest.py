"""Dataset manifests: every image and label a model saw (path, sha256, split), and eval-set names.

A manifest names a version's training data exactly, so it can be rebuilt; its own sha256 names an
evaluation set in every recorded metric (``{"name", "images", "manifest_sha256"}``), so two
numbers are only compared when they come from the same images.

Example:
    >>> entries = [{"split": "test", "image": "a.jpg", "image_sha256": "0" * 64}]
    >>> len(manifest_sha256(entries))
    64
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

from yoloserve import paths
from yoloserve.images import IMAGE_SUFFIXES

BENCHMARK_NAME = "shapes-test"


def _sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


def label_for(image: Path) -> Path:
    """Ultralytics' rule: ``.../images/x.jpg`` is labelled by ``.../labels/x.txt``."""
    return Path(str(image).replace("/images/", "/labels/")).with_suffix(".txt")


def split_images(root: Path, spec: str | Sequence[str] | None) -> list[Path]:
    """The images of one split of a data.yaml: a folder, a list file, or a list of either."""
    if spec is None:
        return []
    specs = [spec] if isinstance(spec, str) else list(spec)
    out: list[Path] = []
    for item in specs:
        path = Path(item) if Path(item).is_absolute() else root / item
        if path.is_dir():
            out += sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
            out += [Path(ln) if Path(ln).is_absolute() else root / ln for ln in lines]
    return out


def entries_for(images: Iterable[Path], split: str) -> list[dict[str, Any]]:
    """One manifest entry per image: paths and sha256 of the image and of its label."""
    entries = []
    for image in images:
        label = label_for(image)
        entries.append({
            "split": split, "image": str(image), "image_sha256": _sha256(image),
            "label": str(label), "label_sha256": _sha256(label),
        })
    return entries


def manifest_sha256(entries: Sequence[dict[str, Any]]) -> str:
    """The hash of the content (split + file hashes, in order), not of where the files lie."""
    digest = hashlib.sha256()
    for e in entries:
        digest.update(f"{e['split']}:{e['image_sha256']}:{e.get('label_sha256')}\n".encode())
    return digest.hexdigest()


def dataset_manifest(data_yaml: Path, splits: Sequence[str] = ("train", "val", "test")
                     ) -> dict[str, Any]:
    """The manifest of an Ultralytics data.yaml: ``{"data_yaml", "sha256", "splits", "files"}``.

    ``splits`` maps each split to ``{"images", "manifest_sha256"}``; ``files`` lists every
    image with its label.
    """
    spec = yaml.safe_load(Path(data_yaml).read_text()) or {}
    root = Path(spec.get("path") or Path(data_yaml).parent)
    files: list[dict[str, Any]] = []
    per_split: dict[str, dict[str, Any]] = {}
    for split in splits:
        entries = entries_for(split_images(root, spec.get(split)), split)
        files += entries
        per_split[split] = {"images": len(entries), "manifest_sha256": manifest_sha256(entries)}
    return {"data_yaml": str(data_yaml), "sha256": manifest_sha256(files), "splits": per_split,
            "files": files}


def eval_set(name: str, manifest: dict[str, Any], split: str) -> dict[str, Any]:
    """The name of one split of a manifest as an evaluation set."""
    part = manifest["splits"][split]
    return {"name": name, "images": part["images"], "manifest_sha256": part["manifest_sha256"]}


def benchmark_dataset(ref_dir: Path, out_dir: Path, images: int, classes: list[str]
                      ) -> tuple[Path, dict[str, Any]] | None:
    """The fixed benchmark set: the first ``images`` of the reference test split, sorted.

    Writes ``out_dir/benchmark.yaml`` (+ its list) and returns it with the set's name, or
    ``None`` when the reference set has no test split.
    """
    found = benchmark_images(ref_dir, images)
    if found is None:
        return None
    test, name = found
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "benchmark.txt").write_text("".join(f"{p.resolve()}\n" for p in test))
    data_yaml = out_dir / "benchmark.yaml"
    names = "".join(f"  {i}: {n}\n" for i, n in enumerate(classes))
    data_yaml.write_text(f"path: {out_dir.resolve()}\ntrain: benchmark.txt\nval: benchmark.txt\n"
                         f"test: benchmark.txt\nnames:\n{names}")
    return data_yaml, name


def benchmark_images(ref_dir: Path, images: int, or_val: bool = False
                     ) -> tuple[list[Path], dict[str, Any]] | None:
    """The fixed benchmark set's image files and its name (``{"name", "images",
    "manifest_sha256"}``), or ``None`` when the reference set has no test split.

    ``or_val``: without a test split (an import of a source split into train and val only),
    the val split, named so. Packaging needs some labelled set to gate INT8 on; a retrain's
    gate already judges on the reference val sample, so it asks for the test split only.
    """
    for split in ("test", "val") if or_val else ("test",):
        found = split_images(ref_dir, f"images/{split}")[:images]
        if found:
            entries = entries_for(found, split)
            return found, {"name": benchmark_name(ref_dir, split), "images": len(entries),
                           "manifest_sha256": manifest_sha256(entries)}
    return None


def benchmark_name(ref_dir: Path, split: str = "test") -> str:
    """``shapes-test`` for the synthetic set; ``<name>-<split>`` for an imported dataset."""
    imported = (paths.DATA_DIR / "datasets").resolve()
    if ref_dir.resolve().parent == imported:
        return f"{ref_dir.resolve().name}-{split}"
    return BENCHMARK_NAME if split == "test" else f"shapes-{split}"


def write_manifest(manifest: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest, indent=1) + "\n")
    return path
