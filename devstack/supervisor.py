"""Local services under supervisord: it starts them, restarts a crashed one, keeps their logs.

``make demo`` and the test and benchmark stacks describe their services as :class:`Program`
values and hand them to one :class:`Supervisor` per run folder. It writes
``<run_dir>/supervisord.conf``, starts ``supervisord`` (Supervisor 4, daemonized, its pid file,
socket and logs in the run folder), and talks to it over its XML-RPC interface (the one
``supervisorctl`` uses) on a unix socket. Every program gets ``autorestart=true``: a service
killed with SIGKILL is started again within a second or two, and its own start-up (TorchServe
loading the registry's default version, see :mod:`devstack.torchserve`) brings it back to what it
served. Each program runs as its own process group, stopped as a group (``stopasgroup``), so a
service's children stop with it.

Example:
    >>> sup = Supervisor(Path(".run"))  # doctest: +SKIP
    >>> sup.apply([Program("echo", ["python", "-m", "http.server", "9999"])])  # doctest: +SKIP
    >>> sup.info("echo")["statename"]  # doctest: +SKIP
    'RUNNING'
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import sys
import xmlrpc.client
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from supervisor.xmlrpc import SupervisorTransport

from devstack.waiting import NotReady, wait_until
from yoloserve import paths

CONFIG = "supervisord.conf"
SOCKET = "supervisor.sock"
PID_FILE = "supervisord.pid"
LOG_DIR = "logs"
# States in which a program is on its way up or up; anything else means it gave up or was stopped.
LIVE_STATES = ("STARTING", "RUNNING", "BACKOFF")


def group_members(pgids: set[int]) -> list[psutil.Process]:
    """The live (not zombie) processes whose process group is one of ``pgids``."""
    members = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            if os.getpgid(proc.pid) in pgids and proc.status() != psutil.STATUS_ZOMBIE:
                members.append(proc)
    return members


def kill_groups(members: list[psutil.Process], timeout: float = 5.0) -> list[int]:
    """SIGKILL ``members`` and wait for them; returns their pids."""
    for proc in members:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(members, timeout=timeout)
    return [p.pid for p in members]


def _wait_groups_gone(pgids: set[int], timeout: float) -> None:
    """Wait until no live process is left in ``pgids``; SIGKILL what is left after ``timeout``."""
    if pgids:
        _, alive = psutil.wait_procs(group_members(pgids), timeout=timeout)
        kill_groups(alive)


class SupervisorError(RuntimeError):
    """supervisord could not be started or reached, or a program is unknown."""


@dataclass(frozen=True)
class Program:
    """One supervised service.

    Args:
        name: program name in supervisord (letters, digits, ``-`` and ``_``).
        command: argv; the first item should be an absolute path (``sys.executable``).
        env: variables set for this program on top of supervisord's own environment.
        cwd: working folder.
        ready: a check that is true once the service serves (e.g. its health URL answers 200).
        stop_wait_s: seconds between SIGTERM and SIGKILL on stop.
        start_secs: seconds a start must live to count as started (faster exits are retried).
    """

    name: str
    command: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path = paths.ROOT
    ready: Callable[[], bool] | None = field(default=None, compare=False)
    stop_wait_s: int = 20
    start_secs: int = 1


def _value(text: str, what: str, forbidden: str = "\n\r") -> str:
    # supervisord reads its config with ConfigParser interpolation (%% is a literal %), one line
    # per key.
    if any(c in text for c in forbidden):
        raise ValueError(f"{what} may not contain {forbidden!r}: {text!r}")
    return text.replace("%", "%%")


def _env_value(text: str, what: str) -> str:
    # `environment=` is split with a non-POSIX shlex, where a quoted value cannot hold a quote.
    return _value(text, what, '"\n\r')


def program_section(program: Program, log_dir: Path) -> str:
    """The ``[program:NAME]`` section of ``program``.

    Example:
        >>> print(program_section(Program("x", ["/bin/true"], cwd=Path("/")), Path("/l")))
        ... # doctest: +ELLIPSIS
        [program:x]
        command=/bin/true
        ...
    """
    env = ",".join(f'{k}="{_env_value(v, k)}"' for k, v in program.env.items())
    lines = [
        f"[program:{program.name}]",
        f"command={_value(shlex.join(program.command), 'command')}",
        f"directory={_value(str(program.cwd), 'cwd')}",
        "autostart=true",
        "autorestart=true",
        f"startsecs={program.start_secs}",
        "startretries=10",
        "stopsignal=TERM",
        f"stopwaitsecs={program.stop_wait_s}",
        "stopasgroup=true",
        "killasgroup=true",
        "redirect_stderr=true",
        f"stdout_logfile={_value(str(log_dir / f'{program.name}.log'), 'log')}",
        "stdout_logfile_maxbytes=20MB",
        "stdout_logfile_backups=3",
    ]
    if env:
        lines.append(f"environment={env}")
    return "\n".join(lines) + "\n"


class Supervisor:
    """supervisord for one run folder: config, daemon, and its RPC interface."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir).resolve()
        self.config_path = self.run_dir / CONFIG
        self.socket_path = self.run_dir / SOCKET
        self.log_dir = self.run_dir / LOG_DIR
        self._programs: dict[str, Program] = {}

    # ---------------------------------------------------------------------------- the daemon

    def config_text(self, programs: Sequence[Program]) -> str:
        """The whole ``supervisord.conf`` for ``programs``."""
        run, sock = _value(str(self.run_dir), "run_dir"), _value(str(self.socket_path), "socket")
        head = "\n".join([
            "; written by devstack.supervisor; do not edit (rewritten on every start)",
            "[unix_http_server]",
            f"file={sock}",
            "chmod=0700",
            "",
            "[supervisord]",
            f"logfile={run}/{LOG_DIR}/supervisord.log",
            "logfile_maxbytes=10MB",
            "logfile_backups=2",
            f"pidfile={run}/{PID_FILE}",
            f"directory={run}",
            f"childlogdir={run}/{LOG_DIR}",
            "nodaemon=false",
            # The sandbox refuses to raise RLIMIT_NOFILE; asking for no more than we have works.
            "minfds=256",
            "minprocs=64",
            "",
            "[rpcinterface:supervisor]",
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
            "",
            "[supervisorctl]",
            f"serverurl=unix://{sock}",
            "",
        ])
        return head + "\n" + "\n".join(program_section(p, self.log_dir) for p in programs)

    @property
    def rpc(self) -> Any:
        """An XML-RPC proxy of this supervisord (``rpc.supervisor.getAllProcessInfo()``, ...)."""
        transport = SupervisorTransport(serverurl=f"unix://{self.socket_path}")
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)

    def is_running(self) -> bool:
        """Whether this run folder's supervisord answers."""
        if not self.socket_path.exists():
            return False
        try:
            return self.rpc.supervisor.getState()["statename"] == "RUNNING"
        except (OSError, xmlrpc.client.Error):
            return False

    def daemon_pid(self) -> int | None:
        """supervisord's pid, if its pid file names a live supervisord."""
        try:
            pid = int((self.run_dir / PID_FILE).read_text().strip())
            proc = psutil.Process(pid)
            if proc.status() != psutil.STATUS_ZOMBIE and "supervisord" in " ".join(proc.cmdline()):
                return pid
        except (FileNotFoundError, ValueError, psutil.Error):
            pass
        return None

    def apply(self, programs: Sequence[Program], timeout: float = 30.0) -> None:
        """Make supervisord run exactly ``programs``: start it, or reload what changed.

        A program whose definition changed is restarted; one that is unchanged keeps running
        (``make demo`` run twice changes nothing); a stopped one is started again.

        Raises:
            SupervisorError: supervisord did not come up (with its log's tail).
        """
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._programs = {p.name: p for p in programs}
        self.config_path.write_text(self.config_text(programs), encoding="utf-8")
        if not self.is_running():
            self._start_daemon(timeout)
            return
        added, changed, removed = self.rpc.supervisor.reloadConfig()[0]
        for name in changed + removed:
            with contextlib.suppress(xmlrpc.client.Fault):  # already stopped
                self.rpc.supervisor.stopProcessGroup(name)
            self.rpc.supervisor.removeProcessGroup(name)
        for name in changed + added:
            self.rpc.supervisor.addProcessGroup(name)
        for info in self.rpc.supervisor.getAllProcessInfo():
            if info["statename"] in ("STOPPED", "EXITED", "FATAL"):
                self.rpc.supervisor.startProcess(info["name"], False)

    def _start_daemon(self, timeout: float) -> None:
        self.socket_path.unlink(missing_ok=True)  # left by a supervisord that was killed
        cmd = [sys.executable, "-m", "supervisor.supervisord", "-c", str(self.config_path)]
        result = subprocess.run(cmd, capture_output=True, text=True, cwd=self.run_dir)
        if result.returncode != 0:
            raise SupervisorError(f"supervisord did not start: {result.stdout}{result.stderr}")
        try:
            wait_until(self.is_running, timeout, what="supervisord")
        except NotReady as exc:
            raise SupervisorError(f"{exc}\n{self.log_tail('supervisord')}") from exc

    def shutdown(self, timeout: float = 60.0) -> bool:
        """Stop every program, then supervisord itself; True if one was running."""
        pid = self.daemon_pid()
        if not self.is_running():
            if pid is not None:  # alive but not answering: it cannot stop its programs
                with contextlib.suppress(psutil.Error):
                    psutil.Process(pid).kill()
            return False
        groups = {info["pid"] for info in self.all_info() if info["pid"]}  # program pid = pgid
        with contextlib.suppress(OSError, xmlrpc.client.Error):
            self.rpc.supervisor.stopAllProcesses(True)
        with contextlib.suppress(OSError, xmlrpc.client.Error):
            self.rpc.supervisor.shutdown()
        if pid is not None:
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).wait(timeout)
        # supervisord counts a program stopped when its main process exits; a child still
        # finishing (TorchServe's Java frontend) would keep its ports a moment longer.
        _wait_groups_gone(groups, timeout)
        return True

    # ------------------------------------------------------------------------------ programs

    def info(self, name: str) -> dict[str, Any]:
        """supervisord's record of ``name``: ``statename``, ``pid``, ``start``, ``exitstatus``..."""
        try:
            info: dict[str, Any] = self.rpc.supervisor.getProcessInfo(name)
        except xmlrpc.client.Fault as exc:
            raise SupervisorError(f"no program {name!r}: {exc.faultString}") from exc
        return info

    def all_info(self) -> list[dict[str, Any]]:
        """Every program's record; empty when supervisord is not running."""
        if not self.is_running():
            return []
        infos: list[dict[str, Any]] = self.rpc.supervisor.getAllProcessInfo()
        return infos

    def pid(self, name: str) -> int | None:
        """The running program's pid (0 from supervisord means none)."""
        return int(self.info(name)["pid"]) or None

    def is_live(self, name: str) -> bool:
        """Whether ``name`` is starting, running, or waiting to be restarted."""
        return self.info(name)["statename"] in LIVE_STATES

    def start(self, name: str) -> None:
        """Start a stopped program (no-op if it runs)."""
        with contextlib.suppress(xmlrpc.client.Fault):  # ALREADY_STARTED
            self.rpc.supervisor.startProcess(name, False)

    def stop(self, name: str) -> None:
        """Stop a program (SIGTERM to its group, SIGKILL after its stop wait); no-op if stopped."""
        with contextlib.suppress(xmlrpc.client.Fault):  # NOT_RUNNING
            self.rpc.supervisor.stopProcess(name, True)

    def wait_ready(self, name: str, timeout: float) -> float:
        """Wait until program ``name``'s ready check passes; returns the seconds it took.

        Raises:
            NotReady: it gave up (FATAL), was stopped, or ``timeout`` passed; with its log's tail.
        """
        program = self._programs[name]
        check = program.ready or (lambda: self.info(name)["statename"] == "RUNNING")
        try:
            return wait_until(check, timeout, what=name, alive=lambda: self.is_live(name))
        except NotReady as exc:
            raise NotReady(f"{exc}\n--- {self.log_path(name)}\n{self.log_tail(name)}") from exc

    def log_path(self, name: str) -> Path:
        """Where program ``name`` (or ``supervisord``) writes its output."""
        return self.log_dir / f"{name}.log"

    def log_tail(self, name: str, lines: int = 40) -> str:
        """The last ``lines`` of a program's log."""
        try:
            text = self.log_path(name).read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_restarted(self, name: str, old_pid: int, timeout: float) -> int:
        """Wait until ``name`` runs with a pid other than ``old_pid`` (after a crash)."""
        def restarted() -> bool:
            info = self.info(name)
            return info["statename"] == "RUNNING" and info["pid"] not in (0, old_pid)

        wait_until(restarted, timeout, what=f"{name} restart")
        return int(self.info(name)["pid"])
