"""What every section gets: the running stack, the bench images and the run's options.

A section is a function ``BenchContext -> dict`` (JSON-ready figures) that also prints its
tables on ``ctx.console``; :mod:`benchmarks.sections` lists them. The CLI
(``python -m benchmarks``) builds one context per run, after the stack is up.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from devstack.stack import LocalStack
from yoloserve.modelserver.deploy import WARMUP_REQUESTS


@dataclass
class SectionOptions:
    """Options of the feedback, hotswap, scaleout and loop sections (``--feedback-*``,
    ``--hotswap-*``, ``--scaleout-*``, ``--loop-*``)."""

    feedback_calls: int = 400
    feedback_writers: int = 32
    feedback_dense_boxes: int = 32
    hotswap_requests: int = 2000
    hotswap_clients: int = 8
    hotswap_pause: float = 1.0
    hotswap_drain: float = 2.0
    loop_k: int = 10
    loop_ref_dir: Path | None = None
    loop_generate_ref: bool = False
    loop_timeout: float = 1800.0
    hotswap_warmup: int = WARMUP_REQUESTS
    hotswap_ab: bool = False
    scaleout_calls: int = 400
    scaleout_writers: int = 32
    scaleout_gateways: int = 3
    scaleout_intents: int = 50


@dataclass
class BenchContext:
    """What every section gets: the running stack, the images and the run options.

    ``workdir`` and ``user_key`` are what the bench gave ``LocalStack.create`` (the stack's root
    folder and the gateway's user API key), kept here so that sections need no more of the
    stack than its URLs, folders and registry.
    """

    stack: LocalStack
    workdir: Path
    user_key: str
    images: dict[int, bytes]
    image_files: dict[int, Path]
    requests: int
    warmup: int
    clients: int
    rounds: int
    model_config: dict[str, Any]
    console: Console
    raw_threads: int | None = None
    cache: dict[str, Any] = field(default_factory=dict)
    options: SectionOptions = field(default_factory=SectionOptions)
    photos: dict[str, Path] = field(default_factory=dict)

    @property
    def handler_config(self) -> dict[str, Any]:
        """The ``handler:`` section of the packed model YAML."""
        return dict(self.model_config.get("handler") or {})

    @property
    def torch_threads(self) -> int:
        """Torch threads of one worker, as serving/handler.py decides them."""
        return int(self.handler_config.get("torch_threads") or 0) or (os.cpu_count() or 1)

    @property
    def raw_torch_threads(self) -> int:
        """Torch threads of the in-process baseline: the worker's, unless set on purpose."""
        return self.raw_threads or self.torch_threads

    @property
    def imgsz(self) -> int:
        """Inference size of the served model."""
        return int(self.handler_config.get("imgsz", 320))

    @property
    def auth(self) -> dict[str, str]:
        """The user API key header of the bench's gateway."""
        return {"X-API-Key": self.user_key}


# A section: figures as a JSON-ready dict; it prints its own tables.
Section = Callable[[BenchContext], dict[str, Any]]
# A section's part of the Markdown report: (the whole report, the section's figures) -> lines.
MarkdownWriter = Callable[[dict[str, Any], dict[str, Any]], list[str]]
