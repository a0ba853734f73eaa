"""What /healthz reports: enough for an uptime monitor to notice that delivery is stuck."""

from __future__ import annotations

import sqlalchemy as sa

WORKER_SILENT_AFTER = 120.0  # seconds without a worker heartbeat while signups are due


def report(*, db, signups, delivery) -> dict:
    with db.read() as conn:
        now = db.now(conn)
        last_beat = conn.execute(sa.text("SELECT max(seen_at) FROM heartbeats")).scalar()
    backlog, oldest, earliest_due = signups.backlog()
    paused = [
        {"scope": p["scope"], "reason": p["reason"], "since_seconds": round(now - p["since"], 1)}
        for p in delivery.pauses.active(fresh=True)
    ]
    overdue = earliest_due is not None and earliest_due < now - WORKER_SILENT_AFTER
    worker_silent = last_beat is None or last_beat < now - WORKER_SILENT_AFTER
    problems = [f"delivery paused for {p['scope']}: {p['reason']}" for p in paused]
    if overdue and worker_silent:
        problems.append("signups are due but no worker has been seen for 2 minutes: is the worker running?")
    return {
        "ok": not problems,
        "backlog": backlog,
        "oldest_pending_seconds": round(now - oldest, 1) if oldest is not None else None,
        "worker_seen_seconds_ago": round(now - last_beat, 1) if last_beat is not None else None,
        "paused": paused,
        "problems": problems,
    }
