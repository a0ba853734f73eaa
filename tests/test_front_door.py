"""Hostile and careless input at the app's door: a clean 4xx and one log line, never a 5xx or a traceback; and
the smaller holes: aliases of one inbox, HEAD, nosniff everywhere, redirects to a host from the request."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

import pytest
from support import extract_token


def token_for(client, slug="simple"):
    return extract_token(client.get(f"/f/{slug}").get_data(as_text=True))


# Malformed input ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/f/launch", "/p/launch", "/f/simple"])
@pytest.mark.parametrize(
    "body, content_type",
    [
        pytest.param("[" * 5000 + "]" * 5000, "application/json", id="deep-json-array"),
        pytest.param('{"a":' * 2000 + "1" + "}" * 2000, "application/json", id="deep-json-object"),
        pytest.param(b'{"email": "\xff\xfe@example.com"}', "application/json", id="json-not-utf8"),
        pytest.param('{"email": "a@example.com"', "application/json", id="json-cut-short"),
        pytest.param("[1, 2]", "application/json", id="json-not-an-object"),
    ],
)
def test_malformed_json_is_a_400_with_one_log_line(client, caplog, path, body, content_type):
    caplog.set_level(logging.INFO)
    response = client.post(path, data=body, headers={"Content-Type": content_type, "Accept": "application/json"})
    assert response.status_code == 400 and response.json["ok"] is False
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


@pytest.mark.parametrize(
    "overrides, status",
    [
        pytest.param({"CONTENT_LENGTH": "12abc"}, 400, id="length-not-a-number"),
        pytest.param({"CONTENT_LENGTH": "999999999"}, 413, id="length-over-the-limit"),
        pytest.param({"CONTENT_LENGTH": "500"}, 400, id="body-shorter-than-its-length"),
    ],
)
def test_bad_lengths_are_refused_plainly(client, caplog, overrides, status):
    response = client.post(
        "/f/simple",
        data=b"email=a%40example.com",
        environ_overrides=overrides,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == status
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert not [r for r in caplog.records if r.exc_info]


def test_a_form_body_in_a_broken_encoding_is_answered_not_a_500(client):
    token = token_for(client)
    response = client.post(
        "/f/simple",
        data=b"token=" + token.encode() + b"&email=\xff\xfe%ZZ%40example.com",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 422


# The per-email limit counts inboxes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "aliases",
    [
        pytest.param([f"ann+{n}@example.com" for n in range(8)], id="plus-tags"),
        pytest.param(
            ["ann@gmail.com", "a.n.n@gmail.com", "ANN@googlemail.com", "a.nn+x@gmail.com", "an.n@gmail.com"],
            id="gmail-dots-and-googlemail",
        ),
    ],
)
def test_aliases_of_one_inbox_share_its_limit_and_are_sent_as_typed(make_app, ck, aliases):
    client = make_app(RATE_LIMIT_PER_EMAIL="3/86400").test_client()
    codes = [
        client.post("/f/simple", data={"token": token_for(client), "email": alias}).status_code for alias in aliases
    ]
    assert codes == [303] * 3 + [429] * (len(aliases) - 3)
    sent = [r["json"]["email"] for r in ck.requests(path_contains="/subscribe")]
    assert [s.lower() for s in sent] == [a.lower() for a in aliases[:3]]


def test_different_people_at_one_domain_are_not_one_inbox(make_app, ck):
    client = make_app(RATE_LIMIT_PER_EMAIL="1/86400").test_client()
    codes = [
        client.post("/f/simple", data={"token": token_for(client), "email": email}).status_code
        for email in ("ann@example.com", "a.nn@example.com", "bob@gmail.com", "b.o.b.by@gmail.com")
    ]
    assert codes == [303] * 4


# HEAD, headers, redirects -------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/f/simple", "/p/simple"])
def test_head_with_a_form_body_stores_nothing(client, services, ck, path):
    data = {"token": token_for(client), "email": "head@example.com"}
    response = client.head(path, data=data)
    assert response.status_code == 200 and response.get_data() == b""
    assert services.signups.find() == [] and ck.requests(path_contains="/subscribe") == []


@pytest.fixture
def failing_view(app, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setitem(app.view_functions, "forms.index", boom)


@pytest.mark.parametrize(
    "method, path, status",
    [
        ("POST", "/healthz", 405),
        ("PUT", "/f/launch", 405),
        ("POST", "/static/form.css", 405),
        ("GET", "/nothing", 404),
        ("GET", "/f/nope", 404),
        ("GET", "/", 500),
        ("GET", "/static/form.css", 200),
        ("GET", "/embed.js", 200),
        ("GET", "/f/launch", 200),
        ("GET", "/f/launch/thanks", 200),
        ("GET", "/healthz", 200),
    ],
)
def test_every_answer_carries_nosniff(client, failing_view, method, path, status):
    client.get("/f/launch")  # later views of the page come from the page cache
    response = client.open(path, method=method, headers={"Accept": "text/html"})
    response.close()
    assert response.status_code == status
    assert response.headers.get("X-Content-Type-Options") == "nosniff"


def test_a_500_logs_once_and_shows_nothing_inside(client, failing_view, caplog):
    response = client.get("/")
    assert response.status_code == 500 and "a bug" not in response.get_data(as_text=True)


def assert_stays_here(location: str, host: str) -> None:
    parts = urlsplit(location)
    assert parts.netloc == "" and not location.startswith(("//", "/\\")), location
    assert host not in location.split("?")[0].split("/")[0]


@pytest.mark.parametrize("path", ["//evil.example/x", "//evil.example/f/launch", "/f//launch", "///evil.example"])
def test_a_spoofed_host_never_becomes_a_redirect(client, path):
    response = client.get("/", environ_overrides={"PATH_INFO": path}, headers={"Host": "evil.example"})
    if 300 <= response.status_code < 400:
        assert_stays_here(response.headers["Location"], "evil.example")


@pytest.mark.parametrize(
    "hops, headers",
    [
        (0, {"Host": "evil.example"}),
        (1, {"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"}),
    ],
)
def test_the_redirect_after_a_post_stays_on_this_site(make_app, ck, hops, headers):
    client = make_app(TRUSTED_PROXY_HOPS=str(hops)).test_client()
    response = client.post("/f/simple", data={"token": token_for(client), "email": "a@example.com"}, headers=headers)
    assert response.status_code == 303
    assert response.headers["Location"] == "/f/simple/thanks"


def test_a_configured_redirect_url_is_kept(client, ck):
    token = extract_token(client.get("/p/redirecting").get_data(as_text=True))
    response = client.post(
        "/p/redirecting", data={"token": token, "email": "a@example.com"}, headers={"Host": "evil.example"}
    )
    assert response.headers["Location"] == "https://example.com/thanks"
