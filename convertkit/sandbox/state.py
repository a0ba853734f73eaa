"""What the sandbox remembers, shared by its v3 API, its control endpoints and the arrival path of every call."""

from __future__ import annotations

import itertools
import random
import re
import socket
import threading
from collections import Counter, deque
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

from flask import Response, current_app, g, jsonify, request

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


def plausible_email(value: object) -> bool:
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


class State:
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


def sandbox_state() -> State:
    return current_app.extensions["convertkit_sandbox"]


def json_answer(body: Any, status: int = 200) -> Response:
    response = jsonify(body)
    response.status_code = status
    return response
