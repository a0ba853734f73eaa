"""The signups table as a queue: leases, outcomes, and the operator's retry and purge."""

import threading
import time

import pytest

from optin.db import Database
from optin.signups import Signups


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def signups(request, tmp_path):
    url = f"sqlite:///{tmp_path}/s.db" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    db = Database(url)
    db.migrate()
    yield Signups(db)
    db.dispose()


def add(signups, n=1, email="a{}@example.com", **kw):
    return [
        signups.record(
            form_slug="launch",
            convertkit_form_id=4242,
            email=email.format(i),
            first_name="Ann",
            fields={"company": "Acme"},
            tags=(1, 2),
            ip_hash="h",
            **kw,
        )
        for i in range(n)
    ]


def test_record_keeps_everything_that_will_be_sent(signups):
    [signup] = add(signups)
    again = signups.get(signup.id)
    assert (again.email, again.first_name, again.fields, again.tags, again.status) == (
        "a0@example.com",
        "Ann",
        {"company": "Acme"},
        (1, 2),
        "pending",
    )
    assert "a0@example.com" not in repr(again)
    # what record() hands back (the web request delivers from it at once) is what the worker would read
    assert signup == again


def test_migrate_twice_is_harmless(signups):
    assert signups.db.migrate() == []


def test_concurrent_claims_never_share_a_signup(signups):
    add(signups, 40)
    claimed = []

    def claim(name):
        while batch := signups.claim(name, lease_seconds=60, limit=3):
            claimed.extend(s.id for s in batch)

    threads = [threading.Thread(target=claim, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == sorted(set(claimed)) and len(claimed) == 40


def test_an_expired_lease_is_claimed_again_and_the_late_owner_cannot_overwrite(signups):
    [signup] = add(signups)
    [first] = signups.claim("dead-worker", lease_seconds=0.2)
    assert signups.claim("other", lease_seconds=60) == []
    time.sleep(0.3)
    [second] = signups.claim("other", lease_seconds=60)
    assert second.id == first.id == signup.id
    assert not signups.mark_delivered(first, "dead-worker", at=time.time(), subscriber_id=1)
    assert signups.mark_delivered(second, "other", at=time.time(), subscriber_id=1)
    assert signups.get(signup.id).status == "delivered"


def test_a_web_lease_keeps_the_worker_away_until_it_runs_out(signups):
    [signup] = add(signups, lease_owner="web:1", lease_seconds=0.3)
    assert signups.claim("worker", lease_seconds=60) == []
    time.sleep(0.4)  # the web request died mid-attempt: its signup is the worker's now
    assert [s.id for s in signups.claim("worker", lease_seconds=60)] == [signup.id]


def test_paused_forms_are_not_claimed(signups):
    add(signups, 2)
    assert signups.claim("w", lease_seconds=60, paused_forms=[4242]) == []
    assert not signups.has_due([4242]) and signups.has_due()


def test_retry_puts_failed_signups_back_and_purge_forgets_a_person(signups):
    a, b = add(signups, 2)
    [claimed] = signups.claim("w", lease_seconds=60)
    signups.mark_retry(claimed, "w", at=time.time(), next_attempt_at=time.time() + 999, error="boom", failed=True)
    assert signups.counts()["failed"] == 1
    assert signups.retry(failed=True) == 1
    assert signups.get(a.id).status == "pending" and signups.get(a.id).first_failed_at is None
    assert signups.purge("A1@EXAMPLE.com") == 1
    assert signups.get(b.id) is None and signups.get(a.id) is not None


def test_backlog(signups):
    assert signups.backlog() == (0, None, None)
    add(signups, 3)
    count, oldest, due = signups.backlog()
    assert count == 3 and oldest <= due <= time.time()
