"""``require_api_key`` / ``require_admin_key``: what write and admin routes will declare."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from gateway.deps import require_admin_key, require_api_key
from tests.gateway.fake_torchserve import assert_error


def _app(build_app: Callable[..., FastAPI], **settings: object) -> FastAPI:
    app = build_app(**settings)

    async def ok() -> dict[str, bool]:
        return {"ok": True}

    app.add_api_route("/write", ok, methods=["POST"], dependencies=[Depends(require_api_key)])
    app.add_api_route("/admin", ok, methods=["POST"], dependencies=[Depends(require_admin_key)])
    return app


@pytest.mark.parametrize(
    ("path", "key", "status", "code"),
    [
        ("/write", None, 401, "unauthorized"),
        ("/write", "wrong", 403, "forbidden"),
        ("/write", "user-key", 200, None),
        ("/write", "admin-key", 200, None),
        ("/admin", None, 401, "unauthorized"),
        ("/admin", "user-key", 403, "forbidden"),
        ("/admin", "admin-key", 200, None),
    ],
)
def test_keys_guard_write_and_admin_routes(
    build_app: Callable[..., FastAPI], path: str, key: str | None, status: int, code: str | None
) -> None:
    app = _app(build_app, api_keys=["user-key"], admin_api_keys=["admin-key"])
    headers = {"X-API-Key": key} if key else {}
    with TestClient(app) as client:
        response = client.post(path, headers=headers)
    if code is None:
        assert response.status_code == status
    else:
        assert_error(response, status, code)


def test_without_keys_auth_is_off(build_app: Callable[..., FastAPI]) -> None:
    with TestClient(_app(build_app)) as client:
        assert client.post("/write").status_code == 200
        assert client.post("/admin").status_code == 200


def test_plain_keys_open_admin_routes_when_no_admin_key_is_set(
    build_app: Callable[..., FastAPI],
) -> None:
    with TestClient(_app(build_app, api_keys=["only-key"])) as client:
        assert client.post("/admin", headers={"X-API-Key": "only-key"}).status_code == 200
        assert_error(client.post("/admin"), 401, "unauthorized")


def test_read_routes_stay_open_with_keys(
    build_app: Callable[..., FastAPI], png_bytes: bytes
) -> None:
    with TestClient(_app(build_app, api_keys=["user-key"])) as client:
        assert client.get("/models").status_code == 200
        assert client.post("/predict", files={"file": ("a.png", png_bytes)}).status_code == 200
