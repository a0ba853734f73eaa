"""The signups table, which is also the delivery queue: a stored row is the promise that nothing is lost."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final, Literal

import sqlalchemy as sa

from .db import Database
from .pseudonyms import mask_email

Status = Literal["pending", "delivered", "rejected", "failed"]  # as stored in signups.status
PENDING: Final = "pending"
DELIVERED: Final = "delivered"
REJECTED: Final = "rejected"
FAILED: Final = "failed"
STATUSES: tuple[Status, ...] = (PENDING, DELIVERED, REJECTED, FAILED)


@dataclass(frozen=True)
class Signup:
    id: int
    form_slug: str
    convertkit_form_id: int
    email: str
    first_name: str | None = None
    fields: dict = field(default_factory=dict)
    tags: tuple[int, ...] = ()
    status: Status = PENDING
    attempts: int = 0
    created_at: float = 0.0
    next_attempt_at: float = 0.0
    first_failed_at: float | None = None
    last_attempt_at: float | None = None
    unconfirmed_at: float | None = None  # when an attempt began whose outcome is unknown: ConvertKit may have it
    last_error: str | None = None
    finished_at: float | None = None
    subscriber_id: int | None = None
    ip_hash: str | None = None
    sending_at: float | None = None  # the write-ahead mark: an attempt began then, its outcome not yet recorded
    check_page: int = 0  # the look-up's progress after an unknown outcome
    possible_duplicates: int = 0  # sends after an unknown outcome that ConvertKit could not rule out
    steps_done: int = 0  # calls of this signup ConvertKit has taken (v4 takes a signup in several)
    check_cursor: str | None = None  # v4's look-up: the next page of the form's people
    referrer: str | None = None  # the page the form was on

    def __repr__(self) -> str:  # keeps the address out of tracebacks and logs
        return f"Signup(id={self.id}, form={self.form_slug!r}, status={self.status!r}, email={mask_email(self.email)})"

    @classmethod
    def from_row(cls, row) -> Signup:
        data = dict(row._mapping)
        data["fields"] = json.loads(data["fields"] or "{}")
        data["tags"] = tuple(json.loads(data["tags"] or "[]"))
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


RECORD = sa.text(
    "INSERT INTO signups (form_slug, convertkit_form_id, email, first_name, fields, tags, ip_hash,"
    " status, created_at, next_attempt_at, lease_until, lease_owner, sending_at, referrer)"
    " VALUES (:slug, :form_id, :email, :first_name, :fields, :tags, :ip_hash, 'pending', :now, :now,"
    " :lease_until, :owner, :sending_at, :referrer) RETURNING id"
)
# A claim is the write-ahead mark of the send that follows it: sending_at is set in the same statement. A row
# claimed with a mark already on it was being sent by a process that died (or could not record the answer):
# its attempt becomes an unknown outcome, to be looked up before anything is sent again.
CLAIM = (
    "UPDATE signups SET lease_owner = :owner, lease_until = :until, sending_at = :now,"
    " unconfirmed_at = COALESCE(unconfirmed_at, sending_at) WHERE id IN ("
    " SELECT id FROM signups WHERE status = 'pending' AND next_attempt_at <= :now"
    " AND (lease_until IS NULL OR lease_until < :now){unknown}{skip}"
    " ORDER BY next_attempt_at, id LIMIT :limit{lock}) RETURNING *"
)
UNKNOWN = " AND (unconfirmed_at IS NOT NULL OR sending_at IS NOT NULL)"


class Signups:
    def __init__(self, db: Database):
        self.db = db

    def record(
        self,
        *,
        form_slug,
        convertkit_form_id,
        email,
        first_name,
        fields,
        tags,
        ip_hash,
        referrer: str | None = None,
        lease_owner: str | None = None,
        lease_seconds: float = 0,
    ) -> Signup:
        """Store a signup; a lease lets the web request try it inline without the worker racing it, and marks the
        row as being sent (the write-ahead mark) in the same commit."""
        tags = tuple(tags)
        values = {
            "slug": form_slug,
            "form_id": convertkit_form_id,
            "email": email,
            "first_name": first_name,
            "fields": json.dumps(fields, ensure_ascii=False, sort_keys=True),
            "tags": json.dumps(list(tags)),
            "ip_hash": ip_hash,
            "owner": lease_owner,
            "referrer": referrer,
        }
        with self.db.transaction() as conn:
            now = self.db.now(conn)
            values.update(
                now=now,
                lease_until=now + lease_seconds if lease_owner else None,
                sending_at=now if lease_owner else None,
            )
            signup_id = conn.execute(RECORD, values).scalar_one()
        # Built from what was stored rather than read back: this runs on every form post.
        return Signup(
            id=signup_id,
            form_slug=form_slug,
            convertkit_form_id=convertkit_form_id,
            email=email,
            first_name=first_name,
            fields=dict(fields),
            tags=tags,
            created_at=now,
            next_attempt_at=now,
            ip_hash=ip_hash,
            sending_at=values["sending_at"],
            referrer=referrer,
        )

    def claim(
        self, owner: str, *, lease_seconds: float, limit: int = 1, paused_forms: Iterable[int] = ()
    ) -> list[Signup]:
        """Lease due signups; a worker killed mid-delivery loses nothing, its lease just runs out.

        Signups whose last attempt has an unknown outcome go first, so their look-up reads ConvertKit's newest
        subscriptions (a look-up that waited behind a launch's backlog would have to read through all of it).
        """
        paused = [int(f) for f in paused_forms]
        skip = " AND convertkit_form_id NOT IN ({})".format(",".join(map(str, paused))) if paused else ""
        lock = "" if self.db.is_sqlite else " FOR UPDATE SKIP LOCKED"
        with self.db.transaction() as conn:
            now = self.db.now(conn)
            params = {"owner": owner, "until": now + lease_seconds, "now": now, "limit": limit}
            rows = conn.execute(sa.text(CLAIM.format(unknown=UNKNOWN, skip=skip, lock=lock)), params).all()
            if len(rows) < limit:
                params["limit"] = limit - len(rows)
                rows += conn.execute(sa.text(CLAIM.format(unknown="", skip=skip, lock=lock)), params).all()
        return [Signup.from_row(r) for r in rows]

    def twin(self, signup: Signup, *, within: float) -> Signup | None:
        """An earlier signup with the same form and the same details, stored at most `within` seconds before this
        one and delivered or still pending: this one is the visitor trying again, not a new signup."""
        with self.db.read() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT * FROM signups WHERE email = :email AND convertkit_form_id = :form AND id < :id"
                    " AND created_at >= :since AND status IN ('pending', 'delivered') ORDER BY id"
                ),
                {
                    "email": signup.email,
                    "form": signup.convertkit_form_id,
                    "id": signup.id,
                    "since": signup.created_at - within,
                },
            ).all()
        same = [
            s
            for s in map(Signup.from_row, rows)
            if (s.first_name, s.fields, s.tags) == (signup.first_name, signup.fields, signup.tags)
        ]
        delivered = [s for s in same if s.status == DELIVERED]
        first = delivered or same
        return first[0] if first else None

    def has_due(self, paused_forms: Iterable[int] = ()) -> bool:
        paused = [int(f) for f in paused_forms]
        skip = " AND convertkit_form_id NOT IN ({})".format(",".join(map(str, paused))) if paused else ""
        with self.db.read() as conn:
            now = self.db.now(conn)
            return (
                conn.execute(
                    sa.text(
                        "SELECT 1 FROM signups WHERE status = 'pending' AND next_attempt_at <= :now"
                        " AND (lease_until IS NULL OR lease_until < :now)" + skip + " LIMIT 1"
                    ),
                    {"now": now},
                ).first()
                is not None
            )

    def _finish(self, signup: Signup, owner: str | None, values: dict, *, resent_blind: bool) -> bool:
        """Write an outcome only while holding the lease, so a late, expired worker cannot overwrite a newer one.
        Every outcome clears the write-ahead mark: the attempt it stood for is accounted for."""
        values = {**values, "sending_at": None}
        if resent_blind:
            values["possible_duplicates"] = signup.possible_duplicates + 1
        sets = ", ".join(f"{k} = :{k}" for k in values)
        guard = " AND lease_owner = :owner" if owner else ""
        with self.db.transaction() as conn:
            result = conn.execute(
                sa.text(
                    f"UPDATE signups SET {sets}, lease_until = NULL, lease_owner = NULL"
                    f" WHERE id = :id AND status = 'pending'{guard}"
                ),
                {**values, "id": signup.id, "owner": owner},
            )
        return result.rowcount == 1

    def mark_delivered(
        self,
        signup: Signup,
        owner: str | None,
        *,
        at: float,
        subscriber_id: int | None,
        note: str | None = None,
        counted: bool = True,
        resent_blind: bool = False,
        steps_done: int | None = None,
    ) -> bool:
        return self._finish(
            signup,
            owner,
            {
                "status": DELIVERED,
                "finished_at": at,
                "last_attempt_at": at,
                "attempts": signup.attempts + (1 if counted else 0),
                "subscriber_id": subscriber_id,
                "last_error": note,
                "unconfirmed_at": None,
                "check_page": 0,
                "check_cursor": None,
                "steps_done": signup.steps_done + 1 if steps_done is None else steps_done,
            },
            resent_blind=resent_blind,
        )

    def mark_step(
        self,
        signup: Signup,
        owner: str | None,
        *,
        at: float,
        subscriber_id: int | None,
        note: str | None = None,
        resent_blind: bool = False,
    ) -> bool:
        """One call of several done: the next one is due at once, from the signup's old place in the queue."""
        return self._finish(
            signup,
            owner,
            {
                "steps_done": signup.steps_done + 1,
                "last_attempt_at": at,
                "last_error": note,
                "subscriber_id": subscriber_id if subscriber_id is not None else signup.subscriber_id,
                "unconfirmed_at": None,
                "check_page": 0,
                "check_cursor": None,
            },
            resent_blind=resent_blind,
        )

    def mark_rejected(
        self, signup: Signup, owner: str | None, *, at: float, reason: str, resent_blind: bool = False
    ) -> bool:
        return self._finish(
            signup,
            owner,
            {
                "status": REJECTED,
                "finished_at": at,
                "last_attempt_at": at,
                "attempts": signup.attempts + 1,
                "last_error": reason[:500],
                "unconfirmed_at": None,
                "check_page": 0,
                "check_cursor": None,
            },
            resent_blind=resent_blind,
        )

    def mark_retry(
        self,
        signup: Signup,
        owner: str | None,
        *,
        at: float,
        next_attempt_at: float,
        error: str,
        failed: bool = False,
        counted: bool = True,
        unconfirmed_at: float | None = None,
        check_page: int = 0,
        check_cursor: str | None = None,
        subscriber_id: int | None = None,
        resent_blind: bool = False,
    ) -> bool:
        """Back in the queue. `unconfirmed_at` (when the attempt began) keeps an unknown outcome on record, so the
        next step looks it up instead of sending; None means the next step sends."""
        values = {
            "next_attempt_at": next_attempt_at,
            "last_attempt_at": at,
            "last_error": error[:500],
            "unconfirmed_at": unconfirmed_at,
            "check_page": check_page,
            "check_cursor": check_cursor,
            "attempts": signup.attempts + (1 if counted else 0),
            "first_failed_at": signup.first_failed_at if signup.first_failed_at is not None else at,
        }
        if subscriber_id is not None:
            values["subscriber_id"] = subscriber_id
        if failed:
            values.update(status=FAILED, finished_at=at)
        return self._finish(signup, owner, values, resent_blind=resent_blind)

    # Operators' views -------------------------------------------------------------------------------------

    def get(self, signup_id: int) -> Signup | None:
        with self.db.read() as conn:
            row = conn.execute(sa.text("SELECT * FROM signups WHERE id = :id"), {"id": signup_id}).first()
        return Signup.from_row(row) if row else None

    def find(
        self,
        *,
        status: Status | None = None,
        form: str | None = None,
        email: str | None = None,
        limit: int | None = None,
    ) -> list[Signup]:
        where, params = [], {"status": status, "form": form, "email": (email or "").strip().lower()}
        if status:
            where.append("status = :status")
        if form:
            where.append("form_slug = :form")
        if email:
            where.append("lower(email) = :email")
        sql = "SELECT * FROM signups" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id"
        if limit:
            sql += f" LIMIT {int(limit)}"
        with self.db.read() as conn:
            return [Signup.from_row(r) for r in conn.execute(sa.text(sql), params)]

    def possible_duplicates(self) -> int:
        """Signups sent again after an unknown outcome that ConvertKit could not rule out (see /healthz)."""
        with self.db.read() as conn:
            return int(
                conn.execute(sa.text("SELECT count(*) FROM signups WHERE possible_duplicates > 0")).scalar() or 0
            )

    def counts(self) -> dict[str, int]:
        with self.db.read() as conn:
            rows = conn.execute(sa.text("SELECT status, count(*) FROM signups GROUP BY status")).all()
        return {status: 0 for status in STATUSES} | {status: int(n) for status, n in rows}

    def backlog(self) -> tuple[int, float | None, float | None]:
        """Pending count, the oldest pending signup's creation time, and the earliest due time."""
        with self.db.read() as conn:
            row = conn.execute(
                sa.text("SELECT count(*), min(created_at), min(next_attempt_at) FROM signups WHERE status = 'pending'")
            ).one()
        return int(row[0]), row[1], row[2]

    def retry(self, *, ids: Iterable[int] = (), failed: bool = False) -> int:
        """Put failed (or named) signups back in the queue, due now, with a fresh retry budget."""
        ids = [int(i) for i in ids]
        clauses = []
        if failed:
            clauses.append("status = 'failed'")
        if ids:
            clauses.append("(id IN ({}) AND status IN ('failed', 'pending'))".format(",".join(map(str, ids))))
        if not clauses:
            return 0
        with self.db.transaction() as conn:
            now = self.db.now(conn)
            result = conn.execute(
                sa.text(
                    "UPDATE signups SET status = 'pending', next_attempt_at = :now, first_failed_at = NULL,"
                    " finished_at = NULL, lease_until = NULL, lease_owner = NULL WHERE " + " OR ".join(clauses)
                ),
                {"now": now},
            )
        return result.rowcount

    def purge(self, email: str) -> int:
        """Delete every signup of one address (a GDPR erasure request)."""
        with self.db.transaction() as conn:
            result = conn.execute(
                sa.text("DELETE FROM signups WHERE lower(email) = :email"), {"email": email.strip().lower()}
            )
        return result.rowcount
