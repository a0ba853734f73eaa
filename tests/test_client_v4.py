"""The v4 client against the sandbox's v4 API over real loopback HTTP: what it sends, and what it raises."""

from __future__ import annotations

import logging

import pytest

from convertkit import (
    APITimeout,
    ClientV4,
    Invalid,
    NotFound,
    OddAnswer,
    RateLimited,
    ServerError,
    Unauthorized,
)
from convertkit.sandbox import SandboxServer

V3_KEY = "kEy-9f3a1c7e5b2d4c6a"
V4_KEY = "kit_v4-1a2b3c4d5e6f7a8b"


@pytest.fixture(scope="module")
def sandbox():
    with SandboxServer(api_key=V3_KEY, api_secret="sEcReT-0d8b6f4a2c9e7b5d", v4_api_key=V4_KEY) as server:
        yield server


@pytest.fixture(autouse=True)
def fresh(sandbox):
    sandbox.reset()


@pytest.fixture
def client(sandbox):
    with ClientV4(V4_KEY, base_url=sandbox.api_v4_url, timeout=2) as client:
        yield client


def test_the_key_travels_only_in_the_header(client, sandbox):
    client.upsert_subscriber("ann@example.com", first_name="Ann", fields={"company": "Acme"})
    client.forms()
    for call in sandbox.requests():
        assert V4_KEY not in str(call["query"]) and V4_KEY not in str(call["json"])
    [create] = sandbox.requests(path_contains="/v4/subscribers")
    assert create["json"] == {
        "email_address": "ann@example.com",
        "state": "inactive",
        "first_name": "Ann",
        "fields": {"company": "Acme"},
    }


def test_one_signup_in_three_calls(client, sandbox):
    person = client.upsert_subscriber("bob@example.com")
    added = client.add_to_form(4242, "bob@example.com", referrer="https://example.com/p?utm_source=news")
    tagged = client.tag_subscriber(101, "bob@example.com")
    assert person["state"] == "inactive"  # the form's double opt-in still asks them to confirm
    assert added["id"] == tagged["id"] == person["id"]
    assert added["referrer_utm_parameters"]["source"] == "news"
    assert client.add_to_form(4242, "bob@example.com")["id"] == person["id"]  # 200: already there, harmless


def test_look_ups_find_an_unconfirmed_person_and_the_form_members(client):
    assert client.find_subscriber("cat@example.com") is None
    client.upsert_subscriber("cat@example.com")
    client.add_to_form(4243, "cat@example.com")
    found = client.find_subscriber("cat@example.com")
    assert found["state"] == "inactive"
    members, cursor = client.form_subscribers(4243, added_after="2000-01-01T00:00:00Z")
    assert [m["id"] for m in members] == [found["id"]] and cursor is None
    assert client.form_subscribers(4243, added_after="2999-01-01T00:00:00Z") == ([], None)


def test_every_page_of_a_list_is_read(client, sandbox, monkeypatch):
    monkeypatch.setattr("convertkit.v4.PER_PAGE", 2)
    sandbox.configure(forms={str(5000 + i): f"Form {i}" for i in range(5)})
    assert len(client.forms()) == 3 + 5  # the sandbox's three and five more, two per page
    assert len(sandbox.requests(path_contains="/v4/forms")) == 4


@pytest.mark.parametrize(
    "fault, cls, message",
    [
        ({"status": 422, "body": {"errors": ["Email address is invalid"]}}, Invalid, "Email address is invalid"),
        ({"status": 404, "body": {"errors": ["Not Found"]}}, NotFound, "Not Found"),
        ({"status": 429, "body": "Retry later", "content_type": "text/plain"}, RateLimited, None),
        ({"status": 503, "body": "<html>busy</html>", "content_type": "text/html"}, ServerError, None),
        ({"status": 200, "body": "", "process": True}, OddAnswer, None),
    ],
)
def test_errors_are_the_same_typed_errors_as_v3(client, sandbox, fault, cls, message):
    sandbox.faults([{**fault, "path_contains": "/v4/subscribers"}])
    with pytest.raises(cls) as caught:
        client.upsert_subscriber("dan@example.com")
    if message:
        assert caught.value.message == message


def test_a_v3_key_is_refused_by_v4(sandbox):
    with ClientV4(V3_KEY, base_url=sandbox.api_v4_url) as wrong, pytest.raises(Unauthorized):
        wrong.forms()


def test_a_trickled_answer_ends_at_the_deadline(sandbox):
    sandbox.faults([{"trickle": 0.05, "path_contains": "/v4/subscribers"}])
    with ClientV4(V4_KEY, base_url=sandbox.api_v4_url, timeout=1) as client, pytest.raises(APITimeout):
        client.upsert_subscriber("eve@example.com")


def test_the_key_never_reaches_a_log_or_a_repr(client, sandbox, caplog):
    caplog.set_level(logging.DEBUG)
    client.forms()
    sandbox.faults([{"status": 500, "body": f"echo {V4_KEY}"}])
    with pytest.raises(ServerError) as caught:
        client.tags()
    assert V4_KEY not in caplog.text and V4_KEY not in repr(client) and V4_KEY not in caught.value.body
