"""The app as deployed: `gunicorn app:app` with gunicorn.conf.py, talking real HTTP to the sandbox."""

import re
import subprocess
import sys

import requests
from support import API_KEY, API_SECRET, ROOT, SECRET_KEY, extract_token


def signup(url, slug, data, *, json_mode=False):
    session = requests.Session()
    token = extract_token(session.get(f"{url}/f/{slug}", timeout=5).text)
    headers = {"Accept": "application/json"} if json_mode else {}
    return session.post(
        f"{url}/f/{slug}", data={"token": token, **data}, headers=headers, timeout=10, allow_redirects=False
    )


def test_render_and_a_signup_that_reaches_convertkit(gunicorn, env, ck):
    web = gunicorn(env)
    page = requests.get(f"{web.url}/f/launch", timeout=5)
    assert page.status_code == 200 and "Get launch updates" in page.text
    response = signup(web.url, "launch", {"email": "ann@example.com", "first_name": "Ann", "company": "Acme"})
    assert response.status_code == 303
    [sent] = ck.requests(path_contains="subscribe")
    assert sent["json"] == {
        "api_key": "***",
        "email": "ann@example.com",
        "first_name": "Ann",
        "fields": {"company": "Acme"},
        "tags": [101, 102],
    }


def test_a_local_error_and_a_convertkit_422_come_back_in_the_form(gunicorn, env, ck):
    web = gunicorn(env)
    local = signup(web.url, "simple", {"email": "nope"})
    assert local.status_code == 422 and "Please enter a valid email address" in local.text
    remote = signup(web.url, "simple", {"email": "invalid@example.com"}, json_mode=True)
    assert remote.status_code == 422 and remote.json()["errors"] == {"email": ["Email address is invalid"]}


def test_a_401_and_a_500_leave_the_signup_pending(gunicorn, env, ck, make_app):
    web = gunicorn(env)
    ck.faults([{"status": 500, "body": "<html>down</html>", "content_type": "text/html", "path_contains": "subscribe"}])
    assert signup(web.url, "simple", {"email": "five@example.com"}, json_mode=True).json()["ok"] is True
    ck.configure(api_key="rotated-key")
    assert signup(web.url, "simple", {"email": "four@example.com"}, json_mode=True).json()["ok"] is True
    statuses = {s.email: s.status for s in make_app().extensions["optin"].signups.find()}
    assert statuses == {"five@example.com": "pending", "four@example.com": "pending"}
    health = requests.get(f"{web.url}/healthz", timeout=5)
    assert health.status_code == 503 and "401" in health.text


def test_no_response_and_no_log_line_carries_a_secret_or_an_address(gunicorn, env, ck):
    web = gunicorn(env)
    ck.configure(api_key="rotated-key")  # forces the loud 401 log path
    bodies = [
        requests.get(web.url + path, timeout=5)
        for path in ("/", "/f/launch", "/p/launch", "/embed.js", "/healthz", "/f/none", "/static/form.js")
    ]
    bodies.append(signup(web.url, "simple", {"email": "private.person@example.com"}))
    bodies.append(signup(web.url, "simple", {"email": "invalid@example.com"}))
    for response in bodies:
        blob = response.text + str(response.headers)
        assert API_KEY not in blob and API_SECRET not in blob and SECRET_KEY not in blob
    web.stop()
    log = web.output()
    assert "401" in log
    for secret in (API_KEY, API_SECRET, SECRET_KEY, "private.person@example.com"):
        assert secret not in log


def test_gunicorn_refuses_to_start_without_the_key_or_the_secret(env):
    for missing in ("CONVERTKIT_API_KEY", "SECRET_KEY"):
        child_env = {k: v for k, v in env.items() if k != missing}
        child_env["PATH"] = ""
        result = subprocess.run(
            [sys.executable, "-m", "gunicorn", "app:app", "--bind", "127.0.0.1:0"],
            env=child_env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode != 0
        assert re.search(f"{missing} is not set", result.stderr + result.stdout)


def test_a_second_server_on_a_taken_port_fails_at_start_naming_it(gunicorn, env, processes):
    """reuse_port must not let two servers share a port silently, each taking part of the visitors."""
    first = gunicorn(env)
    port = first.url.rsplit(":", 1)[1]
    second = processes(
        [sys.executable, "-m", "gunicorn", "app:app"],
        {**env, "HOST": "127.0.0.1", "PORT": port, "ACCESS_LOG": "0"},
        "second",
    )
    assert second.proc.wait(60) != 0
    assert f"port {port} is already in use" in second.output()
    assert requests.get(f"{first.url}/healthz", timeout=5).status_code == 200
