"""The front door under real gunicorn (the Procfile's web line), from raw sockets: slow clients, early answers,
framing that is wrong on purpose. Every wait here is bounded; none is a timing threshold."""

from __future__ import annotations

import socket
import time

import pytest
import requests

MAX_BODY = 4096  # MAX_BODY_BYTES for these servers: small, so over-limit bodies are quick to send
WAIT = 10  # seconds any one read from the server may take before the test calls it "no answer"


@pytest.fixture
def web(gunicorn, env):
    return gunicorn({**env, "MAX_BODY_BYTES": str(MAX_BODY)})


@pytest.fixture
def connect():
    """Raw client sockets, each closed at the end of the test."""
    opened = []

    def connect(url: str) -> socket.socket:
        host, port = url.removeprefix("http://").split(":")
        sock = socket.create_connection((host, int(port)), timeout=WAIT)
        sock.settimeout(WAIT)
        opened.append(sock)
        return sock

    yield connect
    for sock in opened:
        sock.close()


class Answer:
    def __init__(self, status: int, headers: dict[str, str], body: bytes):
        self.status, self.headers, self.body = status, headers, body

    @property
    def closes(self) -> bool:
        return self.headers.get("connection", "").lower() == "close"


def read_answer(sock: socket.socket, buffer: bytearray) -> Answer | None:
    """One HTTP/1.1 response from the socket (None if the server closed without one); `buffer` keeps bytes
    read past it, for the next answer on the same connection."""

    def fill() -> bool:
        try:
            data = sock.recv(65536)
        except (TimeoutError, ConnectionResetError):
            return False
        buffer.extend(data)
        return bool(data)

    while b"\r\n\r\n" not in buffer:
        if not fill():
            return None
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    buffer[:] = rest
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            while b"\r\n" not in buffer:
                if not fill():
                    return None
            size_line, _, _ = bytes(buffer).partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            while len(buffer) < len(size_line) + 2 + size + 2:
                if not fill():
                    return None
            body += bytes(buffer[len(size_line) + 2 : len(size_line) + 2 + size])
            del buffer[: len(size_line) + 2 + size + 2]
            if size == 0:
                return Answer(status, headers, body)
    length = int(headers.get("content-length", "0"))
    while len(buffer) < length:
        if not fill():
            return None
    body = bytes(buffer[:length])
    del buffer[:length]
    return Answer(status, headers, body)


def closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


GET = b"GET /f/launch HTTP/1.1\r\nHost: forms.test\r\nAccept: text/html\r\n\r\n"


def chunked(body: bytes, size: int = 100) -> bytes:
    parts = [body[i : i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


def post_head(path: str = "/f/launch", **headers: str) -> bytes:
    headers = {"Content_Type": "application/x-www-form-urlencoded", **headers}
    lines = [f"POST {path} HTTP/1.1", "Host: forms.test", "Accept: application/json"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# Slow clients ------------------------------------------------------------------------------------------------


def test_two_hundred_slow_clients_leave_the_form_answering_everyone_else(connect, web):
    slow = []
    try:
        for n in range(200):
            sock = connect(web.url)
            if n % 2:  # a head that never ends
                sock.sendall(b"GET /f/launch HTTP/1.1\r\nHost: forms.test\r\nX-Slow: ")
            else:  # a declared body that never arrives
                sock.sendall(post_head(Content_Length="1000") + b"email=")
            slow.append(sock)
        for _ in range(3):
            for sock in slow:  # one more byte each: they are alive, just slow
                sock.send(b"a")
            for _ in range(5):
                response = requests.get(f"{web.url}/f/launch", timeout=WAIT)
                assert response.status_code == 200 and "Get launch updates" in response.text
            time.sleep(0.3)
    finally:
        for sock in slow:
            sock.close()


def test_a_request_that_never_completes_is_answered_408_and_closed(connect, gunicorn, env):
    web = gunicorn({**env, "REQUEST_READ_SECONDS": "1"})
    sock = connect(web.url)
    sock.sendall(post_head(Content_Length="100") + b"email=a")
    answer = read_answer(sock, bytearray())
    assert answer is not None and answer.status == 408 and answer.closes
    assert closed_by_server(sock)
    assert requests.get(f"{web.url}/f/launch", timeout=WAIT).status_code == 200


# Early answers and framing ------------------------------------------------------------------------------------


def test_a_declared_body_over_the_limit_is_413_with_connection_close(connect, web):
    sock = connect(web.url)
    sock.sendall(post_head(Content_Length=str(10 * MAX_BODY)) + b"email=a")
    answer = read_answer(sock, bytearray())
    assert answer.status == 413 and answer.closes
    assert closed_by_server(sock)


def test_a_chunked_body_over_the_limit_is_413_not_cut_and_accepted(connect, web, services_of):
    token = requests.get(f"{web.url}/f/simple", headers={"Accept": "application/json"}, timeout=WAIT).json()["token"]
    body = f"token={token}&email=big%40example.com&pad={'x' * (2 * MAX_BODY)}&hp=spam".encode()
    sock = connect(web.url)
    sock.sendall(post_head("/f/simple", Transfer_Encoding="chunked") + chunked(body))
    answer = read_answer(sock, bytearray())
    assert answer.status == 413 and answer.closes
    assert closed_by_server(sock)
    assert services_of(web).signups.find() == []


def test_a_chunked_body_within_the_limit_is_a_signup_like_any_other(connect, web, services_of):
    token = requests.get(f"{web.url}/f/simple", headers={"Accept": "application/json"}, timeout=WAIT).json()["token"]
    sock = connect(web.url)
    sock.sendall(
        post_head("/f/simple", Transfer_Encoding="chunked")
        + chunked(f"token={token}&email=chunked%40example.com".encode(), size=7)
    )
    buffer = bytearray()
    answer = read_answer(sock, buffer)
    assert answer.status == 200 and not answer.closes, answer.body
    sock.sendall(GET)
    assert read_answer(sock, buffer).status == 200
    assert [s.email for s in services_of(web).signups.find()] == ["chunked@example.com"]


@pytest.mark.parametrize(
    "request_bytes, status",
    [
        pytest.param(post_head(Transfer_Encoding="chunked") + b"zz\r\nemail\r\n0\r\n\r\n", 400, id="bad-chunk-size"),
        pytest.param(post_head(Transfer_Encoding="chunked") + b"5\r\nemailXX0\r\n\r\n", 400, id="chunk-overruns"),
        pytest.param(post_head(Content_Length="abc") + b"email=a", 400, id="content-length-not-a-number"),
        pytest.param(
            post_head(Content_Length="5", Transfer_Encoding="chunked") + b"0\r\n\r\n", 400, id="both-framings"
        ),
        pytest.param(
            b"GET /f/launch HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n", 431, id="oversized-header"
        ),
    ],
)
def test_bad_framing_is_a_4xx_that_closes_the_connection_without_a_traceback(connect, web, request_bytes, status):
    sock = connect(web.url)
    sock.sendall(request_bytes)
    answer = read_answer(sock, bytearray())
    assert answer is not None and answer.status == status and answer.closes
    assert answer.headers.get("x-content-type-options") == "nosniff"
    assert closed_by_server(sock)
    assert requests.get(f"{web.url}/f/launch", timeout=WAIT).status_code == 200
    web.stop()
    assert "Traceback" not in web.output()


@pytest.mark.parametrize(
    "request_bytes, status",
    [
        pytest.param(post_head("/f/nope", Content_Length="11") + b"email=a%40b", 404, id="unknown-form"),
        pytest.param(post_head("/healthz", Content_Length="11") + b"email=a%40b", 405, id="wrong-method"),
        pytest.param(
            post_head("/f/launch", Content_Length="9", Content_Type="text/plain") + b"some text",
            415,
            id="wrong-content-type",
        ),
        pytest.param(
            post_head("/f/launch", Content_Length="5", Content_Type="application/json") + b'{"a":', 400, id="bad-json"
        ),
        pytest.param(
            post_head("/f/launch", Content_Length="3000", Content_Type="application/json") + b"[" * 1500 + b"]" * 1500,
            400,
            id="deep-json",
        ),
        pytest.param(post_head("/static/form.css", Content_Length="11") + b"email=a%40b", 405, id="static-405"),
    ],
)
def test_an_early_answer_keeps_the_connection_serving(connect, web, request_bytes, status):
    sock = connect(web.url)
    sock.sendall(request_bytes)
    buffer = bytearray()
    answer = read_answer(sock, buffer)
    assert answer is not None and answer.status == status
    assert answer.headers.get("x-content-type-options") == "nosniff"
    if not answer.closes:
        sock.sendall(GET)
        following = read_answer(sock, buffer)
        assert following is not None and following.status == 200, "the next request on it got no answer"
    web.stop()
    assert "Traceback" not in web.output()


def test_pipelined_requests_are_each_answered(connect, web):
    sock = connect(web.url)
    sock.sendall(GET + post_head("/f/nope", Content_Length="3") + b"a=b" + GET)
    buffer = bytearray()
    assert [read_answer(sock, buffer).status for _ in range(3)] == [200, 404, 200]


@pytest.fixture
def services_of(make_app):
    """The services of an app on the same database as the server under test, to look at what it stored."""

    def services(_web):
        return make_app().extensions["optin"]

    return services
