"""Package YOLO weights as a TorchServe ``.mar`` and record the version in the registry.

``build_mar`` runs ``torch-model-archiver`` with ``serving/handler.py`` and
``serving/model-config.yaml`` and leaves ``models/store/yolo_v<N>.mar``. ``package`` does the
whole step a new model goes through: hash the weights, read their class names, pick the next
version, build the archive and record it, under the registry's lock so that two packagers never
pick the same version.

Packaging weights whose sha256 is already in the registry reuses that version (no new version for
the same bytes): it only rebuilds the ``.mar`` if the store lost it (the store is a build output).

Example:
    >>> from yoloserve.modelserver.packaging import package
    >>> from yoloserve.modelserver.registry import Registry
    >>> record = package(Path("models/default/best.pt"), Registry())  # doctest: +SKIP
    >>> record.version, record.mar  # doctest: +SKIP
    ('1', 'yolo_v1.mar')
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from yoloserve.modelserver import MODEL_NAME
from yoloserve.modelserver.registry import ModelVersion, Registry, RegistryError
from yoloserve.offline import configure_offline
from yoloserve.paths import SERVING_DIR, STORE_DIR

HANDLER = SERVING_DIR / "handler.py"
MODEL_CONFIG = SERVING_DIR / "model-config.yaml"
METRIC_KEYS = ("map50", "map50_95", "precision", "recall")


class PackagingError(RegistryError):
    """torch-model-archiver failed or the weights are unusable."""


def mar_name(version: str, model_name: str = MODEL_NAME) -> str:
    """File name of a version's archive in the store: ``yolo_v3.mar``."""
    return f"{model_name}_v{version}.mar"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def extract_weights(mar: Path, sha256: str, dest: Path) -> Path:
    """Copy the weights whose sha256 the registry recorded out of a version's ``.mar``.

    Raises:
        PackagingError: the archive is missing or holds no such weights.
    """
    if not mar.is_file():
        raise PackagingError(f"the archive {mar} is missing")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(mar) as archive:
        for member in archive.infolist():
            if member.filename.endswith(".pt"):
                with archive.open(member) as src, dest.open("wb") as out:
                    shutil.copyfileobj(src, out)
                if sha256_file(dest) == sha256:
                    return dest
    dest.unlink(missing_ok=True)
    raise PackagingError(f"{mar.name} holds no weights with the registry's sha256 {sha256[:12]}")


def class_names(weights: Path) -> list[str]:
    """Class names stored in Ultralytics weights, in class-index order."""
    configure_offline()
    from ultralytics import YOLO

    names = YOLO(str(weights)).names
    return [names[i] for i in sorted(names)]


def _archiver() -> list[str]:
    # The archiver of this interpreter's environment, wherever the CLI was started from.
    script = Path(sys.executable).parent / "torch-model-archiver"
    if script.exists():
        return [str(script)]
    found = shutil.which("torch-model-archiver")
    if found is None:
        raise PackagingError("torch-model-archiver is not installed (pip install .[ml])")
    return [found]


def build_mar(
    weights: Path,
    version: str,
    store_dir: Path = STORE_DIR,
    *,
    model_name: str = MODEL_NAME,
    handler: Path = HANDLER,
    config_file: Path = MODEL_CONFIG,
) -> Path:
    """Build ``<store_dir>/<model_name>_v<version>.mar`` from ``weights``.

    The archiver writes ``<model_name>.mar``; it runs in a private folder and the result is
    renamed into the store, so concurrent builds never clobber each other and TorchServe never
    sees a half-written archive.

    Args:
        weights: Ultralytics ``.pt`` weights (packed as the serialized file).
        version: model version, an integer as a string.
        store_dir: TorchServe model store.
        model_name: model name inside TorchServe.
        handler: the handler file packed into the archive.
        config_file: per-model YAML packed into the archive.

    Returns:
        Path of the archive.

    Raises:
        PackagingError: the archiver failed.
    """
    weights, handler, config_file = Path(weights), Path(handler), Path(config_file)
    for path in (weights, handler, config_file):
        if not path.is_file():
            raise PackagingError(f"missing file {path}")
    store_dir.mkdir(parents=True, exist_ok=True)
    target = store_dir / mar_name(version, model_name)
    with tempfile.TemporaryDirectory(prefix=".build-", dir=store_dir) as tmp:
        cmd = [
            *_archiver(),
            "--model-name", model_name,
            "--version", version,
            "--serialized-file", str(weights.resolve()),
            "--handler", str(handler.resolve()),
            "--config-file", str(config_file.resolve()),
            "--export-path", tmp,
            "--force",
        ]
        # The archiver stages files in <TMPDIR>/<model_name>, shared by every build on the
        # machine: a private TMPDIR keeps parallel builds from deleting each other's files.
        env = {**os.environ, "TMPDIR": tmp, "TEMP": tmp, "TMP": tmp}
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
        built = Path(tmp) / f"{model_name}.mar"
        if proc.returncode != 0 or not built.is_file():
            raise PackagingError(
                f"torch-model-archiver failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}"
            )
        os.replace(built, target)
    return target


def sidecar_metrics(weights: Path) -> dict[str, Any]:
    """Headline metrics from a ``metrics.json`` beside the weights, as ``scripts.train`` writes."""
    path = Path(weights).with_name("metrics.json")
    try:
        raw = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return {k: raw[k] for k in METRIC_KEYS if isinstance(raw.get(k), int | float)}


def package(
    weights: Path,
    registry: Registry,
    parent: str | None = None,
    metrics: dict[str, Any] | None = None,
    *,
    store_dir: Path = STORE_DIR,
    trained_on: dict[str, Any] | None = None,
    make_default: bool | None = None,
    reuse: bool = True,
    benchmark: dict[str, Any] | None = None,
    mlflow_run_id: str | None = None,
    mlflow_experiment_id: str | None = None,
) -> ModelVersion:
    """Hash, archive and register ``weights`` as the next model version.

    Args:
        weights: Ultralytics ``.pt`` weights.
        registry: registry to record the version in.
        parent: version these weights were fine-tuned from.
        metrics: evaluation metrics; read from a ``metrics.json`` beside the weights if ``None``.
        store_dir: TorchServe model store.
        trained_on: what the weights were trained on.
        make_default: make the new version the default; ``None`` = only if there is none yet.
        reuse: return the existing version when these exact weights were packaged before
            (rebuilding its ``.mar`` if the store lost it) instead of adding a new version.
        benchmark: scores on the fixed benchmark set (``ModelVersion.benchmark``).
        mlflow_run_id, mlflow_experiment_id: the MLflow run that produced the weights.

    Returns:
        The registry record (new, or the reused one).

    Raises:
        PackagingError: the archiver failed.
        RegistryError: the classes differ from the registry's, or ``parent`` is unknown.
    """
    weights = Path(weights)
    sha256 = sha256_file(weights)
    metrics = sidecar_metrics(weights) if metrics is None else metrics
    # Version choice, archive and record happen under one lock: no two packagers share a version.
    with registry.update() as data:
        existing = [v for v in data.versions if v.sha256 == sha256] if reuse else []
        if existing:
            record = max(existing, key=lambda v: int(v.version))
            if not (store_dir / record.mar).is_file():
                build_mar(weights, record.version, store_dir)
            return record
        classes = class_names(weights)
        version = data.next_version()
        if parent is not None:
            data.get(parent)  # fail before the slow archive build
        mar = build_mar(weights, version, store_dir)
        record = ModelVersion(
            version=version,
            sha256=sha256,
            mar=mar.name,
            metrics=metrics,
            parent=parent,
            trained_on=trained_on or {},
            benchmark=benchmark or {},
            mlflow_run_id=mlflow_run_id,
            mlflow_experiment_id=mlflow_experiment_id,
        )
        try:
            return data.add_version(record, classes, make_default)
        except RegistryError:
            mar.unlink(missing_ok=True)  # an archive no record points to would only mislead
            raise
