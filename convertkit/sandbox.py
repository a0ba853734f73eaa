"""A local stand-in for ConvertKit v3, so development, tests and benchmarks never touch an account.

It answers with the success and error bodies recorded in the API notes, enforces the per-key rolling
rate limit, and has control endpoints under /_sandbox/ to inspect what arrived and inject faults.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import logging
import os
import random
import re
import signal
import socket
import threading
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

import requests
from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from werkzeug.datastructures import MultiDict
from werkzeug.serving import WSGIRequestHandler, make_server

log = logging.getLogger(__name__)

NOT_PRESENT = {"error": "Authorization Failed", "message": "API Key not present"}
NOT_VALID = {"error": "Authorization Failed", "message": "API Key not valid"}
NOT_FOUND = {"error": "Not Found", "message": "The entity you were trying to find doesn't exist"}
INVALID_EMAIL = {"error": "Error updating subscriber", "message": "Email address is invalid"}
TAG_NOT_FOUND = {"error": "Tag not found", "message": ""}
BAD_JSON = {"error": "Bad Request", "message": "The request body is not valid JSON"}
RETRY_LATER = "Retry later"
SERVER_ERROR_HTML = "<html><body><h1>We're sorry, but something went wrong.</h1></body></html>"

DEFAULT_API_KEY = "sandbox_api_key"
DEFAULT_API_SECRET = "sandbox_api_secret"
DEFAULT_FORMS = {4242: "Launch updates", 4243: "Weekly newsletter", 4244: "Free guide"}
DEFAULT_TAGS = {101: "launch", 102: "newsletter"}
DEFAULT_CUSTOM_FIELDS = {"last_name": "Last Name", "company": "Company"}
EMBED_HOST = "https://sandbox.convertkit.invalid"  # .invalid never resolves: no real script loads
CREATED_AT = "2024-01-01T00:00:00.000Z"

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")
_RATE = re.compile(r"\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)\s*")


def parse_rate_limit(text: str | None) -> tuple[int, float] | None:
    """Same N/S spelling as the app's settings; empty, "0" or "off" turns limiting off."""
    if text is None or str(text).strip().lower() in ("", "0", "off"):
        return None
    match = _RATE.fullmatch(str(text))
    if not match or int(match[1]) < 1 or float(match[2]) <= 0:
        raise ValueError(f"rate_limit must look like N/S, e.g. 120/60, got {text!r}")
    return int(match[1]), float(match[2])


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _plausible_email(value: object) -> bool:
    """Local part "invalid…" is refused too, so tests get a 422 with an address the app accepts."""
    if not isinstance(value, str) or len(value) > 254 or not _EMAIL.fullmatch(value):
        return False
    return not value.lower().startswith("invalid")


@dataclass
class Fault:
    """One injected misbehaviour, answered `times` times to matching /v3/ requests."""

    status: int | None = None
    body: Any = None
    content_type: str | None = None
    delay: float = 0.0
    times: int = 1
    path_contains: str | None = None
    method: str | None = None
    close: bool = False
    # Handle the request for real, then answer with the fault: ConvertKit acted, the answer is lost.
    process: bool = False
    # Send the answer's body one byte at a time, this many seconds apart (a slow proxy, a stalled link).
    trickle: float = 0.0
    # Hit this fraction of matching requests, at random, for as long as the fault stands (`times` is ignored).
    rate: float | None = None

    @classmethod
    def parse(cls, spec: object) -> Fault:
        if not isinstance(spec, dict) or set(spec) - set(cls.__dataclass_fields__):
            raise ValueError(
                f"a fault is an object with keys from {sorted(cls.__dataclass_fields__)}"
            )
        fault = cls(**spec)
        if fault.status is not None and not (
            isinstance(fault.status, int) and 100 <= fault.status <= 599
        ):
            raise ValueError("fault status must be an integer HTTP status")
        if not isinstance(fault.times, int) or fault.times < 1:
            raise ValueError("fault times must be a positive integer")
        if not isinstance(fault.delay, int | float) or fault.delay < 0:
            raise ValueError("fault delay must be a number of seconds")
        if not all(isinstance(v, str | None) for v in (fault.path_contains, fault.method)):
            raise ValueError("fault path_contains and method must be strings")
        if fault.process and not fault.replaces:
            raise ValueError("a fault with process needs a status or close")
        if not isinstance(fault.trickle, int | float) or fault.trickle < 0:
            raise ValueError("fault trickle must be a number of seconds")
        if fault.rate is not None and not (isinstance(fault.rate, int | float) and 0 < fault.rate <= 1):
            raise ValueError("fault rate must be a fraction above 0 and at most 1")
        return fault

    @property
    def replaces(self) -> bool:
        return self.status is not None or self.close

    def matches(self, method: str, path: str) -> bool:
        return (self.path_contains is None or self.path_contains in path) and (
            self.method is None or self.method.upper() == method
        )

    def response(self) -> Response:
        if self.close and _drop_connection():
            return Response(status=200)
        status = self.status or 502
        body = _default_body(status) if self.body is None else self.body
        if isinstance(body, dict | list):
            response = jsonify(body)
            response.status_code = status
            return response
        content_type = self.content_type or (
            "text/html; charset=utf-8" if str(body).lstrip().startswith("<") else "text/plain"
        )
        return Response(str(body), status=status, content_type=content_type)


def _default_body(status: int) -> Any:
    """The body ConvertKit was seen to send, so a bare {"status": N} fault is realistic."""
    if 200 <= status < 300:
        return {}
    if status >= 500:
        return SERVER_ERROR_HTML
    known = {401: NOT_VALID, 404: NOT_FOUND, 422: INVALID_EMAIL, 429: RETRY_LATER}
    if status in known:
        return known[status]
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    return {"error": phrase, "message": ""}


def _drop_connection() -> bool:
    """Shut the socket without an answer; werkzeug then treats its own write as a dropped client."""
    sock = request.environ.get("werkzeug.socket")
    if sock is None:  # Flask's test client has no socket to drop
        return False
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    g.dropped = True
    return True


class _State:
    """Everything the sandbox remembers; one lock, as werkzeug serves each request on a thread."""

    def __init__(self, **initial: Any) -> None:
        self.lock = threading.RLock()
        self._initial = initial
        self.in_flight = 0  # API requests arrived and not yet answered, delayed ones included; kept by reset()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.api_key: str = self._initial["api_key"]
            self.api_secret: str | None = self._initial["api_secret"]
            self.forms: dict[int, str] = dict(self._initial["forms"])
            self.tags: dict[int, str] = dict(DEFAULT_TAGS)
            self.rate_limit = parse_rate_limit(self._initial["rate_limit"])
            self.latency: float = float(self._initial["latency"])
            self.log: list[dict[str, Any]] = []
            self.arrivals: dict[str, deque[float]] = {}
            self.faults: list[Fault] = []
            self.subscribers: dict[str, dict[str, Any]] = {}
            self.signups: Counter[tuple[str, int, str]] = Counter()
            self.subscriptions: dict[int, list[dict[str, Any]]] = {}  # form id → every subscription, oldest first
            self._subscription_ids = itertools.count(376449416)
            self._subscriber_ids = itertools.count(92766417)

    def configure(self, changes: dict[str, Any]) -> None:
        unknown = set(changes) - {"api_key", "api_secret", "rate_limit", "latency", "forms", "tags"}
        if unknown:
            raise ValueError(f"unknown config keys: {sorted(unknown)}")
        with self.lock:
            rate_limit = parse_rate_limit(changes.get("rate_limit", self.rate_limit_text))
            latency = float(changes.get("latency", self.latency))
            if latency < 0:
                raise ValueError("latency must be >= 0")
            forms = _merge_names(self.forms, changes.get("forms"))
            tags = _merge_names(self.tags, changes.get("tags"))
            api_key = changes.get("api_key", self.api_key)
            if not isinstance(api_key, str) or not api_key:
                raise ValueError("api_key must be a non-empty string")
            self.api_key = api_key
            self.api_secret = changes.get("api_secret", self.api_secret)
            self.rate_limit, self.latency, self.forms, self.tags = rate_limit, latency, forms, tags

    @property
    def rate_limit_text(self) -> str | None:
        return None if self.rate_limit is None else f"{self.rate_limit[0]}/{self.rate_limit[1]:g}"

    def config(self) -> dict[str, Any]:
        with self.lock:
            return {
                "api_key": self.api_key,
                "api_secret_set": bool(self.api_secret),
                "rate_limit": self.rate_limit_text,
                "latency": self.latency,
                "forms": {str(key): name for key, name in self.forms.items()},
                "tags": {str(key): name for key, name in self.tags.items()},
            }

    def take_fault(self, method: str, path: str) -> Fault | None:
        draw = random.random()  # one draw shared by the `rate` faults, so their rates add up
        for index, fault in enumerate(self.faults):
            if not fault.matches(method, path):
                continue
            if fault.rate is not None:
                if draw < fault.rate:
                    return fault
                draw -= fault.rate
                continue
            fault.times -= 1
            if fault.times == 0:
                del self.faults[index]
            return fault
        return None

    def over_limit(self, key: str, arrived: float) -> bool:
        """A sliding log per key; refused calls count too, as every call spends the budget."""
        if self.rate_limit is None:
            return False
        count, seconds = self.rate_limit
        window = self.arrivals.setdefault(key, deque())
        while window and window[0] <= arrived - seconds:
            window.popleft()
        window.append(arrived)
        return len(window) > count

    def subscribe(
        self,
        kind: str,
        target: int,
        email: str,
        first_name: str | None,
        fields: dict,
        tags: list[int],
    ) -> dict[str, Any]:
        now = _now()
        key = email.lower()
        subscriber = self.subscribers.get(key)
        if subscriber is None:
            subscriber = self.subscribers[key] = {
                "id": next(self._subscriber_ids),
                "first_name": None,
                "email_address": email,
                "state": "inactive",
                "created_at": now,
                "fields": dict.fromkeys(DEFAULT_CUSTOM_FIELDS),
                "tags": [],
            }
        if first_name:
            subscriber["first_name"] = first_name
        subscriber["fields"].update((k, v) for k, v in fields.items() if k in DEFAULT_CUSTOM_FIELDS)
        subscriber["tags"] += [tag for tag in tags if tag not in subscriber["tags"]]
        self.signups[(kind, target, key)] += 1
        subscription = {
            "id": next(self._subscription_ids),
            "state": "inactive",
            "created_at": now,
            "source": None,
            "referrer": None,
            "subscribable_id": target,
            "subscribable_type": kind,
            "subscriber": {"id": subscriber["id"]},
        }
        if kind == "form":
            self.subscriptions.setdefault(target, []).append(subscription)
        return subscription

    def signup_list(self) -> list[dict[str, Any]]:
        with self.lock:
            return [
                {
                    "form_id": target if kind == "form" else None,
                    "tag_id": target if kind == "tag" else None,
                    "email": self.subscribers[key]["email_address"],
                    "subscriber_id": self.subscribers[key]["id"],
                    "count": count,
                }
                for (kind, target, key), count in self.signups.items()
            ]


def _merge_names(current: dict[int, str], changes: object) -> dict[int, str]:
    if changes is None:
        return dict(current)
    if not isinstance(changes, dict):
        raise ValueError("forms and tags are objects of id -> name (null removes one)")
    merged = dict(current)
    for raw_id, name in changes.items():
        if not str(raw_id).isdigit():
            raise ValueError(f"ids must be integers, got {raw_id!r}")
        if name is None:
            merged.pop(int(raw_id), None)
        else:
            merged[int(raw_id)] = str(name)
    return merged


def _state() -> _State:
    return current_app.extensions["convertkit_sandbox"]


def _json(body: Any, status: int = 200) -> Response:
    response = jsonify(body)
    response.status_code = status
    return response


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


def _scrub(data: dict[str, Any] | None) -> dict[str, Any] | None:
    if data is None:
        return None
    return {k: "***" if k in ("api_key", "api_secret") else v for k, v in data.items()}


def _supplied(name: str) -> str | None:
    for source in (g.get("payload") or {}, request.args):
        value = source.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def _denied(*, secret_only: bool = False) -> Response | None:
    state = _state()
    key, secret = _supplied("api_key"), _supplied("api_secret")
    with state.lock:
        if secret is not None and secret == state.api_secret:
            return None
        if not secret_only and key is not None and key == state.api_key:
            return None
    return _json(NOT_PRESENT if key is None and secret is None else NOT_VALID, 401)


def _arrive() -> Response | None:
    """Every /v3/ call is logged, counted against its key, delayed, maybe answered by a fault."""
    if not request.path.startswith("/v3/"):
        return None
    arrived = time.time()
    state = _state()
    g.payload, g.malformed = _read_payload()
    entry = {
        "at": arrived,
        "method": request.method,
        "path": request.path,
        "query": _scrub(request.args.to_dict()),
        "json": _scrub(g.payload) if request.content_length else None,
        "content_type": request.headers.get("Content-Type"),
        "user_agent": request.headers.get("User-Agent"),
        "status": None,
    }
    rate_key = _supplied("api_key") or _supplied("api_secret") or ""
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
    with _state().lock:
        entry["status"] = status
    # No query string or body: they carry keys and email addresses.
    log.info("%s %s -> %s", request.method, request.path, status)
    return response


def _answered(_error: BaseException | None) -> None:
    if g.get("in_flight"):
        with _state().lock:
            _state().in_flight -= 1


def _trickled(response: Response, pause: float) -> Response:
    """The same answer, its body sent a byte at a time: the status line and headers go first."""
    body = response.get_data()

    def drip():
        for index in range(len(body)):
            time.sleep(pause)
            yield body[index:index + 1]

    headers = [(k, v) for k, v in response.headers.items() if k.lower() != "content-length"]
    headers.append(("Content-Length", str(len(body))))
    return Response(drip(), status=response.status_code, headers=headers)


def _api_not_found(error: Exception) -> Any:
    if request.path.startswith("/v3/"):
        return _json(NOT_FOUND, 404)
    return error


api = Blueprint("sandbox_api", __name__, url_prefix="/v3")


@api.post("/forms/<int:form_id>/subscribe")
def subscribe_to_form(form_id: int) -> Response:
    return _subscribe("form", form_id)


@api.post("/tags/<int:tag_id>/subscribe")
def subscribe_to_tag(tag_id: int) -> Response:
    return _subscribe("tag", tag_id)


def _subscribe(kind: str, target: int) -> Response:
    if g.malformed:
        return _json(BAD_JSON, 400)
    denied = _denied()
    if denied:
        return denied
    state = _state()
    payload = g.payload or {}
    email, first_name = payload.get("email"), payload.get("first_name")
    fields, raw_tags = payload.get("fields") or {}, payload.get("tags") or []
    with state.lock:
        if target not in (state.forms if kind == "form" else state.tags):
            return _json(NOT_FOUND, 404)
        if not _plausible_email(email):
            return _json(INVALID_EMAIL, 422)
        if not isinstance(fields, dict) or not isinstance(first_name, str | None):
            return _json(
                {"error": "Error updating subscriber", "message": "Invalid parameters"}, 422
            )
        if not isinstance(raw_tags, list) or not all(str(t).isdigit() for t in raw_tags):
            return _json(TAG_NOT_FOUND, 422)
        tags = [int(t) for t in raw_tags]
        if any(tag not in state.tags for tag in tags):
            return _json(TAG_NOT_FOUND, 422)
        subscription = state.subscribe(kind, target, email, first_name, fields, tags)
    return _json({"subscription": subscription})


@api.get("/forms")
def list_forms() -> Response:
    denied = _denied()
    if denied:
        return denied
    with _state().lock:
        forms = dict(_state().forms)
    return _json({"forms": [_form_json(form_id, name) for form_id, name in forms.items()]})


def _form_json(form_id: int, name: str) -> dict[str, Any]:
    uid = hashlib.sha1(str(form_id).encode()).hexdigest()[:10]
    return {
        "id": form_id,
        "name": name,
        "created_at": CREATED_AT,
        "type": "embed",
        "format": "inline",
        "embed_js": f"{EMBED_HOST}/{uid}/index.js",
        "embed_url": f"{EMBED_HOST}/{uid}",
        "archived": False,
        "uid": uid,
        "title": name,
        "description": "",
        "sign_up_button_text": "Subscribe",
        "success_message": "Success! Now check your email to confirm your subscription.",
    }


@api.get("/tags")
def list_tags() -> Response:
    denied = _denied()
    if denied:
        return denied
    with _state().lock:
        tags = dict(_state().tags)
    return _json(
        {"tags": [{"id": i, "name": name, "created_at": CREATED_AT} for i, name in tags.items()]}
    )


@api.get("/custom_fields")
def list_custom_fields() -> Response:
    denied = _denied()
    if denied:
        return denied
    fields = [
        {"id": i, "name": f"ck_field_{i}_{key}", "key": key, "label": label}
        for i, (key, label) in enumerate(DEFAULT_CUSTOM_FIELDS.items(), start=1)
    ]
    return _json({"custom_fields": fields})


@api.get("/account")
def account() -> Response:
    denied = _denied(secret_only=True)
    if denied:
        return denied
    return _json(
        {
            "name": "Sandbox",
            "plan_type": "creator",
            "primary_email_address": "owner@sandbox.invalid",
        }
    )


@api.get("/subscribers")
def list_subscribers() -> Response:
    denied = _denied(secret_only=True)
    if denied:
        return denied
    wanted = (request.args.get("email_address") or "").lower()
    with _state().lock:
        found = [
            {k: v for k, v in subscriber.items() if k != "tags"}
            for key, subscriber in _state().subscribers.items()
            if not wanted or key == wanted
        ]
    return _json(
        {"total_subscribers": len(found), "page": 1, "total_pages": 1, "subscribers": found}
    )


SUBSCRIPTIONS_PER_PAGE = 50


@api.get("/forms/<int:form_id>/subscriptions")
def list_form_subscriptions(form_id: int) -> Response:
    denied = _denied(secret_only=True)
    if denied:
        return denied
    state = _state()
    try:
        page = max(1, int(request.args.get("page") or 1))
    except ValueError:
        page = 1
    with state.lock:
        if form_id not in state.forms:
            return _json(NOT_FOUND, 404)
        found = [dict(s) for s in state.subscriptions.get(form_id, [])]
    if request.args.get("sort_order") == "desc":
        found.reverse()
    pages = max(1, -(-len(found) // SUBSCRIPTIONS_PER_PAGE))
    start = (page - 1) * SUBSCRIPTIONS_PER_PAGE
    return _json({"total_subscriptions": len(found), "page": page, "total_pages": pages,
                  "subscriptions": found[start:start + SUBSCRIPTIONS_PER_PAGE]})


control = Blueprint("sandbox_control", __name__, url_prefix="/_sandbox")


@control.get("/")
def summary() -> Response:
    """What a developer running `make run` wants to see: did my signups arrive, and how often."""
    state = _state()
    signups = state.signup_list()
    with state.lock:
        statuses = Counter(str(entry["status"]) for entry in state.log)
        faults = [asdict(fault) for fault in state.faults]
        total = len(state.log)
        in_flight = state.in_flight
    return _json(
        {
            "api_url": request.host_url + "v3/",
            "config": state.config(),
            "requests": total,
            "in_flight": in_flight,
            "statuses": dict(statuses),
            "subscriptions": sum(s["count"] for s in signups),
            "duplicates": sum(s["count"] - 1 for s in signups),
            "subscribers": signups,
            "faults": faults,
        }
    )


@control.get("/requests")
def list_requests() -> Response:
    needle = request.args.get("path_contains")
    state = _state()
    with state.lock:
        entries = [dict(e) for e in state.log if needle is None or needle in e["path"]]
    return _json(entries)


@control.delete("/requests")
def clear_requests() -> Response:
    state = _state()
    with state.lock:
        state.log.clear()
        state.arrivals.clear()
    return Response(status=204)


@control.get("/faults")
def list_faults() -> Response:
    with _state().lock:
        return _json([asdict(fault) for fault in _state().faults])


@control.post("/faults")
def add_faults() -> Response:
    specs = (request.get_json(silent=True) or {}).get("faults")
    try:
        if not isinstance(specs, list):
            raise ValueError('send {"faults": [...]}')
        faults = [Fault.parse(spec) for spec in specs]
    except (TypeError, ValueError) as exc:
        return _json({"error": str(exc)}, 400)
    state = _state()
    with state.lock:
        state.faults += faults
        pending = len(state.faults)
    return _json({"queued": len(faults), "pending": pending}, 201)


@control.delete("/faults")
def clear_faults() -> Response:
    with _state().lock:
        _state().faults.clear()
    return Response(status=204)


@control.get("/config")
def get_config() -> Response:
    return _json(_state().config())


@control.post("/config")
def set_config() -> Response:
    changes = request.get_json(silent=True)
    try:
        if not isinstance(changes, dict):
            raise ValueError("send a JSON object")
        _state().configure(changes)
    except (TypeError, ValueError) as exc:
        return _json({"error": str(exc)}, 400)
    return _json(_state().config())


@control.get("/subscribers")
def list_signups() -> Response:
    return _json(_state().signup_list())


@control.post("/reset")
def reset() -> Response:
    _state().reset()
    return Response(status=204)


def create_sandbox(
    *,
    api_key: str = DEFAULT_API_KEY,
    api_secret: str | None = DEFAULT_API_SECRET,
    forms: dict[int, str] | None = None,
    rate_limit: str | None = "120/60",
    latency: float = 0.0,
) -> Flask:
    app = Flask(__name__)
    app.json.sort_keys = False  # keep the field order of ConvertKit's answers
    app.config["MAX_CONTENT_LENGTH"] = 8 * 1024 * 1024  # room for a fault with a huge answer body
    app.extensions["convertkit_sandbox"] = _State(
        api_key=api_key,
        api_secret=api_secret,
        forms={int(k): v for k, v in (DEFAULT_FORMS if forms is None else forms).items()},
        rate_limit=rate_limit,
        latency=latency,
    )
    app.before_request(_arrive)
    app.after_request(_finish)
    app.teardown_request(_answered)
    app.register_error_handler(404, _api_not_found)
    app.register_error_handler(405, _api_not_found)
    app.register_blueprint(api)
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
        self.api_key, self.api_secret = state.api_key, state.api_secret
        self._server = make_server(
            "127.0.0.1", port, self.app, threaded=True, request_handler=_QuietHandler
        )
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self.api_url = f"{self.url}/v3/"
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
        prog="python -m convertkit.sandbox", description="Local stand-in for ConvertKit's v3 API."
    )
    parser.add_argument("--host", default=env.get("SANDBOX_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=env.get("SANDBOX_PORT", "5001"))
    parser.add_argument("--api-key", default=env.get("SANDBOX_API_KEY", DEFAULT_API_KEY))
    parser.add_argument("--api-secret", default=env.get("SANDBOX_API_SECRET", DEFAULT_API_SECRET))
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
            rate_limit=args.rate_limit,
            latency=args.latency,
        )
    except ValueError as exc:
        parser.error(str(exc))
    logging.basicConfig(format="%(asctime)s sandbox: %(message)s")
    log.setLevel(logging.INFO if args.verbose else logging.WARNING)
    server = make_server(args.host, args.port, app, threaded=True, request_handler=_QuietHandler)

    def stop(signum: int, frame: object) -> None:
        threading.Thread(
            target=server.shutdown, daemon=True
        ).start()  # shutdown() waits for this loop

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(
        f"ConvertKit sandbox on http://{host}:{server.server_port}/v3/ (api_key={args.api_key})",
        flush=True,
    )
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
