"""One SQL layer for SQLite (one machine, nothing to run) and PostgreSQL (many machines)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from . import schema, sqlite
from .sqlite import Queries

ADVISORY_LOCK = sa.text("SELECT pg_advisory_xact_lock(hashtext(:name))")
NOW = sa.text("SELECT extract(epoch FROM clock_timestamp())")
NOW_KEY = "optin.now"  # in Connection.info: (the transaction, its clock reading)
_open_transaction: ContextVar[tuple[Database, Any] | None] = ContextVar("optin_transaction", default=None)


class Database:
    def __init__(self, url: str, *, pool_size: int = 5):
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url[len("postgresql://") :]
        self.url = sa.engine.make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        self._sqlite: sqlite.Writer | None = None
        if self.is_sqlite:
            self.engine = sqlite.create_engine(self.url)
            self._sqlite = sqlite.Writer(self.url.database)
        else:
            self.engine = sa.create_engine(
                self.url,
                pool_size=pool_size,
                max_overflow=10,
                pool_pre_ping=True,
                connect_args={"connect_timeout": 5},
            )

    def __repr__(self) -> str:
        return f"Database({self.url.get_backend_name()})"

    @contextmanager
    def transaction(self, lock: str | None = None) -> Iterator[Queries]:
        """A write transaction; `lock` serialises callers on one name across processes and machines.

        Nested calls join the open transaction, so a caller can make several steps (a token, a rate window,
        the signup itself) one commit instead of several. On SQLite the connection is the fast path's shim: use
        only the result methods `Result` names (optin/db/sqlite.py).
        """
        joined = _open_transaction.get()
        if joined is not None and joined[0] is self:
            if lock and not self.is_sqlite:
                joined[1].execute(ADVISORY_LOCK, {"name": lock})
            yield joined[1]
            return
        if self._sqlite is not None:
            # SQLite has one writer at a time. Waiting for it in SQLite's busy handler means sleeping in steps
            # of up to 100 ms; waiting on a lock file wakes the next writer the moment the last one commits.
            with self._sqlite.lock:
                yield from self._sqlite_transaction()
            return
        with self.engine.begin() as conn:
            if lock:
                conn.execute(ADVISORY_LOCK, {"name": lock})
            yield from self._within(cast(Queries, conn))

    def _sqlite_transaction(self) -> Iterator[Queries]:
        assert self._sqlite is not None
        with self._sqlite.transaction() as conn:
            yield from self._within(conn)

    def _sqlite_connection(self) -> sqlite3.Connection:
        """This thread's SQLite writer connection."""
        assert self._sqlite is not None
        return self._sqlite.connection()

    def _within(self, conn: Queries) -> Iterator[Queries]:
        marker = _open_transaction.set((self, conn))
        try:
            yield conn
        finally:
            _open_transaction.reset(marker)

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only connection: under SQLite's WAL it never waits for a writer."""
        with self.engine.connect() as conn:  # on SQLite, SQLAlchemy's connections only ever read
            yield conn

    def now(self, conn: Queries | Connection) -> float:
        """One clock for every machine: PostgreSQL's, or this machine's for SQLite.

        PostgreSQL's is read once per transaction: each read is a round trip, and the steps of one form post
        (token, two windows, signup) would read it four times. A later step then sees the time the transaction
        first asked, a few milliseconds early at most: a window counts back from an earlier moment, so it counts
        at least as many requests, never fewer.
        """
        if self.is_sqlite:
            return time.time()
        conn = cast(Connection, conn)
        transaction = conn.get_transaction()
        read = conn.info.get(NOW_KEY)
        if transaction is not None and read is not None and read[0] is transaction:
            return cast(float, read[1])
        value = float(conn.execute(NOW).scalar_one())
        conn.info[NOW_KEY] = (conn.get_transaction(), value)  # the DBAPI connection's: one thread at a time
        return value

    def version(self) -> int:
        return schema.version(self)

    def migrate(self) -> list[int]:
        return schema.migrate(self)

    def check_schema(self) -> None:
        schema.check_schema(self)

    def checkpoint(self) -> tuple[int, int]:
        """SQLite: see sqlite.Writer.checkpoint (the worker calls it every half second). PostgreSQL looks after
        this itself."""
        if self._sqlite is None:
            return 0, 0
        return self._sqlite.checkpoint()

    def dispose(self) -> None:
        self.engine.dispose()
        if self._sqlite is not None:
            self._sqlite.close()
