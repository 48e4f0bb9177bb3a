"""A fake gateway at the HTTP level, for the tests of ``gateway_client`` and of the web app.

The client's code runs unchanged; only the network is replaced: an ``httpx.MockTransport``
(passed to ``GatewayClient``, or set as ``webapp.client.TRANSPORT`` by the web app's fixtures)
whose handler answers like the gateway contract says (``docs/api-contract.md``) and records
every request for the assertions.
"""

from __future__ import annotations

import email.parser
import email.policy
import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from PIL import Image

from gateway_client import GatewayClient

BASE = "http://gateway.test:8080"

PREDICT_BODY: dict[str, Any] = {
    "request_id": "req-0001",
    "model": {"name": "yolo", "version": "2"},
    "image": {"width": 64, "height": 48},
    "boxes": [
        {"xyxy": [10.0, 8.0, 30.0, 28.0], "conf": 0.9699, "cls": 2, "name": "triangle"},
        {"xyxy": [40.0, 20.0, 60.0, 44.0], "conf": 0.51, "cls": 0, "name": "circle"},
    ],
    "timing_ms": {"total": 41.2, "model": 35.0},
}

MODELS_BODY: dict[str, Any] = {
    "name": "yolo",
    "default_version": "2",
    "classes": ["circle", "square", "triangle"],
    "versions": [
        {
            "version": "1",
            "status": "ready",
            "created_at": "2026-11-20T10:00:00Z",
            "parent": None,
            "metrics": {"map50": 0.842, "map50_95": 0.73},
            "trained_on": {"ref_images": 200, "feedback_images": 0},
        },
        {
            "version": "2",
            "status": "serving",
            "created_at": "2026-11-22T10:00:00Z",
            "parent": "1",
            "metrics": {"map50": 0.94, "map50_95": 0.77, "eval_set": {
                "name": "r-0001 held-out", "images": 60, "manifest_sha256": "51ab" * 16}},
            "trained_on": {"ref_images": 800, "feedback_images": 40},
            "benchmark": {"set": {"name": "shapes-test", "images": 150,
                                  "manifest_sha256": "9f2c" * 16},
                          "map50": 0.971, "map50_95": 0.84},
            "mlflow_run_url": "http://mlflow.test:8083/#/experiments/1/runs/abc",
        },
    ],
}

FEEDBACK_BODY: dict[str, Any] = {
    "feedback_id": "fb-42",
    "rows_written": 3,
    "prod_rows_total": 148,
    "retrain": {"triggered": True, "job_id": "r-0007", "next_at_rows": 200},
}

JOB_BODY: dict[str, Any] = {
    "job_id": "r-0007",
    "state": "succeeded",
    "started_at": "2026-11-22T11:00:00Z",
    "finished_at": "2026-11-22T11:06:00Z",
    "candidate_version": "3",
    "metrics": {"candidate": {"map50": 0.95}, "current": {"map50": 0.94}},
    "reason": "candidate beats current on map50",
}


def review_item(review_id: str, reason: str = "uncertain") -> dict[str, Any]:
    """One item of ``GET /review`` (the boxes of :data:`PREDICT_BODY`)."""
    return {
        "review_id": review_id,
        "reason": reason,
        "created_at": "2026-12-01T10:00:00.000+00:00",
        "model_version": "2",
        "image_url": f"/review/{review_id}/image",
        "image": {"width": 64, "height": 48},
        "boxes": PREDICT_BODY["boxes"],
        "request_id": f"req-{review_id}",
        "priority": 0.8,
    }


def error_response(status: int, code: str, message: str, **headers: str) -> httpx.Response:
    """An error answer in the contract's shape."""
    body = {"error": {"code": code, "message": message, "request_id": "req-err"}}
    return httpx.Response(status, json=body, headers=headers)


def parse_multipart(request: httpx.Request) -> dict[str, tuple[str | None, str, bytes]]:
    """The parts of a multipart request: name -> (filename, content type, bytes)."""
    raw = b"Content-Type: " + request.headers["content-type"].encode() + b"\r\n\r\n"
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw + request.read())
    parts: dict[str, tuple[str | None, str, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes), f"part {name!r} is not a leaf"
        parts[str(name)] = (part.get_filename(), part.get_content_type(), payload)
    return parts


@dataclass
class FakeGateway:
    """Answers like the gateway; ``fail`` makes a route answer something else instead.

    Attributes:
        requests: Every request received, in order.
        models: The ``GET /models`` body (a finished activation changes its default_version).
        activation_reason: ``None``: an activation succeeds at its second look; a text: it
            fails with that reason (the previous version keeps serving).
        jobs: The activation jobs recorded, by id; each look (``GET /jobs/{id}``) moves one on.
        fail: ``(method, path) -> response or exception`` overriding a route.
        review: The open review items, in queue order; dismiss and feedback with a
            ``review_id`` take an item out, as the gateway does.
    """

    requests: list[httpx.Request] = field(default_factory=list)
    models: dict[str, Any] = field(default_factory=lambda: json.loads(json.dumps(MODELS_BODY)))
    fail: dict[tuple[str, str], httpx.Response | Exception] = field(default_factory=dict)
    review: list[dict[str, Any]] = field(default_factory=list)
    activation_reason: str | None = None
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def last(self, method: str, path: str) -> httpx.Request:
        """The last request to ``method path`` (fails the test when there was none)."""
        matching = [r for r in self.requests if (r.method, r.url.path) == (method, path)]
        assert matching, f"no {method} {path} among {[str(r.url) for r in self.requests]}"
        return matching[-1]

    def handle(self, request: httpx.Request) -> httpx.Response:
        """The MockTransport handler."""
        request.read()
        self.requests.append(request)
        override = self.fail.get((request.method, request.url.path))
        if isinstance(override, Exception):
            raise override
        if override is not None:
            return override
        return self._route(request)

    def _route(self, request: httpx.Request) -> httpx.Response:
        method, path = request.method, request.url.path
        if (method, path) == ("GET", "/health"):
            return httpx.Response(200, json={"status": "ok"})
        if (method, path) == ("GET", "/models"):
            return httpx.Response(200, json=self.models)
        if (method, path) == ("POST", "/predict"):
            headers = {"X-Request-ID": "req-0001", "X-Model-Version": "2"}
            return httpx.Response(200, json=PREDICT_BODY, headers=headers)
        if (method, path) == ("POST", "/feedback"):
            labels = json.loads(parse_multipart(request)["labels"][2])
            if "review_id" in labels:
                closed = self._close(labels["review_id"])
                if closed is not None:
                    return closed
            return httpx.Response(201, json=FEEDBACK_BODY)
        if (method, path) == ("GET", "/review"):
            limit = int(request.url.params.get("limit", "20"))
            return httpx.Response(
                200, json={"items": self.review[:limit], "total": len(self.review)}
            )
        if match := re.fullmatch(r"/review/([^/]+)/(image|dismiss)", path):
            review_id, action = match.groups()
            if action == "dismiss" and method == "POST":
                return self._close(review_id) or httpx.Response(204)
            if any(item["review_id"] == review_id for item in self.review):
                return httpx.Response(200, content=png_bytes(), headers={
                    "content-type": "image/png"})
            return error_response(404, "unknown_review_item", f"No review item {review_id}.")
        if (method, path) == ("POST", "/retrain"):
            return httpx.Response(202, json={"job_id": "r-0008", "state": "queued"})
        if match := re.fullmatch(r"/models/([^/]+)/activate", path):
            version = match.group(1)
            if method == "POST" and any(v["version"] == version for v in self.models["versions"]):
                job_id = f"a-{len(self.jobs) + 1:04d}"
                self.jobs[job_id] = {"job_id": job_id, "kind": "activate", "version": version,
                                     "state": "queued"}
                return httpx.Response(202, json=self.jobs[job_id])
            return error_response(404, "unknown_version", f"No model version {version}.")
        if method == "GET" and (match := re.fullmatch(r"/jobs/([^/]+)", path)):
            job = self.jobs.get(match.group(1))
            if job is None:
                return error_response(404, "unknown_job", f"No job {match.group(1)}.")
            self._advance(job)
            return httpx.Response(200, json=job)
        if method == "GET" and (match := re.fullmatch(r"/retrain/([^/]+)", path)):
            if match.group(1) == JOB_BODY["job_id"]:
                return httpx.Response(200, json=JOB_BODY)
            return error_response(404, "unknown_job", f"No retrain job {match.group(1)}.")
        return error_response(404, "not_found", f"No route {method} {path}.")

    def _advance(self, job: dict[str, Any]) -> None:
        """What the controller would do between two looks: queued -> running -> the end."""
        if job["state"] == "queued":
            job["state"] = "running"
        elif job["state"] == "running" and self.activation_reason is None:
            job.update(state="succeeded", reason=f"version {job['version']} serves")
            self.models["default_version"] = job["version"]
        elif job["state"] == "running":
            job.update(state="failed", reason=self.activation_reason)

    def _close(self, review_id: str) -> httpx.Response | None:
        """Take an item out of the queue; the 404 answer when it is not there."""
        kept = [item for item in self.review if item["review_id"] != review_id]
        if len(kept) == len(self.review):
            return error_response(404, "unknown_review_item", f"No review item {review_id}.")
        self.review = kept
        return None


def png_bytes(size: tuple[int, int] = (64, 48)) -> bytes:
    """A small valid PNG."""
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 200, 200)).save(buffer, format="PNG")
    return buffer.getvalue()


def client_for(
    handler: Callable[[httpx.Request], httpx.Response],
    api_key: str | None = "k",
    admin_key: str | None = None,
) -> GatewayClient:
    """A client of :data:`BASE` whose requests go to ``handler``."""
    return GatewayClient(
        BASE, api_key=api_key, admin_key=admin_key, transport=httpx.MockTransport(handler)
    )


def answer(response: httpx.Response) -> Callable[[httpx.Request], httpx.Response]:
    """A handler that always gives ``response``."""
    return lambda request: response


def raising(exc: Exception) -> Callable[[httpx.Request], httpx.Response]:
    """A handler that raises ``exc`` (a transport failure)."""

    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return handler
