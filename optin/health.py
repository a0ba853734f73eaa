"""What /healthz reports: enough for an uptime monitor to notice that delivery is stuck."""

from __future__ import annotations

import logging
import secrets
import time

import sqlalchemy as sa

from . import heartbeats

log = logging.getLogger("optin.health")

WORKER_SILENT_AFTER = 120.0  # seconds without a worker heartbeat while signups are due
# A committed write that leaves nothing behind: a full disk or a read-only file refuses it, as it would refuse a
# signup. rate_events is swept by the limiter anyway, should a row ever be left.
PROBE = (
    sa.text("INSERT INTO rate_events (scope, id, ends_at, forget_at) VALUES ('healthz', :id, :t, :t)"),
    sa.text("DELETE FROM rate_events WHERE scope = 'healthz' AND id = :id"),
)


def storage_problem(db) -> str | None:
    """Why storage cannot take a write, or None when it can."""
    row = {"id": secrets.token_hex(8), "t": time.time()}
    try:
        with db.transaction() as conn:
            for statement in PROBE:
                conn.execute(statement, row)
    except sa.exc.DBAPIError as exc:
        reason = str(getattr(exc, "orig", exc)).splitlines()[0][:120]
        log.error("healthz: storage refused a write: %s", reason)
        return f"storage cannot take a write: {reason}"
    return None


def unavailable(problem: str) -> dict:
    return {
        "ok": False,
        "backlog": None,
        "oldest_pending_seconds": None,
        "worker_seen_seconds_ago": None,
        "paused": [],
        "problems": [problem],
    }


def report(*, db, signups, delivery) -> dict:
    with db.read() as conn:
        now = db.now(conn)
        last_beat = heartbeats.last_seen(conn)
    backlog, oldest, earliest_due = signups.backlog()
    paused = [
        {"scope": p["scope"], "reason": p["reason"], "since_seconds": round(now - p["since"], 1)}
        for p in delivery.pauses.active(fresh=True)
    ]
    overdue = earliest_due is not None and earliest_due < now - WORKER_SILENT_AFTER
    worker_silent = last_beat is None or last_beat < now - WORKER_SILENT_AFTER
    problems = [f"delivery paused for {p['scope']}: {p['reason']}" for p in paused]
    storage = storage_problem(db)
    if storage:
        problems.insert(0, storage)
    if overdue and worker_silent:
        problems.append("signups are due but no worker has been seen for 2 minutes: is the worker running?")
    return {
        "ok": not problems,
        "backlog": backlog,
        "oldest_pending_seconds": round(now - oldest, 1) if oldest is not None else None,
        "worker_seen_seconds_ago": round(now - last_beat, 1) if last_beat is not None else None,
        "paused": paused,
        # Sent again after an unknown outcome that ConvertKit could not rule out: each may have had two emails.
        "possible_duplicates": signups.possible_duplicates(),
        "problems": problems,
    }
