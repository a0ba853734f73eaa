"""The client against the sandbox over real loopback HTTP: what it sends, and what it raises."""

from __future__ import annotations

import logging
import socket
import threading
import time
import traceback
from http import HTTPStatus

import pytest
import requests

from convertkit import (
    APIConnectionError,
    APITimeout,
    Client,
    ConvertKitError,
    Forbidden,
    Invalid,
    MissingSecret,
    NotFound,
    OddAnswer,
    RateLimited,
    Redirected,
    ServerError,
    Unauthorized,
    error_for_status,
)
from convertkit.client import MAX_ANSWER_BYTES
from convertkit.sandbox import SandboxServer

KEY = "kEy-9f3a1c7e5b2d4c6a"
SECRET = "sEcReT-0d8b6f4a2c9e7b5d"
HTML_500 = "<html><body><h1>We're sorry, but something went wrong.</h1></body></html>"


@pytest.fixture(scope="module")
def sandbox():
    with SandboxServer(api_key=KEY, api_secret=SECRET) as server:
        yield server


@pytest.fixture(autouse=True)
def fresh(sandbox):
    sandbox.reset()


@pytest.fixture
def client(sandbox):
    with Client(KEY, api_secret=SECRET, base_url=sandbox.api_url, timeout=(2, 2)) as client:
        yield client


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_answers(sandbox, timeout: float = 5.0) -> None:
    """A request the client gave up on is still being handled; let it finish first."""
    deadline = time.monotonic() + timeout
    while any(entry["status"] is None for entry in sandbox.requests()):
        assert time.monotonic() < deadline, "the sandbox never answered"
        time.sleep(0.05)


def assert_no_credentials(text: str) -> None:
    assert KEY not in text
    assert SECRET not in text


class RecordingSession(requests.Session):
    """Remembers every call's keyword arguments, to prove what the client passes to requests."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[dict] = []

    def request(self, method, url, **kwargs):
        self.calls.append({"method": method, "url": url, **kwargs})
        return super().request(method, url, **kwargs)


def test_subscribe_sends_documented_json_body(client, sandbox):
    subscription = client.subscribe_to_form(
        4242, "ada@example.com", first_name="Ada", fields={"last_name": "Lovelace"}, tags=[101]
    )

    assert subscription["state"] == "inactive"
    assert subscription["subscribable_id"] == 4242
    assert isinstance(subscription["subscriber"]["id"], int)
    [sent] = sandbox.requests()
    assert sent["method"] == "POST"
    assert sent["path"] == "/v3/forms/4242/subscribe"
    assert sent["query"] == {}
    assert sent["content_type"] == "application/json; charset=utf-8"
    assert sent["user_agent"] == "convertkit-optin/0.1 (+python-requests)"
    assert sent["json"] == {
        "api_key": "***",
        "email": "ada@example.com",
        "first_name": "Ada",
        "fields": {"last_name": "Lovelace"},
        "tags": [101],
    }


def test_subscribe_omits_empty_and_deprecated_fields(client, sandbox):
    client.subscribe_to_form("4243", "bo@example.com", first_name="", fields={}, tags=[])

    [sent] = sandbox.requests()
    assert sent["json"] == {"api_key": "***", "email": "bo@example.com"}


def test_subscribe_to_tag(client, sandbox):
    subscription = client.subscribe_to_tag(102, "cy@example.com")

    assert subscription["subscribable_type"] == "tag"
    assert sandbox.requests()[0]["path"] == "/v3/tags/102/subscribe"


@pytest.mark.parametrize("bad_id", ["../account", "42/subscribe?x=", "", -1, True, "4242 "])
def test_ids_that_could_change_the_path_are_refused_before_sending(client, sandbox, bad_id):
    if bad_id == "4242 ":  # surrounding spaces are harmless and stripped
        client.subscribe_to_form(bad_id, "dee@example.com")
        assert sandbox.requests()[0]["path"] == "/v3/forms/4242/subscribe"
        return
    with pytest.raises(ValueError):
        client.subscribe_to_form(bad_id, "dee@example.com")
    assert sandbox.requests() == []


def test_reads_send_the_key_in_the_query(client, sandbox):
    forms = client.forms()
    tags = client.tags()
    fields = client.custom_fields()

    assert {"id": 4242, "name": "Launch updates"}.items() <= forms[0].items()
    assert [tag["id"] for tag in tags] == [101, 102]
    assert "last_name" in [field["key"] for field in fields]
    sent = sandbox.requests()
    assert [entry["path"] for entry in sent] == ["/v3/forms", "/v3/tags", "/v3/custom_fields"]
    assert all(entry["query"] == {"api_key": "***"} for entry in sent)
    assert all(entry["method"] == "GET" and entry["json"] is None for entry in sent)


def test_account_uses_the_secret_not_the_key(client, sandbox):
    assert "primary_email_address" in client.account()
    assert sandbox.requests()[0]["query"] == {"api_secret": "***"}


def test_account_without_a_secret_fails_before_sending(sandbox):
    with Client(KEY, base_url=sandbox.api_url) as client, pytest.raises(MissingSecret) as caught:
        client.account()
    assert isinstance(caught.value, ValueError)
    assert sandbox.requests() == []


def test_empty_key_is_refused_at_construction():
    with pytest.raises(ValueError):
        Client("  ")


def test_base_url_without_trailing_slash_still_joins(sandbox):
    with Client(KEY, base_url=sandbox.api_url.rstrip("/")) as client:
        client.forms()
    assert sandbox.requests()[0]["path"] == "/v3/forms"


@pytest.mark.parametrize(
    "fault, cls, message",
    [
        (
            {
                "status": 401,
                "body": {"error": "Authorization Failed", "message": "API Key not present"},
            },
            Unauthorized,
            "API Key not present",
        ),
        (
            {"status": 403, "body": {"error": "Subscriber limit reached", "message": ""}},
            Forbidden,
            "Subscriber limit reached",
        ),
        ({"status": 404, "body": "<html>Not here</html>"}, NotFound, NotFound.default_message),
        (
            {"status": 422, "body": {"error": "Tag not found", "message": ""}},
            Invalid,
            "Tag not found",
        ),
        ({"status": 422, "body": {"error": "", "message": ""}}, Invalid, Invalid.default_message),
        ({"status": 400, "body": "Bad Request"}, Invalid, Invalid.default_message),
        (
            {"status": 409, "body": {"error": "Conflict", "message": "Already busy"}},
            Invalid,
            "Already busy",
        ),
        ({"status": 413}, Invalid, HTTPStatus(413).phrase),
        (
            {"status": 429, "body": "Retry later", "content_type": "text/plain"},
            RateLimited,
            RateLimited.default_message,
        ),
        (
            {"status": 500, "body": HTML_500, "content_type": "text/html"},
            ServerError,
            ServerError.default_message,
        ),
        ({"status": 502, "body": ""}, ServerError, ServerError.default_message),
        (
            {"status": 503, "body": {"error": "Unavailable", "message": "Try again soon"}},
            ServerError,
            "Try again soon",
        ),
        ({"status": 301, "body": ""}, Redirected, Redirected.default_message),
    ],
)
def test_error_statuses_map_to_exceptions(client, sandbox, fault, cls, message):
    sandbox.faults([fault])

    with pytest.raises(cls) as caught:
        client.subscribe_to_form(4242, "ed@example.com")

    exc = caught.value
    assert type(exc) is cls
    assert exc.status == fault["status"]
    assert exc.message == message
    assert str(exc) == f"ConvertKit answered {fault['status']}: {message}"
    if isinstance(fault.get("body"), str):
        assert exc.body == fault["body"]
    assert sandbox.subscribers() == []


def test_wrong_key_is_unauthorized(sandbox):
    with (
        Client("not-" + KEY, base_url=sandbox.api_url) as client,
        pytest.raises(Unauthorized) as caught,
    ):
        client.subscribe_to_form(4242, "fay@example.com")
    assert caught.value.error == "Authorization Failed"
    assert caught.value.message == "API Key not valid"


def test_unknown_form_is_not_found(client):
    with pytest.raises(NotFound) as caught:
        client.subscribe_to_form(999999, "gus@example.com")
    assert caught.value.message == "The entity you were trying to find doesn't exist"


def test_invalid_email_message_is_for_the_visitor(client):
    with pytest.raises(Invalid) as caught:
        client.subscribe_to_form(4242, "invalid@example.com")
    assert caught.value.message == "Email address is invalid"
    assert caught.value.error == "Error updating subscriber"


def test_rate_limit_from_the_sandbox(client, sandbox):
    sandbox.configure(rate_limit="2/60")
    client.forms()
    client.forms()
    with pytest.raises(RateLimited) as caught:
        client.forms()
    assert caught.value.body == "Retry later"


def test_slow_answer_is_a_timeout(sandbox):
    sandbox.faults([{"delay": 1.0, "path_contains": "subscribe"}])
    with Client(KEY, base_url=sandbox.api_url, timeout=(1, 0.3)) as client:
        with pytest.raises(APITimeout) as caught:
            client.subscribe_to_form(4242, "hal@example.com")
    assert isinstance(caught.value, APIConnectionError)
    assert isinstance(caught.value.__cause__, requests.Timeout)
    assert caught.value.status is None
    wait_for_answers(sandbox)
    [signup] = sandbox.subscribers()  # a time-out does not mean ConvertKit did nothing
    assert signup["email"] == "hal@example.com"


def test_closed_port_is_a_connection_error():
    with Client(KEY, base_url=f"http://127.0.0.1:{closed_port()}/v3/") as client:
        with pytest.raises(APIConnectionError) as caught:
            client.forms()
    assert not isinstance(caught.value, APITimeout)
    assert isinstance(caught.value.__cause__, requests.ConnectionError)
    assert str(caught.value).startswith("could not reach ConvertKit at 127.0.0.1:")


def test_dropped_connection_is_a_connection_error(client, sandbox):
    sandbox.faults([{"close": True}])
    with pytest.raises(APIConnectionError):
        client.subscribe_to_form(4242, "ida@example.com")
    assert sandbox.subscribers() == []


@pytest.mark.parametrize("body", ["", "OK", "[1, 2]", "<html>Done</html>", "[" * 100_000])
def test_a_2xx_that_is_not_a_json_object_is_an_odd_answer_that_may_have_arrived(client, sandbox, body):
    sandbox.faults([{"status": 200, "body": body, "content_type": "text/plain", "process": True}])
    with pytest.raises(OddAnswer) as caught:
        client.subscribe_to_form(4242, "odd@example.com")
    assert caught.value.may_have_arrived  # ConvertKit did act: sending again blindly would subscribe twice
    assert [s["email"] for s in sandbox.subscribers()] == ["odd@example.com"]


def test_a_2xx_without_the_documented_field_is_an_odd_answer(client, sandbox):
    sandbox.faults([{"status": 200, "body": {"ok": True}}])
    with pytest.raises(OddAnswer, match="no 'forms' field"):
        client.forms()


@pytest.mark.parametrize(
    "fault, cls",
    [
        ({"status": 502, "body": ""}, ServerError),
        ({"status": 504, "body": "<html>gateway</html>", "content_type": "text/html"}, ServerError),
        ({"status": 302, "body": ""}, Redirected),
        ({"close": True}, APIConnectionError),
    ],
)
def test_answers_that_leave_the_outcome_unknown_say_so(client, sandbox, fault, cls):
    sandbox.faults([{**fault, "process": True}])
    with pytest.raises(cls) as caught:
        client.subscribe_to_form(4242, "maybe@example.com")
    assert caught.value.may_have_arrived


@pytest.mark.parametrize("status, cls", [(422, Invalid), (404, NotFound), (429, RateLimited), (401, Unauthorized)])
def test_answers_that_say_no_are_known_outcomes(client, sandbox, status, cls):
    sandbox.faults([{"status": status}])
    with pytest.raises(cls) as caught:
        client.subscribe_to_form(4242, "no@example.com")
    assert not caught.value.may_have_arrived


def test_a_trickled_answer_ends_at_the_call_deadline(sandbox):
    # A read time-out alone never fires here: a byte comes every 50 ms, so the call would last ~15 s.
    sandbox.faults([{"trickle": 0.05, "path_contains": "subscribe"}])
    with Client(KEY, base_url=sandbox.api_url, timeout=1.0) as client:
        with pytest.raises(APITimeout) as caught:
            client.subscribe_to_form(4242, "slow@example.com")
    assert caught.value.may_have_arrived


def test_trickled_headers_end_at_the_call_deadline():
    """Something in front of ConvertKit that sends its status line and headers a byte at a time."""
    answer = b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"a" * 300 + b"\r\nContent-Length: 2\r\n\r\n{}"
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]

        def serve():
            conn, _ = server.accept()
            with conn:
                conn.recv(65536)
                try:
                    for i in range(len(answer)):
                        conn.sendall(answer[i : i + 1])
                        time.sleep(0.03)
                except OSError:  # the client gave up, as it should
                    pass

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        with Client(KEY, base_url=f"http://127.0.0.1:{port}/v3/", timeout=1.0) as client:
            with pytest.raises(APITimeout):
                client.request("GET", "forms")
        thread.join(15)


def test_an_answer_is_read_only_up_to_a_bound(client, sandbox):
    huge = "x" * (MAX_ANSWER_BYTES + 10)
    sandbox.faults(
        [
            {"status": 200, "body": {"forms": [], "pad": huge}},
            {"status": 500, "body": huge, "content_type": "text/plain"},
        ]
    )
    with pytest.raises(OddAnswer, match="larger than"):
        client.forms()
    with pytest.raises(ServerError) as caught:
        client.forms()
    assert len(caught.value.body) <= 2049


def test_form_subscriptions_newest_first_with_pages(sandbox):
    with Client(KEY, api_secret=SECRET, base_url=sandbox.api_url) as client:
        for i in range(53):
            client.subscribe_to_form(4242, f"p{i}@example.com")
        client.subscribe_to_form(4243, "elsewhere@example.com")
        first, pages = client.form_subscriptions(4242)
        second, _ = client.form_subscriptions(4242, page=2)
        newest = client.find_subscriber("p52@example.com")
    assert pages == 2 and len(first) == 50 and len(second) == 3
    assert first[0]["subscriber"]["id"] == newest["id"]
    assert all(s["subscribable_id"] == 4242 for s in first + second)
    calls = sandbox.requests(path_contains="/subscriptions")
    assert calls[0]["query"] == {"api_secret": "***", "sort_order": "desc", "page": "1"}


def test_repr_masks_the_key_and_hides_the_secret(client, sandbox):
    text = repr(client)
    assert text == f"Client(base_url={sandbox.api_url!r}, api_key='…{KEY[-4:]}')"
    assert_no_credentials(text)
    with Client("short-key", base_url=sandbox.api_url) as short:
        assert repr(short).endswith("api_key='…')")  # too short to reveal even 4 characters


def test_credentials_echoed_by_the_api_are_scrubbed(client, sandbox):
    echo = f"<html>bad request to /v3/account?api_secret={SECRET}&api_key={KEY}</html>"
    sandbox.faults([{"status": 400, "body": echo}, {"status": 401, "body": {"error": KEY, "message": SECRET}}])

    with pytest.raises(Invalid) as first:
        client.account()
    with pytest.raises(Unauthorized) as second:
        client.subscribe_to_form(4242, "jo@example.com")

    for exc in (first.value, second.value):
        assert_no_credentials(str(exc) + repr(exc) + exc.body + exc.message + (exc.error or ""))
    assert "[REDACTED]" in first.value.body


def test_credentials_never_reach_the_logs(client, sandbox, caplog):
    caplog.set_level(logging.DEBUG)
    logger = logging.getLogger("tests.client")
    sandbox.faults([{"status": 500, "body": f"crash at ?api_key={KEY}", "path_contains": "tags"}])

    client.forms()
    client.account()
    client.subscribe_to_form(4242, "kim@example.com")
    unreachable = Client(KEY, api_secret=SECRET, base_url=f"http://127.0.0.1:{closed_port()}/v3/")
    with unreachable:
        for call in (client.tags, unreachable.account, unreachable.forms):
            with pytest.raises(ConvertKitError) as caught:
                call()
            logger.error("delivery failed: %s", caught.value, exc_info=caught.value)
            assert_no_credentials("".join(traceback.format_exception(caught.value)))

    assert "GET /v3/forms?api_key=[REDACTED]" in caplog.text  # urllib3's debug line was seen, and scrubbed
    assert "Caused by" in caplog.text  # the chained requests error was logged too
    assert_no_credentials(caplog.text)


def test_timeout_is_passed_on_every_call(sandbox):
    session = RecordingSession()
    with Client(KEY, api_secret=SECRET, base_url=sandbox.api_url, timeout=(1.5, 4), session=session) as client:
        client.subscribe_to_form(4242, "lee@example.com")
        client.subscribe_to_tag(101, "lee@example.com")
        client.forms()
        client.tags()
        client.custom_fields()
        client.account()
    assert len(session.calls) == 6
    assert all(call["timeout"] == (1.5, 4) for call in session.calls)
    assert all(call["allow_redirects"] is False for call in session.calls)
    session.close()


def test_a_borrowed_session_is_left_open(sandbox):
    session = RecordingSession()
    with Client(KEY, base_url=sandbox.api_url, session=session) as client:
        client.forms()
    with Client(KEY, base_url=sandbox.api_url, session=session) as client:
        client.forms()  # still usable: the first client did not close it
    session.close()
    assert len(session.calls) == 2


@pytest.mark.parametrize(
    "body, message",
    [
        (
            '{"error": "Error updating subscriber", "message": "Email address is invalid"}',
            "Email address is invalid",
        ),
        ('{"error": "Tag not found", "message": ""}', "Tag not found"),
        ('["not", "an", "object"]', Invalid.default_message),
        ("{broken json", Invalid.default_message),
        ("", Invalid.default_message),
    ],
)
def test_error_for_status_never_assumes_the_body_parses(body, message):
    exc = error_for_status(422, body)
    assert isinstance(exc, Invalid)
    assert exc.message == message
    assert exc.body == body


def test_error_body_is_truncated():
    exc = error_for_status(500, "x" * 10_000)
    assert isinstance(exc, ServerError)
    assert len(exc.body) <= 2049
