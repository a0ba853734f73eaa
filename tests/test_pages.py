"""Form documents after the first: served from the page cache in front of Flask, and the same as Flask's answer."""

import pytest
from flask import request_started
from support import extract_token

BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


@pytest.mark.parametrize("path", ["/f/launch", "/p/launch"])
def test_a_cached_page_is_the_rendered_page_with_its_own_token(app, client, path):
    handled = []
    with request_started.connected_to(lambda sender, **extra: handled.append(sender), app):
        first = client.get(path, headers=BROWSER)  # rendered by the Flask view, which fills the cache
        second = client.get(path, headers=BROWSER)  # answered from the cache
    assert len(handled) == 1, "the second view never reaches Flask"
    assert first.status_code == second.status_code == 200
    assert dict(first.headers) == dict(second.headers)
    first_html, second_html = first.get_data(as_text=True), second.get_data(as_text=True)
    first_token, second_token = extract_token(first_html), extract_token(second_html)
    assert first_token != second_token
    assert first_html.replace(first_token, "") == second_html.replace(second_token, "")


def test_pages_with_tokens_are_never_cached_by_browsers_or_cdns(client):
    for _ in range(2):
        assert client.get("/f/launch", headers=BROWSER).headers["Cache-Control"] == "no-store"
    assert client.get("/f/launch", headers={"Accept": "application/json"}).headers["Cache-Control"] == "no-store"


def test_a_token_from_a_cached_page_signs_up(client, post_form, services):
    client.get("/f/launch", headers=BROWSER)
    assert post_form(data={"email": "cached@example.com", "company": "Acme"}).status_code == 303
    assert [s.email for s in services.signups.find()] == ["cached@example.com"]


def test_json_clients_still_get_json_after_the_page_is_cached(client):
    client.get("/f/launch", headers=BROWSER)
    response = client.get("/f/launch", headers={"Accept": "application/json"})
    assert response.is_json and response.json["form"] == "launch" and response.json["token"]


def test_the_iframe_and_the_landing_page_keep_their_own_embedding_rules_when_cached(client):
    for _ in range(2):
        frame = client.get("/f/launch", headers=BROWSER).headers["Content-Security-Policy"]
        landing = client.get("/p/launch", headers=BROWSER).headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" not in frame
        assert "frame-ancestors 'none'" in landing


@pytest.mark.parametrize("path", ["/f/launch/", "/f/nope", "/f/launch/extra"])
def test_other_paths_under_the_prefixes_are_not_taken_for_pages(client, path):
    client.get("/f/launch", headers=BROWSER)
    assert client.get(path, headers=BROWSER).status_code in (404, 308)


@pytest.mark.parametrize("queue", ["empty", "waiting"])
def test_a_form_post_without_a_challenge_makes_one_sqlite_commit(client, post_form, services, ck, monkeypatch, queue):
    """Token, client window, address window and signup in one commit: SQLite has one writer, and every commit
    of a post is time every other post waits. When it is tried at once, the one commit comes before ConvertKit."""
    monkeypatch.setattr("optin.delivery.QUEUE_RECHECK", 0)
    if queue == "waiting":  # a launch: the post stores its signup for the worker and answers
        services.signups.record(
            form_slug="simple",
            convertkit_form_id=4243,
            email="first@example.com",
            first_name=None,
            fields={},
            tags=(),
            ip_hash=None,
        )
    db, commits, before_convertkit = services.db, [], []
    begin = db._sqlite_transaction

    def counted():
        commits.append(1)
        yield from begin()

    deliver = services.delivery.deliver

    def sent(*args):
        before_convertkit.append(len(commits))
        return deliver(*args)

    monkeypatch.setattr(db, "_sqlite_transaction", counted)
    monkeypatch.setattr(services.delivery, "deliver", sent)
    client.get("/f/simple")
    commits.clear()
    assert post_form("simple", {"email": "a@example.com"}).status_code == 303
    if queue == "waiting":
        assert len(commits) == 1 and before_convertkit == [] and ck.requests() == []
    else:
        assert before_convertkit == [1] and len(ck.requests(path_contains="/subscribe")) == 1
