"""Both overlays rendered once per session, from a copy of deploy/kubernetes whose secrets.env
and postgres.env files hold marker values (tests/deploy/kustomize.py), so the operator's files
play no part."""

from __future__ import annotations

import shutil
from typing import Any

import pytest
import yaml

from tests.deploy.kustomize import (
    KUSTOMIZE_DIR,
    OVERLAYS,
    POSTGRES_SECRET_VALUES,
    SECRET_VALUES,
    render,
)


@pytest.fixture(scope="session")
def rendered_text(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    tree = tmp_path_factory.mktemp("kustomize") / "kubernetes"
    ignore = shutil.ignore_patterns("rendered", "secrets.env", "postgres.env")
    shutil.copytree(KUSTOMIZE_DIR, tree, ignore=ignore)
    files = {"secrets.env": SECRET_VALUES, "postgres.env": POSTGRES_SECRET_VALUES}
    for overlay in OVERLAYS:
        for name, values in files.items():
            lines = [f"{key}={value}" for key, value in values.items()]
            (tree / "overlays" / overlay / name).write_text("\n".join(lines) + "\n")
    return {overlay: render(tree, overlay) for overlay in OVERLAYS}


@pytest.fixture(scope="session")
def rendered(rendered_text: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    return {
        overlay: [doc for doc in yaml.safe_load_all(text) if doc]
        for overlay, text in rendered_text.items()
    }
