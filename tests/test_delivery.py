"""optin/delivery.py step by step, in process, against the sandbox: what each answer does to a signup."""

import logging

import pytest
import sqlalchemy as sa
from support import fast_env, record

from optin.steps import MAX_CHECK_PAGES
from optin.worker import Worker


@pytest.fixture
def services(make_app, env):
    return make_app(**fast_env(env)).extensions["optin"]


def step(services, *, now=False):
    """One worker step; `now` makes every pending signup due first (waits are tested in test_exactly_once)."""
    if now:
        services.delivery.hold = 0
        with services.db.transaction() as conn:
            conn.execute(sa.text("UPDATE signups SET next_attempt_at = 0 WHERE status = 'pending'"))
    return Worker(services.delivery, lease_seconds=1).step()


@pytest.mark.parametrize("status, scope", [(401, "account"), (403, "account"), (404, "form:4243")])
def test_refusals_pause_the_key_or_the_form_and_keep_the_signup(services, ck, status, scope):
    [signup] = record(services, 1)
    ck.faults([{"status": status, "path_contains": "subscribe"}])
    assert step(services)
    assert [p["scope"] for p in services.delivery.pauses.active(fresh=True)] == [scope]
    paused = services.delivery.paused(services.delivery.pauses.active(fresh=True))
    assert paused.account == (scope == "account") and paused.holds(4243)
    assert paused.holds(999) == (scope == "account"), "a form's pause holds back that form only"
    kept = services.signups.get(signup.id)
    assert kept.status == "pending" and str(status) in kept.last_error


def test_a_message_that_quotes_the_address_is_logged_with_a_pseudonym(services, ck, caplog):
    caplog.set_level(logging.DEBUG)
    [signup] = record(services, 1, prefix="Quoted.Person")
    ck.faults(
        [
            {
                "status": 422,
                "body": {"error": "Invalid", "message": "quoted.person0@example.com is not valid"},
                "path_contains": "subscribe",
            }
        ]
    )
    step(services)
    assert services.signups.get(signup.id).status == "rejected"
    assert "quoted.person0@example.com" not in caplog.text.lower()
    assert "email#" in caplog.text


def test_a_429_during_a_look_up_keeps_its_place_and_sends_nothing(services, ck):
    [signup] = record(services, 1, prefix="limited")
    ck.faults([{"status": 502, "process": True, "path_contains": "subscribe"}])
    step(services)
    unknown = services.signups.get(signup.id)
    assert unknown.unconfirmed_at is not None
    ck.faults([{"status": 429, "body": "Retry later", "content_type": "text/plain", "method": "GET"}])
    assert step(services, now=True)
    after = services.signups.get(signup.id)
    assert after.unconfirmed_at == unknown.unconfirmed_at and after.check_page == 0
    assert services.delivery.windows.strikes(services.delivery.rate_scope) == 1
    assert len([r for r in ck.requests() if r["method"] == "POST"]) == 1  # not sent again


def test_too_many_new_subscriptions_to_read_means_sending_again_counted(services, ck, monkeypatch):
    monkeypatch.setattr("optin.steps.MAX_CHECK_PAGES", 1)
    for i in range(51):  # the oldest is this person's own earlier signup; a page holds 50
        services.delivery.client.subscribe_to_form(4243, f"crowd{i}@example.com")
    [signup] = record(services, 1, prefix="crowd")
    ck.faults([{"status": 504, "path_contains": "forms/4243/subscribe"}])
    while services.signups.get(signup.id).status == "pending":
        assert step(services, now=True)
    assert services.signups.get(signup.id).possible_duplicates == 1
    assert MAX_CHECK_PAGES == 10  # the shipped bound: 500 subscriptions
