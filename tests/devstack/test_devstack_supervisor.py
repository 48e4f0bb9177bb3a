"""``devstack.supervisor``: the config it writes, and a real supervisord restarting a real server.

The restart test runs a real supervisord with a tiny HTTP server (``python -m http.server``) as
its program, kills the server with SIGKILL and requires it to answer again, from a new pid.
"""

from __future__ import annotations

import configparser
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from devstack.ports import free_port
from devstack.supervisor import Program, Supervisor, program_section
from devstack.waiting import NotReady, http_ok, url_ready


def test_program_section_is_a_restarting_group_with_its_log(tmp_path: Path) -> None:
    program = Program("gw", ["/usr/bin/python3", "-m", "gateway", "a b"], {"K": "v,1"},
                      cwd=tmp_path)
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(program_section(program, tmp_path / "logs"))
    section = parser["program:gw"]
    assert section["command"] == "/usr/bin/python3 -m gateway 'a b'"
    assert section["autorestart"] == "true"
    assert section["stopasgroup"] == section["killasgroup"] == "true"
    assert section["stdout_logfile"] == str(tmp_path / "logs" / "gw.log")
    assert section["environment"] == 'K="v,1"'


def test_percent_signs_survive_supervisord_interpolation(tmp_path: Path) -> None:
    section = program_section(Program("p", ["/bin/echo", "100%"], {"A": "%x"}), tmp_path)
    assert "100%%" in section and 'A="%%x"' in section


@pytest.mark.parametrize(
    ("env", "raises"),
    [
        ({"KEY": "plain"}, False),
        ({"KEY": "with,comma and space"}, False),
        ({"KEY": 'has"quote'}, True),
        ({"KEY": "two\nlines"}, True),
    ],
)
def test_environment_values_supervisord_cannot_read_are_refused(
    tmp_path: Path, env: dict[str, str], raises: bool
) -> None:
    program = Program("p", ["/bin/true"], env)
    if raises:
        with pytest.raises(ValueError, match="KEY"):
            program_section(program, tmp_path)
    else:
        program_section(program, tmp_path)


@pytest.fixture
def supervised_server(tmp_path: Path) -> Iterator[tuple[Supervisor, str]]:
    """A real supervisord running one HTTP server program; shut down afterwards."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    (tmp_path / "www").mkdir()
    program = Program(
        "web", [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        {"MARKER": "devstack-test"}, cwd=tmp_path / "www", ready=url_ready(url),
    )
    supervisor = Supervisor(tmp_path / "sup")
    supervisor.apply([program])
    try:
        supervisor.wait_ready("web", 30)
        yield supervisor, url
    finally:
        assert supervisor.shutdown()
    assert not supervisor.is_running()


def test_a_killed_program_is_restarted_and_serves_again(
    supervised_server: tuple[Supervisor, str],
) -> None:
    supervisor, url = supervised_server
    pid = supervisor.pid("web")
    assert pid is not None
    assert psutil.Process(pid).environ()["MARKER"] == "devstack-test"
    os.kill(pid, signal.SIGKILL)
    new_pid = supervisor.wait_restarted("web", pid, 30)
    assert new_pid != pid
    supervisor.wait_ready("web", 30)
    assert http_ok(url)
    assert "web.log" in str(supervisor.log_path("web"))


def test_apply_again_keeps_an_unchanged_program_running(
    supervised_server: tuple[Supervisor, str],
) -> None:
    supervisor, _ = supervised_server
    pid = supervisor.pid("web")
    supervisor.apply(list(supervisor._programs.values()))
    assert supervisor.pid("web") == pid


def test_a_stopped_program_is_not_restarted_and_wait_ready_says_so(
    supervised_server: tuple[Supervisor, str],
) -> None:
    supervisor, url = supervised_server
    supervisor.stop("web")
    assert supervisor.info("web")["statename"] == "STOPPED"
    assert not http_ok(url)
    with pytest.raises(NotReady, match="web exited before it was ready"):
        supervisor.wait_ready("web", 5)
    supervisor.start("web")
    supervisor.wait_ready("web", 30)


def test_shutdown_stops_the_program_group(tmp_path: Path) -> None:
    # A program whose child would outlive it if only the parent were signalled.
    script = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', " \
             "'import time; time.sleep(600)']); time.sleep(600)"
    supervisor = Supervisor(tmp_path / "sup")
    supervisor.apply([Program("tree", [sys.executable, "-c", script], start_secs=1)])
    supervisor.wait_ready("tree", 30)
    parent = psutil.Process(supervisor.pid("tree"))
    children = parent.children()
    assert supervisor.shutdown()
    gone, alive = psutil.wait_procs([parent, *children], timeout=30)
    assert not alive
