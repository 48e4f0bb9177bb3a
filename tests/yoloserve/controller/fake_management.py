"""TorchServe's management API for model ``yolo``, scripted, with state (loaded, default)."""

from __future__ import annotations

import re
from typing import Any

import httpx


class FakeManagement:
    """TorchServe's management API for model ``yolo``, with state: loaded versions, default."""

    def __init__(self, loaded: list[str], default: str) -> None:
        self.loaded = list(loaded)
        self.default = default
        self.calls: list[str] = []
        self.register_status = 200

    def _describe(self, version: str) -> dict[str, Any]:
        return {
            "modelName": "yolo",
            "modelVersion": version,
            "workers": [{"id": "9000", "status": "READY"}],
        }

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.calls.append(f"{request.method} {path}")
        parts = path.strip("/").split("/")
        if request.method == "POST" and path == "/models":
            if self.register_status != 200:
                return httpx.Response(self.register_status, json={"message": "load failed"})
            match = re.fullmatch(r"yolo_v(\d+)\.mar", request.url.params["url"])
            assert match, request.url
            self.loaded.append(match.group(1))
            return httpx.Response(200, json={"status": "registered"})
        if request.method == "GET" and len(parts) == 2:
            return httpx.Response(200, json=[self._describe(self.default)])
        version = parts[2] if len(parts) > 2 else ""
        if request.method == "GET" and version == "all":
            return httpx.Response(200, json=[self._describe(v) for v in self.loaded])
        if version not in self.loaded:
            return httpx.Response(404, json={"code": 404, "message": f"no version {version}"})
        if request.method == "GET":
            return httpx.Response(200, json=[self._describe(version)])
        if request.method == "PUT" and parts[-1] == "set-default":
            self.default = version
            return httpx.Response(200, json={"status": "default set"})
        if request.method == "DELETE":
            self.loaded.remove(version)
            return httpx.Response(200, json={"status": "unregistered"})
        return httpx.Response(405, json={"message": "unexpected call"})
