"""The sandbox must answer like ConvertKit does, or tests against it prove nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from convertkit.sandbox import (
    INVALID_EMAIL,
    NOT_FOUND,
    NOT_PRESENT,
    NOT_VALID,
    SandboxServer,
    create_sandbox,
)

KEY = "sandbox_api_key"
SECRET = "sandbox_api_secret"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def sandbox_app():
    return create_sandbox()


@pytest.fixture
def api(sandbox_app):
    return sandbox_app.test_client()


def subscribe(api, email="ada@example.com", form_id=4242, **body):
    return api.post(f"/v3/forms/{form_id}/subscribe", json={"api_key": KEY, "email": email, **body})


def test_subscribe_answers_like_the_recording(api):
    response = subscribe(api, first_name="Ada", fields={"last_name": "Lovelace"}, tags=[101])

    assert response.status_code == 200
    subscription = response.get_json()["subscription"]
    assert list(subscription) == [
        "id",
        "state",
        "created_at",
        "source",
        "referrer",
        "subscribable_id",
        "subscribable_type",
        "subscriber",
    ]
    assert subscription["state"] == "inactive"
    assert subscription["subscribable_id"] == 4242
    assert subscription["subscribable_type"] == "form"
    assert list(subscription["subscriber"]) == ["id"]


def test_subscriber_ids_are_stable_per_email_and_subscriptions_increment(api):
    first = subscribe(api, "ada@example.com").get_json()["subscription"]
    again = subscribe(api, "ADA@example.com", form_id=4243).get_json()["subscription"]
    other = subscribe(api, "bo@example.com").get_json()["subscription"]

    assert again["subscriber"]["id"] == first["subscriber"]["id"]
    assert other["subscriber"]["id"] != first["subscriber"]["id"]
    assert [first["id"], again["id"], other["id"]] == [
        first["id"],
        first["id"] + 1,
        first["id"] + 2,
    ]


def test_duplicates_are_counted(api):
    for _ in range(2):
        subscribe(api, "ada@example.com")
    subscribe(api, "bo@example.com", form_id=4243)

    signups = api.get("/_sandbox/subscribers").get_json()
    assert [(s["form_id"], s["email"], s["count"]) for s in signups] == [
        (4242, "ada@example.com", 2),
        (4243, "bo@example.com", 1),
    ]
    summary = api.get("/_sandbox/").get_json()
    assert (summary["subscriptions"], summary["duplicates"]) == (3, 1)


def test_form_encoded_posts_work_too(api):
    response = api.post(
        "/v3/forms/4242/subscribe",
        data={
            "api_secret": SECRET,
            "email": "cy@example.com",
            "fields[company]": "Acme",
            "tags": "101,102",
        },
    )
    assert response.status_code == 200
    [entry] = api.get("/_sandbox/requests").get_json()
    assert entry["json"] == {
        "api_secret": "***",
        "email": "cy@example.com",
        "tags": ["101", "102"],
        "fields": {"company": "Acme"},
    }


@pytest.mark.parametrize(
    "body, expected",
    [
        ({"email": "a@example.com"}, NOT_PRESENT),
        ({"api_key": "nope", "email": "a@example.com"}, NOT_VALID),
    ],
)
def test_unauthorized_bodies_match_the_notes(api, body, expected):
    response = api.post("/v3/forms/4242/subscribe", json=body)
    assert response.status_code == 401
    assert response.get_json() == expected


def test_account_needs_the_secret(api):
    assert api.get("/v3/account", query_string={"api_key": KEY}).status_code == 401
    assert api.get("/v3/account").get_json() == NOT_PRESENT
    response = api.get("/v3/account", query_string={"api_secret": SECRET})
    assert response.status_code == 200
    assert set(response.get_json()) >= {"name", "primary_email_address"}


@pytest.mark.parametrize(
    "path", ["/v3/forms/1/subscribe", "/v3/nothing", "/v3/forms/abc/subscribe"]
)
def test_unknown_entities_are_404_with_the_notes_body(api, path):
    response = api.post(path, json={"api_key": KEY, "email": "a@example.com"})
    assert response.status_code == 404
    assert response.get_json() == NOT_FOUND


@pytest.mark.parametrize(
    "email",
    [
        "no-at-sign",
        "two words@example.com",
        "a@nodot",
        "",
        None,
        "invalid@example.com",
        "Invalid.x@y.org",
    ],
)
def test_implausible_emails_are_422(api, email):
    response = subscribe(api, email)
    assert response.status_code == 422
    assert response.get_json() == INVALID_EMAIL
    assert api.get("/_sandbox/subscribers").get_json() == []


def test_unknown_tag_is_refused(api):
    response = subscribe(api, tags=[999])
    assert response.status_code == 422
    assert response.get_json() == {"error": "Tag not found", "message": ""}


def test_reads_have_the_documented_fields(api):
    auth = {"api_key": KEY}
    form = api.get("/v3/forms", query_string=auth).get_json()["forms"][0]
    assert set(form) == {
        "id",
        "name",
        "created_at",
        "type",
        "format",
        "embed_js",
        "embed_url",
        "archived",
        "uid",
        "title",
        "description",
        "sign_up_button_text",
        "success_message",
    }
    assert form["embed_js"].startswith("https://sandbox.convertkit.invalid/")
    assert set(api.get("/v3/tags", query_string=auth).get_json()["tags"][0]) == {
        "id",
        "name",
        "created_at",
    }
    field = api.get("/v3/custom_fields", query_string=auth).get_json()["custom_fields"][0]
    assert field == {
        "id": 1,
        "name": "ck_field_1_last_name",
        "key": "last_name",
        "label": "Last Name",
    }


def test_rate_limit_counts_every_request_per_key():
    api = create_sandbox(rate_limit="3/60").test_client()
    statuses = [api.get("/v3/forms", query_string={"api_key": KEY}).status_code for _ in range(3)]
    statuses.append(subscribe(api).status_code)

    assert statuses == [200, 200, 200, 429]
    limited = subscribe(api)
    assert limited.status_code == 429
    assert limited.get_data(as_text=True) == "Retry later"
    assert limited.mimetype == "text/plain"
    assert (
        api.get("/v3/forms", query_string={"api_key": "another"}).status_code == 401
    )  # own budget
    assert api.get("/v3/forms", query_string={"api_key": KEY}).status_code == 429


def test_rate_limit_window_rolls():
    api = create_sandbox(rate_limit="2/0.3").test_client()
    auth = {"api_key": KEY}
    assert [api.get("/v3/tags", query_string=auth).status_code for _ in range(3)] == [200, 200, 429]
    time.sleep(0.35)
    assert api.get("/v3/tags", query_string=auth).status_code == 200


def test_clearing_the_log_resets_the_rate_limit():
    api = create_sandbox(rate_limit="1/60").test_client()
    auth = {"api_key": KEY}
    assert [api.get("/v3/tags", query_string=auth).status_code for _ in range(2)] == [200, 429]
    assert api.delete("/_sandbox/requests").status_code == 204
    assert api.get("/_sandbox/requests").get_json() == []
    assert api.get("/v3/tags", query_string=auth).status_code == 200


def test_request_log_scrubs_credentials_and_filters(api):
    subscribe(api)
    api.get("/v3/account", query_string={"api_secret": SECRET})

    log = api.get("/_sandbox/requests").get_json()
    assert [(e["method"], e["path"], e["status"]) for e in log] == [
        ("POST", "/v3/forms/4242/subscribe", 200),
        ("GET", "/v3/account", 200),
    ]
    assert log[0]["json"] == {"api_key": "***", "email": "ada@example.com"}
    assert log[1]["query"] == {"api_secret": "***"}
    assert isinstance(log[0]["at"], float) and log[0]["at"] <= log[1]["at"]
    assert KEY not in str(log) and SECRET not in str(log)
    filtered = api.get("/_sandbox/requests?path_contains=subscribe").get_json()
    assert [e["path"] for e in filtered] == ["/v3/forms/4242/subscribe"]


def test_faults_are_consumed_in_order_and_never_count_as_signups(api):
    queued = api.post(
        "/_sandbox/faults",
        json={
            "faults": [
                {
                    "status": 500,
                    "body": "<html>oops</html>",
                    "content_type": "text/html",
                    "times": 2,
                    "path_contains": "subscribe",
                },
                {"status": 503, "path_contains": "subscribe"},
                {"status": 418, "path_contains": "tags"},
            ]
        },
    )
    assert queued.status_code == 201

    answers = [subscribe(api) for _ in range(4)]

    assert [r.status_code for r in answers] == [500, 500, 503, 200]
    assert answers[0].get_data(as_text=True) == "<html>oops</html>"
    assert answers[0].mimetype == "text/html"
    assert [s["count"] for s in api.get("/_sandbox/subscribers").get_json()] == [1]
    log = api.get("/_sandbox/requests").get_json()
    assert [e["status"] for e in log] == [500, 500, 503, 200]
    assert [f["status"] for f in api.get("/_sandbox/faults").get_json()] == [418]
    assert api.delete("/_sandbox/faults").status_code == 204
    assert api.get("/_sandbox/faults").get_json() == []


def test_a_fault_with_process_loses_the_answer_but_keeps_the_signup(api):
    api.post("/_sandbox/faults", json={"faults": [{"status": 502, "process": True}]})
    assert subscribe(api).status_code == 502
    assert [s["count"] for s in api.get("/_sandbox/subscribers").get_json()] == [1]


def test_a_delay_only_fault_slows_then_handles(api):
    api.post("/_sandbox/faults", json={"faults": [{"delay": 0.2}]})
    started = time.monotonic()
    response = subscribe(api)
    assert response.status_code == 200
    assert time.monotonic() - started >= 0.2


@pytest.mark.parametrize(
    "faults",
    [None, [{"status": 99}], [{"times": 0}], [{"colour": "red"}], [{"process": True}], ["500"]],
)
def test_bad_fault_specs_are_refused(api, faults):
    response = api.post("/_sandbox/faults", json={"faults": faults})
    assert response.status_code == 400
    assert api.get("/_sandbox/faults").get_json() == []


def test_config_changes_apply_at_once(api):
    assert subscribe(api).status_code == 200
    config = api.post(
        "/_sandbox/config",
        json={"api_key": "rotated", "forms": {"4245": "New", "4244": None}, "latency": 0},
    ).get_json()

    assert config["api_key"] == "rotated"
    assert set(config["forms"]) == {"4242", "4243", "4245"}
    assert subscribe(api).get_json() == NOT_VALID
    fixed = api.post(
        "/v3/forms/4245/subscribe", json={"api_key": "rotated", "email": "a@example.com"}
    )
    assert fixed.status_code == 200
    assert api.post("/_sandbox/config", json={"rate_limit": "fast"}).status_code == 400
    assert api.post("/_sandbox/config", json={"colour": "red"}).status_code == 400


def test_latency_delays_every_api_answer(api):
    api.post("/_sandbox/config", json={"latency": 0.15})
    started = time.monotonic()
    api.get("/v3/tags", query_string={"api_key": KEY})
    assert time.monotonic() - started >= 0.15


def test_reset_restores_the_initial_state(api):
    api.post("/_sandbox/config", json={"api_key": "rotated", "rate_limit": "1/60"})
    api.post("/_sandbox/faults", json={"faults": [{"status": 500}]})
    api.post("/v3/forms/4242/subscribe", json={"api_key": "rotated", "email": "a@example.com"})

    assert api.post("/_sandbox/reset").status_code == 204
    assert api.get("/_sandbox/").get_json()["requests"] == 0
    assert api.get("/_sandbox/config").get_json()["api_key"] == KEY
    assert subscribe(api).status_code == 200


def test_server_over_real_http():
    with SandboxServer(api_key="k-123", api_secret="s-456", rate_limit="50/60") as server:
        server.faults([{"status": 500, "path_contains": "subscribe"}])
        body = {"api_key": "k-123", "email": "a@example.com"}
        url = server.api_url + "forms/4242/subscribe"
        assert requests.post(url, json=body, timeout=5).status_code == 500
        assert requests.post(url, json=body, timeout=5).status_code == 200
        assert [e["status"] for e in server.requests(path_contains="subscribe")] == [500, 200]
        server.configure(api_key="k-789")
        assert requests.post(url, json=body, timeout=5).status_code == 401
        assert server.summary()["config"]["api_key"] == "k-789"
        server.clear_requests()
        assert server.requests() == []
        server.reset()
        assert server.subscribers() == []


def test_close_fault_drops_the_connection():
    with SandboxServer() as server:
        server.faults([{"close": True}])
        with pytest.raises(requests.ConnectionError):
            requests.get(server.api_url + "forms", params={"api_key": KEY}, timeout=5)
        assert [e["status"] for e in server.requests()] == [None]
        assert requests.get(server.api_url + "forms", params={"api_key": KEY}, timeout=5).ok


def test_cli_serves_until_sigterm():
    env = {**os.environ, "SANDBOX_API_KEY": "cli-key", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "convertkit.sandbox", "--port", "0"]
    with subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True) as process:
        try:
            line = process.stdout.readline().strip()
            assert line.startswith("ConvertKit sandbox on http://127.0.0.1:")
            assert line.endswith("/v3/ (api_key=cli-key)")
            api_url = line.split()[3]
            forms = requests.get(api_url + "forms", params={"api_key": "cli-key"}, timeout=5)
            assert forms.status_code == 200
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=5) == 0
            assert process.stdout.read() == ""  # quiet: no per-request lines
        finally:
            if process.poll() is None:
                process.kill()


def test_concurrent_signups_share_one_subscriber():
    with SandboxServer(rate_limit=None) as server, requests.Session() as http:
        url = server.api_url + "forms/4242/subscribe"
        body = {"api_key": KEY, "email": "same@example.com"}
        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(lambda _: http.post(url, json=body, timeout=5), range(24)))

        assert {answer.status_code for answer in answers} == {200}
        ids = {answer.json()["subscription"]["subscriber"]["id"] for answer in answers}
        subscription_ids = {answer.json()["subscription"]["id"] for answer in answers}
        assert len(ids) == 1 and len(subscription_ids) == 24
        assert [s["count"] for s in server.subscribers()] == [24]
