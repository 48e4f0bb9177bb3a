"""Open the store: one engine per process, sessions for reads, serialised write transactions.

``Store(url)`` creates the engine and brings the schema to Alembic's head (once per process and
URL; concurrent starters are serialised by a lock: a file lock beside an SQLite file, an advisory
lock on PostgreSQL).

Writes: ``with store.write() as session:`` is one transaction that holds the database's write
lock from its first statement (SQLite ``BEGIN IMMEDIATE``; PostgreSQL: a transaction-scoped
advisory lock per ``lock`` name), so a read-modify-write inside it sees no concurrent writer of
the same thing. On SQLite every writer waits up to ``busy_timeout_s`` for the previous one; WAL
mode lets readers go on meanwhile. ``synchronous=FULL``: a committed transaction is on disk
before ``write()`` returns, also across a power cut, which is what an acknowledged feedback
needs.

Example:
    >>> store = Store("sqlite:////tmp/example-store.db")
    >>> with store.read() as session:
    ...     session.scalar(text("select 1"))
    1
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from filelock import FileLock
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from yoloserve.store.settings import StoreSettings, sqlite_url

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_MIGRATION_LOCK = 0x59_4F_4C_4F  # "YOLO": advisory lock key of schema upgrades on PostgreSQL
_SQLITE_POOL = 48
_migrated: set[str] = set()
_migrated_lock = threading.Lock()


def _lock_key(name: str) -> int:
    """A stable signed 64-bit key for ``pg_advisory_xact_lock`` from a lock name."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def _sqlite_engine(url: str, busy_timeout_s: float, *, immediate: bool) -> Engine:
    engine = create_engine(
        url,
        connect_args={"timeout": busy_timeout_s, "check_same_thread": False},
        pool_pre_ping=False,
        # A connection per thread that asks (the gateway's 40 worker threads): an SQLite
        # connection is a file handle, but opening one costs its PRAGMAs, and a pool smaller
        # than the threads opened and closed one on most requests under load.
        pool_size=_SQLITE_POOL, max_overflow=_SQLITE_POOL,
    )

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        # pysqlite's own BEGIN handling is switched off so the transaction starts as we say.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        # A writer takes the write lock at BEGIN: upgrading a read transaction to a write one
        # later fails at once (SQLITE_BUSY) when another writer committed in between.
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


class Store:
    """The database: an engine, read sessions and serialised write transactions.

    Args:
        url: SQLAlchemy URL; ``StoreSettings().url`` (``STORE_DATABASE_URL``) when None.
        migrate: bring the schema to the newest migration first (services do; a test of the
            migrations themselves passes False).
        busy_timeout_s: SQLite: how long a writer waits for the write lock.
    """

    def __init__(
        self, url: str | None = None, *, migrate: bool = True, busy_timeout_s: float | None = None
    ) -> None:
        settings = StoreSettings()
        self.url = url or settings.url
        timeout = busy_timeout_s if busy_timeout_s is not None else settings.busy_timeout_s
        self.dialect = make_url(self.url).get_backend_name()
        if self.dialect == "sqlite":
            database = make_url(self.url).database
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            self.engine = _sqlite_engine(self.url, timeout, immediate=False)
            self._write_engine = _sqlite_engine(self.url, timeout, immediate=True)
        else:
            self.engine = create_engine(self.url, pool_pre_ping=True, pool_size=10,
                                        max_overflow=20)
            self._write_engine = self.engine
        self._sqlite_writer = threading.Lock()
        self._reads = sessionmaker(self.engine, expire_on_commit=False)
        self._writes = sessionmaker(self._write_engine, expire_on_commit=False)
        if migrate:
            self.upgrade()

    @classmethod
    def sqlite(cls, path: Path, **kwargs: Any) -> Store:
        """A store in the SQLite file ``path``."""
        return cls(sqlite_url(path), **kwargs)

    def __repr__(self) -> str:
        return f"Store({make_url(self.url).render_as_string(hide_password=True)!r})"

    # ------------------------------------------------------------------------ sessions

    @contextlib.contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reads (one consistent snapshot per transaction); nothing is written."""
        with self._reads() as session:
            yield session  # close() ends the transaction; loaded rows stay readable

    @contextlib.contextmanager
    def connect(self) -> Iterator[Connection]:
        """A Core connection for reads on a hot path (no ORM session, identity map or unit of
        work: a few times cheaper for one row); nothing is written."""
        with self.engine.connect() as connection:
            yield connection

    @contextlib.contextmanager
    def write(self, lock: str | None = None) -> Iterator[Session]:
        """One write transaction, committed when the block ends, rolled back if it raises.

        Args:
            lock: a name to serialise on. SQLite serialises every writer anyway; on PostgreSQL
                writers of the same name wait for each other (a read-modify-write of the
                registry, a job claim), writers of other names run side by side.
        """
        # SQLite: the writers of this process queue on a lock of ours first. SQLite's own busy
        # handler sleeps with backoff (up to 100 ms a nap) while another connection writes, which
        # under 32 concurrent writers made the tail and the throughput worse than a plain queue.
        local = self._sqlite_writer if self.dialect == "sqlite" else contextlib.nullcontext()
        with local, self._writes() as session, session.begin():
            session.connection()  # BEGIN now: SQLite's write lock is held from here on
            if lock is not None and self.dialect == "postgresql":
                session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _lock_key(lock)})
            yield session

    def dispose(self) -> None:
        """Close every pooled connection (a forked or finished process calls it)."""
        self.engine.dispose()
        if self._write_engine is not self.engine:
            self._write_engine.dispose()

    # ------------------------------------------------------------------------ schema

    def upgrade(self) -> None:
        """Bring the schema to Alembic's head, once per process and URL, one starter at a time."""
        with _migrated_lock:
            if self.url in _migrated:
                return
            if self.dialect == "sqlite":
                database = make_url(self.url).database or "memory"
                with FileLock(f"{database}.migrate.lock"):
                    self._upgrade()
            else:
                with self.engine.connect() as connection:
                    # Session-level advisory lock: held across Alembic's own transactions.
                    connection.execute(text("SELECT pg_advisory_lock(:k)"),
                                       {"k": _MIGRATION_LOCK})
                    try:
                        self._upgrade()
                    finally:
                        connection.execute(text("SELECT pg_advisory_unlock(:k)"),
                                           {"k": _MIGRATION_LOCK})
                        connection.commit()
            _migrated.add(self.url)

    def _upgrade(self) -> None:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with self._write_engine.connect() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
            connection.commit()




_opened: dict[str, Store] = {}
_opened_lock = threading.Lock()


def open_store(url: str | None = None) -> Store:
    """The process's one ``Store`` for ``url`` (``STORE_DATABASE_URL`` when None): engines and
    their pools are shared by every caller in the process rather than opened per call."""
    key = url or StoreSettings().url
    with _opened_lock:
        store = _opened.get(key)
        if store is None:
            store = _opened[key] = Store(key)
        return store
