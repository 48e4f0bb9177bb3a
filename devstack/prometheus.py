"""A local Prometheus (Debian's ``/usr/bin/prometheus``) scraping a local gateway and TorchServe.

docker-compose runs the official image with ``deploy/prometheus/prometheus.yml``; ``make demo``
and the monitoring test run Debian's binary as a supervised :class:`~devstack.supervisor.Program`
with a config rendered here for their own addresses. Both load the same alert rules, straight from
``deploy/prometheus/rules`` (the one copy), and use the same job names, which the rules match on.

Example:
    >>> program = prometheus_program(Path(".run/prometheus"), 9090,  # doctest: +SKIP
    ...     "http://127.0.0.1:8080", "http://127.0.0.1:8087")
    >>> Supervisor(Path(".run/supervisor")).apply([program])  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from devstack.supervisor import Program
from devstack.waiting import url_ready
from yoloserve import paths

PROMETHEUS_BIN = Path("/usr/bin/prometheus")
DEPLOY_DIR = paths.ROOT / "deploy" / "prometheus"
RULES_DIR = DEPLOY_DIR / "rules"
CONFIG_NAME = "prometheus.yml"
# The job names of deploy/prometheus/prometheus.yml; the alert rules select on them.
GATEWAY_JOB = "gateway"
TORCHSERVE_JOB = "torchserve"


def _scrape_job(name: str, url: str) -> dict[str, Any]:
    """A static scrape job for ``url`` (its path, if any, is the metrics path)."""
    parts = urlsplit(url)
    if not parts.hostname or parts.port is None:
        raise ValueError(f"{name}: a URL with host and port is needed, got {url!r}")
    job: dict[str, Any] = {
        "job_name": name,
        "scheme": parts.scheme or "http",
        "static_configs": [{"targets": [f"{parts.hostname}:{parts.port}"]}],
    }
    if parts.path not in ("", "/"):
        job["metrics_path"] = parts.path
    return job


def render_config(
    gateway_url: str,
    torchserve_metrics_url: str,
    *,
    scrape_interval_s: float = 5.0,
    rule_files: Sequence[Path] = (RULES_DIR / "*.yml",),
) -> dict[str, Any]:
    """The Prometheus config, as a dict, for one local gateway and TorchServe.

    Args:
        gateway_url: The gateway's base URL (``/metrics`` is scraped).
        torchserve_metrics_url: Base URL of TorchServe's metrics API (``/metrics`` is scraped).
        scrape_interval_s: Scrape and rule evaluation interval; 5 s for the demo (its board
            refreshes every 10 s), 1 s in the tests.
        rule_files: Rule files or globs; absolute, since the config lives in a run folder.
    """
    interval = f"{max(1, round(scrape_interval_s * 1000))}ms"
    return {
        "global": {
            "scrape_interval": interval,
            "evaluation_interval": interval,
            # Prometheus refuses a scrape timeout longer than the interval.
            "scrape_timeout": interval,
        },
        "rule_files": [str(Path(f).resolve()) for f in rule_files],
        "scrape_configs": [
            _scrape_job(GATEWAY_JOB, gateway_url),
            _scrape_job(TORCHSERVE_JOB, torchserve_metrics_url),
        ],
    }


def write_config(run_dir: Path, config: dict[str, Any]) -> Path:
    """Write ``config`` as ``<run_dir>/prometheus.yml`` and return its path."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / CONFIG_NAME
    header = "# written by devstack.prometheus; do not edit (rewritten on every start)\n"
    path.write_text(header + yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def prometheus_program(
    run_dir: Path,
    port: int,
    gateway_url: str,
    torchserve_metrics_url: str,
    *,
    scrape_interval_s: float = 5.0,
    retention: str = "7d",
    binary: Path = PROMETHEUS_BIN,
    name: str = "prometheus",
) -> Program:
    """A supervised Prometheus on ``127.0.0.1:port``; writes its config under ``run_dir``.

    Its data goes to ``<run_dir>/data``, so a restart (or a second ``make demo``) keeps history.

    Args:
        run_dir: Folder of the config and the TSDB.
        port: Port of its web UI and API (9090 in the demo).
        gateway_url: The gateway's base URL.
        torchserve_metrics_url: TorchServe's metrics API base URL.
        scrape_interval_s: Scrape and rule evaluation interval.
        retention: How long samples are kept (``--storage.tsdb.retention.time``).
        binary: The prometheus executable (Debian's package by default).
        name: The program's name in supervisord.

    Raises:
        FileNotFoundError: ``binary`` does not exist (``apt-get install prometheus``).
    """
    binary = Path(binary)
    if not binary.is_file():
        raise FileNotFoundError(f"{binary} not found: install Debian's prometheus package")
    run_dir = Path(run_dir).resolve()
    config = write_config(
        run_dir,
        render_config(gateway_url, torchserve_metrics_url, scrape_interval_s=scrape_interval_s),
    )
    (run_dir / "data").mkdir(exist_ok=True)
    listen = f"127.0.0.1:{port}"
    return Program(
        name,
        [
            str(binary),
            f"--config.file={config}",
            f"--storage.tsdb.path={run_dir / 'data'}",
            f"--storage.tsdb.retention.time={retention}",
            f"--web.listen-address={listen}",
        ],
        cwd=run_dir,
        ready=url_ready(f"http://{listen}/-/ready"),
        stop_wait_s=20,  # it flushes the head block on SIGTERM
        start_secs=2,
    )
