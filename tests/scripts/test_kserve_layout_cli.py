"""``python -m scripts.kserve_layout``: writes the layout, explains its options, fails cleanly."""

from __future__ import annotations

import hashlib
from pathlib import Path

from typer.testing import CliRunner

from scripts.kserve_layout import app
from yoloserve.modelserver.registry import Registry
from yoloserve.store.engine import Store
from yoloserve.store.settings import sqlite_url


def test_writes_the_layout(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    (store / "yolo_v1.mar").write_bytes(b"archive")
    Registry(Store.sqlite(tmp_path / "yoloserve.db")).add_version(
        sha256=hashlib.sha256(b"w").hexdigest(), mar="yolo_v1.mar", classes=["a"]
    )
    args = ["--out", str(tmp_path / "out"), "--database-url", sqlite_url(tmp_path / "yoloserve.db")]
    result = CliRunner().invoke(app, [*args, "--store", str(store)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "model-store" / "yolo_v1.mar").read_bytes() == b"archive"
    assert "config.properties" in result.output


def test_empty_registry_fails_with_a_message(tmp_path: Path) -> None:
    args = ["--out", str(tmp_path / "out"), "--database-url",
            sqlite_url(tmp_path / "none" / "yoloserve.db")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert "no default version" in result.output


def test_help_explains_every_option() -> None:
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for option in ("--out", "--all-versions", "--database-url", "--store", "--model-name"):
        assert option in result.output
