"""The sandbox app and the arrival path every API call takes; `SandboxServer` for tests, `main` for the CLI."""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import sys
import threading
import time
from typing import Any

import requests
from flask import Flask, Response, g, request
from flask.json.provider import DefaultJSONProvider
from werkzeug.datastructures import MultiDict
from werkzeug.serving import WSGIRequestHandler, make_server

from . import v3, v4
from .control import control
from .state import (
    DEFAULT_API_KEY,
    DEFAULT_API_SECRET,
    DEFAULT_FORMS,
    DEFAULT_V4_API_KEY,
    NOT_FOUND,
    RETRY_LATER,
    V4_NOT_FOUND,
    State,
    api_version,
    json_answer,
    sandbox_state,
)

log = logging.getLogger("convertkit.sandbox")


def _read_payload() -> tuple[dict[str, Any] | None, bool]:
    """(payload, malformed): the API takes JSON, and form-encoded posts as Rails apps usually do."""
    if request.is_json:
        if not request.get_data():
            return {}, False
        data = request.get_json(silent=True)
        return (data, False) if isinstance(data, dict) else (None, True)
    if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return _form_payload(request.form), False
    return None, False


def _form_payload(form: MultiDict[str, str]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    fields = {}
    for key in form:
        field = re.fullmatch(r"fields\[(.+)\]", key)
        if field:
            fields[field[1]] = form[key]
        elif key in ("tags", "tags[]"):
            data["tags"] = [t for v in form.getlist(key) for t in v.split(",") if t.strip()]
        else:
            data[key] = form[key]
    if fields:
        data["fields"] = fields
    return data


CREDENTIAL_NAMES = frozenset({"api_key", "api_secret", "x-kit-api-key", "x_kit_api_key", "access_token"})


def _scrub(data: dict[str, Any] | None, credentials: tuple[str, ...]) -> dict[str, Any] | None:
    """Masks what is named like a credential, and any known key sent under another name."""
    if data is None:
        return None
    return {
        k: "***" if k.lower() in CREDENTIAL_NAMES or (isinstance(v, str) and v in credentials) else v
        for k, v in data.items()
    }


def _arrive() -> Response | None:
    """Every /v3/ and /v4/ call is logged, counted against its key, delayed, maybe answered by a fault."""
    version = api_version(request.path)
    if version is None:
        return None
    arrived = time.time()
    state = sandbox_state()
    g.payload, g.malformed = _read_payload()
    with state.lock:
        credentials = state.credentials
    entry = {
        "at": arrived,
        "method": request.method,
        "path": request.path,
        "query": _scrub(request.args.to_dict(), credentials),
        "json": _scrub(g.payload, credentials) if request.content_length else None,
        "content_type": request.headers.get("Content-Type"),
        "user_agent": request.headers.get("User-Agent"),
        "status": None,
    }
    rate_key = v4.credential() if version == "v4" else v3.credential()  # each key its own bucket
    with state.lock:
        state.log.append(entry)
        state.in_flight += 1
        g.in_flight = True
        fault = state.take_fault(request.method, request.path)
        limited = state.over_limit(rate_key, arrived)
        pause = state.latency + (fault.delay if fault else 0.0)
    g.entry, g.fault = entry, fault
    if pause:
        time.sleep(pause)
    if fault and fault.replaces and not fault.process:
        return fault.response()
    if limited:
        return Response(RETRY_LATER, status=429, content_type="text/plain")
    return None


def _finish(response: Response) -> Response:
    entry = g.get("entry")
    if entry is None:
        return response
    fault = g.fault
    if fault and fault.process:
        response = fault.response()
    if fault and fault.trickle and not g.get("dropped"):
        response = _trickled(response, fault.trickle)
    status = None if g.get("dropped") else response.status_code
    with sandbox_state().lock:
        entry["status"] = status
    # No query string or body: they carry keys and email addresses.
    log.info("%s %s -> %s", request.method, request.path, status)
    return response


def _answered(_error: BaseException | None) -> None:
    if g.get("in_flight"):
        with sandbox_state().lock:
            sandbox_state().in_flight -= 1


def _trickled(response: Response, pause: float) -> Response:
    """The same answer, its body sent a byte at a time: the status line and headers go first."""
    body = response.get_data()

    def drip():
        for index in range(len(body)):
            time.sleep(pause)
            yield body[index : index + 1]

    headers = [(k, v) for k, v in response.headers.items() if k.lower() != "content-length"]
    headers.append(("Content-Length", str(len(body))))
    return Response(drip(), status=response.status_code, headers=headers)


def _api_not_found(error: Exception) -> Any:
    """Unknown paths and methods under an API answer that API's 404 body."""
    version = api_version(request.path)
    if version == "v3":
        return json_answer(NOT_FOUND, 404)
    if version == "v4":
        return json_answer(V4_NOT_FOUND, 404)
    return error


class OrderedJSON(DefaultJSONProvider):
    sort_keys = False  # keep the field order of ConvertKit's answers


def create_sandbox(
    *,
    api_key: str = DEFAULT_API_KEY,
    api_secret: str | None = DEFAULT_API_SECRET,
    v4_api_key: str = DEFAULT_V4_API_KEY,
    forms: dict[int, str | dict[str, Any]] | None = None,
    rate_limit: str | None = "120/60",
    latency: float = 0.0,
) -> Flask:
    """`forms` maps ids to names, or to {"name": ..., "archived": true} for an archived form."""
    app = Flask(__name__)
    app.json = OrderedJSON(app)
    app.config["MAX_CONTENT_LENGTH"] = 8 * 1024 * 1024  # room for a fault with a huge answer body
    state = State(
        api_key=api_key,
        api_secret=api_secret,
        v4_api_key=v4_api_key,
        forms=DEFAULT_FORMS if forms is None else forms,
        rate_limit=rate_limit,
        latency=latency,
    )
    state.configure({})  # the checks POST /_sandbox/config makes, on the initial values
    app.extensions["convertkit_sandbox"] = state
    app.before_request(_arrive)
    app.after_request(_finish)
    app.teardown_request(_answered)
    app.register_error_handler(404, _api_not_found)
    app.register_error_handler(405, _api_not_found)
    app.register_blueprint(v3.api)
    app.register_blueprint(v4.api)
    app.register_blueprint(control)
    return app


class _QuietHandler(WSGIRequestHandler):
    """werkzeug's access log prints query strings, and GET calls carry the API key there."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class SandboxServer:
    """A sandbox on a free loopback port in a background thread, for tests that need real HTTP."""

    def __init__(self, *, port: int = 0, **options: Any) -> None:
        self.app = create_sandbox(**options)
        state = self.app.extensions["convertkit_sandbox"]
        self.api_key, self.api_secret, self.v4_api_key = state.api_key, state.api_secret, state.v4_api_key
        self._server = make_server("127.0.0.1", port, self.app, threaded=True, request_handler=_QuietHandler)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self.api_url = f"{self.url}/v3/"
        self.api_v4_url = f"{self.url}/v4/"
        self._http = requests.Session()
        self._thread: threading.Thread | None = None

    def start(self) -> SandboxServer:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="convertkit-sandbox",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()
        self._http.close()

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _control(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, f"{self.url}/_sandbox/{path}", timeout=5, **kwargs)
        response.raise_for_status()
        return response.json() if response.content else None

    def requests(self, path_contains: str | None = None) -> list[dict[str, Any]]:
        params = {"path_contains": path_contains} if path_contains else None
        return self._control("GET", "requests", params=params)

    def clear_requests(self) -> None:
        self._control("DELETE", "requests")

    def faults(self, faults: list[dict[str, Any]]) -> None:
        self._control("POST", "faults", json={"faults": faults})

    def clear_faults(self) -> None:
        self._control("DELETE", "faults")

    def configure(self, **config: Any) -> dict[str, Any]:
        return self._control("POST", "config", json=config)

    def subscribers(self) -> list[dict[str, Any]]:
        return self._control("GET", "subscribers")

    def summary(self) -> dict[str, Any]:
        return self._control("GET", "")

    def reset(self) -> None:
        """Back to the state at creation: config, log, rate windows, faults and subscribers."""
        self._control("POST", "reset")

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Until every API request that arrived has been handled, delayed ones included: count only then."""
        deadline = time.monotonic() + timeout
        while self.summary()["in_flight"]:
            if time.monotonic() > deadline:
                raise TimeoutError("the sandbox still has requests in flight")
            time.sleep(0.05)


def main(argv: list[str] | None = None) -> int:
    env = os.environ
    parser = argparse.ArgumentParser(
        prog="python -m convertkit.sandbox", description="Local stand-in for ConvertKit's v3 and v4 APIs."
    )
    parser.add_argument("--host", default=env.get("SANDBOX_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=env.get("SANDBOX_PORT", "5001"))
    parser.add_argument("--api-key", default=env.get("SANDBOX_API_KEY", DEFAULT_API_KEY))
    parser.add_argument("--api-secret", default=env.get("SANDBOX_API_SECRET", DEFAULT_API_SECRET))
    parser.add_argument("--v4-api-key", default=env.get("SANDBOX_V4_API_KEY", DEFAULT_V4_API_KEY))
    parser.add_argument("--rate-limit", default=env.get("SANDBOX_RATE_LIMIT", "120/60"))
    parser.add_argument("--latency", type=float, default=env.get("SANDBOX_LATENCY", "0"))
    parser.add_argument(
        "--verbose",
        action="store_true",
        default=env.get("SANDBOX_VERBOSE", "").lower() in ("1", "true", "yes", "on"),
        help="log one line per API request (method, path, status; never query strings or bodies)",
    )
    args = parser.parse_args(argv)
    try:
        app = create_sandbox(
            api_key=args.api_key,
            api_secret=args.api_secret or None,
            v4_api_key=args.v4_api_key,
            rate_limit=args.rate_limit,
            latency=args.latency,
        )
    except ValueError as exc:
        parser.error(str(exc))
    logging.basicConfig(format="%(asctime)s sandbox: %(message)s")
    log.setLevel(logging.INFO if args.verbose else logging.WARNING)
    server = make_server(args.host, args.port, app, threaded=True, request_handler=_QuietHandler)

    def stop(signum: int, frame: object) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()  # shutdown() waits for this loop

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(
        f"ConvertKit sandbox on http://{host}:{server.server_port}/v3/ (api_key={args.api_key})",
        flush=True,
    )
    # Callers read the first stdout line for the v3 URL, and stdout says nothing more; v4 goes to stderr.
    print(
        f"Kit v4 API on http://{host}:{server.server_port}/v4/ (X-Kit-Api-Key: {args.v4_api_key})",
        file=sys.stderr,
        flush=True,
    )
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0
