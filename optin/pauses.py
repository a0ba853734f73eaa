"""The pauses table: which key or forms delivery waits on, and when the worker checks again."""

from __future__ import annotations

import time

import sqlalchemy as sa

from .clock import Clock
from .db import Database


class Pauses:
    """Delivery stops for a bad key (401/403) or a missing form (404) until a check passes or an operator retries.

    Every POST asks whether its form is paused, so the answer is kept for a second per process rather than
    read from the database each time; a pause matters for minutes, and this process's own changes show at once.
    """

    FRESH_FOR = 1.0

    def __init__(self, db: Database, *, first_check_after: float = 60.0, clock: Clock = time.monotonic):
        self.db = db
        self.first_check_after = first_check_after
        self.clock = clock
        self._cached: tuple[float, list[dict]] | None = None

    def active(self, *, fresh: bool = False) -> list[dict]:
        if not fresh and self._cached is not None and self.clock() - self._cached[0] < self.FRESH_FOR:
            return self._cached[1]
        with self.db.read() as conn:
            rows = [dict(r._mapping) for r in conn.execute(sa.text("SELECT * FROM pauses ORDER BY since"))]
        self._cached = (self.clock(), rows)
        return rows

    def pause(self, scope: str, reason: str) -> None:
        self._cached = None
        with self.db.transaction() as conn:
            now = self.db.now(conn)
            conn.execute(
                sa.text(
                    "INSERT INTO pauses (scope, reason, since, next_check_at, checks) VALUES (:s, :r, :now, :next, 0)"
                    " ON CONFLICT (scope) DO UPDATE SET reason = :r"
                ),
                {"s": scope, "r": reason[:300], "now": now, "next": now + self.first_check_after},
            )

    def reschedule(self, scope: str, checks: int) -> None:
        self._cached = None
        with self.db.transaction() as conn:
            delay = min(self.first_check_after * 2**checks, 900)
            conn.execute(
                sa.text("UPDATE pauses SET next_check_at = :next, checks = :c WHERE scope = :s"),
                {"s": scope, "next": self.db.now(conn) + delay, "c": checks + 1},
            )

    def lift(self, scope: str | None = None) -> int:
        self._cached = None
        with self.db.transaction() as conn:
            if scope is None:
                return conn.execute(sa.text("DELETE FROM pauses")).rowcount
            return conn.execute(sa.text("DELETE FROM pauses WHERE scope = :s"), {"s": scope}).rowcount
