"""The heartbeats table: each worker process says it is alive, so /healthz can tell a stopped worker from a
backlog that is only waiting on ConvertKit's limit."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .db import Database

BEAT = sa.text(
    "INSERT INTO heartbeats (worker, seen_at) VALUES (:w, :t) ON CONFLICT (worker) DO UPDATE SET seen_at = :t"
)
LAST = sa.text("SELECT max(seen_at) FROM heartbeats")


def beat(db: Database, worker: str) -> None:
    with db.transaction() as conn:
        conn.execute(BEAT, {"w": worker, "t": db.now(conn)})


def last_seen(conn: Connection) -> float | None:
    """When any worker last beat, read in the caller's connection: /healthz compares it with that one's clock."""
    return conn.execute(LAST).scalar()
