"""Form documents after the first: served from the page cache in front of Flask, and the same as Flask's answer."""

import pytest
from conftest import extract_token
from flask import request_started

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
