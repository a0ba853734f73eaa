"""The gunicorn worker the Procfile runs: gunicorn's threads, behind a front door that buffers each request.

gthread gives a connection a thread as soon as its first byte arrives, and that thread then waits for the rest
of the request: thirty clients sending a byte a second held every thread, and every other visitor timed out.
This worker first reads each request (its head and its body, up to MAX_BODY_BYTES) in gunicorn's event loop, as
a platform router does, so a thread is only ever taken by a request that has arrived. A request that has not
arrived within REQUEST_READ_SECONDS is answered 408 and closed. docs/front-door.md has the measurements and
why threads were kept rather than an async worker.

A request handed on before all of it arrived (a body over the limit, framing the worker cannot follow) is
answered with "Connection: close" and the connection closed: its rest was never read, so where a next request
would start is unknown. Every other answer, early or not, leaves a connection that serves the next request.
"""

from __future__ import annotations

import errno
import re
import selectors
import time
from collections import deque
from functools import partial
from typing import Any

from gunicorn.workers.gthread import TConn, ThreadWorker

HEAD_END = b"\r\n\r\n"
READ_SIZE = 64 * 1024
# Far above gunicorn's own limits (request line 4094 bytes, 100 fields of 8190): a head longer than this is
# handed to gunicorn's parser, which refuses it (414 or 431) from what has arrived.
HEAD_LIMIT = 1024 * 1024
DEFAULT_BODY_LIMIT = 16 * 1024
DEFAULT_READ_SECONDS = 10.0
CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")
TIMED_OUT = (
    b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"X-Content-Type-Options: nosniff\r\nContent-Length: 41\r\n\r\n"
    b"The request did not arrive in time. Bye.\n"
)


def framing(buf: bytes | bytearray, body_limit: int) -> str:
    """What the bytes read so far allow: "wait" for more, "whole" (the request has arrived, body and all), or
    "partial" (enough for an answer, but not all of it will be read: a head too long, a body over the limit,
    or framing that gunicorn's parser will refuse)."""
    end = buf.find(HEAD_END)
    if end < 0:
        return "partial" if len(buf) > HEAD_LIMIT else "wait"
    head = bytes(buf[:end]).lower()
    start = end + len(HEAD_END)
    codings = re.findall(rb"\r\ntransfer-encoding:[ \t]*([^\r\n]*)", head)
    lengths = re.findall(rb"\r\ncontent-length:[ \t]*([^\r\n]*)", head)
    if codings:
        if lengths or codings[-1].rsplit(b",", 1)[-1].strip() != b"chunked":
            return "partial"  # the parser refuses both framings at once, and codings it cannot undo
        return chunked(buf, start, body_limit)
    if not lengths:
        return "whole"
    values = {v.strip() for v in lengths}
    if len(values) != 1 or not next(iter(values)).isdigit():
        return "partial"  # the parser answers 400
    length = int(next(iter(values)))
    if length > body_limit:
        return "partial"  # the app answers 413 without reading it
    return "whole" if len(buf) - start >= length else "wait"


def chunked(buf: bytes | bytearray, pos: int, body_limit: int) -> str:
    """Follow the chunk sizes: the whole body has arrived at the last chunk and its empty trailer line; the
    data that has arrived past the limit is enough for a 413."""
    data = 0
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return "partial" if len(buf) - pos > 4096 else "wait"  # a chunk-size line is a few bytes
        size_text = bytes(buf[pos:eol]).split(b";", 1)[0].strip(b" \t")
        if not CHUNK_SIZE.fullmatch(size_text):
            return "partial"
        size = int(size_text, 16)
        if size == 0:
            return "whole" if buf.find(HEAD_END, eol) >= 0 else "wait"
        data += min(size, max(0, len(buf) - eol - 2))
        if data > body_limit:
            return "partial"
        pos = eol + 2 + size + 2
        if pos > len(buf):
            return "wait"
        if buf[pos - 2 : pos] != b"\r\n":
            return "partial"  # data longer than its chunk size said


class Reading:
    """A connection whose request is being read in the event loop."""

    __slots__ = ("conn", "buf", "deadline", "done")

    def __init__(self, conn: TConn, buf: bytes, deadline: float):
        self.conn = conn
        self.buf = bytearray(buf)
        self.deadline = deadline
        self.done = False


class BufferingWorker(ThreadWorker):
    """gthread, with every request read in the event loop before a thread takes it (see the module's doc)."""

    wsgi: Any  # the app gunicorn loaded (gunicorn has no types); run() wraps it

    def init_process(self):
        self.reading: deque[Reading] = deque()  # oldest deadline first: each is "now + the same read time"
        super().init_process()

    def run(self):
        settings = getattr(getattr(self.wsgi, "extensions", {}).get("optin"), "settings", None)
        self.body_limit = getattr(settings, "max_body_bytes", DEFAULT_BODY_LIMIT)
        self.read_seconds = getattr(settings, "request_read_seconds", DEFAULT_READ_SECONDS)
        self.wsgi = closing_when_asked(self.wsgi)
        super().run()

    # Every way a connection reaches the thread pool goes through enqueue_req: a new connection (accept), a
    # kept-alive one that became readable, and one whose next request was read ahead with the last one's body.
    def accept(self, listener):
        try:
            sock, client = listener.accept()
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        self.start_reading(TConn(self.cfg, sock, client, listener.getsockname()), b"")

    def on_client_socket_readable(self, conn, client):
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self.start_reading(conn, b"")

    def enqueue_req(self, conn):
        if getattr(conn, "read_ahead", None) is None:  # the next request on a connection: read it first
            held = conn.parser.unreader.take_buffered() if conn.parser is not None else b""
            self.start_reading(conn, held)
            return
        super().enqueue_req(conn)

    def start_reading(self, conn: TConn, held: bytes) -> None:
        conn.read_ahead = None
        conn.sock.setblocking(False)
        reading = Reading(conn, held, time.monotonic() + self.read_seconds)
        if held and self.arrived(reading):
            return
        # A kept-alive connection comes here because it is readable: most often the request is all there, and
        # reading it now saves a trip through the poller.
        if self.read_some(reading):
            return
        self.reading.append(reading)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_request_bytes, reading))

    def on_request_bytes(self, reading: Reading, sock) -> None:
        self.read_some(reading)

    def read_some(self, reading: Reading) -> bool:
        """Read what has arrived; True once the connection is no longer this loop's (handed on, or gone)."""
        try:
            data = reading.conn.sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            data = b""
        if not data:  # the client went away before its request was complete
            self.stop_reading(reading)
            self.drop(reading.conn)
            return True
        reading.buf += data
        return self.arrived(reading)

    def arrived(self, reading: Reading) -> bool:
        """Hand the request to a thread once it can be answered without waiting for the client."""
        state = framing(reading.buf, self.body_limit)
        if state == "wait":
            return False
        self.stop_reading(reading)
        conn = reading.conn
        conn.read_ahead = bytes(reading.buf)
        conn.whole = state == "whole"
        conn.data_ready = True
        super().enqueue_req(conn)
        return True

    def stop_reading(self, reading: Reading) -> None:
        """Off the poller (before the socket is closed or handed on: the poller knows it by its number)."""
        reading.done = True
        try:
            self.poller.unregister(reading.conn.sock)
        except KeyError:  # read at once, never registered
            pass

    def drop(self, conn: TConn) -> None:
        self.nr_conns -= 1
        conn.close()

    def murder_pending(self):
        """Requests not complete in time get a 408 (a connection that sent nothing is just closed)."""
        super().murder_pending()
        now = time.monotonic()
        if not self.alive:  # stopping: a connection that has sent nothing yet will not be served by this worker
            for reading in self.reading:
                if not reading.done and not reading.buf:
                    self.stop_reading(reading)
                    self.drop(reading.conn)
        while self.reading and (self.reading[0].done or self.reading[0].deadline <= now):
            reading = self.reading.popleft()
            if reading.done:
                continue
            self.stop_reading(reading)
            if reading.buf:
                self.log.info("request not complete after %g s: answered 408 and closed", self.read_seconds)
                try:
                    reading.conn.sock.send(TIMED_OUT)
                except OSError:
                    pass
            self.drop(reading.conn)

    def handle(self, conn):
        """In a thread: give the parser the bytes already read, then serve as gthread does."""
        held, conn.read_ahead = conn.read_ahead, None
        conn.init()
        if held:
            conn.parser.unreader.unread(held)
        return super().handle(conn)

    def handle_error(self, req, client, addr, exc):
        """gunicorn writes its own page for a request it could not parse (400, 414, 431): with nosniff too."""
        super().handle_error(req, NosniffSocket(client), addr, exc)

    def handle_request(self, req, conn):
        if not getattr(conn, "whole", True):
            req.must_close = True  # the rest of this request was never read: answer, say so, and close
        return super().handle_request(req, conn)


class NosniffSocket:
    """A client socket that adds nosniff to the one page gunicorn writes itself (gunicorn.util.write_error)."""

    def __init__(self, sock):
        self._sock = sock

    def __getattr__(self, name):
        return getattr(self._sock, name)

    def sendall(self, data, *args):
        return self._sock.sendall(
            data.replace(
                b"\r\nContent-Type: text/html\r\n",
                b"\r\nContent-Type: text/html\r\nX-Content-Type-Options: nosniff\r\n",
                1,
            ),
            *args,
        )


def closing_when_asked(app):
    """An answer with "Connection: close" closes the connection. gunicorn drops hop-by-hop headers from an app's
    answer and would say keep-alive; the front door (optin.frontdoor) asks for a close when it refused a body
    it could not read to its end."""

    def wsgi(environ, start_response):
        response = getattr(start_response, "__self__", None)  # gunicorn's Response, whose method this is

        def start(status, headers, exc_info=None):
            if response is not None and any(
                name.lower() == "connection" and value.strip().lower() == "close" for name, value in headers
            ):
                response.force_close()
            return start_response(status, headers, exc_info)

        return app(environ, start)

    return wsgi
