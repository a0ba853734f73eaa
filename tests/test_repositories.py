"""Every write of every table's module, on SQLite's fast write path and on PostgreSQL.

A write on SQLite runs through a shim (optin/db/sqlite.py) that offers only the result methods `Result` names.
A query using another one passes on PostgreSQL and in reads, and would fail only inside a SQLite write: in
production, on the first signup that takes that path. Running each write here on both makes it fail here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
import sqlalchemy as sa

from optin import health, heartbeats
from optin.db import Database
from optin.db.sqlite import Result, ResultRow, ScalarResult, SqliteConnection
from optin.limiter import SqlWindows
from optin.nonces import SqlNonces
from optin.pauses import Pauses
from optin.settings import RateLimit
from optin.signups import DELIVERED, FAILED, PENDING, REJECTED, Signup, Signups


@dataclass
class Repos:
    db: Database
    signups: Signups
    windows: SqlWindows
    nonces: SqlNonces
    pauses: Pauses
    shim_statements: list[str] = field(default_factory=list)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def repos(request, tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path}/r.db" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    db = Database(url)
    db.migrate()
    made = Repos(db, Signups(db), SqlWindows(db), SqlNonces(db), Pauses(db))
    execute = SqliteConnection.execute

    def seen(self, statement, parameters=None, /):
        made.shim_statements.append(statement if isinstance(statement, str) else statement.text)
        return execute(self, statement, parameters)

    monkeypatch.setattr(SqliteConnection, "execute", seen)
    monkeypatch.setattr("optin.nonces.random.random", lambda: 0.0)  # each use also forgets expired nonces
    yield made
    db.dispose()


def record(r: Repos, email: str = "ann@example.com", *, form_id: int = 4242, leased: bool = True) -> Signup:
    return r.signups.record(
        form_slug="launch",
        convertkit_form_id=form_id,
        email=email,
        first_name="Ann",
        fields={"company": "Acme"},
        tags=(1, 2),
        ip_hash="h",
        lease_owner="w" if leased else None,
        lease_seconds=30 if leased else 0,
    )


def status(r: Repos, signup: Signup) -> str | None:
    found = r.signups.get(signup.id)
    return found.status if found else None


# Signups --------------------------------------------------------------------------------------------------


def signups_record(r):
    signup = record(r, leased=False)
    assert r.signups.get(signup.id).sending_at is None and status(r, signup) == PENDING


def signups_record_leased(r):
    signup = record(r)
    assert r.signups.get(signup.id).sending_at == signup.sending_at is not None


def signups_claim(r):
    """Both of the claim's statements: signups with an unknown outcome first, then the rest."""
    unknown, plain = record(r, "a@example.com"), record(r, "b@example.com", leased=False)
    assert r.signups.mark_retry(unknown, "w", at=1.0, next_attempt_at=0.0, error="time-out", unconfirmed_at=1.0)
    claimed = r.signups.claim("worker", lease_seconds=30, limit=2)
    assert [s.id for s in claimed] == [unknown.id, plain.id]
    assert claimed[0].unconfirmed_at == 1.0 and claimed[1].sending_at is not None


def signups_claim_skips_paused_forms(r):
    record(r, form_id=1, leased=False)
    due = record(r, form_id=2, leased=False)
    assert [s.id for s in r.signups.claim("worker", lease_seconds=30, paused_forms=[1])] == [due.id]


def signups_mark_delivered(r):
    signup = record(r)
    assert r.signups.mark_delivered(signup, "w", at=2.0, subscriber_id=7)
    assert status(r, signup) == DELIVERED
    assert not r.signups.mark_delivered(signup, "w", at=3.0, subscriber_id=7), "an outcome is written once"


def signups_mark_step(r):
    signup = record(r)
    assert r.signups.mark_step(signup, "w", at=2.0, subscriber_id=7, resent_blind=True)
    again = r.signups.get(signup.id)
    assert (again.steps_done, again.possible_duplicates, again.status) == (1, 1, PENDING)


def signups_mark_rejected(r):
    signup = record(r)
    assert r.signups.mark_rejected(signup, "w", at=2.0, reason="Email address is invalid")
    assert status(r, signup) == REJECTED


def signups_mark_retry(r):
    signup = record(r)
    assert not r.signups.mark_retry(signup, "someone else", at=2.0, next_attempt_at=3.0, error="503")
    assert r.signups.mark_retry(signup, "w", at=2.0, next_attempt_at=3.0, error="503", failed=True, subscriber_id=7)
    assert status(r, signup) == FAILED


def signups_retry(r):
    failed, named = record(r, "a@example.com"), record(r, "b@example.com")
    r.signups.mark_retry(failed, "w", at=2.0, next_attempt_at=3.0, error="503", failed=True)
    assert r.signups.retry(failed=True) == 1
    assert r.signups.retry(ids=[failed.id, named.id]) == 2
    assert status(r, failed) == PENDING


def signups_purge(r):
    signup = record(r)
    assert r.signups.purge(" ANN@example.com ") == 1
    assert status(r, signup) is None


# SqlWindows -----------------------------------------------------------------------------------------------

LIMIT = RateLimit(2, 60)


def windows_acquire_finish_cancel(r):
    first, second = r.windows.acquire("k", LIMIT, 5.0), r.windows.acquire("k", LIMIT, 5.0)
    assert first and second
    r.windows.finish(first.slot)
    r.windows.cancel(second.slot)
    assert r.windows.acquire("k", LIMIT), "a cancelled slot leaves room"


def windows_acquire_when_full(r):
    assert r.windows.acquire("k", LIMIT) and r.windows.acquire("k", LIMIT)
    full = r.windows.acquire("k", LIMIT)
    assert not full and 59 < full.wait <= 60


def windows_block_strikes_clear(r):
    r.windows.block("ck", 30)
    r.windows.block("ck", 30)
    blocked = r.windows.acquire("ck", LIMIT, blockable=True)
    assert not blocked and 29 < blocked.wait <= 30
    assert r.windows.strikes("ck") == 2
    r.windows.clear_strikes("ck")
    assert r.windows.strikes("ck") == 0 and r.windows.acquire("ck", LIMIT, blockable=True)


def windows_sweep(r):
    assert r.windows.acquire("k", RateLimit(5, 0.001)) and r.windows.acquire("k", RateLimit(5, 0.001))
    time.sleep(0.01)  # both are older than their window now
    assert r.windows.sweep() == 2


# SqlNonces, Pauses, heartbeats, the health probe ----------------------------------------------------------


def nonces_use(r):
    assert r.nonces.use("n1", 60) and not r.nonces.use("n1", 60)


def pauses_pause_reschedule_lift(r):
    r.pauses.pause("form:1", "404")
    r.pauses.pause("form:1", "404 again")
    r.pauses.pause("account", "401")
    r.pauses.reschedule("form:1", 0)
    assert {p["scope"]: (p["reason"], p["checks"]) for p in r.pauses.active(fresh=True)} == {
        "form:1": ("404 again", 1),
        "account": ("401", 0),
    }
    assert r.pauses.lift("account") == 1
    assert r.pauses.lift() == 1 and r.pauses.active(fresh=True) == []


def heartbeats_beat(r):
    heartbeats.beat(r.db, "host:1")
    heartbeats.beat(r.db, "host:1")
    with r.db.read() as conn:
        assert heartbeats.last_seen(conn) > 0


def health_storage_probe(r):
    assert health.storage_problem(r.db) is None


def one_form_post(r):
    """Intake's single commit: token, client window, address window and signup, joined in one transaction."""
    with r.db.transaction():
        assert r.nonces.use("token", 60)
        assert r.windows.acquire("ip:h", LIMIT) and r.windows.acquire("email:e", LIMIT)
        signup = record(r)
    assert status(r, signup) == PENDING


def checkpoint(r):
    logged, copied = r.db.checkpoint()
    assert copied == logged


WRITES: list[Callable] = [
    signups_record,
    signups_record_leased,
    signups_claim,
    signups_claim_skips_paused_forms,
    signups_mark_delivered,
    signups_mark_step,
    signups_mark_rejected,
    signups_mark_retry,
    signups_retry,
    signups_purge,
    windows_acquire_finish_cancel,
    windows_acquire_when_full,
    windows_block_strikes_clear,
    windows_sweep,
    nonces_use,
    pauses_pause_reschedule_lift,
    heartbeats_beat,
    health_storage_probe,
    one_form_post,
    checkpoint,
]


@pytest.mark.parametrize("write", WRITES, ids=lambda write: write.__name__)
def test_every_write_runs_in_a_write_transaction(repos, write):
    write(repos)
    if repos.db.is_sqlite:
        assert repos.shim_statements, "on SQLite the writes took the fast path, and the shim's results"


def missing(protocol, value) -> set[str]:
    """The names `protocol` declares (its methods, `rowcount`, iteration, `_mapping`) that `value` lacks."""
    declared = {
        name for name in vars(protocol) if not name.startswith("_") or name in ("__iter__", "__getitem__", "_mapping")
    }
    return {name for name in declared if not hasattr(value, name)}


def test_the_shim_and_sqlalchemy_each_offer_every_result_method_the_interface_names(repos):
    """`Result` is what a write may use; both kinds of connection `Database.transaction()` yields must offer it."""
    statement = sa.text("SELECT scope, reason FROM pauses")
    repos.pauses.pause("account", "401")
    with repos.db.transaction() as conn:  # the shim on SQLite
        results = [(conn.execute(statement), conn.execute(statement).scalars())]
    with repos.db.read() as conn:  # SQLAlchemy's own
        results.append((conn.execute(statement), conn.execute(statement).scalars()))
        for result, scalars in results:
            assert missing(Result, result) == set(), type(result)
            assert missing(ResultRow, result.first()) == set(), type(result)
            assert missing(ScalarResult, scalars) == set(), type(scalars)
