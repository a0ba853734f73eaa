"""Generated bodies and headers at every POST route: never a 5xx, never an unescaped echo, never a secret."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import API_KEY, API_SECRET, SECRET_KEY

ROUTES = ["/f/launch", "/p/launch", "/f/simple", "/f/nope", "/p/%2e%2e", "/f/launch/thanks"]
MARKER = "<script>alert(1)</script>"
VALID = "VALID-TOKEN-PLACEHOLDER"

text = st.text(alphabet=st.characters(codec="utf-8"), max_size=300) | st.just(MARKER) | st.just("\x00\r\n\t")
values = text | st.integers() | st.lists(text, max_size=3) | st.none() | st.dictionaries(text, text, max_size=2)
field_names = st.sampled_from(["email", "first_name", "company", "token", "hp", "redirect_url"]) | text


@st.composite
def requests_(draw):
    route = draw(st.sampled_from(ROUTES))
    kind = draw(st.sampled_from(["form", "json", "raw"]))
    fields = draw(st.dictionaries(field_names, values, max_size=6))
    if draw(st.booleans()):
        fields["token"] = VALID  # replaced by a real token in the test, to get past the token check
    headers = {"Accept": draw(st.sampled_from(["text/html", "application/json", "*/*", "", "x/y;q=abc"]))}
    if draw(st.booleans()):
        headers["Origin"] = draw(st.sampled_from(["https://evil.example", "null", "", MARKER]))
    if draw(st.booleans()):
        headers["X-Forwarded-For"] = draw(st.sampled_from(["1.2.3.4", "garbage", ",,,", "::1"]))
    if kind == "json":
        body, ctype = json.dumps(fields).encode(), "application/json"
    elif kind == "form":
        body = "&".join(f"{k}={v}" for k, v in fields.items()).encode("utf-8", "surrogatepass")
        ctype = draw(st.sampled_from(["application/x-www-form-urlencoded", "multipart/form-data; boundary=x"]))
    else:
        body = draw(st.binary(max_size=500))
        ctype = draw(st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded", ""]))
    headers["Content-Type"] = ctype
    return route, body, headers


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(request=requests_())
def test_no_5xx_no_echo_no_secret(client, request):
    route, body, headers = request
    if VALID.encode() in body:
        from support import extract_token

        token = extract_token(client.get("/f/launch").get_data(as_text=True))
        body = body.replace(VALID.encode(), token.encode())
    response = client.post(route, data=body, headers=headers)
    text = response.get_data(as_text=True)
    response.close()
    assert response.status_code < 500, text[:500]
    assert MARKER not in text
    for secret in (API_KEY, API_SECRET, SECRET_KEY):
        assert secret not in text and secret not in str(response.headers)


# The front door: hostile framing, nesting, encodings, methods and hosts ----------------------------------------

EVIL = "evil.example"
depths = st.sampled_from([2, 999, 1001, 2500]) | st.integers(min_value=1, max_value=4000)


@st.composite
def hostile_(draw):
    method = draw(st.sampled_from(["POST", "HEAD", "PUT", "PATCH", "DELETE", "GET"]))
    route = draw(st.sampled_from(ROUTES + ["//evil.example/x", "/f//launch", "/static/form.css", "/healthz", "/"]))
    kind = draw(st.sampled_from(["nested", "not-utf8", "bytes", "form"]))
    if kind == "nested":
        depth, opener = draw(depths), draw(st.sampled_from(["[", '{"a":', '{"email":[']))
        closer = {"[": "]", '{"a":': "}", '{"email":[': "]}"}[opener]
        body, ctype = (opener * depth + "1" + closer * depth).encode(), "application/json"
    elif kind == "not-utf8":
        body = (
            b'{"email": "'
            + draw(st.binary(min_size=1, max_size=40))
            + b'@example.com", "token": "'
            + VALID.encode()
            + b'"}'
        )
        ctype = draw(st.sampled_from(["application/json", "application/json; charset=latin-1"]))
    elif kind == "bytes":
        body, ctype = draw(st.binary(max_size=2000)), draw(st.sampled_from(["application/json", "text/plain", ""]))
    else:
        body = b"token=" + VALID.encode() + b"&email=" + draw(st.binary(max_size=60)) + b"%40example.com"
        ctype = draw(
            st.sampled_from(
                ["application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "multipart/form-data"]
            )
        )
    headers = {
        "Content-Type": ctype,
        "Host": draw(st.sampled_from(["localhost", EVIL, "evil.example:443"])),
        "Accept": draw(st.sampled_from(["text/html", "application/json", "*/*"])),
    }
    if draw(st.booleans()):
        headers["X-Forwarded-Host"] = EVIL
    return method, route, body, headers


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(request=hostile_())
def test_hostile_input_is_a_clean_answer_with_nosniff_and_no_foreign_redirect(client, services, request):
    from urllib.parse import urlsplit

    from support import extract_token

    method, route, body, headers = request
    if VALID.encode() in body:
        token = extract_token(client.get("/f/launch").get_data(as_text=True))
        body = body.replace(VALID.encode(), token.encode())
    stored = len(services.signups.find())
    response = client.open("/", method=method, data=body, headers=headers, environ_overrides={"PATH_INFO": route})
    response.get_data()
    response.close()
    assert response.status_code < 500
    assert response.headers.get("X-Content-Type-Options") == "nosniff"
    location = response.headers.get("Location", "")
    assert not urlsplit(location).netloc.startswith(EVIL) and not location.startswith("//"), location
    if method in ("HEAD", "GET"):
        assert len(services.signups.find()) == stored, f"{method} stored a signup"


# Raw framing against the server the Procfile runs ------------------------------------------------------------


@st.composite
def framings(draw):
    body = draw(st.binary(max_size=300) | st.just(b"email=a%40example.com"))
    head = "POST /f/launch HTTP/1.1\r\nHost: forms.test\r\nContent-Type: application/x-www-form-urlencoded\r\n"
    how = draw(st.sampled_from(["length", "bad-length", "chunked", "bad-chunks", "both", "over"]))
    if how == "length":
        head += f"Content-Length: {len(body)}\r\n"
    elif how == "bad-length":
        head += (
            "Content-Length: "
            + draw(st.sampled_from(["-1", "1e3", "0x10", " 5 5", "99999999999999999999", "+4", ""]))
            + "\r\n"
        )
    elif how == "over":
        head += "Content-Length: 100000\r\n"
    else:
        head += "Transfer-Encoding: chunked\r\n"
        if how == "both":
            head += f"Content-Length: {len(body)}\r\n"
        sizes = draw(st.lists(st.integers(min_value=1, max_value=64), max_size=6))
        chunks, rest = b"", body
        for size in sizes:
            if not rest:
                break
            piece, rest = rest[:size], rest[size:]
            size_text = b"%x" % len(piece)
            if how == "bad-chunks":
                size_text = draw(st.sampled_from([size_text, b"zz", b"-1", b"%x" % (len(piece) + 3), b""]))
            chunks += size_text + b"\r\n" + piece + b"\r\n"
        body = chunks + draw(st.sampled_from([b"0\r\n\r\n", b"0\r\n", b"", b"0\r\nX-T: 1\r\n\r\n"]))
    return head.encode() + b"\r\n" + body


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(request_bytes=framings())
def test_raw_framing_never_gets_a_5xx_and_keep_alive_never_lies(front_door_server, request_bytes):
    import socket

    from integration.test_front_door import GET, read_answer

    host, port = front_door_server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=15) as sock:
        sock.settimeout(15)
        sock.sendall(request_bytes)
        buffer = bytearray()
        answer = read_answer(sock, buffer)
        if answer is None:  # an incomplete request: the server waits for the rest, as it should
            return
        assert answer.status < 500 and answer.headers.get("x-content-type-options") == "nosniff"
        if not answer.closes:
            sock.sendall(GET)
            following = read_answer(sock, buffer)
            assert following is not None and following.status == 200, "kept alive, then no answer"


@pytest.fixture
def front_door_server(gunicorn, env):
    server = gunicorn({**env, "MAX_BODY_BYTES": "4096", "REQUEST_READ_SECONDS": "2"})
    yield server
    server.stop()
    assert "Traceback" not in server.output()
