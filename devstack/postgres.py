"""A real PostgreSQL server, without Docker: throwaway ones for the tests, a kept one for the demo.

:class:`PostgresServer` runs Debian's ``initdb`` into a folder and starts ``postgres`` on
``127.0.0.1`` and a free port, as a direct child. It creates a role and a database and hands out
SQLAlchemy URLs (``postgresql+psycopg://...``, the form ``STORE_DATABASE_URL`` takes);
:meth:`~PostgresServer.new_database` gives each test a database of its own on one server.
``python -m devstack.postgres --port N --dir D`` runs one in the foreground for supervisord or
``make demo``, keeping its folder (and data) between starts.

Choices, and why:

- **Binaries**: ``$POSTGRES_BIN_DIR``, else the newest ``/usr/lib/postgresql/*/bin`` with
  ``initdb``, else PATH (:func:`~devstack.postgres_host.find_bin_dir`).
- **Root**: postgres refuses to run as root, and the tests and CI may. As root, initdb and
  postgres run as the unprivileged system user ``yoloserve-pg`` (created with ``useradd
  --system`` when missing), which owns the folder. The switch is Popen's ``user``/``group``
  (setgroups + setregid + setreuid in the child) rather than ``runuser``/``setpriv``: the
  parent-death signal below is set *after* the switch, and a uid change clears it.
- **No orphans**: the postmaster gets ``PR_SET_PDEATHSIG`` = SIGKILL, so a test run that
  crashes (even SIGKILLed) takes its server with it; the backends then exit on postmaster death.
  The signal fires when the *thread* that started the server ends: start it from a thread that
  lives as long as the server (pytest fixtures and the CLI use the main thread). A crashed run
  can leave its temporary folder behind in the temp dir; no process outlives it.
- **Stop**: SIGINT to the postmaster is PostgreSQL's fast shutdown (what ``pg_ctl stop -m fast``
  sends); past the timeout the whole process group is SIGKILLed. A temporary folder is removed.
- **Auth**: trust on the unix socket (its folders are the server user's, 0700), scram-sha-256 with
  a random password over TCP, which listens on loopback only (initdb's pg_hba has no other host
  lines), so other users of a shared machine cannot walk in, and the URLs carry a password like
  production ones. ``fsync`` stays on: tests measure durability.

Example:
    >>> with PostgresServer() as server:  # doctest: +SKIP
    ...     engine = sqlalchemy.create_engine(server.new_database("t_orders"))
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Annotated, Any

import psycopg
import typer
from psycopg import sql
from sqlalchemy.engine import URL

from devstack.ports import free_port, port_taken
from devstack.postgres_host import (
    OS_USER,
    PostgresError,
    PostgresNotFound,
    check_reachable,
    die_with_parent,
    ensure_os_user,
    find_bin_dir,
)
from devstack.processes import stop_process
from devstack.supervisor import Program
from devstack.waiting import NotReady, wait_until

__all__ = ["PostgresError", "PostgresNotFound", "PostgresServer", "find_bin_dir", "program"]

SUPERUSER = "postgres"
CREDENTIALS_FILE = "credentials.json"
_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class PostgresServer:
    """One local PostgreSQL: ``initdb`` (first start only), ``postgres``, a role and a database.

    Args:
        directory: folder of the cluster (``data/``, ``socket/``, ``postgres.log``, the
            credentials); kept, and reused by the next start. None: a temporary folder, removed
            by :meth:`stop`.
        port: TCP port on ``host``; None (or 0) picks a free one, retried if taken meanwhile,
            and kept by a restart when still free.
        host: listen address; keep it loopback.
        user: the role the URLs log in as (owner of the databases it creates).
        database: the first database, :attr:`url`'s.
        password: the role's password; None keeps the one stored in the folder, or makes one.
        os_user: the system user that runs the server when this process is root.
        shared_buffers: postgres' ``shared_buffers``; small, for machines running many things.
    """

    def __init__(
        self,
        directory: Path | None = None,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        user: str = "yoloserve",
        database: str = "yoloserve",
        password: str | None = None,
        bin_dir: Path | None = None,
        os_user: str = OS_USER,
        shared_buffers: str = "16MB",
    ) -> None:
        for name in (user, database):
            _check_name(name)
        self._given_dir = Path(directory).resolve() if directory is not None else None
        self.dir: Path | None = self._given_dir
        self._requested_port = port or None
        self.port = self._requested_port
        self.host = host
        self.user = user
        self.database = database
        self._password = password
        self._superuser_password = ""
        self._bin_dir = bin_dir
        self._os_user = os_user
        self.shared_buffers = shared_buffers
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    # ------------------------------------------------------------------------------ addresses

    @property
    def url(self) -> str:
        """SQLAlchemy URL of :attr:`database` (``postgresql+psycopg://user:pw@host:port/db``)."""
        return self.url_for(self.database)

    def url_for(self, database: str) -> str:
        """SQLAlchemy URL of ``database`` on this server, as :attr:`user`."""
        if self.port is None or self._password is None:
            raise PostgresError("the server has not started")
        return URL.create("postgresql+psycopg", self.user, self._password, self.host, self.port,
                          database).render_as_string(hide_password=False)

    @property
    def pid(self) -> int | None:
        """The postmaster's pid while it runs."""
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    # ---------------------------------------------------------------------------- lifecycle

    def start(self, timeout: float = 60.0) -> PostgresServer:
        """initdb if needed, start postgres, wait until it accepts connections, bootstrap.

        Raises:
            PostgresNotFound: no PostgreSQL binaries.
            PostgresError: initdb or the bootstrap failed.
            NotReady: the server exited or did not answer within ``timeout`` s.
        """
        if self.proc is not None:
            raise PostgresError("already started")
        bin_dir = self._bin_dir or find_bin_dir()
        owner = ensure_os_user(self._os_user) if os.geteuid() == 0 else None
        try:
            self._prepare(bin_dir, owner)
            self._launch(bin_dir, owner, timeout)
            self._bootstrap()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 15.0, *, keep_dir: bool = False) -> None:
        """Fast shutdown (SIGINT), then SIGKILL of its process group past ``timeout`` s.

        A temporary folder is removed unless ``keep_dir`` (then :meth:`start` reuses its data).
        Safe to call twice.
        """
        proc, self.proc = self.proc, None
        # SIGINT to the postmaster: PostgreSQL's "fast" shutdown.
        stop_process(proc, signal.SIGINT, group=False, timeout=timeout)
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._given_dir is None and self.dir is not None and not keep_dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def kill(self) -> None:
        """SIGKILL the server's whole process group, keeping its folder: a crash, for tests of
        what survives one (:meth:`start` again recovers from the WAL)."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.stop(keep_dir=True)

    def wait(self) -> int:
        """Block until the server exits; its exit status."""
        if self.proc is None:
            raise PostgresError("the server has not started")
        return self.proc.wait()

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ---------------------------------------------------------------------------- databases

    def new_database(self, name: str) -> str:
        """Create the empty database ``name`` (owned by :attr:`user`); its URL.

        Raises:
            ValueError: not a plain lower-case identifier.
            psycopg.errors.DuplicateDatabase: it exists already.
        """
        _check_name(name)
        with self._admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(name), sql.Identifier(self.user)))
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        """Drop ``name`` if it exists, closing its connections (``WITH (FORCE)``)."""
        _check_name(name)
        with self._admin() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the server's log."""
        if self.dir is None:
            return ""
        try:
            return (self.dir / "postgres.log").read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""

    # ------------------------------------------------------------------------------ helpers

    def _prepare(self, bin_dir: Path, owner: pwd.struct_passwd | None) -> None:
        if self.dir is None:
            self.dir = Path(tempfile.mkdtemp(prefix="yoloserve-pg-"))
        assert self.dir is not None
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "socket").mkdir(exist_ok=True)
        for path in (self.dir, self.dir / "socket"):
            path.chmod(0o700)  # the socket trusts whoever reaches it
        if owner is not None:
            check_reachable(self.dir, owner)
            for path in (self.dir, self.dir / "socket"):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        creds = self.dir / CREDENTIALS_FILE
        stored = json.loads(creds.read_text()) if creds.is_file() else {}
        self._superuser_password = stored.get("superuser") or secrets.token_urlsafe(18)
        self._password = self._password or stored.get("password") or secrets.token_urlsafe(18)
        creds.touch(mode=0o600)
        creds.write_text(json.dumps(
            {"superuser": self._superuser_password, "password": self._password}))
        if not (self.dir / "data" / "PG_VERSION").is_file():
            self._initdb(bin_dir, owner)

    def _initdb(self, bin_dir: Path, owner: pwd.struct_passwd | None) -> None:
        assert self.dir is not None
        pwfile = self.dir / "superuser.pw"
        pwfile.write_text(self._superuser_password + "\n")
        if owner is not None:
            os.chown(pwfile, owner.pw_uid, owner.pw_gid)
        cmd = [str(bin_dir / "initdb"), "-D", str(self.dir / "data"), "-U", SUPERUSER,
               f"--pwfile={pwfile}", "--auth-local=trust", "--auth-host=scram-sha-256",
               "--encoding=UTF8", "--locale=C", "--no-instructions"]
        if self._given_dir is None:
            # Skips initdb's final sync of a throwaway cluster only; the server keeps fsync on.
            cmd.append("--no-sync")
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, check=False,
                                  **self._as(owner))
        finally:
            pwfile.unlink(missing_ok=True)
        if done.returncode != 0:
            raise PostgresError(f"initdb failed ({done.returncode}):\n{done.stdout}{done.stderr}")

    def _launch(self, bin_dir: Path, owner: pwd.struct_passwd | None, timeout: float) -> None:
        assert self.dir is not None
        chosen = self._requested_port
        for attempt in range(3):
            if chosen is not None:
                self.port = chosen
            elif attempt > 0 or self.port is None:
                self.port = free_port(self.host)
            # else a restart tries its old port first: the URLs handed out stay valid
            self._log = (self.dir / "postgres.log").open("ab")
            self.proc = subprocess.Popen(
                [str(bin_dir / "postgres"), "-D", str(self.dir / "data"),
                 "-c", f"port={self.port}", "-c", f"listen_addresses={self.host}",
                 "-c", f"unix_socket_directories={self.dir / 'socket'}",
                 "-c", f"shared_buffers={self.shared_buffers}",
                 "-c", "fsync=on", "-c", "synchronous_commit=on"],
                stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=die_with_parent(os.getpid()), **self._as(owner),
            )
            try:
                wait_until(self._accepts, timeout, what=f"postgres on port {self.port}",
                           alive=lambda: self.proc is not None and self.proc.poll() is None)
                return
            except NotReady as exc:
                lost_port = "could not bind" in self.log_tail(2000)
                self.stop(keep_dir=True)
                if chosen is None and lost_port and attempt < 2:
                    continue  # someone took the free port between the pick and the bind
                raise NotReady(f"{exc}\n{self.log_tail()}") from None

    def _as(self, owner: pwd.struct_passwd | None) -> dict[str, Any]:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "TZ": "UTC"}
        kwargs: dict[str, Any] = {"env": env, "cwd": str(self.dir)}
        if owner is not None:
            env["HOME"] = str(self.dir)
            kwargs.update(user=owner.pw_uid, group=owner.pw_gid, extra_groups=[])
        return kwargs

    def _connect(self, dbname: str = "postgres", timeout: int = 5) -> psycopg.Connection[Any]:
        return psycopg.connect(host=self.host, port=self.port, user=SUPERUSER, dbname=dbname,
                               password=self._superuser_password, connect_timeout=timeout,
                               autocommit=True)

    def _accepts(self) -> bool:
        try:
            with self._connect(timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    @contextlib.contextmanager
    def _admin(self) -> Iterator[psycopg.Connection[Any]]:
        if self.pid is None:
            raise PostgresError("the server is not running")
        with self._connect() as conn:
            yield conn

    def _bootstrap(self) -> None:
        with self._admin() as conn:
            role = sql.Identifier(self.user)
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [self.user])
            verb = "ALTER" if exists.fetchone() else "CREATE"
            # The password travels as a literal: utility statements take no parameters.
            conn.execute(sql.SQL(verb + " ROLE {} LOGIN CREATEDB PASSWORD {}").format(
                role, sql.Literal(self._password)))
            found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [self.database])
            if found.fetchone() is None:
                conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(self.database), role))


def _check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise ValueError(f"{name!r}: use a lower-case identifier ([a-z_][a-z0-9_]*, <= 63 chars)")


def program(run_dir: Path, port: int, name: str = "postgres") -> Program:
    """The demo's supervised PostgreSQL, kept in ``run_dir`` (``STORE_DATABASE_URL`` is in
    ``run_dir/url`` once it has started)."""
    return Program(
        name,
        [sys.executable, "-m", "devstack.postgres", "--port", str(port), "--dir", str(run_dir)],
        ready=lambda: port_taken(port),
        stop_wait_s=20,
        start_secs=2,
    )


app = typer.Typer(add_completion=False, help=__doc__.splitlines()[0] if __doc__ else None)


@app.command()
def main(
    port: Annotated[int, typer.Option(help="TCP port on 127.0.0.1; 0 picks a free one (not "
                                           "5432 by default: a system cluster may hold it)")
                    ] = 5433,
    directory: Annotated[Path, typer.Option("--dir", help="folder of the cluster; created and "
                                            "initialized when empty, reused (data kept) when "
                                            "not")] = Path(".run/postgres"),
    user: Annotated[str, typer.Option(help="role the URL logs in as")] = "yoloserve",
    database: Annotated[str, typer.Option(help="database the URL names")] = "yoloserve",
    password: Annotated[str | None, typer.Option(
        envvar="POSTGRES_PASSWORD", help="the role's password; default: the one kept in the "
        "folder, made at random on the first start")] = None,
) -> None:
    """Run PostgreSQL in the foreground until SIGTERM or Ctrl-C; prints its URL first (and
    writes it to DIR/url)."""
    server = PostgresServer(directory, port=port, user=user, database=database,
                            password=password)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # supervisord's stop: shut down too
    try:
        server.start()
        assert server.dir is not None
        url_file = server.dir / "url"
        url_file.touch(mode=0o600)
        url_file.write_text(server.url + "\n")
        typer.echo(server.url)
        code = server.wait()
        raise typer.Exit(code or 1)  # it was not asked to stop
    finally:
        server.stop()


if __name__ == "__main__":
    app()
