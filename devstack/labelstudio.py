"""A real Label Studio for the tests and ``make labelstudio``, in a virtual environment of its own.

Label Studio pins Django, pydantic and friends that conflict with the project's, so it never
enters the project's venv: :func:`ensure_installed` creates ``.run/labelstudio/venv`` with
``python -m venv`` and pip (PyPI only) when it is missing or its pins changed (~60 s), under a
file lock so parallel test sessions install once. ``sentry-sdk`` is pinned because label-studio
1.23.2 pulls sentry-sdk 3, which crashes it at start (``Unknown option 'send_default_pii'``).

:class:`LabelStudioServer` starts ``label-studio start`` on 127.0.0.1 and a free port with a
known user and legacy API token (``LABEL_STUDIO_USER_TOKEN``, enabled by
``LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN``), waits for ``/health`` (~30 s on 2 cores) and stops
its process group. The child gets SIGKILL when the thread that started it ends, as
``devstack.postgres`` does, so a crashed test run leaves no server behind.

Example:
    >>> with LabelStudioServer() as ls:  # doctest: +SKIP
    ...     httpx.get(ls.url + "/api/projects", headers=ls.headers)
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Annotated, Any

import typer

from devstack.ports import free_port
from devstack.postgres_host import die_with_parent
from devstack.processes import stop_process
from devstack.waiting import wait_http
from yoloserve import paths

PINS = ("label-studio==1.23.2", "sentry-sdk==2.76.0")
HOME = paths.ROOT / ".run" / "labelstudio"
USER = "admin@yoloserve.local"


def ensure_installed(home: Path = HOME, python: str = sys.executable) -> Path:
    """The ``label-studio`` executable of ``home/venv``, installed first when missing.

    Raises:
        subprocess.CalledProcessError: venv or pip failed (no network to PyPI, no disk).
    """
    venv, stamp = home / "venv", home / "venv" / ".pins"
    exe = venv / "bin" / "label-studio"
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another session may be installing it right now
        if exe.is_file() and stamp.is_file() and stamp.read_text() == "\n".join(PINS):
            return exe
        shutil.rmtree(venv, ignore_errors=True)
        started = time.monotonic()
        print(f"installing {' '.join(PINS)} into {venv} (about a minute)", file=sys.stderr)
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
                        "--disable-pip-version-check", *PINS], check=True)
        stamp.write_text("\n".join(PINS))
        print(f"installed in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return exe


class LabelStudioServer:
    """One Label Studio on ``127.0.0.1``.

    Args:
        directory: Its data folder (SQLite database, uploads); None: a temporary one, removed
            by :meth:`stop`.
        port: None picks a free one.
        token: The admin's legacy API token; None: a random one.
        password: The admin's password (``USER`` logs in with it in a browser).
        env: More environment for Label Studio.
    """

    def __init__(self, directory: Path | None = None, *, port: int | None = None,
                 token: str | None = None, password: str | None = None,
                 env: dict[str, str] | None = None) -> None:
        self._given_dir = directory
        self.dir = directory
        self.port = port or free_port()
        self.token = token or secrets.token_hex(20)
        self.password = password or secrets.token_urlsafe(12)
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.start_s: float | None = None

    @property
    def url(self) -> str:
        """Where it answers."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def headers(self) -> dict[str, str]:
        """Headers of an API call as the admin."""
        return {"Authorization": f"Token {self.token}"}

    def start(self, timeout: float = 240.0) -> LabelStudioServer:
        """Install if needed, start, wait until ``/health`` answers.

        Raises:
            devstack.waiting.NotReady: it exited or did not answer within ``timeout`` s.
        """
        exe = ensure_installed()
        if self.dir is None:
            self.dir = Path(tempfile.mkdtemp(prefix="yoloserve-ls-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "LABEL_STUDIO_BASE_DATA_DIR": str(self.dir),
               "LABEL_STUDIO_USERNAME": USER, "LABEL_STUDIO_PASSWORD": self.password,
               "LABEL_STUDIO_USER_TOKEN": self.token,
               "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
               # Nothing leaves the machine: no usage reports, no version checks.
               "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true", "COLLECT_ANALYTICS": "false",
               # Its SSRF guard refuses ML backends and webhooks on loopback and private
               # networks by default: exactly where this one's gateway is.
               "USE_DEFAULT_BANNED_SUBNETS": "false",
               **self.env}
        env.pop("PYTHONPATH", None)  # its venv, not ours
        log = (self.dir / "labelstudio.log").open("ab")
        self.proc = subprocess.Popen(
            [str(exe), "start", "--no-browser", "--internal-host", "127.0.0.1",
             "--port", str(self.port),
             "--data-dir", str(self.dir)],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.dir,
            start_new_session=True, preexec_fn=die_with_parent(os.getpid()),
        )
        log.close()
        try:
            self.start_s = wait_http(f"{self.url}/health", timeout, what="Label Studio",
                                     alive=lambda: self.proc is not None
                                     and self.proc.poll() is None)
        except BaseException:
            print(self.log_tail(), file=sys.stderr)
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM its process group, SIGKILL past ``timeout`` s; a temporary folder goes."""
        proc, self.proc = self.proc, None
        stop_process(proc, signal.SIGTERM, group=True, timeout=timeout)
        if self._given_dir is None and self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def log_tail(self, chars: int = 4000) -> str:
        """The end of its log."""
        with contextlib.suppress(OSError, TypeError):
            return (Path(str(self.dir)) / "labelstudio.log").read_text(errors="replace")[-chars:]
        return ""

    def __enter__(self) -> LabelStudioServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


app = typer.Typer(add_completion=False, help=__doc__.splitlines()[0] if __doc__ else None)


@app.command()
def main(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1")] = 8084,
    directory: Annotated[Path, typer.Option("--dir", help="Data folder, kept between starts")
                         ] = HOME / "data",
    gateway: Annotated[str, typer.Option(help="The gateway, for the hints printed")
                       ] = "http://127.0.0.1:8080",
    token: Annotated[str | None, typer.Option(envvar="LABELSTUDIO_API_KEY",
                                              help="Admin API token; default: random")] = None,
) -> None:
    """Run Label Studio in the foreground until Ctrl-C; print how to connect the gateway."""
    server = LabelStudioServer(directory.resolve(), port=port, token=token)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.start()
        info: dict[str, Any] = {
            "Label Studio": server.url, "login": f"{USER} / {server.password}",
            "API token (LABELSTUDIO_API_KEY)": server.token,
            "ML backend URL": f"{gateway}/labelstudio",
            "labeling config": f"{gateway}/labelstudio/config",
            "gateway needs": f"LABELSTUDIO_URL={server.url} LABELSTUDIO_API_KEY={server.token}",
        }
        for name, value in info.items():
            typer.echo(f"{name}: {value}")
        assert server.proc is not None
        raise typer.Exit(server.proc.wait() or 1)
    finally:
        server.stop()


if __name__ == "__main__":
    app()
