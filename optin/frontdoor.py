"""The outermost WSGI layer: every request body is read here, within MAX_BODY_BYTES, before anything parses it,
and every response leaves with nosniff and without a redirect to a host taken from the request.

A body is read the same way whatever its framing (Content-Length or chunked), so a chunked body over the limit
is a 413 like any other, and a body that cannot be read (bad chunking, a Content-Length that is not a number,
a client that stops early) is a 400 with one log line. The app below sees the body as bytes in memory with
its Content-Length. The answer itself is the app's (optin.views.handle_error): JSON or a page, as usual.
"""

from __future__ import annotations

import io
import logging
from urllib.parse import urlsplit, urlunsplit

from werkzeug.exceptions import BadRequest, HTTPException, RequestEntityTooLarge

log = logging.getLogger("optin.frontdoor")

PROBLEM = "optin.body_problem"  # the environ key the app checks (app.py) before it routes the request
NOSNIFF = ("X-Content-Type-Options", "nosniff")


class FrontDoor:
    def __init__(self, app, *, max_body_bytes: int, redirect_hosts: frozenset[str] = frozenset()):
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.redirect_hosts = redirect_hosts  # the hosts of the forms file's redirect_url values

    def __call__(self, environ, start_response):
        try:
            body = self.read_body(environ)
        except HTTPException as problem:
            log.info(
                "%s %s refused: %s %s",
                environ.get("REQUEST_METHOD"),
                environ.get("PATH_INFO", "")[:100],
                problem.code,
                problem.description,
            )
            environ[PROBLEM] = problem
            body = b""
        if body is not None:
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
            environ["wsgi.input_terminated"] = True
            environ.pop("HTTP_TRANSFER_ENCODING", None)

        refused = PROBLEM in environ

        def start(status, headers, exc_info=None):
            headers = self.safe_headers(headers)
            if refused:  # the body's end is unknown: the next request's start with it
                headers.append(("Connection", "close"))
            return start_response(status, headers, exc_info)

        return self.app(environ, start)

    def read_body(self, environ) -> bytes | None:
        """The whole body, or None when the request has none; an HTTPException when it cannot be taken."""
        stream = environ.get("wsgi.input")
        declared = (environ.get("CONTENT_LENGTH") or "").strip()
        chunked = "chunked" in (environ.get("HTTP_TRANSFER_ENCODING") or "").lower()
        if declared:
            if not declared.isdigit():
                raise BadRequest("The Content-Length header is not a number.")
            length = int(declared)
            if length > self.max_body_bytes:
                raise RequestEntityTooLarge()
            want = length
        elif chunked:
            want = None
        else:
            return None
        if stream is None or want == 0:
            return b""
        limit = self.max_body_bytes + 1 if want is None else want
        parts, got = [], 0
        try:
            while got < limit:
                part = stream.read(limit - got)
                if not part:
                    break
                parts.append(part)
                got += len(part)
        except Exception as exc:  # gunicorn's chunk parser, a client that went away: its framing, not our bug
            raise BadRequest(f"The request body could not be read ({type(exc).__name__}).") from None
        if want is None and got > self.max_body_bytes:
            raise RequestEntityTooLarge()
        if want is not None and got < want:
            raise BadRequest("The request body is shorter than its Content-Length.")
        return b"".join(parts)

    def safe_headers(self, headers):
        headers = list(headers)
        names = {name.lower() for name, _ in headers}
        if "x-content-type-options" not in names:
            headers.append(NOSNIFF)
        if "location" in names:
            headers = [
                (name, self.location(value)) if name.lower() == "location" else (name, value) for name, value in headers
            ]
        return headers

    def location(self, value: str) -> str:
        """A redirect may leave for a host the forms file names; any other becomes a path on this site (and a
        path never starts with //, which a browser would read as another host)."""
        parts = urlsplit(value)
        if not parts.netloc and not value.startswith(("//", "/\\", "\\")):
            return value
        if parts.netloc.lower() in self.redirect_hosts and parts.scheme in ("http", "https"):
            return value
        path = "/" + parts.path.lstrip("/\\")
        return urlunsplit(("", "", path, parts.query, parts.fragment))
