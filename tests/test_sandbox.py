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
    CREATED_AT,
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


@pytest.mark.parametrize("path", ["/v3/forms/1/subscribe", "/v3/nothing", "/v3/forms/abc/subscribe"])
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
    assert api.get("/v3/forms", query_string={"api_key": "another"}).status_code == 401  # own budget
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
    fixed = api.post("/v3/forms/4245/subscribe", json={"api_key": "rotated", "email": "a@example.com"})
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


# Kit's v4 API: same account, its own key, header and error shape.

V4_KEY = "sandbox_v4_api_key"
V4 = {"X-Kit-Api-Key": V4_KEY}


def upsert(api, email="ada@example.com", **body):
    return api.post("/v4/subscribers", json={"email_address": email, **body}, headers=V4)


def add_to_form(api, email="ada@example.com", form_id=4242, **body):
    return api.post(f"/v4/forms/{form_id}/subscribers", json={"email_address": email, **body}, headers=V4)


def v4_get(api, path, **params):
    return api.get(f"/v4/{path}", query_string=params, headers=V4)


def test_v4_upsert_creates_then_updates_but_keeps_the_state(api):
    created = upsert(api, first_name="Ada", state="inactive", fields={"company": "Acme"})
    assert created.status_code == 201
    subscriber = created.get_json()["subscriber"]
    assert list(subscriber) == ["id", "first_name", "email_address", "state", "created_at", "fields"]
    assert (subscriber["first_name"], subscriber["state"]) == ("Ada", "inactive")
    assert subscriber["fields"] == {"last_name": None, "company": "Acme"}
    assert "warnings" not in created.get_json()

    again = upsert(api, "ADA@example.com", first_name="Augusta", state="active")
    assert again.status_code == 200
    updated = again.get_json()["subscriber"]
    assert updated["id"] == subscriber["id"]
    assert (updated["first_name"], updated["state"]) == ("Augusta", "inactive")  # the state is not changed
    assert updated["fields"]["company"] == "Acme"


def test_v4_upsert_defaults_to_active(api):
    assert upsert(api).get_json()["subscriber"]["state"] == "active"


def test_v4_unknown_custom_fields_are_ignored_and_listed(api):
    body = upsert(api, fields={"company": "Acme", "shoe_size": "9"}).get_json()
    assert body["subscriber"]["fields"] == {"last_name": None, "company": "Acme"}
    assert body["warnings"] == ["Custom field 'shoe_size' does not exist"]


def test_v4_more_than_ten_fields_is_accepted_later(api):
    ten = {f"f{i}": "x" for i in range(9)} | {"company": "Acme"}
    assert upsert(api, fields=ten).status_code == 201
    response = upsert(api, fields=ten | {"last_name": "Lovelace"})
    assert response.status_code == 202
    assert response.get_json()["subscriber"]["fields"] == {"last_name": "Lovelace", "company": "Acme"}


@pytest.mark.parametrize("email", ["no-at-sign", "a@nodot", "", None, "invalid@example.com", "Invalid.x@y.org"])
def test_v4_implausible_emails_are_422(api, email):
    response = upsert(api, email)
    assert response.status_code == 422
    assert response.get_json() == {"errors": ["Email address is invalid"]}
    assert v4_get(api, "subscribers", status="all").get_json()["subscribers"] == []


@pytest.mark.parametrize("body", [{"state": "happy"}, {"fields": ["company"]}, {"first_name": 7}])
def test_v4_bad_upsert_parameters_are_422(api, body):
    response = upsert(api, **body)
    assert response.status_code == 422
    assert len(response.get_json()["errors"]) == 1


@pytest.mark.parametrize(
    "headers, query",
    [
        ({}, {}),
        ({"X-Kit-Api-Key": "wrong"}, {}),
        ({"X-Kit-Api-Key": KEY}, {}),  # v3 keys do not work on v4
        ({"X-Kit-Api-Key": SECRET}, {}),
        ({"Authorization": f"Bearer {V4_KEY}"}, {}),
        ({}, {"api_key": V4_KEY}),  # never from the query string
        ({}, {"X-Kit-Api-Key": V4_KEY}),
    ],
)
def test_v4_takes_only_its_own_key_in_the_header(api, headers, query):
    response = api.get("/v4/forms", headers=headers, query_string=query)
    assert response.status_code == 401
    assert response.get_json() == {"errors": ["The access token is invalid"]}
    assert V4_KEY not in str(api.get("/_sandbox/requests").get_json())


@pytest.mark.parametrize("name", ["api_key", "api_secret"])
def test_the_v4_key_does_not_work_on_v3(api, name):
    response = api.get("/v3/forms", query_string={name: V4_KEY})
    assert response.status_code == 401
    assert response.get_json() == NOT_VALID
    assert api.get("/v3/forms", headers=V4).get_json() == NOT_PRESENT


def test_v4_add_to_form_then_again(api):
    upsert(api, first_name="Ada", state="inactive")
    referrer = "https://example.com/launch?utm_source=news&utm_medium=email&utm_campaign=spring"
    first = add_to_form(api, referrer=referrer)
    assert first.status_code == 201
    member = first.get_json()["subscriber"]
    assert list(member) == [
        "id",
        "first_name",
        "email_address",
        "state",
        "created_at",
        "added_at",
        "fields",
        "referrer",
        "referrer_utm_parameters",
    ]
    assert member["referrer"] == referrer
    assert member["referrer_utm_parameters"] == {
        "source": "news",
        "medium": "email",
        "campaign": "spring",
        "term": "",
        "content": "",
    }
    assert member["state"] == "inactive"  # adding to a form leaves the state alone

    time.sleep(0.01)
    again = add_to_form(api, "ADA@example.com", referrer="https://elsewhere.example/")
    assert again.status_code == 200
    kept = again.get_json()["subscriber"]
    assert (kept["added_at"], kept["referrer"]) == (member["added_at"], referrer)  # the first addition's
    signups = api.get("/_sandbox/subscribers").get_json()
    assert [(s["form_id"], s["email"], s["count"], s["version"]) for s in signups] == [
        (4242, "ada@example.com", 2, "v4")
    ]
    assert api.get("/_sandbox/").get_json()["duplicates"] == 1


@pytest.mark.parametrize(
    "path, body, status, errors",
    [
        ("/v4/forms/1/subscribers", {"email_address": "ada@example.com"}, 404, ["Not Found"]),
        ("/v4/forms/4242/subscribers", {}, 422, ["Email address or subscriber id is required"]),
        ("/v4/forms/4242/subscribers", {"email_address": "bo@example.com"}, 422, ["Subscriber does not exist"]),
        ("/v4/forms/4242/subscribers/1", {}, 422, ["Subscriber does not exist"]),
        ("/v4/tags/999/subscribers", {"email_address": "ada@example.com"}, 404, ["Not Found"]),
        ("/v4/tags/101/subscribers", {"email_address": "bo@example.com"}, 422, ["Subscriber does not exist"]),
        ("/v4/tags/101/subscribers", {"email_address": ""}, 422, ["Email address or subscriber id is required"]),
    ],
)
def test_v4_add_refusals(api, path, body, status, errors):
    upsert(api)
    response = api.post(path, json=body, headers=V4)
    assert response.status_code == status
    assert response.get_json() == {"errors": errors}
    assert api.get("/_sandbox/subscribers").get_json() == []


def test_v4_tagging_then_again_and_by_id(api):
    subscriber_id = upsert(api).get_json()["subscriber"]["id"]
    first = api.post("/v4/tags/101/subscribers", json={"email_address": "ada@example.com"}, headers=V4)
    assert first.status_code == 201
    assert first.get_json()["subscriber"]["tagged_at"]
    assert api.post(f"/v4/tags/101/subscribers/{subscriber_id}", headers=V4).status_code == 200
    assert [(s["tag_id"], s["count"]) for s in api.get("/_sandbox/subscribers").get_json()] == [(101, 2)]
    members = v4_get(api, "tags/101/subscribers").get_json()["subscribers"]
    assert [m["id"] for m in members] == [subscriber_id]


def test_v4_finds_a_v3_signup_only_with_status(api):
    subscribe(api, first_name="Ada")  # v3: a new subscriber is unconfirmed (double opt-in)

    assert v4_get(api, "subscribers", email_address="ada@example.com").get_json()["subscribers"] == []
    for status in ("all", "inactive"):
        [found] = v4_get(api, "subscribers", email_address="ADA@example.com", status=status).get_json()["subscribers"]
        assert (found["first_name"], found["state"]) == ("Ada", "inactive")
    assert v4_get(api, "forms/4242/subscribers").get_json()["subscribers"] == []
    [member] = v4_get(api, "forms/4242/subscribers", status="all").get_json()["subscribers"]
    assert (member["email_address"], member["referrer"]) == ("ada@example.com", None)
    assert add_to_form(api).status_code == 200  # already on the form, through v3
    assert v4_get(api, f"subscribers/{found['id']}").get_json()["subscriber"]["email_address"] == "ada@example.com"
    assert v4_get(api, "subscribers/1").status_code == 404


def test_v3_sees_what_v4_did_and_both_count_in_one_counter(api):
    subscriber_id = upsert(api, state="inactive").get_json()["subscriber"]["id"]
    assert add_to_form(api, form_id=4243).status_code == 201

    secret = {"api_secret": SECRET}
    [found] = api.get("/v3/subscribers", query_string=secret | {"email_address": "ada@example.com"}).get_json()[
        "subscribers"
    ]
    assert found["id"] == subscriber_id
    subscriptions = api.get("/v3/forms/4243/subscriptions", query_string=secret).get_json()["subscriptions"]
    assert [s["subscriber"]["id"] for s in subscriptions] == [subscriber_id]

    assert subscribe(api, form_id=4243).get_json()["subscription"]["subscriber"]["id"] == subscriber_id
    signups = api.get("/_sandbox/subscribers").get_json()
    assert [(s["form_id"], s["count"], s["version"]) for s in signups] == [(4243, 2, "v3")]


def test_v4_lists_have_the_documented_shapes(api):
    form = v4_get(api, "forms").get_json()["forms"][0]
    assert list(form) == [
        "id",
        "name",
        "created_at",
        "type",
        "format",
        "embed_js",
        "embed_url",
        "archived",
        "uid",
    ]
    assert v4_get(api, "tags").get_json()["tags"][0] == {"id": 101, "name": "launch", "created_at": CREATED_AT}
    fields = v4_get(api, "custom_fields").get_json()
    assert fields["custom_fields"][0] == {
        "id": 1,
        "name": "ck_field_1_last_name",
        "key": "last_name",
        "label": "Last Name",
    }
    assert set(fields["pagination"]) == {"has_previous_page", "has_next_page", "start_cursor", "end_cursor", "per_page"}
    account = v4_get(api, "account").get_json()["account"]
    assert (account["name"], account["primary_email_address"]) == ("Sandbox", "owner@sandbox.invalid")


def test_v4_forms_by_status():
    api = create_sandbox(forms={4242: "Live", 4243: {"name": "Old", "archived": True}}).test_client()
    assert [f["id"] for f in v4_get(api, "forms").get_json()["forms"]] == [4242]
    assert [(f["id"], f["archived"]) for f in v4_get(api, "forms", status="archived").get_json()["forms"]] == [
        (4243, True)
    ]
    assert [f["id"] for f in v4_get(api, "forms", status="all").get_json()["forms"]] == [4242, 4243]
    assert v4_get(api, "forms", status="trashed").get_json()["forms"] == []
    assert v4_get(api, "forms", status="gone").status_code == 422

    config = api.post(
        "/_sandbox/config", json={"forms": {"4242": {"name": "Live", "archived": True}, "4243": "Back"}}
    ).get_json()
    assert config["forms"] == {"4242": {"name": "Live", "archived": True}, "4243": "Back"}
    assert [f["id"] for f in v4_get(api, "forms").get_json()["forms"]] == [4243]
    assert api.post("/_sandbox/config", json={"forms": {"1": {"archived": True}}}).status_code == 400


def test_v4_pagination_walks_forward_and_back(api):
    for i in range(5):
        upsert(api, f"p{i}@example.com")

    seen, after, pages = [], None, []
    while True:
        params = {"per_page": 2} | ({"after": after} if after else {})
        body = v4_get(api, "subscribers", **params).get_json()
        pages.append(body["pagination"])
        seen += [s["email_address"] for s in body["subscribers"]]
        if not body["pagination"]["has_next_page"]:
            break
        after = body["pagination"]["end_cursor"]

    assert seen == [f"p{i}@example.com" for i in range(5)]
    assert [(p["has_previous_page"], p["has_next_page"], p["per_page"]) for p in pages] == [
        (False, True, 2),
        (True, True, 2),
        (True, False, 2),
    ]
    back = v4_get(api, "subscribers", per_page=2, before=pages[2]["start_cursor"]).get_json()
    assert [s["email_address"] for s in back["subscribers"]] == ["p2@example.com", "p3@example.com"]
    assert back["pagination"]["start_cursor"] == pages[1]["start_cursor"]
    assert v4_get(api, "subscribers").get_json()["pagination"]["per_page"] == 500
    assert v4_get(api, "subscribers", per_page=5000).get_json()["pagination"]["per_page"] == 1000
    for bad in ({"per_page": "0"}, {"per_page": "x"}, {"after": "not-a-cursor"}, {"before": "WyJ4Il0="}):
        response = v4_get(api, "subscribers", **bad)
        assert response.status_code == 422, bad
        assert len(response.get_json()["errors"]) == 1


def test_v4_form_members_page_and_filter_by_added_after(api):
    for i in range(3):
        upsert(api, f"m{i}@example.com")
        add_to_form(api, f"m{i}@example.com", referrer=f"https://example.com/?utm_term={i}")
        time.sleep(0.005)  # added_at has millisecond precision
    members = v4_get(api, "forms/4242/subscribers").get_json()["subscribers"]
    assert [m["referrer_utm_parameters"]["term"] for m in members] == ["0", "1", "2"]

    first = v4_get(api, "forms/4242/subscribers", per_page=2).get_json()
    rest = v4_get(api, "forms/4242/subscribers", per_page=2, after=first["pagination"]["end_cursor"]).get_json()
    assert [m["email_address"] for m in first["subscribers"] + rest["subscribers"]] == [
        "m0@example.com",
        "m1@example.com",
        "m2@example.com",
    ]
    assert rest["pagination"]["has_next_page"] is False

    last_added = members[-1]["added_at"]
    later = v4_get(api, "forms/4242/subscribers", added_after=last_added).get_json()["subscribers"]
    assert [m["email_address"] for m in later] == ["m2@example.com"]
    assert v4_get(api, "forms/4242/subscribers", added_after="2999-01-01").get_json()["subscribers"] == []
    assert len(v4_get(api, "forms/4242/subscribers", added_after="2000-01-01").get_json()["subscribers"]) == 3
    assert v4_get(api, "forms/4242/subscribers", added_after="yesterday").status_code == 422
    assert v4_get(api, "forms/1/subscribers").get_json() == {"errors": ["Not Found"]}


@pytest.mark.parametrize("method, path", [("GET", "/v4/nothing"), ("DELETE", "/v4/forms"), ("GET", "/v4/forms/x")])
def test_v4_unknown_paths_are_404_with_v4_body(api, method, path):
    response = api.open(path, method=method, headers=V4)
    assert response.status_code == 404
    assert response.get_json() == {"errors": ["Not Found"]}


def test_each_key_has_its_own_rate_bucket():
    api = create_sandbox(rate_limit="2/60").test_client()
    wrong = {"X-Kit-Api-Key": "wrong"}
    assert [api.get("/v4/tags", headers=wrong).status_code for _ in range(3)] == [401, 401, 429]
    assert [v4_get(api, "tags").status_code for _ in range(3)] == [200, 200, 429]
    limited = v4_get(api, "tags")
    assert (limited.status_code, limited.get_data(as_text=True), limited.mimetype) == (429, "Retry later", "text/plain")
    assert api.get("/v3/tags", query_string={"api_key": KEY}).status_code == 200
    assert api.get("/v3/account", query_string={"api_secret": SECRET}).status_code == 200
    assert api.get("/v3/account", query_string={"api_secret": SECRET}).status_code == 200
    assert api.get("/v3/account", query_string={"api_secret": SECRET}).status_code == 429
    assert api.get("/v3/tags", query_string={"api_key": KEY}).status_code == 200


def test_v4_calls_are_logged_without_any_key(api):
    upsert(api)
    api.get(
        "/v4/subscribers",
        query_string={"email_address": "ada@example.com", "api_key": "leak", "note": V4_KEY},
        headers=V4,
    )
    log = api.get("/_sandbox/requests?path_contains=/v4/").get_json()
    assert [(e["method"], e["path"], e["status"]) for e in log] == [
        ("POST", "/v4/subscribers", 201),
        ("GET", "/v4/subscribers", 200),
    ]
    assert log[0]["json"] == {"email_address": "ada@example.com"}
    assert log[1]["query"] == {"email_address": "ada@example.com", "api_key": "***", "note": "***"}
    assert V4_KEY not in str(log) and "leak" not in str(log)
    assert api.get("/_sandbox/").get_json()["statuses"] == {"201": 1, "200": 1}


def test_faults_reach_v4_paths_in_v4_shape(api):
    upsert(api)
    api.post(
        "/_sandbox/faults",
        json={
            "faults": [
                {"status": 404, "path_contains": "/v4/forms/"},
                {"status": 503, "path_contains": "/v4/"},
                {"status": 502, "process": True, "path_contains": "/v4/forms/"},
            ]
        },
    )
    missing = add_to_form(api)
    assert (missing.status_code, missing.get_json()) == (404, {"errors": ["Not Found"]})
    overloaded = add_to_form(api)
    assert overloaded.status_code == 503 and overloaded.mimetype == "text/html"
    assert add_to_form(api).status_code == 502  # handled, the answer lost
    assert add_to_form(api).status_code == 200  # so the retry finds the person already on the form
    assert [s["count"] for s in api.get("/_sandbox/subscribers").get_json()] == [2]
    assert api.get("/_sandbox/").get_json()["in_flight"] == 0


def test_v4_key_is_configurable_and_reset(api):
    config = api.post("/_sandbox/config", json={"v4_api_key": "rotated-v4"}).get_json()
    assert config["v4_api_key"] == "rotated-v4"
    assert v4_get(api, "tags").status_code == 401
    assert api.get("/v4/tags", headers={"X-Kit-Api-Key": "rotated-v4"}).status_code == 200
    for bad in ("", KEY, SECRET, 7):
        assert api.post("/_sandbox/config", json={"v4_api_key": bad}).status_code == 400
    api.post("/_sandbox/reset")
    assert v4_get(api, "tags").status_code == 200
    assert (
        create_sandbox(v4_api_key="mine").test_client().get("/v4/tags", headers={"X-Kit-Api-Key": "mine"}).status_code
        == 200
    )
    with pytest.raises(ValueError):
        create_sandbox(api_key="same", v4_api_key="same")


def test_v4_over_real_http_with_latency_and_close():
    with SandboxServer(v4_api_key="v4-123", latency=0.1) as server, requests.Session() as http:
        assert server.v4_api_key == "v4-123"
        assert server.api_v4_url == server.url + "/v4/"
        assert server.summary()["api_v4_url"] == server.url + "/v4/"
        http.headers["X-Kit-Api-Key"] = "v4-123"
        started = time.monotonic()
        created = http.post(server.api_v4_url + "subscribers", json={"email_address": "a@example.com"}, timeout=5)
        assert created.status_code == 201 and time.monotonic() - started >= 0.1
        server.faults([{"close": True, "path_contains": "/v4/forms/4242/subscribers", "method": "POST"}])
        with pytest.raises(requests.ConnectionError):
            http.post(server.api_v4_url + "forms/4242/subscribers", json={"email_address": "a@example.com"}, timeout=5)
        added = http.post(
            server.api_v4_url + "forms/4242/subscribers", json={"email_address": "a@example.com"}, timeout=5
        )
        assert added.status_code == 201  # the dropped call was never handled
        server.wait_idle()
        assert [e["status"] for e in server.requests(path_contains="/v4/forms/")] == [None, 201]


def test_cli_takes_the_v4_key_from_the_environment():
    env = {**os.environ, "SANDBOX_V4_API_KEY": "cli-v4", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "convertkit.sandbox", "--port", "0"]
    with subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        try:
            api_url = process.stdout.readline().split()[3]
            v4_line = process.stderr.readline().strip()
            assert v4_line == f"Kit v4 API on {api_url[:-4]}/v4/ (X-Kit-Api-Key: cli-v4)"
            v4_url = api_url[:-4] + "/v4/"
            assert requests.get(v4_url + "tags", headers={"X-Kit-Api-Key": "cli-v4"}, timeout=5).status_code == 200
            assert requests.get(v4_url + "tags", headers=V4, timeout=5).status_code == 401
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=5) == 0
        finally:
            if process.poll() is None:
                process.kill()
