"""Never lose a signup: the worker process against a ConvertKit that fails in every way it can."""

import signal
import threading
import time

import pytest
import requests
from support import (
    delivered_emails,
    extract_token,
    fast_env,
    record,
    subscriptions,
    v4_env,
    wait_all_finished,
    wait_until,
)


@pytest.mark.parametrize(
    "faults",
    [
        pytest.param([{"status": 429, "body": "Retry later", "content_type": "text/plain", "times": 3}], id="429s"),
        pytest.param(
            [{"status": 500, "body": "<html><body>Oops</body></html>", "content_type": "text/html", "times": 4}],
            id="500-html",
        ),
        pytest.param(
            [
                {"status": 502, "body": "", "times": 2},
                {"status": 504, "body": "<html>gw</html>", "content_type": "text/html", "times": 2},
            ],
            id="502-504",
        ),
        pytest.param([{"delay": 1.0, "times": 3}], id="timeouts-processed-late"),
        pytest.param([{"delay": 1.0, "status": 504, "times": 3}], id="timeouts-not-processed"),
        pytest.param([{"close": True, "times": 3}], id="connection-dropped"),
        pytest.param([{"close": True, "process": True, "times": 3}], id="dropped-after-processing"),
        pytest.param(
            [
                {"status": 502, "body": "", "process": True, "times": 2},
                {"status": 503, "body": "<html>busy</html>", "content_type": "text/html", "process": True, "times": 2},
            ],
            id="5xx-after-processing",
        ),
        pytest.param([{"status": 302, "body": "", "process": True, "times": 2}], id="3xx-after-processing"),
        pytest.param(
            [
                {"status": 200, "body": "", "process": True, "times": 2},
                {"status": 200, "body": "OK", "content_type": "text/plain", "process": True, "times": 2},
                {"status": 201, "body": {"unexpected": True}, "process": True, "times": 1},
            ],
            id="odd-2xx",
        ),
        pytest.param([{"trickle": 0.05, "times": 3}], id="trickled-answers"),
    ],
)
@pytest.mark.parametrize("version", ["v3", "v4"])
def test_every_accepted_signup_is_delivered_once_through_faults(make_app, env, ck, worker, faults, request, version):
    env = fast_env(env) if version == "v3" else fast_env(v4_env(env, ck))
    services = make_app(**env).extensions["optin"]
    prefix = request.node.callspec.id.replace("-", "")
    record(services, 6, prefix=prefix)
    ck.faults([{**f, "path_contains": "subscribe"} for f in faults])
    worker(env)
    wait_all_finished(services)
    assert {s.status for s in services.signups.find()} == {"delivered"}
    ck.wait_idle()  # a delayed original that lands after its look-up would be a second subscription: count it
    assert subscriptions(ck, prefix) == {f"{prefix}{i}@example.com": 1 for i in range(6)}  # none lost, none twice
    assert sum(s.possible_duplicates for s in services.signups.find()) == 0


def test_connection_refused_until_convertkit_comes_back(make_app, env, ck, worker):
    from support import free_port

    from convertkit.sandbox import SandboxServer

    port = free_port()
    env = fast_env(env, CONVERTKIT_API_URL=f"http://127.0.0.1:{port}/v3/")
    services = make_app(**env).extensions["optin"]
    record(services, 3)
    worker(env)
    wait_until(
        lambda: all("APIConnectionError" in (s.last_error or "") for s in services.signups.find()),
        20,
        "the worker never tried",
    )
    with SandboxServer(api_key=env["CONVERTKIT_API_KEY"], port=port) as late:
        wait_all_finished(services, timeout=60)
        assert sorted(r["json"]["email"] for r in late.requests(path_contains="subscribe")) == [
            f"person{i}@example.com" for i in range(3)
        ]


@pytest.mark.parametrize("version", ["v3", "v4"])
def test_a_wrong_key_pauses_delivery_then_resumes_by_itself(make_app, env, ck, worker, version):
    env = fast_env(env) if version == "v3" else fast_env(v4_env(env, ck))
    app = make_app(**env)
    services = app.extensions["optin"]
    ck.configure(**{"api_key" if version == "v3" else "v4_api_key": "not-the-key-we-use"})
    record(services, 12)
    worker(env, threads=4)
    wait_until(lambda: services.delivery.pauses.active(fresh=True), 20, "delivery was not paused")
    health = app.test_client().get("/healthz")
    assert health.status_code == 503 and "401" in health.json["problems"][0]
    time.sleep(1)
    attempts = len(ck.requests(path_contains="/subscribe"))
    assert attempts <= 4  # at most one per delivery loop, then paused, instead of burning every signup's budget
    ck.configure(**{"api_key" if version == "v3" else "v4_api_key": env["CONVERTKIT_API_KEY"]})  # fixed in Kit
    wait_all_finished(services)
    assert subscriptions(ck, "person") == {f"person{i}@example.com": 1 for i in range(12)}
    assert app.test_client().get("/healthz").status_code == 200


@pytest.mark.parametrize("version", ["v3", "v4"])
def test_an_unknown_form_pauses_only_that_form(make_app, env, ck, worker, version):
    env = fast_env(env) if version == "v3" else fast_env(v4_env(env, ck))
    services = make_app(**env).extensions["optin"]
    record(services, 2, form="ghost", prefix="ghost")
    record(services, 3)
    worker(env)
    wait_until(lambda: services.signups.counts()["delivered"] == 3, 30, "the healthy form was held up")
    assert [p["scope"] for p in services.delivery.pauses.active(fresh=True)] == ["form:999999"]
    assert {s.status for s in services.signups.find(form="ghost")} == {"pending"}
    ck.configure(forms={"999999": "Created at last"})
    wait_all_finished(services)
    assert services.delivery.pauses.active(fresh=True) == []


@pytest.mark.parametrize("version", ["v3", "v4"])
def test_a_convertkit_422_is_rejected_with_its_message(make_app, env, ck, worker, version):
    env = fast_env(env) if version == "v3" else fast_env(v4_env(env, ck))
    services = make_app(**env).extensions["optin"]
    record(services, 1, prefix="invalid")
    worker(env)
    wait_all_finished(services)
    [signup] = services.signups.find()
    assert signup.status == "rejected" and "Email address is invalid" in signup.last_error


def test_a_signup_fails_after_the_retry_budget(make_app, env, ck, worker):
    env = fast_env(env, DELIVERY_RETRY_HOURS="0.0003")  # about one second
    services = make_app(**env).extensions["optin"]
    record(services, 1)
    ck.faults([{"status": 500, "times": 1000, "path_contains": "subscribe"}])
    worker(env)
    wait_all_finished(services)
    [signup] = services.signups.find()
    assert signup.status == "failed" and "ServerError" in signup.last_error and signup.attempts >= 2


def test_sigkill_mid_delivery_loses_nothing(make_app, env, ck, worker):
    env = fast_env(env, CONVERTKIT_TIMEOUT="3", DELIVERY_LEASE_SECONDS="8")
    services = make_app(**env).extensions["optin"]
    record(services, 5)
    ck.configure(latency=1.5)
    first = worker(env)
    wait_until(
        lambda: any(s.attempts == 0 for s in services.signups.find()) and ck.requests(path_contains="subscribe"),
        20,
        "the first worker never started a delivery",
    )
    first.signal(signal.SIGKILL)
    first.proc.wait(10)
    ck.configure(latency=0)
    worker(env)
    wait_all_finished(services, timeout=90)
    assert {s.status for s in services.signups.find()} == {"delivered"}
    assert set(delivered_emails(ck)) == {f"person{i}@example.com" for i in range(5)}


def test_sigterm_finishes_the_signups_in_hand_and_exits_promptly(make_app, env, ck, worker):
    env = fast_env(env, CONVERTKIT_TIMEOUT="5")
    services = make_app(**env).extensions["optin"]
    record(services, 6)
    ck.configure(latency=2)
    process = worker(env, threads=2)
    wait_until(lambda: len(ck.requests(path_contains="/subscribe")) == 2, 20, "two deliveries never started")
    started = time.monotonic()
    process.signal(signal.SIGTERM)
    process.proc.wait(30)
    assert time.monotonic() - started < 10
    assert process.proc.returncode == 0
    statuses = [s.status for s in services.signups.find()]
    assert statuses.count("delivered") == 2 and statuses.count("pending") == 4


def test_several_deliveries_in_flight_keep_pace_with_a_slow_convertkit(make_app, env, ck, worker):
    env = fast_env(env, CONVERTKIT_TIMEOUT="5", CONVERTKIT_RATE_LIMIT="100/1")
    services = make_app(**env).extensions["optin"]
    record(services, 8)
    ck.configure(latency=1)
    worker(env, threads=4)
    wait_until(lambda: len(ck.requests(path_contains="/subscribe")) >= 4, 20, "deliveries did not overlap")
    arrivals = sorted(r["at"] for r in ck.requests(path_contains="/subscribe"))
    assert arrivals[3] - arrivals[0] < 1.0, "four loops: four requests in flight, not one after another"
    wait_all_finished(services)
    assert len(delivered_emails(ck)) == 8


def test_web_answers_at_once_when_the_limit_has_no_room(gunicorn, make_app, env, ck):
    env = {**env, "CONVERTKIT_RATE_LIMIT": "2/60"}
    web = gunicorn(env)
    answers = []
    for i in range(5):
        session = requests.Session()
        token = extract_token(session.get(f"{web.url}/f/simple", timeout=5).text)
        answers.append(
            session.post(
                f"{web.url}/f/simple",
                data={"token": token, "email": f"p{i}@example.com"},
                headers={"Accept": "application/json"},
                timeout=5,
            ).json()
        )
    assert all(a["ok"] for a in answers)
    assert len(ck.requests(path_contains="subscribe")) == 2
    counts = make_app(**env).extensions["optin"].signups.counts()
    assert counts["delivered"] == 2 and counts["pending"] == 3


def _arrivals_within_limit(arrivals, count, seconds):
    arrivals = sorted(arrivals)
    return all(arrivals[i + count] - arrivals[i] >= seconds for i in range(len(arrivals) - count))


@pytest.mark.postgres
def test_two_workers_and_web_traffic_never_exceed_the_limit_on_postgres(
    postgres_url, make_app, env, ck, worker, gunicorn
):
    env = fast_env(env, DATABASE_URL=postgres_url, CONVERTKIT_RATE_LIMIT="8/2", CONVERTKIT_TIMEOUT="2")
    from optin.db import Database

    database = Database(postgres_url)
    database.migrate()
    database.dispose()
    ck.configure(rate_limit="8/2", latency=0.05)
    services = make_app(**env).extensions["optin"]
    record(services, 20)
    web = gunicorn(env)
    worker(env)
    worker(env)
    errors = []

    def visitors():
        for i in range(12):
            try:
                session = requests.Session()
                token = extract_token(session.get(f"{web.url}/f/simple", timeout=5).text)
                session.post(
                    f"{web.url}/f/simple",
                    data={"token": token, "email": f"web{i}@example.com"},
                    headers={"Accept": "application/json"},
                    timeout=10,
                ).raise_for_status()
            except requests.RequestException as exc:
                errors.append(exc)
            time.sleep(0.15)

    thread = threading.Thread(target=visitors)
    thread.start()
    thread.join(60)
    assert not errors
    wait_all_finished(services, timeout=90)
    log = ck.requests()
    assert not [r for r in log if r["status"] == 429], "ConvertKit saw more than the limit"
    assert _arrivals_within_limit([r["at"] for r in log], 8, 2.0)
    assert len(delivered_emails(ck)) == len(set(delivered_emails(ck))) == 32
