"""The form from a visitor's side, through the Flask app against the sandbox on loopback."""

import re
import time

import pytest
from support import API_KEY, API_SECRET, SECRET_KEY, extract_token


def errors_in(html: str) -> list[str]:
    return [e for e in re.findall(r'class="optin-error"[^>]*>([^<]*)<', html) if e]


def test_the_form_shows_title_description_fields_with_labels_and_button(client):
    html = client.get("/f/launch").get_data(as_text=True)
    for text in ("Get launch updates", "One email when we ship.", "Notify me"):
        assert text in html
    for name, label in (("email", "Email address"), ("first_name", "First name"), ("company", "Company")):
        assert f'<label for="{name}">{label}' in html
        assert f'name="{name}"' in html
    assert html.index('name="email"') < html.index('name="first_name"') < html.index('name="company"')


def test_the_landing_page_is_a_page_of_its_own(client):
    response = client.get("/p/launch")
    assert response.status_code == 200
    assert "Get launch updates" in response.get_data(as_text=True)
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


def test_no_cookie_is_set_or_needed(client, post_form):
    response = client.get("/f/launch")
    assert "Set-Cookie" not in response.headers
    client._cookies.clear()
    assert post_form(data={"email": "a@example.com", "company": "Acme"}).status_code == 303


def test_a_valid_signup_reaches_convertkit_with_the_right_json(post_form, ck, services):
    response = post_form(data={"email": "Ann@Example.com", "first_name": "Ann", "company": "Acme"})
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/f/launch/thanks")
    [sent] = ck.requests(path_contains="subscribe")
    assert sent["path"] == "/v3/forms/4242/subscribe"
    assert sent["json"] == {
        "api_key": "***",
        "email": "Ann@example.com",
        "first_name": "Ann",
        "fields": {"company": "Acme"},
        "tags": [101, 102],
    }
    [signup] = services.signups.find()
    assert signup.status == "delivered" and signup.email == "Ann@example.com"
    assert signup.ip_hash and "127.0.0.1" not in signup.ip_hash


def test_the_success_page_after_redirect(client, post_form):
    response = post_form(data={"email": "a@example.com", "company": "Acme"}, follow_redirects=True)
    assert response.status_code == 200
    assert "Thanks! Check your inbox." in response.get_data(as_text=True)


def test_a_redirect_url_sends_the_landing_page_visitor_on(post_form):
    response = post_form("redirecting", {"email": "a@example.com"}, page="p")
    assert response.status_code == 303 and response.headers["Location"] == "https://example.com/thanks"


def test_local_validation_errors_sit_beside_their_fields_and_keep_the_input(post_form, ck, services):
    response = post_form(data={"email": "not-an-address", "first_name": "Bob"})
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert errors_in(html) == ["Please enter a valid email address, like name@example.com.", "Please fill in company."]
    assert 'value="not-an-address"' in html and 'value="Bob"' in html
    assert 'aria-invalid="true"' in html and 'aria-describedby="email-error"' in html
    assert ck.requests() == [] and services.signups.find() == []


def test_json_mode(post_form):
    ok = post_form(data={"email": "a@example.com", "company": "Acme"}, json_mode=True)
    assert ok.status_code == 200
    assert ok.json == {"ok": True, "message": "Thanks! Check your inbox.", "redirect": None}
    bad = post_form(data={"email": ""}, json_mode=True)
    assert bad.status_code == 422
    assert bad.json["errors"] == {"email": ["Please enter your email address."], "company": ["Please fill in company."]}
    assert bad.json["token"]


def test_a_convertkit_422_is_shown_in_the_form_and_the_signup_rejected(post_form, ck, services):
    response = post_form(data={"email": "invalid@example.com", "company": "Acme"})
    assert response.status_code == 422
    assert errors_in(response.get_data(as_text=True)) == ["Email address is invalid"]
    [signup] = services.signups.find()
    assert signup.status == "rejected" and "Email address is invalid" in signup.last_error


def test_while_older_signups_wait_a_new_one_queues_behind_them_without_calling_convertkit(
    post_form, ck, services, monkeypatch
):
    monkeypatch.setattr("optin.delivery.QUEUE_RECHECK", 0)  # no memo of the queue between these posts
    waiting = services.signups.record(
        form_slug="launch",
        convertkit_form_id=4242,
        email="first@example.com",
        first_name=None,
        fields={},
        tags=(),
        ip_hash=None,
    )
    response = post_form(data={"email": "second@example.com", "company": "Acme"}, json_mode=True)
    assert response.status_code == 200 and response.json["ok"]
    assert ck.requests(path_contains="subscribe") == [], "the queue goes first, in order, through the worker"
    assert [s.status for s in services.signups.find()] == ["pending", "pending"]

    # once the queue is empty, a signup goes at once again (and its 422 shows in the form)
    services.signups.mark_delivered(waiting, None, at=time.time(), subscriber_id=1)
    [second] = services.signups.find(status="pending")
    services.signups.mark_delivered(second, None, at=time.time(), subscriber_id=2)
    response = post_form(data={"email": "invalid@example.com", "company": "Acme"}, json_mode=True)
    assert response.status_code == 422 and response.json["errors"]["email"] == ["Email address is invalid"]


@pytest.mark.parametrize(
    "fault",
    [
        {
            "status": 401,
            "body": '{"error": "Authorization Failed", "message": "API Key not valid"}',
            "content_type": "application/json",
        },
        {"status": 500, "body": "<html><h1>Internal Server Error</h1></html>", "content_type": "text/html"},
        {"status": 429, "body": "Retry later", "content_type": "text/plain"},
        {"status": 503, "body": "", "content_type": "text/plain"},
    ],
)
def test_convertkit_trouble_keeps_the_signup_pending_and_the_visitor_sees_success(post_form, ck, services, fault):
    ck.faults([{**fault, "path_contains": "subscribe"}])
    response = post_form(data={"email": "a@example.com", "company": "Acme"}, follow_redirects=True)
    assert response.status_code == 200 and "Thanks! Check your inbox." in response.get_data(as_text=True)
    [signup] = services.signups.find()
    assert signup.status == "pending" and signup.last_error


def test_a_401_is_logged_loudly_without_the_key(post_form, ck, caplog):
    ck.configure(api_key="someone-elses-key")
    post_form(data={"email": "a@example.com", "company": "Acme"})
    assert any(r.levelname == "ERROR" and "401" in r.getMessage() for r in caplog.records)
    assert API_KEY not in caplog.text and "a@example.com" not in caplog.text


def test_a_timeout_keeps_the_signup_pending(make_app, ck):
    app = make_app(CONVERTKIT_TIMEOUT="0.3")
    client = app.test_client()
    ck.faults([{"delay": 1.5, "path_contains": "subscribe"}])
    token = extract_token(client.get("/f/simple").get_data(as_text=True))
    assert client.post("/f/simple", data={"token": token, "email": "a@example.com"}).status_code == 303
    [signup] = app.extensions["optin"].signups.find()
    assert signup.status == "pending" and "Timeout" in signup.last_error
    time.sleep(1.5)  # let the sandbox finish the delayed request before the next test resets it


def test_honeypot_looks_like_success_and_forwards_nothing(post_form, ck, services):
    response = post_form(data={"email": "bot@example.com", "company": "Bots", "hp": "http://spam"})
    assert response.status_code == 303
    assert ck.requests() == [] and services.signups.find() == []


def test_an_expired_token_rerenders_with_input_kept_and_a_fresh_token(make_app, ck):
    app = make_app(TOKEN_MAX_AGE="1")
    client = app.test_client()
    signer = app.extensions["optin"].intake.signer
    signer.clock = lambda: 1_000_000.0
    old = signer.issue("simple")
    signer.clock = lambda: 1_000_010.0
    response = client.post("/f/simple", data={"token": old, "email": "late@example.com"})
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "open for a long time" in html and 'value="late@example.com"' in html
    assert extract_token(html) != old
    assert ck.requests() == []


def test_a_too_fast_post_is_not_forwarded(make_app, ck):
    client = make_app(MIN_FILL_SECONDS="30").test_client()
    token = extract_token(client.get("/f/simple").get_data(as_text=True))
    response = client.post("/f/simple", data={"token": token, "email": "quick@example.com"})
    assert response.status_code == 422 and ck.requests() == []


@pytest.mark.parametrize("path", ["/f/nope", "/p/nope", "/f/..%2Fetc", "/nothing"])
def test_unknown_pages_are_404_pages(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert "There is no form here" in response.get_data(as_text=True)


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json["ok"] is True


def test_the_index_lists_forms_with_snippets(client):
    html = client.get("/").get_data(as_text=True)
    assert 'data-form="launch"' in html and "/f/simple" in html and "<iframe" in html


def test_the_index_is_off_unless_asked_for(make_app):
    assert make_app(SHOW_INDEX="").test_client().get("/").status_code == 404


def test_no_route_leaks_a_secret(client, post_form, ck):
    ck.configure(api_key="rotated")  # a 401 inline: the error path must not echo the key either
    responses = [
        client.get(p)
        for p in (
            "/",
            "/f/launch",
            "/p/launch",
            "/embed.js",
            "/healthz",
            "/f/x",
            "/static/form.js",
            "/static/form.css",
            "/f/launch/thanks",
        )
    ]
    responses += [
        post_form(data={"email": "a@example.com", "company": "A"}, follow_redirects=True),
        post_form(data={"email": "bad"}, json_mode=True),
        post_form(data={"email": "invalid@example.com", "company": "A"}),
        client.post("/f/launch", data="{", headers={"Content-Type": "application/json"}),
    ]
    for response in responses:
        blob = response.get_data(as_text=True) + str(response.headers)
        response.close()  # static files are streamed from disk
        for secret in (API_KEY, API_SECRET, SECRET_KEY):
            assert secret not in blob, response.request.path


def test_a_database_outage_is_a_clear_503_not_a_stack_trace(app, client, services, tmp_path):
    from sqlalchemy import create_engine

    services.db.engine.dispose()
    services.db.engine = create_engine(f"sqlite:///{tmp_path}/missing/nowhere/db.sqlite3")
    token = extract_token(client.get("/f/simple").get_data(as_text=True))
    response = client.post(
        "/f/simple", data={"token": token, "email": "a@example.com"}, headers={"Accept": "application/json"}
    )
    assert response.status_code == 503 and "try again" in response.json["message"]
    services.db.engine.dispose()


def test_every_served_form_carries_its_own_token(client):
    tokens = {extract_token(client.get("/f/launch").get_data(as_text=True)) for _ in range(3)}
    tokens |= {extract_token(client.get("/p/launch").get_data(as_text=True))}
    assert len(tokens) == 4 and "placeholder" not in "".join(tokens)


def test_fixing_a_field_quickly_after_an_error_is_not_taken_for_a_bot(make_app, ck):
    app = make_app(MIN_FILL_SECONDS="30")
    client = app.test_client()
    signer = app.extensions["optin"].intake.signer
    now = [1_000_000.0]
    signer.clock = lambda: now[0]
    token = extract_token(client.get("/f/launch").get_data(as_text=True))
    now[0] += 40  # the visitor reads and types, then forgets the company
    first = client.post(
        "/f/launch", data={"token": token, "email": "a@example.com"}, headers={"Accept": "application/json"}
    )
    assert first.status_code == 422 and set(first.json["errors"]) == {"company"}
    now[0] += 1  # and fixes it in a second
    second = client.post(
        "/f/launch",
        data={"token": first.json["token"], "email": "a@example.com", "company": "Acme"},
        headers={"Accept": "application/json"},
    )
    assert second.status_code == 200, second.json
    now[0] += 1  # a bot replaying the error answer's token gets nowhere either
    assert (
        client.post(
            "/f/launch",
            data={"token": first.json["token"], "email": "b@example.com", "company": "Acme"},
            headers={"Accept": "application/json"},
        ).status_code
        == 422
    )


def test_a_too_fast_post_also_shows_the_field_errors(make_app, ck):
    client = make_app(MIN_FILL_SECONDS="30").test_client()
    token = extract_token(client.get("/f/launch").get_data(as_text=True))
    response = client.post("/f/launch", data={"token": token, "email": "nope"}, headers={"Accept": "application/json"})
    assert response.status_code == 422
    assert set(response.json["errors"]) == {"_form", "email", "company"}


@pytest.mark.parametrize(
    ("slug", "title"), [("launch", "Get launch updates"), ("simple", "Simple"), ("redirecting", "Redirecting")]
)
def test_the_index_shows_each_form_live_with_the_three_snippets_filled_in(client, slug, title):
    from html import unescape

    page = client.get("/").get_data(as_text=True)
    assert f'<iframe src="/f/{slug}" title="{title}"' in page, "the form itself, live"
    snippets = unescape(page)
    assert (
        f'<script src="http://localhost/embed.js" data-form="{slug}" data-title="{title}" async></script>' in snippets
    )
    assert (
        f'<iframe src="http://localhost/f/{slug}" title="{title}" style="border:0;width:100%;max-width:480px"'
        f' height="420"></iframe>' in snippets
    )
    assert f'<a href="/p/{slug}">http://localhost/p/{slug}</a>' in snippets


@pytest.mark.parametrize(("slug", "redirect"), [("redirecting", "https://example.com/thanks"), ("simple", None)])
def test_a_json_post_says_where_to_send_the_visitor(post_form, slug, redirect):
    response = post_form(slug, {"email": "a@example.com"}, json_mode=True)
    assert response.json == {
        "ok": True,
        "message": "Thanks! Check your inbox to confirm your subscription.",
        "redirect": redirect,
    }


# Deploying: what gunicorn.conf.py promises a platform router -------------------------------------------------


def gunicorn_config(monkeypatch, **env):
    """The settings `gunicorn app:app` takes from gunicorn.conf.py under this environment."""
    import runpy

    from gunicorn.config import Config
    from support import ROOT

    for name in ("HOST", "PORT", "WEB_CONCURRENCY", "GUNICORN_THREADS", "MAX_REQUESTS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    config = Config()
    for name, value in runpy.run_path(str(ROOT / "gunicorn.conf.py")).items():
        if name in config.settings:
            config.set(name, value)
    return config


@pytest.mark.parametrize(
    ("env", "bind", "workers", "threads", "max_requests"),
    [
        ({}, "0.0.0.0:5000", 2, 8, 0),
        (
            {"PORT": "31337", "WEB_CONCURRENCY": "3", "GUNICORN_THREADS": "5", "MAX_REQUESTS": "1000"},
            "0.0.0.0:31337",
            3,
            5,
            1000,
        ),
    ],
)
def test_gunicorn_conf_follows_the_platform(monkeypatch, env, bind, workers, threads, max_requests):
    from gunicorn.workers.gthread import ThreadWorker

    config = gunicorn_config(monkeypatch, **env)
    assert config.bind == [bind], "every interface, on $PORT"
    assert issubclass(config.worker_class, ThreadWorker), "threads (gthread)"
    assert (config.workers, config.threads) == (workers, threads)
    assert config.timeout < 30 and config.graceful_timeout < 30, "answer or fail before the router's 30 s"
    assert config.reuse_port is True
    assert config.max_requests == max_requests, "workers are recycled only when MAX_REQUESTS asks"


@pytest.mark.parametrize(
    ("variable", "attribute", "default"),
    [
        ("CONVERTKIT_API_URL", "api_url", "https://api.convertkit.com/v3/"),
        ("CONVERTKIT_RATE_LIMIT", "rate_limit", "120/60"),
        ("CONVERTKIT_TIMEOUT", "api_timeout", 5),
        ("FORMS_FILE", "forms_file", "forms.toml"),
        ("DATABASE_URL", "database_url", "sqlite:///instance/signups.sqlite3"),
        ("REDIS_URL", "redis_url", None),
        ("TRUSTED_PROXY_HOPS", "trusted_proxy_hops", 1),
        ("RATE_LIMIT_PER_IP", "ip_limit", "10/60"),
        ("RATE_LIMIT_PER_EMAIL", "email_limit", "5/86400"),
        ("MIN_FILL_SECONDS", "min_fill_seconds", 2),
        ("TOKEN_MAX_AGE", "token_max_age", 21600),
        ("SHOW_INDEX", "show_index", False),
    ],
)
def test_an_unset_variable_takes_the_default_the_readme_gives(variable, attribute, default):
    from optin.settings import Settings

    value = getattr(Settings.from_env({"SECRET_KEY": "s", "CONVERTKIT_API_KEY": "k"}), attribute)
    assert (value if value is None or isinstance(value, bool | int | float) else str(value)) == default, variable
