"""Optional human checks, always verified on the server; the verify URL points at a local fake here."""

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import altcha
import pytest
from support import extract_token

CHALLENGE_TOML = """
[forms.turnstile]
convertkit_form_id = 4242
title = "T"
challenge = "turnstile"
challenge_site_key = "1x00000000000000000000AA"

[forms.hcaptcha]
convertkit_form_id = 4242
title = "H"
challenge = "hcaptcha"
challenge_site_key = "10000000-ffff-ffff-ffff-000000000001"

[forms.altcha]
convertkit_form_id = 4243
title = "A"
challenge = "altcha"
"""


class Verifier(BaseHTTPRequestHandler):
    """Accepts the response 'human-ok' with the right secret, like the real siteverify endpoints."""

    seen: list = []

    def do_POST(self):
        form = parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
        Verifier.seen.append(form)
        ok = form.get("response") == ["human-ok"] and form.get("secret") == ["server-side-secret"]
        body = json.dumps({"success": ok}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def verifier():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Verifier)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    Verifier.seen = []
    yield f"http://127.0.0.1:{server.server_port}/siteverify"
    server.shutdown()
    server.server_close()


@pytest.fixture
def client(make_app, tmp_path, verifier):
    path = tmp_path / "challenges.toml"
    path.write_text(CHALLENGE_TOML)
    return make_app(
        FORMS_FILE=str(path),
        TURNSTILE_VERIFY_URL=verifier,
        HCAPTCHA_VERIFY_URL=verifier,
        TURNSTILE_SECRET="server-side-secret",
        HCAPTCHA_SECRET="server-side-secret",
    ).test_client()


@pytest.mark.parametrize(
    ("slug", "field"), [("turnstile", "cf-turnstile-response"), ("hcaptcha", "h-captcha-response")]
)
@pytest.mark.parametrize("json_mode", [False, True])
def test_hosted_challenges_are_verified_server_side(client, ck, slug, field, json_mode):
    headers = {"Accept": "application/json"} if json_mode else {}

    def post(answer):
        data = {"token": extract_token(client.get(f"/f/{slug}").get_data(as_text=True)), "email": "a@example.com"}
        if answer:
            data[field] = answer
        return client.post(f"/f/{slug}", data=data, headers=headers)

    assert post(None).status_code == 422
    assert post("bot-guess").status_code == 422
    assert post("human-ok").status_code in (200, 303)
    assert len(ck.requests(path_contains="/subscribe")) == 1
    assert Verifier.seen[-1]["remoteip"] == ["127.0.0.1"]


def solve(challenge: dict) -> str:
    solution = altcha.solve_challenge_v1(
        challenge["challenge"], challenge["salt"], challenge["algorithm"], challenge["maxNumber"]
    )
    return base64.b64encode(
        json.dumps(
            {**{k: challenge[k] for k in ("algorithm", "challenge", "salt", "signature")}, "number": solution.number}
        ).encode()
    ).decode()


def test_altcha_proof_of_work_is_verified_and_single_use(client, ck):
    challenge_response = client.get("/f/altcha/altcha")
    assert challenge_response.headers["Cache-Control"] == "no-store"
    payload = solve(challenge_response.json)

    def post(answer):
        data = {"token": extract_token(client.get("/f/altcha").get_data(as_text=True)), "email": "a@example.com"}
        return client.post(
            "/f/altcha", data={**data, "altcha": answer} if answer else data, headers={"Accept": "application/json"}
        )

    assert post(None).status_code == 422
    assert post(base64.b64encode(b'{"number": 1}').decode()).status_code == 422
    assert post(payload).status_code == 200
    assert post(payload).status_code == 422, "a solved puzzle is good for one signup"
    assert len(ck.requests(path_contains="/subscribe")) == 1


def test_forms_without_a_challenge_have_no_challenge_route(client):
    assert client.get("/f/turnstile/altcha").status_code == 404


@pytest.mark.parametrize("tamper", ["wrong-number", "another-challenge", "forged-signature"])
def test_a_wrong_altcha_solution_is_refused(client, ck, tamper):
    """A bot that skips the work, or reuses a solved puzzle's parts, gets nothing through."""
    solved = json.loads(base64.b64decode(solve(client.get("/f/altcha/altcha").json)))
    other = client.get("/f/altcha/altcha").json
    wrong = {
        **solved,
        **{
            "wrong-number": {"number": solved["number"] + 1},
            "another-challenge": {"challenge": other["challenge"]},
            "forged-signature": {"signature": "0" * len(solved["signature"])},
        }[tamper],
    }

    def post(payload):
        data = {
            "token": extract_token(client.get("/f/altcha").get_data(as_text=True)),
            "email": "a@example.com",
            "altcha": base64.b64encode(json.dumps(payload).encode()).decode(),
        }
        return client.post("/f/altcha", data=data, headers={"Accept": "application/json"})

    assert post(wrong).status_code == 422
    assert ck.requests(path_contains="/subscribe") == []
    assert post(solved).status_code == 200, "the honest solution still works"


@pytest.mark.parametrize(("fallbacks", "status"), [("", 422), ("old-key-that-issued-it", 200)])
def test_a_puzzle_issued_before_a_key_rotation_still_verifies_with_the_fallback(
    make_app, ck, tmp_path, fallbacks, status
):
    path = tmp_path / "challenges.toml"
    path.write_text(CHALLENGE_TOML)
    before = make_app(FORMS_FILE=str(path), SECRET_KEY="old-key-that-issued-it").test_client()
    token = extract_token(before.get("/f/altcha").get_data(as_text=True))
    answer = solve(before.get("/f/altcha/altcha").json)
    after = make_app(FORMS_FILE=str(path), SECRET_KEY="new-key", SECRET_KEY_FALLBACKS=fallbacks).test_client()
    response = after.post(
        "/f/altcha",
        data={"token": token, "email": "a@example.com", "altcha": answer},
        headers={"Accept": "application/json"},
    )
    assert response.status_code == status
