"""The ``.mar`` itself: what goes into it, how it is built, named, hashed and read back.

``build_mar`` runs ``torch-model-archiver`` with ``serving/handler.py`` and a model YAML and leaves
``models/store/yolo_v<N>.mar``; ``extract_weights`` reads a version's ``.pt`` back out of it (what
retraining and provenance need). ``yoloserve.modelserver.packaging`` decides what to archive.

Example:
    >>> mar_name("3")
    'yolo_v3.mar'
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from yoloserve.errors import RegistryError
from yoloserve.modelserver import MODEL_NAME
from yoloserve.paths import SERVING_DIR, STORE_DIR

HANDLER = SERVING_DIR / "handler.py"
WORKER_PACKAGE = SERVING_DIR / "yolo_detector"  # the handler's modules, packed beside it
MODEL_CONFIG = SERVING_DIR / "model-config.yaml"


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
    extra_files: Path | None = None,
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
        extra_files: a folder whose entries (files and folders) go to the archive's root.

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
        if extra_files is not None:
            cmd += ["--extra-files", str(Path(extra_files).resolve())]
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
