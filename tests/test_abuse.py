"""Bots and bad input: every protection, on every way in (iframe form, landing page, JSON)."""

import re

import pytest
from support import extract_token

ENTRY_POINTS = [
    pytest.param(("f", False), id="iframe-form"),
    pytest.param(("p", False), id="landing-page"),
    pytest.param(("f", True), id="json"),
]

ORIGINS_TOML = """
[forms.partner]
convertkit_form_id = 4242
title = "Partner"
allowed_origins = ["https://partner.example"]
blocked_domains = ["mailinator.com"]

[forms.open]
convertkit_form_id = 4243
title = "Open"
"""


def fresh_token(client, slug="simple", page="f"):
    return extract_token(client.get(f"/{page}/{slug}").get_data(as_text=True))


def send(client, slug, data, *, page="f", json_mode=False, headers=None, **kw):
    headers = {**({"Accept": "application/json"} if json_mode else {}), **(headers or {})}
    if json_mode:
        return client.post(f"/{page}/{slug}", json=data, headers=headers, **kw)
    return client.post(f"/{page}/{slug}", data=data, headers=headers, **kw)


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_a_replayed_token_is_refused(client, ck, entry):
    page, json_mode = entry
    token = fresh_token(client, page=page)
    first = send(client, "simple", {"token": token, "email": "one@example.com"}, page=page, json_mode=json_mode)
    assert first.status_code in (200, 303)
    again = send(client, "simple", {"token": token, "email": "two@example.com"}, page=page, json_mode=json_mode)
    assert again.status_code == 422 and "already submitted" in again.get_data(as_text=True)
    assert [r["json"]["email"] for r in ck.requests(path_contains="/subscribe")] == ["one@example.com"]


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_honeypot_on_every_entry_point(client, ck, entry):
    page, json_mode = entry
    data = {"token": fresh_token(client, page=page), "email": "bot@example.com", "hp": "x"}
    response = send(client, "simple", data, page=page, json_mode=json_mode)
    assert response.status_code in (200, 303)
    assert ck.requests() == []


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_a_missing_or_forged_token_is_refused_everywhere(client, ck, entry):
    page, json_mode = entry
    for token in (None, "forged.token"):
        data = {"email": "x@example.com", **({"token": token} if token else {})}
        assert send(client, "simple", data, page=page, json_mode=json_mode).status_code == 422
    assert ck.requests() == []


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_per_ip_limit_answers_with_a_friendly_429(make_app, ck, entry):
    page, json_mode = entry
    client = make_app(RATE_LIMIT_PER_IP="3/60").test_client()
    codes = [
        send(
            client,
            "simple",
            {"token": fresh_token(client, page=page), "email": f"p{i}@example.com"},
            page=page,
            json_mode=json_mode,
        ).status_code
        for i in range(4)
    ]
    assert codes[:3] == [303 if not json_mode else 200] * 3 and codes[3] == 429
    last = send(
        client,
        "simple",
        {"token": fresh_token(client, page=page), "email": "x@example.com"},
        page=page,
        json_mode=json_mode,
    )
    assert "Too many attempts" in last.get_data(as_text=True)


def test_per_ip_limit_uses_the_address_the_router_reports(make_app, ck):
    client = make_app(RATE_LIMIT_PER_IP="2/60", TRUSTED_PROXY_HOPS="1").test_client()
    for visitor in range(5):  # a launch: many visitors behind one router are not one source
        for _ in range(2):
            response = send(
                client,
                "simple",
                {"token": fresh_token(client), "email": f"v{visitor}-{_}@example.com"},
                headers={"X-Forwarded-For": f"203.0.113.{visitor}"},
            )
            assert response.status_code == 303
    spoofed = send(
        client,
        "simple",
        {"token": fresh_token(client), "email": "s@example.com"},
        headers={"X-Forwarded-For": "198.51.100.1, 203.0.113.0"},
    )
    assert spoofed.status_code == 429, "only the hop the router added is trusted"


@pytest.mark.parametrize("backend", ["database", pytest.param("redis", marks=pytest.mark.redis)])
def test_per_email_limit_across_forms_stops_subscription_bombing(make_app, ck, backend, request):
    extra = {"REDIS_URL": request.getfixturevalue("redis_url")} if backend == "redis" else {}
    client = make_app(RATE_LIMIT_PER_EMAIL="2/86400", **extra).test_client()
    codes = [
        send(
            client, slug, {"token": fresh_token(client, slug), "email": "Victim@Example.com", "company": "x"}
        ).status_code
        for slug in ("simple", "launch", "redirecting")
    ]
    assert codes == [303, 303, 429]
    assert len(ck.requests(path_contains="/subscribe")) == 2


@pytest.mark.redis
def test_used_tokens_are_shared_through_redis(make_app, ck, redis_url):
    first = make_app(REDIS_URL=redis_url).test_client()
    second = make_app(REDIS_URL=redis_url).test_client()  # another process, same Redis
    token = fresh_token(first)
    assert send(first, "simple", {"token": token, "email": "a@example.com"}).status_code == 303
    assert send(second, "simple", {"token": token, "email": "a@example.com"}).status_code == 422


def test_blocked_domains_and_origins(make_app, ck, tmp_path):
    path = tmp_path / "origins.toml"
    path.write_text(ORIGINS_TOML)
    client = make_app(FORMS_FILE=str(path)).test_client()
    blocked = send(
        client,
        "partner",
        {"token": fresh_token(client, "partner"), "email": "x@mailinator.com"},
        headers={"Origin": "https://partner.example"},
    )
    assert blocked.status_code == 422 and "different email address" in blocked.get_data(as_text=True)
    foreign = send(
        client,
        "partner",
        {"token": fresh_token(client, "partner"), "email": "x@example.com"},
        headers={"Origin": "https://evil.example"},
    )
    assert foreign.status_code == 403
    by_referer = send(
        client,
        "partner",
        {"token": fresh_token(client, "partner"), "email": "y@example.com"},
        headers={"Referer": "https://partner.example/blog/post"},
    )
    assert by_referer.status_code == 303
    own_frame = send(
        client,
        "partner",
        {"token": fresh_token(client, "partner"), "email": "z@example.com"},
        headers={"Origin": "http://localhost"},
    )
    assert own_frame.status_code == 303, "the iframe document posts from the app's own origin"
    assert [r["json"]["email"] for r in ck.requests(path_contains="/subscribe")] == ["y@example.com", "z@example.com"]


def test_frame_ancestors_and_cors_follow_allowed_origins(make_app, ck, tmp_path):
    path = tmp_path / "origins.toml"
    path.write_text(ORIGINS_TOML)
    client = make_app(FORMS_FILE=str(path)).test_client()
    frame = client.get("/f/partner")
    assert "frame-ancestors https://partner.example" in frame.headers["Content-Security-Policy"]
    assert "X-Frame-Options" not in frame.headers
    assert "frame-ancestors *" in client.get("/f/open").headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in client.get("/p/partner").headers["Content-Security-Policy"]
    allowed = send(
        client,
        "partner",
        {"token": fresh_token(client, "partner"), "email": "c@example.com"},
        json_mode=True,
        headers={"Origin": "https://partner.example"},
    )
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://partner.example"
    assert "Access-Control-Allow-Credentials" not in allowed.headers
    preflight = client.options(
        "/f/partner", headers={"Origin": "https://partner.example", "Access-Control-Request-Method": "POST"}
    )
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://partner.example"
    other = client.options(
        "/f/partner", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    )
    assert "Access-Control-Allow-Origin" not in other.headers


@pytest.mark.parametrize("path", ["/", "/f/simple", "/p/simple", "/healthz", "/f/missing"])
def test_security_headers_everywhere(client, path):
    response = client.get(path)
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
    csp = response.headers.get("Content-Security-Policy", "")
    if response.mimetype == "text/html":
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        (b"x" * 70_000, {"Content-Type": "application/x-www-form-urlencoded"}, 413),
        (b"email=\xff\xfe%ZZ&token=1", {"Content-Type": "application/x-www-form-urlencoded"}, 422),
        (b"<xml/>", {"Content-Type": "application/xml"}, 415),
        (b"[1, 2]", {"Content-Type": "application/json"}, 400),
        (b'{"email": {"$ne": 1}, "token": 5}', {"Content-Type": "application/json"}, 422),
        (
            b"email=a%0d%0abcc%40evil.com%40example.com&company=ok",
            {"Content-Type": "application/x-www-form-urlencoded"},
            422,
        ),
    ],
)
def test_bad_input_gets_a_clear_4xx(client, ck, body, headers, status):
    response = client.post("/f/launch", data=body, headers=headers)
    assert response.status_code == status


def test_control_characters_and_overlong_values_are_refused_beside_the_field(client, ck):
    data = {
        "token": fresh_token(client, "launch"),
        "email": "ok@example.com",
        "first_name": "Ann\nBcc: x",
        "company": "y" * 500,
    }
    response = send(client, "launch", data, json_mode=True)
    assert response.status_code == 422
    assert set(response.json["errors"]) == {"first_name", "company"}


def test_nothing_in_a_request_can_redirect_the_visitor(client, ck):
    data = {
        "token": fresh_token(client, "simple"),
        "email": "a@example.com",
        "redirect_url": "https://evil.example",
        "next": "https://evil.example",
    }
    response = client.post("/f/simple?next=https://evil.example", data=data)
    assert response.status_code == 303 and response.headers["Location"].startswith("/f/simple/thanks")


def test_logs_carry_no_address_and_no_secret(client, ck, caplog):
    import logging

    caplog.set_level(logging.DEBUG)
    ck.configure(api_key="changed")
    send(client, "simple", {"token": fresh_token(client), "email": "someone.private@example.com"})
    send(client, "simple", {"token": fresh_token(client), "email": "someone.private@example.com", "hp": "x"})
    assert "someone.private" not in caplog.text
    from support import API_KEY, API_SECRET

    assert API_KEY not in caplog.text and API_SECRET not in caplog.text


def test_the_json_form_description_gives_a_token(client):
    response = client.get("/f/launch", headers={"Accept": "application/json"})
    assert response.json["token"] and [f["name"] for f in response.json["fields"]] == ["email", "first_name", "company"]


def form_action(response) -> list[str]:
    """The hosts a page's forms may post to (and so redirect through), from its Content-Security-Policy."""
    [directive] = [
        d.strip()
        for d in response.headers["Content-Security-Policy"].split(";")
        if d.strip().startswith("form-action ")
    ]
    return directive.split()[1:]


@pytest.mark.parametrize("view", ["first", "cached", "after-an-error"])
def test_the_landing_page_may_send_its_visitor_on_to_the_redirect_host_and_no_other(client, view):
    """The post's 303 to redirect_url is a navigation that form-action governs: without the host there, the
    browser blocks the visitor's redirect after a successful signup on the landing page."""

    def landing(slug):
        first = client.get(f"/p/{slug}")
        if view == "first":
            return first
        if view == "cached":
            return client.get(f"/p/{slug}")
        return send(client, slug, {"token": extract_token(first.get_data(as_text=True)), "email": "nope"})

    assert form_action(landing("redirecting")) == ["'self'", "https://example.com"]
    assert form_action(landing("simple")) == ["'self'"]


TOKEN_PROBLEMS = ["another-form", "forged", "replayed", "too-fast", "expired"]


@pytest.mark.parametrize("problem", TOKEN_PROBLEMS)
@pytest.mark.parametrize("json_mode", [False, True], ids=["html", "json"])
def test_a_refused_token_gives_the_form_back_with_the_input_and_a_token_that_works(make_app, ck, problem, json_mode):
    app = make_app(MIN_FILL_SECONDS="10", TOKEN_MAX_AGE="3600")
    client, signer = app.test_client(), app.extensions["optin"].intake.signer
    now = [1_000_000.0]
    signer.clock = lambda: now[0]
    token = {"another-form": signer.issue("launch"), "forged": "simple~1000000000~forged.bad-signature"}.get(
        problem, signer.issue("simple")
    )
    now[0] += {"too-fast": 1, "expired": 3601}.get(problem, 60)
    if problem == "replayed":
        assert send(client, "simple", {"token": token, "email": "first@example.com"}).status_code == 303

    refused = send(client, "simple", {"token": token, "email": "person@example.com"}, json_mode=json_mode)
    assert refused.status_code == 422
    if json_mode:
        assert refused.json["errors"]["_form"] and refused.json["token"] != token
        next_token = refused.json["token"]
    else:
        html = refused.get_data(as_text=True)
        assert 'value="person@example.com"' in html and 'role="alert"' in html
        next_token = extract_token(html)
        assert next_token != token

    now[0] += 60  # the visitor reads the message and sends the form again
    again = send(client, "simple", {"token": next_token, "email": "person@example.com"}, json_mode=json_mode)
    assert again.status_code == (200 if json_mode else 303), "never a dead end"
    expected = ["first@example.com", "person@example.com"] if problem == "replayed" else ["person@example.com"]
    assert [r["json"]["email"] for r in ck.requests(path_contains="/subscribe")] == expected


def test_a_token_signed_with_another_secret_key_is_refused(make_app, ck):
    elsewhere = make_app(SECRET_KEY="another-deployments-secret-key").test_client()
    here = make_app().test_client()
    token = fresh_token(elsewhere)
    assert send(here, "simple", {"token": token, "email": "a@example.com"}).status_code == 422
    assert send(elsewhere, "simple", {"token": token, "email": "a@example.com"}).status_code == 303
    assert len(ck.requests(path_contains="/subscribe")) == 1


def test_without_a_proxy_in_front_a_forwarded_for_header_does_not_escape_the_ip_limit(make_app, ck):
    client = make_app(RATE_LIMIT_PER_IP="2/60", TRUSTED_PROXY_HOPS="0").test_client()
    codes = [
        send(
            client,
            "simple",
            {"token": fresh_token(client), "email": f"f{n}@example.com"},
            headers={"X-Forwarded-For": f"203.0.113.{n}"},
        ).status_code
        for n in range(3)
    ]
    assert codes == [303, 303, 429]


@pytest.mark.redis
def test_with_redis_machines_on_separate_databases_share_used_tokens_and_limits(make_app, ck, redis_url, tmp_path):
    import sqlalchemy as sa

    limits = {"REDIS_URL": redis_url, "RATE_LIMIT_PER_IP": "3/60", "RATE_LIMIT_PER_EMAIL": "1/86400"}
    first_app = make_app(**limits)
    first = first_app.test_client()
    second = make_app(**limits, DATABASE_URL=f"sqlite:///{tmp_path}/other-machine.sqlite3").test_client()

    token = fresh_token(first)
    assert send(first, "simple", {"token": token, "email": "a@example.com"}).status_code == 303
    assert send(second, "simple", {"token": token, "email": "b@example.com"}).status_code == 422, "replayed"
    assert send(second, "simple", {"token": fresh_token(second), "email": "a@example.com"}).status_code == 429
    assert send(second, "simple", {"token": fresh_token(second), "email": "c@example.com"}).status_code == 303
    limited = send(second, "simple", {"token": fresh_token(second), "email": "d@example.com"})
    assert limited.status_code == 429 and "Too many attempts" in limited.get_data(as_text=True)
    assert [r["json"]["email"] for r in ck.requests(path_contains="/subscribe")] == ["a@example.com", "c@example.com"]
    with first_app.extensions["optin"].db.read() as conn:
        for table in ("used_nonces", "rate_events"):
            assert conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar() == 0, table


ALL_SOURCES = ("default-src", "script-src", "style-src", "img-src", "connect-src", "frame-src")


@pytest.mark.parametrize(
    ("slug", "hosts"),
    [
        ("plain", set()),
        ("altcha", set()),
        ("turnstile", {"https://challenges.cloudflare.com"}),
        ("hcaptcha", {"https://hcaptcha.com", "https://*.hcaptcha.com"}),
    ],
)
def test_the_form_loads_nothing_from_another_host_but_its_challenge(make_app, tmp_path, slug, hosts):
    path = tmp_path / "hosts.toml"
    path.write_text("""
[forms.plain]
convertkit_form_id = 1
title = "Plain"

[forms.altcha]
convertkit_form_id = 4
title = "A"
challenge = "altcha"

[forms.turnstile]
convertkit_form_id = 2
title = "T"
challenge = "turnstile"
challenge_site_key = "site-key"

[forms.hcaptcha]
convertkit_form_id = 3
title = "H"
challenge = "hcaptcha"
challenge_site_key = "site-key"
""")
    client = make_app(FORMS_FILE=str(path)).test_client()
    for page in ("f", "p"):
        response = client.get(f"/{page}/{slug}")
        policy = dict(d.strip().split(" ", 1) for d in response.headers["Content-Security-Policy"].split(";"))
        seen = {source for name in ALL_SOURCES for source in policy[name].split()}
        assert seen - {"'self'", "'none'", "data:"} == hosts
        assert "'unsafe-inline'" not in seen and "'unsafe-eval'" not in seen
        assert policy["default-src"] == "'none'"
        html = response.get_data(as_text=True)
        for url in re.findall(r'(?:src|href|action)="([^"]*)"', html):
            assert url.startswith("/") or any(url.startswith(h.replace("*.", "js.")) for h in hosts), url


@pytest.mark.parametrize("slug", ["partner", "open"])
def test_the_thanks_page_may_be_framed_wherever_its_form_may(make_app, tmp_path, slug):
    """Without JavaScript the iframe's post lands on /f/<slug>/thanks, still inside the customer's page."""
    path = tmp_path / "origins.toml"
    path.write_text(ORIGINS_TOML)
    client = make_app(FORMS_FILE=str(path)).test_client()

    def ancestors(url):
        return re.search(r"frame-ancestors ([^;]*)", client.get(url).headers["Content-Security-Policy"])[1]

    assert ancestors(f"/f/{slug}/thanks") == ancestors(f"/f/{slug}") != "'none'"
    assert ancestors(f"/p/{slug}/thanks") == ancestors(f"/p/{slug}") == "'none'"


@pytest.mark.parametrize("email", ["x@mailinator.com", "x@MAILINATOR.com", "X@Mailinator.Com"])
def test_a_blocked_domain_is_refused_however_either_side_spells_it(make_app, ck, tmp_path, email):
    path = tmp_path / "blocked.toml"
    path.write_text('[forms.open]\nconvertkit_form_id = 4243\ntitle = "Open"\nblocked_domains = ["@Mailinator.COM"]\n')
    client = make_app(FORMS_FILE=str(path)).test_client()
    response = send(client, "open", {"token": fresh_token(client, "open"), "email": email}, json_mode=True)
    assert response.status_code == 422
    assert response.json["errors"] == {"email": ["Please use a different email address."]}
    assert ck.requests() == []


def test_logs_and_windows_name_people_by_a_keyed_pseudonym(make_app, caplog):
    """An unkeyed hash of an address is found again by hashing a list of addresses: these need SECRET_KEY."""
    import hashlib

    from optin.pseudonyms import mask_email, pseudonym

    make_app(SECRET_KEY="one-key-long-enough-for-the-test")
    first, first_ip = mask_email("Person@Example.com"), pseudonym("ip", "203.0.113.9")
    assert first == mask_email("person@example.com ")  # one person, one name, however typed
    make_app(SECRET_KEY="another-key-long-enough-for-it")
    assert mask_email("person@example.com") != first and pseudonym("ip", "203.0.113.9") != first_ip
    unkeyed = hashlib.sha256(b"person@example.com").hexdigest()
    assert first.removeprefix("email#") not in unkeyed
