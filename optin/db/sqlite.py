"""SQLite: its pragmas, one writer at a time, and the fast write path that goes past SQLAlchemy.

Writes on SQLite run on plain sqlite3 connections wrapped in `SqliteConnection`, which offers only the part of
SQLAlchemy's result API named by `Result` below. Reads, and every statement on PostgreSQL, get SQLAlchemy's own
results. A query that writes may therefore use only what `Result` and `ResultRow` name: anything else works on
PostgreSQL and in reads, and fails only inside a SQLite write (tests/test_repositories.py runs every write).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy import event

try:
    import fcntl
except ImportError:  # Windows: SQLite's own busy handler still keeps writers apart, only slower
    fcntl = None  # type: ignore[assignment]

BACKSTOP_CHECKPOINT_PAGES = 10_000


class ResultRow(Protocol):
    """A row as a write may read it: by position, unpacked, or by column name through `_mapping`."""

    @property
    def _mapping(self) -> Mapping[str, Any]: ...

    def __getitem__(self, index: int, /) -> Any: ...

    def __iter__(self) -> Iterator[Any]: ...


class ScalarResult(Protocol):
    """What `Result.scalars()` gives: the first column of every row."""

    def all(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Result(Protocol):
    """The result methods a query inside `Database.transaction()` may use: SQLAlchemy's, and the shim's too."""

    @property
    def rowcount(self) -> int: ...

    def __iter__(self) -> Iterator[ResultRow]: ...

    def all(self) -> list[ResultRow]: ...  # a list on both: a caller may add two together

    def first(self) -> ResultRow | None: ...

    def one(self) -> ResultRow: ...

    def scalar(self) -> Any: ...

    def scalar_one(self) -> Any: ...

    def scalars(self) -> ScalarResult: ...


class Queries(Protocol):
    """The connection `Database.transaction()` yields: SQLAlchemy's on PostgreSQL, `SqliteConnection` on SQLite."""

    def execute(self, statement: Any, parameters: Mapping[str, Any] | None = None, /) -> Result: ...


class SqliteConnection:
    """The part of SQLAlchemy's Connection this project's writes use, on a plain sqlite3 connection.

    Statements are the same `sa.text()` objects (SQLite understands their `:name` parameters as they are);
    rows are fetched at once, so a statement never outlives its commit; errors become SQLAlchemy's own, with
    the parameters (addresses) left out of their messages.
    """

    def __init__(self, raw: sqlite3.Connection):
        self.raw = raw

    def execute(self, statement: Any, parameters: Mapping[str, Any] | None = None, /) -> Rows:
        sql = statement if isinstance(statement, str) else statement.text
        try:
            return Rows(self.raw.execute(sql, parameters or {}))
        except sqlite3.Error as exc:
            raise sa.exc.DBAPIError.instance(sql, None, exc, sqlite3.Error, hide_parameters=True) from exc


class Row(tuple):
    """A result row: a tuple that also reads by column name, as SQLAlchemy's Row does with `_mapping`."""

    _mapping: dict[str, Any]

    def __new__(cls, names: tuple[str, ...], values: tuple) -> Row:
        row = super().__new__(cls, values)
        row._mapping = dict(zip(names, values, strict=True))
        return row


class Rows:
    """A fetched result with exactly the reading methods `Result` names."""

    def __init__(self, cursor: sqlite3.Cursor | None = None, *, rows: list | None = None):
        self._rows: list[Any]
        if cursor is None:
            self._rows, self.rowcount = rows or [], len(rows or [])
            return
        if cursor.description:
            names = tuple(d[0] for d in cursor.description)
            self._rows = [Row(names, values) for values in cursor.fetchall()]
        else:
            self._rows = []
        self.rowcount = cursor.rowcount

    def all(self) -> list[Any]:
        return self._rows

    def __iter__(self) -> Iterator[Any]:
        return iter(self._rows)

    def first(self) -> Any:
        return self._rows[0] if self._rows else None

    def one(self) -> Any:
        if not self._rows:
            raise sa.exc.NoResultFound("No row was found when one was required")
        if len(self._rows) > 1:
            raise sa.exc.MultipleResultsFound("Multiple rows were found when exactly one was required")
        return self._rows[0]

    def scalar(self) -> Any:
        return self._rows[0][0] if self._rows else None

    def scalar_one(self) -> Any:
        return self.one()[0]

    def scalars(self) -> Rows:
        return Rows(rows=[row[0] for row in self._rows])


def create_engine(url: sa.URL) -> sa.Engine:
    """SQLAlchemy's engine for reads (and the schema), with the pragmas every connection needs."""
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
    event.listen(engine, "connect", configure)
    event.listen(engine, "begin", _begin)
    return engine


def configure(dbapi_connection: sqlite3.Connection, _record: object = None) -> None:
    # Transactions are begun explicitly: BEGIN IMMEDIATE for writes (Writer.transaction), so a writer takes the
    # write lock at once rather than failing with "database is locked" halfway; BEGIN for reads.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    # Copying the log into the database (a checkpoint, with an fsync) is the worker's job, every half second
    # (Database.checkpoint); a commit does it only as a backstop, if the log passes about 40 MB with no worker.
    cursor.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_CHECKPOINT_PAGES}")
    cursor.close()


def _begin(conn: sa.Connection) -> None:
    conn.exec_driver_sql("BEGIN")


class WriterLock:
    """One SQLite writer at a time across this machine's threads and processes: a thread lock plus flock()."""

    def __init__(self, database: str | None):
        self._thread_lock = threading.Lock()
        self._path = f"{database}.writer-lock" if database and database != ":memory:" else None
        self._file: Any = None

    def __enter__(self) -> WriterLock:
        self._thread_lock.acquire()
        if self._path and fcntl:
            try:
                if self._file is None or self._file.closed:
                    self._file = open(self._path, "a+b")  # noqa: SIM115 - held for the process's life
                fcntl.flock(self._file, fcntl.LOCK_EX)
            except BaseException:
                self._thread_lock.release()
                raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self._file is not None and not self._file.closed and fcntl:
                fcntl.flock(self._file, fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


class Writer:
    """The fast write path: each thread's own sqlite3 connection, past SQLAlchemy's pool and events. They cost
    about 0.3 ms a transaction, several times the work of a form post's statements themselves."""

    def __init__(self, database: str | None):
        self.database = database
        self.lock = WriterLock(database)
        self._local = threading.local()
        self._guard = threading.Lock()
        self._connections: list[sqlite3.Connection] = []

    def connection(self) -> sqlite3.Connection:
        raw: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if raw is None:
            raw = sqlite3.connect(
                self.database or ":memory:", timeout=30, isolation_level=None, check_same_thread=False
            )
            configure(raw)
            self._local.connection = raw
            with self._guard:
                self._connections.append(raw)
        return raw

    @contextmanager
    def transaction(self) -> Iterator[SqliteConnection]:
        """BEGIN IMMEDIATE … COMMIT on this thread's connection; the caller holds `lock`."""
        raw = self.connection()
        conn = SqliteConnection(raw)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if raw.in_transaction:
                raw.rollback()
            raise

    def checkpoint(self) -> tuple[int, int]:
        """Move committed pages from the write-ahead log into the database, without blocking writers, so form
        posts never wait for it; (pages in the log, pages copied)."""
        _busy, logged, copied = SqliteConnection(self.connection()).execute("PRAGMA wal_checkpoint(PASSIVE)").one()
        return logged, copied

    def close(self) -> None:
        self.lock.close()
        with self._guard:
            for raw in self._connections:
                raw.close()
            self._connections.clear()
        self._local = threading.local()
