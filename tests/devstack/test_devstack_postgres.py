"""``devstack.postgres``: a real PostgreSQL (Debian's binaries) started here, reached with
SQLAlchemy + psycopg 3, isolated per database, and gone (process and folder) after stop() or
after its parent dies."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest
import sqlalchemy as sa
from sqlalchemy.exc import ProgrammingError

from devstack.postgres import PostgresNotFound, PostgresServer, find_bin_dir
from devstack.waiting import wait_until
from yoloserve import paths


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _processes_using(folder: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if str(folder) in " ".join(proc.info["cmdline"] or []):
            found.append(proc)
    return found


def test_a_table_written_on_one_connection_is_read_on_another(postgres_server) -> None:
    engine = sa.create_engine(postgres_server.url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE feedback (id serial PRIMARY KEY, label text)"))
            conn.execute(sa.text("INSERT INTO feedback (label) VALUES ('circle'), ('square')"))
        with engine.connect() as first, engine.connect() as second:
            assert first.connection.dbapi_connection is not second.connection.dbapi_connection
            rows = second.execute(sa.text("SELECT label FROM feedback ORDER BY id")).scalars()
            assert list(rows) == ["circle", "square"]
            assert second.execute(sa.text("SHOW fsync")).scalar() == "on"
            assert second.execute(sa.text("SELECT current_user")).scalar() == "yoloserve"
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("DROP TABLE IF EXISTS feedback"))
        engine.dispose()


def test_each_new_database_is_isolated(postgres_server) -> None:
    urls = [postgres_server.new_database(f"t_isolated_{i}") for i in range(2)]
    engines = [sa.create_engine(url) for url in urls]
    try:
        with engines[0].begin() as conn:
            conn.execute(sa.text("CREATE TABLE jobs (id int)"))
        with engines[1].connect() as conn, pytest.raises(ProgrammingError):
            conn.execute(sa.text("SELECT * FROM jobs"))
        assert sa.make_url(urls[0]).database == "t_isolated_0"
        assert sa.make_url(urls[0]).drivername == "postgresql+psycopg"
    finally:
        for engine in engines:
            engine.dispose()
        for i in range(2):
            postgres_server.drop_database(f"t_isolated_{i}")


def test_the_fixture_hands_each_test_a_fresh_database(postgres_url: str) -> None:
    engine = sa.create_engine(postgres_url)
    with engine.connect() as conn:
        tables = conn.execute(sa.text(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        )).scalar()
    engine.dispose()
    assert tables == 0
    assert sa.make_url(postgres_url).database != "yoloserve"


def test_database_names_must_be_plain_identifiers(postgres_server) -> None:
    with pytest.raises(ValueError, match="identifier"):
        postgres_server.new_database('x"; DROP DATABASE yoloserve; --')


def test_stop_leaves_no_process_and_no_folder() -> None:
    server = PostgresServer().start()
    pid, folder = server.pid, server.dir
    assert pid is not None and folder is not None and folder.is_dir()
    children = psutil.Process(pid).children(recursive=True)
    assert children, "postgres runs its background workers as children"

    server.stop()
    server.stop()  # twice is fine

    assert _gone(pid)
    assert all(_gone(child.pid) for child in children)
    assert not folder.exists()
    assert _processes_using(folder) == []


def test_committed_rows_survive_a_crash_and_restart(tmp_path: Path) -> None:
    server = PostgresServer().start()
    try:
        engine = sa.create_engine(server.url)
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE t (x int)"))
            conn.execute(sa.text("INSERT INTO t VALUES (42)"))
        engine.dispose()
        before = sa.make_url(server.url)
        server.kill()
        server.start()
        after = sa.make_url(server.url)  # same folder, same credentials (the port if still free)
        assert (after.username, after.password) == (before.username, before.password)
        engine = sa.create_engine(server.url)
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT x FROM t")).scalar() == 42
        engine.dispose()
    finally:
        server.stop()


def test_the_server_dies_with_the_process_that_started_it() -> None:
    script = textwrap.dedent("""
        import time
        from devstack.postgres import PostgresServer
        server = PostgresServer().start()
        print(server.pid, server.dir, flush=True)
        time.sleep(600)
    """)
    child = subprocess.Popen([sys.executable, "-c", script], cwd=paths.ROOT,
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    line = child.stdout.readline().split()
    pid, folder = int(line[0]), Path(line[1])
    try:
        assert not _gone(pid)
        child.send_signal(signal.SIGKILL)  # a crashed test run: no stop(), no finally
        child.wait(10)
        wait_until(lambda: _gone(pid), 20, what="the orphaned postgres to exit")
        wait_until(lambda: not _processes_using(folder), 20, what="its backends to exit")
    finally:
        shutil.rmtree(folder, ignore_errors=True)  # what a crash leaves: the temp folder only


def test_binaries_are_found_newest_first_or_where_the_environment_says(tmp_path: Path) -> None:
    for version in ("9.6", "13", "15"):
        folder = tmp_path / version / "bin"
        folder.mkdir(parents=True)
        for name in ("initdb", "postgres"):
            (folder / name).touch()
    (tmp_path / "16" / "bin").mkdir(parents=True)  # a client-only install: no initdb

    assert find_bin_dir({}, roots=(tmp_path,)) == tmp_path / "15" / "bin"
    assert find_bin_dir({"POSTGRES_BIN_DIR": str(tmp_path / "13" / "bin")},
                        roots=(tmp_path,)) == tmp_path / "13" / "bin"
    with pytest.raises(PostgresNotFound, match="make setup"):
        find_bin_dir({"PATH": str(tmp_path)}, roots=(tmp_path / "none",))
    with pytest.raises(PostgresNotFound, match="POSTGRES_BIN_DIR"):
        find_bin_dir({"POSTGRES_BIN_DIR": str(tmp_path / "16" / "bin")})


@pytest.mark.skipif(os.geteuid() != 0, reason="the root path: only root can switch users")
def test_as_root_the_server_runs_as_an_unprivileged_user(postgres_server) -> None:
    owner = psutil.Process(postgres_server.pid).uids().real
    assert owner != 0
    assert postgres_server.dir.stat().st_uid == owner


def test_the_cli_runs_one_in_the_foreground_and_stops_on_sigterm(tmp_path: Path) -> None:
    folder = Path("/tmp") / f"yoloserve-pg-cli-{os.getpid()}"  # root's tmp_path is 0700
    cli = subprocess.Popen(
        [sys.executable, "-m", "devstack.postgres", "--port", "0", "--dir", str(folder)],
        cwd=paths.ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert cli.stdout is not None
        url = cli.stdout.readline().strip()
        assert url.startswith("postgresql+psycopg://yoloserve:"), cli.stderr
        assert (folder / "url").read_text().strip() == url
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT 1")).scalar() == 1
        engine.dispose()
        postmaster = psutil.Process(cli.pid).children()[0].pid

        cli.send_signal(signal.SIGTERM)
        assert cli.wait(30) == 0
        assert _gone(postmaster)
        assert (folder / "data" / "PG_VERSION").is_file()  # a given folder is kept
    finally:
        if cli.poll() is None:
            cli.kill()
        shutil.rmtree(folder, ignore_errors=True)
