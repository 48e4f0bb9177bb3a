"""``data/prod_data.csv`` as an export of the store: the one writer of that file.

The CSV keeps its columns (``prod_header``: Evidently and the course contract read it); rows
are appended in id order, so the file is the store's rows 1..n. The watermark lives in the store
(``feedback_exports``: the last exported id and the file's size right after it), recorded after
the appended bytes are fsynced. A run killed between the fsync and the watermark leaves bytes
past the recorded size: the next run cuts the file back to that size and appends the same rows
again, so every committed row is in the file exactly once. A file that is missing or shorter than
the watermark (moved aside, restored from an older copy) is rebuilt from the store; a file with
another header is never touched (``CsvSchemaError``).

Who runs it: the gateway after each feedback commit (:class:`BackgroundExporter`: one thread,
requests coalesced) and ``python -m yoloserve.feedback.export`` (once, or ``--follow``). Runs
of several processes take turns on ``<csv>.lock``.

An older release's CSV and idempotency journal are imported into an empty store first
(:func:`yoloserve.feedback.legacy.import_legacy`, also run by :func:`open_exporter`).

Example:
    >>> exporter = ProdCsvExporter(Store("sqlite:////tmp/example-export.db"),
    ...                            Path("/tmp/example-prod_data.csv"))
    >>> exporter.export() >= 0
    True
"""

from __future__ import annotations

import logging
import os
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from filelock import FileLock
from sqlalchemy import func, insert, select, update

from yoloserve import paths
from yoloserve.errors import CsvSchemaError
from yoloserve.feedback.ledger import row_of
from yoloserve.feedback.legacy import JOURNAL_NAME, import_legacy, is_prod_header
from yoloserve.feedback.store import encode_rows, prod_header, read_header
from yoloserve.files import fsync_dir
from yoloserve.store.engine import Store, open_store
from yoloserve.store.tables import FeedbackExportRow, FeedbackRowRecord

logger = logging.getLogger("yoloserve.feedback.export")

PROD_FILE_NAME = "prod_data.csv"
_BATCH = 5000
# At most one run of the gateway's exporter per PACE_S: a run's fixed cost (a few queries, one
# fsync, one watermark write) is paid once for every feedback of that second, not per feedback.
PACE_S = 0.5


class ProdCsvExporter:
    """Appends the store's feedback rows that ``path`` does not have yet.

    Args:
        store: the store.
        path: ``prod_data.csv``.
        name: the watermark's name in the store (one per exported file).
    """

    def __init__(self, store: Store, path: Path, name: str = PROD_FILE_NAME) -> None:
        self.store, self.path, self.name = store, Path(path), name
        self._file_lock = FileLock(f"{self.path}.lock")
        self._thread_lock = threading.Lock()

    def export(self) -> int:
        """Append every row committed so far that the file lacks; the rows appended.

        Raises:
            CsvSchemaError: the file has another header, or the store's rows have
                embeddings of another length than the file's header.
        """
        if not self._behind():
            return 0
        with self._thread_lock, self._file_lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            last_id, size = self._watermark()
            appended = 0
            while True:
                with self.store.connect() as connection:  # Core rows: no ORM objects to build
                    records = connection.execute(
                        select(*FeedbackRowRecord.__table__.columns)
                        .where(FeedbackRowRecord.id > last_id)
                        .order_by(FeedbackRowRecord.id).limit(_BATCH)).all()
                if not records:
                    return appended
                rows = [row_of(r) for r in records]
                header = prod_header(len(rows[0].embedding))
                if any(len(r.embedding) != len(rows[0].embedding) for r in rows):
                    raise CsvSchemaError("feedback rows of several embedding lengths")
                payload = encode_rows([r.csv_values() for r in rows])
                size = self._append(size, header, payload)
                last_id = records[-1].id
                self._record(last_id, size)
                appended += len(rows)
                if len(records) < _BATCH:
                    return appended

    def _state(self) -> tuple[tuple[int, int] | None, int | None]:
        """The recorded (last id, size), or None; and the store's highest row id, or None.
        One read, Core: the gateway asks after every commit."""
        with self.store.connect() as connection:
            state = connection.execute(
                select(FeedbackExportRow.last_id, FeedbackExportRow.size)
                .where(FeedbackExportRow.name == self.name)).first()
            last = connection.scalar(select(func.max(FeedbackRowRecord.id)))
        return (None if state is None else (int(state.last_id), int(state.size))), last

    def _behind(self) -> bool:
        """Whether the store has rows past the watermark, or the file lost some (cheap)."""
        state, last = self._state()
        if last is None:
            return False
        if state is None or last > state[0]:
            return True
        try:
            return self.path.stat().st_size != state[1]
        except FileNotFoundError:
            return True

    def _watermark(self) -> tuple[int, int]:
        """The (last id, size) to append after, rebuilding from the start where they are off."""
        state, _ = self._state()
        try:
            current = self.path.stat().st_size
        except FileNotFoundError:
            current = None
        if state is not None and current is not None and current >= state[1]:
            return state
        if current:
            if state is None:
                # Not ours (the store had rows of its own when this file appeared): kept aside,
                # unless it is no prod_data.csv at all (then it is left alone).
                if not is_prod_header(read_header(self.path)):
                    raise CsvSchemaError(f"{self.path} has another header than prod_data.csv")
                aside = self.path.with_name(f"{self.path.name}.before-export-{int(time.time())}")
                os.replace(self.path, aside)
                logger.warning("%s was not an export of this store: moved to %s",
                               self.path, aside)
            else:
                logger.warning("%s is shorter than its last export (%d < %d bytes): rebuilding "
                               "it from the store", self.path, current, state[1])
        self._record(0, 0)
        return 0, 0

    def _append(self, size: int, header: list[str], payload: bytes) -> int:
        """Write ``payload`` at byte ``size`` (the header first into an empty file), fsynced;
        the file's size after it."""
        created = not self.path.exists()
        with open(self.path, "ab" if created else "r+b") as f:
            try:
                found = read_header(self.path)
            except CsvSchemaError:  # a torn header line: nothing after it was ever recorded
                found = None
            if found is not None and found != header:
                raise CsvSchemaError(
                    f"{self.path} has another header ({len(found)} columns); the store's "
                    f"rows need {len(header)} columns starting {header[:3]}")
            if size == 0:
                f.truncate(0)
                f.write(encode_rows([header]))
            else:
                f.truncate(size)  # bytes of a run killed before it recorded them
                f.seek(size)
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
            end = f.tell()
        if created:
            fsync_dir(self.path.parent)
        return end

    def _record(self, last_id: int, size: int) -> None:
        now = datetime.now(UTC)
        values = {"last_id": last_id, "size": size, "updated_at": now}
        with self.store.write(lock=f"export:{self.name}") as session:
            updated = session.execute(update(FeedbackExportRow)
                                      .where(FeedbackExportRow.name == self.name)
                                      .values(**values))
            if updated.rowcount == 0:  # type: ignore[attr-defined]
                session.execute(insert(FeedbackExportRow).values(name=self.name, **values))


def open_exporter(store: Store, data_dir: Path) -> ProdCsvExporter:
    """The exporter of ``<data_dir>/prod_data.csv``, after importing an older release's CSV
    and journal into an empty store (once)."""
    path = Path(data_dir) / PROD_FILE_NAME
    import_legacy(store, path, Path(data_dir) / JOURNAL_NAME, name=PROD_FILE_NAME)
    return ProdCsvExporter(store, path)


class BackgroundExporter:
    """Runs an exporter in one daemon thread whenever :meth:`request` is called.

    Requests that arrive while an export runs are coalesced into one more run, at most one run
    per ``pace_s``: under load each run then appends many feedbacks' rows with one fsync and one
    watermark write, instead of competing with every request for the store and the GIL. A
    failing run is logged and retried on the next request: the rows are in the store already.
    """

    def __init__(self, exporter: ProdCsvExporter, pace_s: float = PACE_S) -> None:
        self.exporter = exporter
        self.pace_s = pace_s
        self._wanted = threading.Event()
        self._stopping = False
        self._idle = threading.Event()
        self._idle.set()
        self._thread = threading.Thread(target=self._run, name="prod-csv-export", daemon=True)
        self._thread.start()

    def request(self) -> None:
        """Ask for an export soon (returns at once)."""
        self._idle.clear()
        self._wanted.set()

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Wait until every requested export ran; False on timeout."""
        return self._idle.wait(timeout_s)

    def close(self, timeout_s: float = 30.0) -> None:
        """Run a last export and stop the thread."""
        self._stopping = True
        self.request()
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            self._wanted.wait()
            self._wanted.clear()
            try:
                self.exporter.export()
            except Exception:
                logger.exception("exporting %s failed; the rows stay in the store",
                                 self.exporter.path)
            if not self._wanted.is_set():
                self._idle.set()
            if self._stopping and not self._wanted.is_set():
                return
            if not self._stopping:
                time.sleep(self.pace_s)


app = typer.Typer(add_completion=False, help=__doc__.split("\n\n")[0] if __doc__ else None)


@app.command()
def main(
    data_dir: Annotated[Path, typer.Option(help="Folder of prod_data.csv.")] = paths.DATA_DIR,
    follow: Annotated[bool, typer.Option(
        help="Keep exporting every --interval seconds instead of once.")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between runs with --follow.")] = 2.0,
) -> None:
    """Append the store's feedback rows that prod_data.csv does not have yet
    (STORE_DATABASE_URL names the store)."""
    exporter = open_exporter(open_store(), data_dir)
    while True:
        appended = exporter.export()
        typer.echo(f"{exporter.path}: {appended} rows appended")
        if not follow:
            return
        time.sleep(interval)


if __name__ == "__main__":
    app()
