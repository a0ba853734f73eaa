"""Exactly once, as far as ConvertKit's API can tell: lost answers, crashes, slow answers and database blips.

Every count here is taken after the sandbox has handled every request that reached it (`wait_idle`): a delayed
original that lands after its look-up is exactly the duplicate these tests are about.
"""

import signal
import threading

import pytest
import requests
import sqlalchemy as sa
from support import extract_token, fast_env, record, subscriptions, v4_env, wait_all_finished, wait_until

from optin.worker import Worker


def lookups(ck):
    """The calls that ask ConvertKit whether an unanswered attempt arrived."""
    return [
        r
        for r in ck.requests()
        if r["method"] == "GET" and (r["path"] == "/v3/subscribers" or r["path"].endswith("/subscriptions"))
    ]


def test_a_lost_answer_is_proven_on_this_form_not_by_the_person(make_app, env, ck, worker):
    """Signed up to one form, then a minute later to another whose call timed out without arriving: the person
    exists at ConvertKit, but not on the second form, so it is sent again."""
    env = fast_env(env)
    services = make_app(**env).extensions["optin"]
    [first] = record(services, 1, form="launch", prefix="twoforms")
    worker_process = worker(env)
    wait_until(lambda: services.signups.get(first.id).status == "delivered", 30, "the first form never delivered")
    worker_process.stop()
    ck.faults([{"delay": 1.0, "status": 504, "path_contains": "forms/4243/subscribe"}])  # never processed
    [second] = record(services, 1, form="simple", prefix="twoforms")
    worker(env)
    wait_all_finished(services)
    ck.wait_idle()
    assert services.signups.get(second.id).status == "delivered"
    assert {(s["form_id"], s["count"]) for s in ck.subscribers()} == {(4242, 1), (4243, 1)}
    assert lookups(ck), "the unknown outcome was looked up before sending again"


def test_the_look_up_waits_until_the_attempt_can_have_arrived(make_app, env, ck, worker):
    """A short time-out and an original that lands 0.9 s later: a look-up at the first retry (0.05 s) would
    find nothing and send again. It waits one slot hold (time-out + 1 s) after the attempt began."""
    env = fast_env(env)
    services = make_app(**env).extensions["optin"]
    record(services, 3, prefix="late")
    ck.faults([{"delay": 0.9, "times": 3, "path_contains": "subscribe"}])
    worker(env)
    wait_all_finished(services)
    ck.wait_idle()
    assert subscriptions(ck, "late") == {f"late{i}@example.com": 1 for i in range(3)}
    posts = [r for r in ck.requests(path_contains="subscribe") if r["method"] == "POST"]
    first_lookup = min(r["at"] for r in lookups(ck))
    assert first_lookup >= min(r["at"] for r in posts) + 0.9  # after the delayed originals landed


def test_without_the_secret_an_unknown_outcome_is_resent_and_counted(make_app, env, ck, worker):
    env = fast_env(env, CONVERTKIT_API_SECRET="")
    app = make_app(**env)
    services = app.extensions["optin"]
    [signup] = record(services, 1, prefix="blind")
    ck.faults([{"status": 502, "body": "", "process": True, "path_contains": "subscribe"}])
    worker(env)
    wait_all_finished(services)
    ck.wait_idle()
    assert subscriptions(ck, "blind") == {"blind0@example.com": 2}  # v3 cannot tell without the secret
    assert services.signups.get(signup.id).possible_duplicates == 1
    health = app.test_client().get("/healthz").json
    assert health["possible_duplicates"] == 1
    shown = app.test_cli_runner().invoke(args=["signups", "show", str(signup.id)]).output
    assert "possible duplicates: 1" in shown


def test_a_look_up_that_keeps_failing_falls_back_to_resending(make_app, env, ck, worker):
    env = fast_env(env, DELIVERY_CHECK_HOURS="0.0005")  # about two seconds of failed look-ups
    services = make_app(**env).extensions["optin"]
    [signup] = record(services, 1, prefix="nolook")
    ck.faults(
        [
            {"delay": 1.0, "status": 504, "path_contains": "subscribe"},
            {"status": 500, "times": 1000, "method": "GET", "path_contains": "/v3/subscribers"},
        ]
    )
    worker(env)
    wait_all_finished(services)
    ck.wait_idle()
    final = services.signups.get(signup.id)
    assert final.status == "delivered" and final.possible_duplicates == 1
    assert subscriptions(ck, "nolook") == {"nolook0@example.com": 1}
    assert len(lookups(ck)) >= 2


@pytest.mark.parametrize("store", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_worker_killed_mid_send_leaves_a_mark_and_nothing_is_sent_twice(make_app, env, ck, worker, store, request):
    extra = {"CONVERTKIT_TIMEOUT": "3", "DELIVERY_LEASE_SECONDS": "5"}
    if store == "postgres":
        url = request.getfixturevalue("postgres_url")
        from optin.db import Database

        database = Database(url)
        database.migrate()
        database.dispose()
        extra["DATABASE_URL"] = url
    env = fast_env(env, **extra)
    services = make_app(**env).extensions["optin"]
    record(services, 4, prefix="killed")
    ck.configure(latency=1.5)  # each send is processed, then answered 1.5 s later: kill inside that gap
    first = worker(env, threads=2)
    wait_until(lambda: len(ck.requests(path_contains="subscribe")) >= 2, 20, "no send started")
    first.signal(signal.SIGKILL)
    first.proc.wait(10)
    ck.configure(latency=0)
    worker(env)
    worker(env)
    wait_all_finished(services, timeout=90)
    ck.wait_idle()
    assert subscriptions(ck, "killed") == {f"killed{i}@example.com": 1 for i in range(4)}
    assert lookups(ck), "the signups found with a mark were looked up"
    assert sum(s.possible_duplicates for s in services.signups.find()) == 0


def test_a_database_blip_during_the_inline_attempt_never_asks_to_try_again(make_app, env, ck, monkeypatch):
    """ConvertKit took the signup, then recording it failed: the visitor sees success, the answer is written as
    soon as the database is back, and a visitor who tries again anyway is not sent again."""
    app = make_app(**fast_env(env))
    services = app.extensions["optin"]
    client = app.test_client()
    real_finish, down = services.signups._finish, threading.Event()
    down.set()

    def finish(*args, **kwargs):
        if down.is_set():
            raise sa.exc.OperationalError("UPDATE signups", {}, Exception("server closed the connection"))
        return real_finish(*args, **kwargs)

    monkeypatch.setattr(services.signups, "_finish", finish)

    def post():
        token = extract_token(client.get("/f/simple").get_data(as_text=True))
        return client.post(
            "/f/simple", data={"token": token, "email": "blip@example.com"}, headers={"Accept": "application/json"}
        )

    answer = post()
    assert answer.status_code == 200 and answer.json["ok"]
    [signup] = services.signups.find()
    assert signup.status == "pending" and signup.sending_at is not None  # not recorded yet: the mark stays
    again = post()  # the visitor tries again anyway
    assert again.status_code == 200 and again.json["ok"]
    down.clear()  # the database is back: the background recorder writes ConvertKit's answer
    wait_until(lambda: services.signups.get(signup.id).status == "delivered", 10, "the answer was never recorded")
    worker = Worker(services.delivery, lease_seconds=1)
    wait_until(lambda: (worker.step(), services.signups.counts()["pending"] == 0)[1], 20, "the retry was never settled")
    assert services.signups.counts() == {"pending": 0, "delivered": 2, "rejected": 0, "failed": 0}
    ck.wait_idle()
    assert subscriptions(ck, "blip") == {"blip@example.com": 1}


def test_a_process_that_died_before_recording_is_reconciled_by_a_look_up(make_app, env, ck, monkeypatch):
    env = fast_env(env, DELIVERY_LEASE_SECONDS="2")
    app = make_app(**env)
    services = app.extensions["optin"]
    client = app.test_client()
    monkeypatch.setattr(
        services.signups,
        "_finish",
        lambda *a, **k: (_ for _ in ()).throw(sa.exc.OperationalError("UPDATE signups", {}, Exception("gone"))),
    )
    monkeypatch.setattr(services.delivery, "_start_recorder", lambda: None)  # the process dies with its memory
    token = extract_token(client.get("/f/simple").get_data(as_text=True))
    assert client.post("/f/simple", data={"token": token, "email": "died@example.com"}).status_code == 303
    monkeypatch.undo()
    worker = Worker(services.delivery)
    wait_until(lambda: worker.step() and services.signups.counts()["delivered"] == 1, 30, "never reconciled")
    ck.wait_idle()
    assert subscriptions(ck, "died") == {"died@example.com": 1}
    assert lookups(ck)


def test_the_same_details_posted_twice_are_sent_once_and_new_details_again(make_app, env, ck, worker):
    env = fast_env(env)
    app = make_app(**env)
    services = app.extensions["optin"]
    client = app.test_client()
    for name in ("Ann", "Ann", "Anne"):
        token = extract_token(client.get("/f/launch").get_data(as_text=True))
        client.post(
            "/f/launch",
            data={"token": token, "email": "twin@example.com", "first_name": name, "company": "Acme"},
            headers={"Accept": "application/json"},
        )
    worker(env)
    wait_all_finished(services)
    ck.wait_idle()
    assert subscriptions(ck, "twin") == {"twin@example.com": 2}  # Ann once, then the change to Anne
    assert [s.status for s in services.signups.find()] == ["delivered"] * 3


def test_a_slow_convertkit_never_holds_a_visitor_past_the_time_out(gunicorn, env, ck):
    """A ConvertKit (or a proxy) that trickles its answers: each visitor's POST ends at CONVERTKIT_TIMEOUT, and
    the form keeps loading for everyone else while they wait."""
    env = {**env, "CONVERTKIT_TIMEOUT": "1"}
    ck.faults([{"trickle": 0.2, "rate": 1, "path_contains": "subscribe"}])  # ~20 s an answer
    web = gunicorn(env)
    answers, errors = [], []

    def visitor(i):
        try:
            session = requests.Session()
            token = extract_token(session.get(f"{web.url}/f/simple", timeout=5).text)
            answers.append(
                session.post(
                    f"{web.url}/f/simple",
                    data={"token": token, "email": f"s{i}@example.com"},
                    headers={"Accept": "application/json"},
                    timeout=10,
                ).json()
            )
        except requests.RequestException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=visitor, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    wait_until(lambda: ck.requests(path_contains="subscribe"), 10, "no inline attempt")
    for _ in range(5):  # meanwhile, other visitors load the form
        assert requests.get(f"{web.url}/f/simple", timeout=3).status_code == 200
    for thread in threads:
        thread.join(30)
    assert not errors and len(answers) == 12 and all(a["ok"] for a in answers)
    assert len(ck.requests(path_contains="subscribe")) <= 4  # two inline attempts per process at most


def test_a_worker_waiting_on_a_full_window_still_reports_in(make_app, env, ck, worker):
    """A launch's backlog waits on ConvertKit's limit for minutes: /healthz must not call the worker missing."""
    env = fast_env(env)
    app = make_app(**env)
    services = app.extensions["optin"]
    record(services, 3, prefix="backlog")
    services.delivery.windows.block(services.delivery.rate_scope, 600)  # as after repeated 429s
    with services.db.transaction() as conn:
        conn.execute(
            sa.text("UPDATE signups SET created_at = created_at - 300, next_attempt_at = next_attempt_at - 300")
        )
    worker(env)
    health = app.test_client()
    wait_until(lambda: health.get("/healthz").json["worker_seen_seconds_ago"] is not None, 20, "no heartbeat")
    report = health.get("/healthz")
    assert report.status_code == 200 and report.json["backlog"] == 3, report.json
    assert ck.requests() == []


def test_look_ups_take_their_slots_in_the_shared_limit(make_app, env, ck, worker):
    env = fast_env(env, CONVERTKIT_RATE_LIMIT="4/2")
    ck.configure(rate_limit="4/2")
    services = make_app(**env).extensions["optin"]
    record(services, 6, prefix="slots")
    ck.faults([{"status": 502, "process": True, "times": 4, "path_contains": "subscribe"}])
    worker(env, threads=4)
    wait_all_finished(services, timeout=90)
    ck.wait_idle()
    log = ck.requests()
    assert len(lookups(ck)) >= 4 and not [r for r in log if r["status"] == 429]
    arrivals = sorted(r["at"] for r in log)
    assert all(arrivals[i + 4] - arrivals[i] >= 2.0 for i in range(len(arrivals) - 4)), "more than 4 in 2 s"
    assert subscriptions(ck, "slots") == {f"slots{i}@example.com": 1 for i in range(6)}


# Kit's v4 API: one signup is several calls, each recorded as it is taken ----------------------------------------


def posts(ck, fragment):
    return [r for r in ck.requests(path_contains=fragment) if r["method"] == "POST"]


def test_v4_a_lost_answer_on_the_form_call_is_looked_up_not_repeated(make_app, env, ck, worker):
    env = fast_env(v4_env(env, ck))
    services = make_app(**env).extensions["optin"]
    record(services, 2, form="simple", prefix="v4lost")
    ck.faults(
        [
            {
                "status": 502,
                "body": "",
                "process": True,
                "times": 2,
                "method": "POST",
                "path_contains": "/v4/forms/4243/subscribers",
            }
        ]
    )
    worker(env)
    wait_all_finished(services)
    ck.wait_idle()
    assert {s.status for s in services.signups.find()} == {"delivered"}
    assert len(posts(ck, "/v4/forms/4243/subscribers")) == 2  # once each: the look-up found them there
    assert [r["query"].get("status") for r in lookups_v4(ck)].count("all") >= 2  # unconfirmed people too
    assert sum(s.possible_duplicates for s in services.signups.find()) == 0


def lookups_v4(ck):
    return [r for r in ck.requests() if r["method"] == "GET" and "/v4/" in r["path"]]


def test_v4_a_retry_goes_on_from_the_step_that_failed(make_app, env, ck, worker):
    env = fast_env(v4_env(env, ck))
    services = make_app(**env).extensions["optin"]
    [signup] = record(services, 1, form="launch", prefix="v4steps", with_tags=True)
    ck.faults([{"status": 500, "times": 3, "method": "POST", "path_contains": "/v4/tags/102/"}])
    worker(env)
    wait_all_finished(services)
    done = services.signups.get(signup.id)
    assert done.status == "delivered" and done.steps_done == 4  # subscriber, form, two tags
    assert len(posts(ck, "/v4/subscribers")) == 1 and len(posts(ck, "/v4/forms/")) == 1
    assert len(posts(ck, "/v4/tags/101/")) == 1 and len(posts(ck, "/v4/tags/102/")) == 4


def test_v4_sends_the_page_the_form_was_on(make_app, env, ck):
    app = make_app(**fast_env(v4_env(env, ck)))
    client = app.test_client()
    token = extract_token(client.get("/f/simple").get_data(as_text=True))
    answer = client.post(
        "/f/simple",
        headers={"Accept": "application/json"},
        data={"token": token, "email": "ref@example.com", "referrer": "https://shop.example/launch?utm_source=news"},
    )
    assert answer.json["ok"]
    services = app.extensions["optin"]
    Worker(services.delivery, lease_seconds=1).step()  # the inline attempt made the first call; this one adds
    [form_call] = posts(ck, "/v4/forms/4243/subscribers")
    assert form_call["json"] == {
        "email_address": "ref@example.com",
        "referrer": "https://shop.example/launch?utm_source=news",
    }


def test_v4_a_tag_kit_does_not_have_is_skipped_and_said(make_app, env, ck, worker, caplog):
    env = fast_env(v4_env(env, ck))
    services = make_app(**env).extensions["optin"]
    ck.configure(tags={"102": None})  # the forms file names tag 102; the account has none
    [signup] = record(services, 1, form="launch", prefix="v4tag", with_tags=True)
    worker(env)
    wait_all_finished(services)
    done = services.signups.get(signup.id)
    assert done.status == "delivered" and "tag 102" in done.last_error
    assert len(posts(ck, "/v4/forms/4242/subscribers")) == 1
