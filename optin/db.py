"""One SQL layer for SQLite (one machine, nothing to run) and PostgreSQL (many machines), with versioned schema."""

from __future__ import annotations

import sqlite3
import threading
import time
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection

try:
    import fcntl
except ImportError:  # Windows: SQLite's own busy handler still keeps writers apart, only slower
    fcntl = None

# Each entry is one schema version; {id} is the dialect's auto-increment key. Never edit a shipped entry: add one.
MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE signups (
            id {id},
            form_slug TEXT NOT NULL,
            convertkit_form_id BIGINT NOT NULL,
            email TEXT NOT NULL,
            first_name TEXT,
            fields TEXT NOT NULL DEFAULT '{{}}',
            tags TEXT NOT NULL DEFAULT '[]',
            ip_hash TEXT,
            status TEXT NOT NULL DEFAULT 'pending',
            attempts INTEGER NOT NULL DEFAULT 0,
            created_at DOUBLE PRECISION NOT NULL,
            next_attempt_at DOUBLE PRECISION NOT NULL,
            lease_until DOUBLE PRECISION,
            lease_owner TEXT,
            first_failed_at DOUBLE PRECISION,
            last_attempt_at DOUBLE PRECISION,
            unconfirmed_at DOUBLE PRECISION,
            last_error TEXT,
            finished_at DOUBLE PRECISION,
            subscriber_id BIGINT
        )""",
        "CREATE INDEX signups_due ON signups (status, next_attempt_at)",
        "CREATE INDEX signups_email ON signups (email)",
        """CREATE TABLE pauses (
            scope TEXT PRIMARY KEY,
            reason TEXT NOT NULL,
            since DOUBLE PRECISION NOT NULL,
            next_check_at DOUBLE PRECISION NOT NULL,
            checks INTEGER NOT NULL DEFAULT 0
        )""",
        """CREATE TABLE rate_events (
            scope TEXT NOT NULL,
            id TEXT NOT NULL,
            ends_at DOUBLE PRECISION NOT NULL,
            forget_at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (scope, id)
        )""",
        "CREATE INDEX rate_events_ends ON rate_events (scope, ends_at)",
        "CREATE INDEX rate_events_forget ON rate_events (forget_at)",
        """CREATE TABLE rate_blocks (
            scope TEXT PRIMARY KEY,
            until DOUBLE PRECISION NOT NULL,
            strikes INTEGER NOT NULL DEFAULT 0
        )""",
        "CREATE TABLE used_nonces (nonce TEXT PRIMARY KEY, expires_at DOUBLE PRECISION NOT NULL)",
        "CREATE INDEX used_nonces_expiry ON used_nonces (expires_at)",
        "CREATE TABLE heartbeats (worker TEXT PRIMARY KEY, seen_at DOUBLE PRECISION NOT NULL)",
    ],
    [
        # Written before each send and cleared with its outcome: a row found with it left behind was being sent
        # when its process died, and is treated like a lost answer (see optin/delivery.py).
        "ALTER TABLE signups ADD COLUMN sending_at DOUBLE PRECISION",
        # Progress of the look-up after an unknown outcome: 0 finds the person, n reads page n of the form's list.
        "ALTER TABLE signups ADD COLUMN check_page INTEGER NOT NULL DEFAULT 0",
        # Sends after an unknown outcome that ConvertKit could not rule out: each may have subscribed twice.
        "ALTER TABLE signups ADD COLUMN possible_duplicates INTEGER NOT NULL DEFAULT 0",
        "CREATE INDEX signups_unknown ON signups (next_attempt_at) WHERE status = 'pending'"
        " AND (unconfirmed_at IS NOT NULL OR sending_at IS NOT NULL)",
        "CREATE INDEX signups_possible_duplicates ON signups (id) WHERE possible_duplicates > 0",
    ],
    [
        # Kit's v4 API takes a signup in several calls (subscriber, form, each tag): how many are done, so a
        # retry or another process goes on from there instead of repeating them.
        "ALTER TABLE signups ADD COLUMN steps_done INTEGER NOT NULL DEFAULT 0",
        # v4's look-up reads a form's people by cursor: where it had got to.
        "ALTER TABLE signups ADD COLUMN check_cursor TEXT",
        # The page the form was on, for v4 (Kit reads its UTM parameters).
        "ALTER TABLE signups ADD COLUMN referrer TEXT",
    ],
]

BACKSTOP_CHECKPOINT_PAGES = 10_000
ID_COLUMN = {"sqlite": "INTEGER PRIMARY KEY AUTOINCREMENT", "postgresql": "BIGSERIAL PRIMARY KEY"}


ADVISORY_LOCK = sa.text("SELECT pg_advisory_xact_lock(hashtext(:name))")
NOW = sa.text("SELECT extract(epoch FROM clock_timestamp())")
NOW_KEY = "optin.now"  # in Connection.info: (the transaction, its clock reading)
_open_transaction: ContextVar[tuple[Database, Connection] | None] = ContextVar("optin_transaction", default=None)


class SchemaOutOfDate(RuntimeError):
    """The database is behind the code: run `python -m optin.db migrate` (the Procfile's release line does)."""


class Database:
    def __init__(self, url: str, *, pool_size: int = 5):
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url[len("postgresql://"):]
        self.url = sa.engine.make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        if self.is_sqlite:
            if self.url.database and self.url.database != ":memory:":
                Path(self.url.database).parent.mkdir(parents=True, exist_ok=True)
            self.engine = sa.create_engine(self.url, connect_args={"timeout": 30, "check_same_thread": False})
            event.listen(self.engine, "connect", _sqlite_connect)
            event.listen(self.engine, "begin", _sqlite_begin)
            self._sqlite_writer = WriterLock(self.url.database)
            self._sqlite_local = threading.local()
            self._sqlite_lock = threading.Lock()
            self._sqlite_connections: list[sqlite3.Connection] = []
        else:
            self.engine = sa.create_engine(
                self.url, pool_size=pool_size, max_overflow=10, pool_pre_ping=True,
                connect_args={"connect_timeout": 5},
            )

    def __repr__(self) -> str:
        return f"Database({self.url.get_backend_name()})"

    @contextmanager
    def transaction(self, lock: str | None = None):
        """A write transaction; `lock` serialises callers on one name across processes and machines.

        Nested calls join the open transaction, so a caller can make several steps (a token, a rate window,
        the signup itself) one commit instead of several.
        """
        joined = _open_transaction.get()
        if joined is not None and joined[0] is self:
            if lock and not self.is_sqlite:
                joined[1].execute(ADVISORY_LOCK, {"name": lock})
            yield joined[1]
            return
        if self.is_sqlite:
            # SQLite has one writer at a time. Waiting for it in SQLite's busy handler means sleeping in steps
            # of up to 100 ms; waiting on a lock file wakes the next writer the moment the last one commits.
            with self._sqlite_writer:
                yield from self._sqlite_transaction()
            return
        with self.engine.begin() as conn:
            if lock:
                conn.execute(ADVISORY_LOCK, {"name": lock})
            yield from self._within(conn)

    def _sqlite_transaction(self):
        """A write transaction on this thread's own sqlite3 connection, past SQLAlchemy's pool and events: they
        cost about 0.3 ms a transaction, several times the work of a form post's statements themselves."""
        raw = self._sqlite_connection()
        conn = SqliteConnection(raw)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield from self._within(conn)
            conn.execute("COMMIT")
        except BaseException:
            if raw.in_transaction:
                raw.rollback()
            raise

    def _sqlite_connection(self) -> sqlite3.Connection:
        raw = getattr(self._sqlite_local, "connection", None)
        if raw is None:
            raw = sqlite3.connect(self.url.database or ":memory:", timeout=30, isolation_level=None,
                                  check_same_thread=False)
            _sqlite_connect(raw, None)
            self._sqlite_local.connection = raw
            with self._sqlite_lock:
                self._sqlite_connections.append(raw)
        return raw

    def _within(self, conn):
        marker = _open_transaction.set((self, conn))
        try:
            yield conn
        finally:
            _open_transaction.reset(marker)

    @contextmanager
    def read(self):
        """A read-only connection: under SQLite's WAL it never waits for a writer."""
        with self.engine.connect() as conn:  # on SQLite, SQLAlchemy's connections only ever read
            yield conn

    def now(self, conn: Connection) -> float:
        """One clock for every machine: PostgreSQL's, or this machine's for SQLite.

        PostgreSQL's is read once per transaction: each read is a round trip, and the steps of one form post
        (token, two windows, signup) would read it four times. A later step then sees the time the transaction
        first asked, a few milliseconds early at most: a window counts back from an earlier moment, so it counts
        at least as many requests, never fewer.
        """
        if self.is_sqlite:
            return time.time()
        transaction = conn.get_transaction()
        read = conn.info.get(NOW_KEY)
        if transaction is not None and read is not None and read[0] is transaction:
            return read[1]
        value = float(conn.execute(NOW).scalar_one())
        conn.info[NOW_KEY] = (conn.get_transaction(), value)  # the DBAPI connection's: one thread at a time
        return value

    def version(self) -> int:
        with self.read() as conn:
            if not sa.inspect(conn).has_table("schema_version"):
                return 0
            return int(conn.execute(sa.text("SELECT max(version) FROM schema_version")).scalar() or 0)

    def migrate(self) -> list[int]:
        """Apply what is missing, under a lock so two release processes cannot race."""
        applied = []
        with self.transaction(lock="optin.migrate") as conn:
            conn.execute(sa.text("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"))
            current = int(conn.execute(sa.text("SELECT max(version) FROM schema_version")).scalar() or 0)
            for version, statements in enumerate(MIGRATIONS, 1):
                if version <= current:
                    continue
                for statement in statements:
                    conn.execute(sa.text(statement.format(id=ID_COLUMN[self.url.get_backend_name()])))
                conn.execute(sa.text("INSERT INTO schema_version (version) VALUES (:v)"), {"v": version})
                applied.append(version)
        return applied

    def checkpoint(self) -> tuple[int, int]:
        """SQLite: move committed pages from the write-ahead log into the database, without blocking writers,
        so form posts never wait for it; (pages in the log, pages copied). PostgreSQL looks after this itself."""
        if not self.is_sqlite:
            return 0, 0
        _busy, logged, copied = SqliteConnection(self._sqlite_connection()).execute(
            "PRAGMA wal_checkpoint(PASSIVE)").one()
        return logged, copied

    def check_schema(self) -> None:
        if self.version() < len(MIGRATIONS):
            raise SchemaOutOfDate(SchemaOutOfDate.__doc__)

    def dispose(self) -> None:
        self.engine.dispose()
        if self.is_sqlite:
            self._sqlite_writer.close()
            with self._sqlite_lock:
                for raw in self._sqlite_connections:
                    raw.close()
                self._sqlite_connections.clear()
            self._sqlite_local = threading.local()


class SqliteConnection:
    """The part of SQLAlchemy's Connection this project's writes use, on a plain sqlite3 connection.

    Statements are the same `sa.text()` objects (SQLite understands their `:name` parameters as they are);
    rows are fetched at once, so a statement never outlives its commit; errors become SQLAlchemy's own, with
    the parameters (addresses) left out of their messages.
    """

    def __init__(self, raw: sqlite3.Connection):
        self.raw = raw

    def execute(self, statement, parameters: dict | None = None) -> Rows:
        sql = statement if isinstance(statement, str) else statement.text
        try:
            return Rows(self.raw.execute(sql, parameters or {}))
        except sqlite3.Error as exc:
            raise sa.exc.DBAPIError.instance(sql, None, exc, sqlite3.Error, hide_parameters=True) from exc


class Row(tuple):
    """A result row: a tuple that also reads by column name, as SQLAlchemy's Row does with `_mapping`."""

    _mapping: dict

    def __new__(cls, names: tuple[str, ...], values: tuple):
        row = super().__new__(cls, values)
        row._mapping = dict(zip(names, values, strict=True))
        return row


class Rows:
    """A fetched result with the reading methods of SQLAlchemy's Result that this project uses."""

    def __init__(self, cursor: sqlite3.Cursor | None = None, *, rows: list | None = None):
        if cursor is None:
            self._rows, self.rowcount = rows or [], len(rows or [])
            return
        if cursor.description:
            names = tuple(d[0] for d in cursor.description)
            self._rows = [Row(names, values) for values in cursor.fetchall()]
        else:
            self._rows = []
        self.rowcount = cursor.rowcount

    def all(self) -> list:
        return self._rows

    def __iter__(self):
        return iter(self._rows)

    def first(self):
        return self._rows[0] if self._rows else None

    def one(self):
        if not self._rows:
            raise sa.exc.NoResultFound("No row was found when one was required")
        if len(self._rows) > 1:
            raise sa.exc.MultipleResultsFound("Multiple rows were found when exactly one was required")
        return self._rows[0]

    def scalar(self):
        return self._rows[0][0] if self._rows else None

    def scalar_one(self):
        return self.one()[0]

    def scalars(self) -> Rows:
        return Rows(rows=[row[0] for row in self._rows])


def _sqlite_connect(dbapi_connection, _record):
    # Transactions are begun explicitly: BEGIN IMMEDIATE for writes (Database._sqlite_transaction), so a writer
    # takes the write lock at once rather than failing with "database is locked" halfway; BEGIN for reads.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    # Copying the log into the database (a checkpoint, with an fsync) is the worker's job, every half second
    # (Database.checkpoint); a commit does it only as a backstop, if the log passes about 40 MB with no worker.
    cursor.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_CHECKPOINT_PAGES}")
    cursor.close()


def _sqlite_begin(conn):
    conn.exec_driver_sql("BEGIN")


class WriterLock:
    """One SQLite writer at a time across this machine's threads and processes: a thread lock plus flock()."""

    def __init__(self, database: str | None):
        self._thread_lock = threading.Lock()
        self._path = f"{database}.writer-lock" if database and database != ":memory:" else None
        self._file = None

    def __enter__(self):
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

    def __exit__(self, *exc):
        try:
            if self._file is not None and not self._file.closed and fcntl:
                fcntl.flock(self._file, fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def main(argv: list[str] | None = None) -> int:
    """`python -m optin.db migrate`: the release step. Needs only DATABASE_URL, not the app's other secrets."""
    import argparse
    import os

    from .settings import Settings

    parser = argparse.ArgumentParser(prog="python -m optin.db", description=main.__doc__)
    parser.add_argument("command", choices=["migrate", "version"])
    args = parser.parse_args(argv)
    url = Settings.database_url_from(os.environ)
    db = Database(url)
    try:
        if args.command == "version":
            print(f"schema version {db.version()} (code expects {len(MIGRATIONS)})")
        else:
            applied = db.migrate()
            print(f"applied schema versions {applied}" if applied else "schema is up to date")
    finally:
        db.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
