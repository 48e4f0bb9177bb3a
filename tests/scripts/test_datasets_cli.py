"""``python -m scripts.datasets``: help explains the options; a broken source exits non-zero
with the report table and ``--report-json``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from scripts.datasets import app


def test_import_help_explains_the_options() -> None:
    result = CliRunner().invoke(app, ["import", "--help"])
    assert result.exit_code == 0
    for option in ("--format", "--classes", "--replace", "--reference", "--refit-embedder",
                   "--report-json", "--seed"):
        assert option in result.output


def test_a_broken_import_exits_1_with_a_json_report(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORE_DATABASE_URL", f"sqlite:///{tmp_path / 's.db'}")
    src = tmp_path / "src"
    (src / "images").mkdir(parents=True)
    (src / "labels").mkdir()
    (src / "data.yaml").write_text("names: [a]\n")
    (src / "labels" / "lost.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    report = tmp_path / "report.json"

    result = CliRunner().invoke(app, ["import", str(src), "--format", "yolo", "--data-dir",
                                      str(tmp_path / "data"), "--report-json", str(report)])

    assert result.exit_code == 1
    body = json.loads(report.read_text())
    assert not body["ok"] and body["counts"]["missing_image"] == 1
    assert "missing_image" in result.output
    assert not (tmp_path / "data" / "datasets").exists()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["/nonexistent", "--format", "coco"], "does not exist"),
        (["{src}", "--format", "foo"], "unknown format 'foo'"),
        (["{src}", "--format", "yolo", "--name", "bad name"], "letters, digits"),
        (["{src}", "--format", "yolo", "--val", "0.9", "--test", "0.5"], "sum below 1"),
    ],
)
def test_a_wrong_command_line_exits_2_with_one_line(
    args: list[str], says: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STORE_DATABASE_URL", f"sqlite:///{tmp_path / 's.db'}")
    argv = [a.replace("{src}", str(tmp_path)) for a in args]
    result = CliRunner(env={"COLUMNS": "300"}).invoke(
        app, ["import", *argv, "--data-dir", str(tmp_path / "data")])
    assert result.exit_code == 2, result.output
    assert says in result.output and "Traceback" not in result.output
    assert not (tmp_path / "data" / "datasets").exists()
