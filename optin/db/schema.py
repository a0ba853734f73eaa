"""The schema: its versions, and the runner that brings a database up to the code's."""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa

if TYPE_CHECKING:
    from .database import Database

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

ID_COLUMN = {"sqlite": "INTEGER PRIMARY KEY AUTOINCREMENT", "postgresql": "BIGSERIAL PRIMARY KEY"}
CURRENT = sa.text("SELECT max(version) FROM schema_version")


class SchemaOutOfDate(RuntimeError):
    """The database is behind the code: run `python -m optin.db migrate` (the Procfile's release line does)."""


def version(db: Database) -> int:
    with db.read() as conn:
        if not sa.inspect(conn).has_table("schema_version"):
            return 0
        return int(conn.execute(CURRENT).scalar() or 0)


def migrate(db: Database) -> list[int]:
    """Apply what is missing, under a lock so two release processes cannot race."""
    applied = []
    with db.transaction(lock="optin.migrate") as conn:
        conn.execute(sa.text("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"))
        current = int(conn.execute(CURRENT).scalar() or 0)
        for number, statements in enumerate(MIGRATIONS, 1):
            if number <= current:
                continue
            for statement in statements:
                conn.execute(sa.text(statement.format(id=ID_COLUMN[db.url.get_backend_name()])))
            conn.execute(sa.text("INSERT INTO schema_version (version) VALUES (:v)"), {"v": number})
            applied.append(number)
    return applied


def check_schema(db: Database) -> None:
    if version(db) < len(MIGRATIONS):
        raise SchemaOutOfDate(SchemaOutOfDate.__doc__)
