"""What the sandbox remembers: one account shared by its v3 and v4 APIs, plus the log, rate windows and faults."""

from __future__ import annotations

import hashlib
import itertools
import random
import re
import socket
import threading
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any, TypeGuard

from flask import Response, current_app, g, jsonify, request

NOT_PRESENT = {"error": "Authorization Failed", "message": "API Key not present"}
NOT_VALID = {"error": "Authorization Failed", "message": "API Key not valid"}
NOT_FOUND = {"error": "Not Found", "message": "The entity you were trying to find doesn't exist"}
INVALID_EMAIL = {"error": "Error updating subscriber", "message": "Email address is invalid"}
TAG_NOT_FOUND = {"error": "Tag not found", "message": ""}
BAD_JSON = {"error": "Bad Request", "message": "The request body is not valid JSON"}
RETRY_LATER = "Retry later"
SERVER_ERROR_HTML = "<html><body><h1>We're sorry, but something went wrong.</h1></body></html>"
# v4 answers every error as {"errors": [...]}.
V4_INVALID_TOKEN = {"errors": ["The access token is invalid"]}
V4_NOT_FOUND = {"errors": ["Not Found"]}
V4_INVALID_EMAIL = {"errors": ["Email address is invalid"]}

DEFAULT_API_KEY = "sandbox_api_key"
DEFAULT_API_SECRET = "sandbox_api_secret"
DEFAULT_V4_API_KEY = "sandbox_v4_api_key"
DEFAULT_FORMS = {4242: "Launch updates", 4243: "Weekly newsletter", 4244: "Free guide"}
DEFAULT_TAGS = {101: "launch", 102: "newsletter"}
DEFAULT_CUSTOM_FIELDS = {"last_name": "Last Name", "company": "Company"}
EMBED_HOST = "https://sandbox.convertkit.invalid"  # .invalid never resolves: no real script loads
CREATED_AT = "2024-01-01T00:00:00.000Z"
ACCOUNT_NAME = "Sandbox"
ACCOUNT_EMAIL = "owner@sandbox.invalid"

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


def api_version(path: str) -> str | None:
    """ "v3" or "v4" for a call to that API, None for the control endpoints and anything else."""
    for version in ("v3", "v4"):
        if path.startswith(f"/{version}/"):
            return version
    return None


def plausible_email(value: object) -> TypeGuard[str]:
    """Local part "invalid…" is refused too, so tests get a 422 with an address the app accepts."""
    if not isinstance(value, str) or len(value) > 254 or not _EMAIL.fullmatch(value):
        return False
    return not value.lower().startswith("invalid")


@dataclass
class Fault:
    """One injected misbehaviour, answered `times` times to matching /v3/ or /v4/ requests."""

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
            raise ValueError(f"a fault is an object with keys from {sorted(cls.__dataclass_fields__)}")
        fault = cls(**spec)
        if fault.status is not None and not (isinstance(fault.status, int) and 100 <= fault.status <= 599):
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
        body = _default_body(status, api_version(request.path)) if self.body is None else self.body
        if isinstance(body, dict | list):
            response = jsonify(body)
            response.status_code = status
            return response
        content_type = self.content_type or (
            "text/html; charset=utf-8" if str(body).lstrip().startswith("<") else "text/plain"
        )
        return Response(str(body), status=status, content_type=content_type)


def _default_body(status: int, version: str | None) -> Any:
    """The body ConvertKit sends in that API's shape, so a bare {"status": N} fault is realistic."""
    if 200 <= status < 300:
        return {}
    if status >= 500:
        return SERVER_ERROR_HTML
    if version == "v4":
        known = {401: V4_INVALID_TOKEN, 404: V4_NOT_FOUND, 422: V4_INVALID_EMAIL, 429: RETRY_LATER}
    else:
        known = {401: NOT_VALID, 404: NOT_FOUND, 422: INVALID_EMAIL, 429: RETRY_LATER}
    if status in known:
        return known[status]
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    return {"errors": [phrase]} if version == "v4" else {"error": phrase, "message": ""}


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


@dataclass
class Form:
    name: str
    archived: bool = False

    @classmethod
    def parse(cls, spec: object) -> Form:
        """A name, as config always took, or {"name": ..., "archived": true}."""
        if isinstance(spec, str):
            return cls(spec)
        if isinstance(spec, dict) and set(spec) <= {"name", "archived"} and isinstance(spec.get("name"), str):
            if not isinstance(spec.get("archived", False), bool):
                raise ValueError("a form's archived must be true or false")
            return cls(spec["name"], spec.get("archived", False))
        raise ValueError('a form is a name or {"name": ..., "archived": true|false}')

    def config(self) -> str | dict[str, Any]:
        return {"name": self.name, "archived": True} if self.archived else self.name


class State:
    """Everything the sandbox remembers; one lock, as werkzeug serves each request on a thread.

    One account, whichever API touches it: subscribers are keyed by lower-cased email, a form's members and a
    tag's subscribers by subscriber id, and both APIs add to the same per-(form or tag, email) signup counter.
    """

    CONFIG_KEYS = frozenset({"api_key", "api_secret", "v4_api_key", "rate_limit", "latency", "forms", "tags"})

    def __init__(self, **initial: Any) -> None:
        self.lock = threading.RLock()
        self._initial = initial
        self.in_flight = 0  # API requests arrived and not yet answered, delayed ones included; kept by reset()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.api_key: str = self._initial["api_key"]
            self.api_secret: str | None = self._initial["api_secret"]
            self.v4_api_key: str = self._initial["v4_api_key"]
            self.forms: dict[int, Form] = {int(k): Form.parse(v) for k, v in self._initial["forms"].items()}
            self.tags: dict[int, str] = dict(DEFAULT_TAGS)
            self.custom_fields: dict[str, str] = dict(DEFAULT_CUSTOM_FIELDS)  # key → label
            self.rate_limit = parse_rate_limit(self._initial["rate_limit"])
            self.latency: float = float(self._initial["latency"])
            self.log: list[dict[str, Any]] = []
            self.arrivals: dict[str, deque[float]] = {}
            self.faults: list[Fault] = []
            self.subscribers: dict[str, dict[str, Any]] = {}  # lower-cased email → v4's subscriber object
            self._emails: dict[int, str] = {}  # subscriber id → key in subscribers
            self.signups: Counter[tuple[str, int, str]] = Counter()
            self.signup_versions: dict[tuple[str, int, str], str] = {}  # the API of the latest counted call
            self.subscriptions: dict[int, list[dict[str, Any]]] = {}  # form id → v3 subscriptions, oldest first
            # form id → subscriber id → {"added_at" (the first addition), "referrer", "cursor"}
            self.memberships: dict[int, dict[int, dict[str, Any]]] = {}
            self.taggings: dict[int, dict[int, dict[str, Any]]] = {}  # tag id → subscriber id → {"tagged_at", …}
            self._subscription_ids = itertools.count(376449416)
            self._subscriber_ids = itertools.count(92766417)
            self._cursors = itertools.count(1)  # orders members and taggings for cursor pagination

    def configure(self, changes: dict[str, Any]) -> None:
        unknown = set(changes) - self.CONFIG_KEYS
        if unknown:
            raise ValueError(f"unknown config keys: {sorted(unknown)}")
        with self.lock:
            rate_limit = parse_rate_limit(changes.get("rate_limit", self.rate_limit_text))
            latency = float(changes.get("latency", self.latency))
            if latency < 0:
                raise ValueError("latency must be >= 0")
            forms = _merge(self.forms, changes.get("forms"), Form.parse)
            tags = _merge(self.tags, changes.get("tags"), str)
            api_key = changes.get("api_key", self.api_key)
            if not isinstance(api_key, str) or not api_key:
                raise ValueError("api_key must be a non-empty string")
            api_secret = changes.get("api_secret", self.api_secret)
            v4_api_key = changes.get("v4_api_key", self.v4_api_key)
            if not isinstance(v4_api_key, str) or not v4_api_key:
                raise ValueError("v4_api_key must be a non-empty string")
            if v4_api_key in (api_key, api_secret):
                raise ValueError("v4_api_key must differ from the v3 api_key and api_secret, as Kit's keys do")
            self.api_key, self.api_secret, self.v4_api_key = api_key, api_secret, v4_api_key
            self.rate_limit, self.latency, self.forms, self.tags = rate_limit, latency, forms, tags

    @property
    def rate_limit_text(self) -> str | None:
        return None if self.rate_limit is None else f"{self.rate_limit[0]}/{self.rate_limit[1]:g}"

    @property
    def credentials(self) -> tuple[str, ...]:
        """Every key the sandbox accepts, so none is ever written to the log whatever it was sent as."""
        return tuple(c for c in (self.api_key, self.api_secret, self.v4_api_key) if c)

    def config(self) -> dict[str, Any]:
        with self.lock:
            return {
                "api_key": self.api_key,
                "api_secret_set": bool(self.api_secret),
                "v4_api_key": self.v4_api_key,
                "rate_limit": self.rate_limit_text,
                "latency": self.latency,
                "forms": {str(key): form.config() for key, form in self.forms.items()},
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

    def find(self, email: str) -> dict[str, Any] | None:
        return self.subscribers.get(email.lower())

    def find_by_id(self, subscriber_id: int) -> dict[str, Any] | None:
        email = self._emails.get(subscriber_id)
        return None if email is None else self.subscribers[email]

    def upsert(
        self, email: str, *, first_name: str | None, fields: dict[str, Any], new_state: str
    ) -> tuple[dict[str, Any], bool, list[str]]:
        """(subscriber, created, unknown field keys): an existing subscriber keeps its state, as on Kit."""
        subscriber = self.find(email)
        created = subscriber is None
        if subscriber is None:
            subscriber = self.subscribers[email.lower()] = {
                "id": next(self._subscriber_ids),
                "first_name": None,
                "email_address": email,
                "state": new_state,
                "created_at": _now(),
                "fields": dict.fromkeys(self.custom_fields),
            }
            self._emails[subscriber["id"]] = email.lower()
        if first_name:
            subscriber["first_name"] = first_name
        subscriber["fields"].update((k, v) for k, v in fields.items() if k in self.custom_fields)
        return subscriber, created, [k for k in fields if k not in self.custom_fields]

    def add_to_form(
        self, form_id: int, subscriber: dict[str, Any], referrer: str | None
    ) -> tuple[dict[str, Any], bool]:
        """(membership, created): a second addition keeps the first one's time and referrer."""
        members = self.memberships.setdefault(form_id, {})
        created = subscriber["id"] not in members
        if created:
            members[subscriber["id"]] = {"added_at": _now(), "referrer": referrer, "cursor": next(self._cursors)}
        return members[subscriber["id"]], created

    def tag(self, tag_id: int, subscriber: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        tagged = self.taggings.setdefault(tag_id, {})
        created = subscriber["id"] not in tagged
        if created:
            tagged[subscriber["id"]] = {"tagged_at": _now(), "cursor": next(self._cursors)}
        return tagged[subscriber["id"]], created

    def count_signup(self, kind: str, target: int, subscriber: dict[str, Any], version: str) -> None:
        """Every handled form or tag subscription, a repeat included: what benchmarks read as duplicates."""
        key = (kind, target, subscriber["email_address"].lower())
        self.signups[key] += 1
        self.signup_versions[key] = version

    def record_subscription(self, kind: str, target: int, subscriber: dict[str, Any]) -> dict[str, Any]:
        """The v3 subscription object; v3 lists a form's subscriptions, so forms keep theirs."""
        subscription = {
            "id": next(self._subscription_ids),
            "state": "inactive",
            "created_at": _now(),
            "source": None,
            "referrer": None,
            "subscribable_id": target,
            "subscribable_type": kind,
            "subscriber": {"id": subscriber["id"]},
        }
        if kind == "form":
            self.subscriptions.setdefault(target, []).append(subscription)
        return subscription

    def subscribe(
        self,
        kind: str,
        target: int,
        email: str,
        first_name: str | None,
        fields: dict,
        tags: list[int],
    ) -> dict[str, Any]:
        """v3's one-call subscribe: a new subscriber is unconfirmed (double opt-in), then added and tagged."""
        subscriber, _, _ = self.upsert(email, first_name=first_name, fields=fields, new_state="inactive")
        for tag_id in [*tags, target] if kind == "tag" else tags:
            self.tag(tag_id, subscriber)
        if kind == "form":
            self.add_to_form(target, subscriber, None)
        self.count_signup(kind, target, subscriber, "v3")
        return self.record_subscription(kind, target, subscriber)

    def signup_list(self) -> list[dict[str, Any]]:
        with self.lock:
            return [
                {
                    "form_id": target if kind == "form" else None,
                    "tag_id": target if kind == "tag" else None,
                    "email": self.subscribers[key]["email_address"],
                    "subscriber_id": self.subscribers[key]["id"],
                    "count": count,
                    "version": self.signup_versions[(kind, target, key)],
                }
                for (kind, target, key), count in self.signups.items()
            ]

    def form_json(self, form_id: int) -> dict[str, Any]:
        """A form as v4 lists it; v3 adds a few display fields to the same object."""
        uid = hashlib.sha1(str(form_id).encode()).hexdigest()[:10]
        form = self.forms[form_id]
        return {
            "id": form_id,
            "name": form.name,
            "created_at": CREATED_AT,
            "type": "embed",
            "format": "inline",
            "embed_js": f"{EMBED_HOST}/{uid}/index.js",
            "embed_url": f"{EMBED_HOST}/{uid}",
            "archived": form.archived,
            "uid": uid,
        }

    def tag_list(self) -> list[dict[str, Any]]:
        return [{"id": i, "name": name, "created_at": CREATED_AT} for i, name in self.tags.items()]

    def custom_field_list(self) -> list[dict[str, Any]]:
        return [
            {"id": i, "name": f"ck_field_{i}_{key}", "key": key, "label": label}
            for i, (key, label) in enumerate(self.custom_fields.items(), start=1)
        ]


def _merge(current: dict[int, Any], changes: object, parse: Callable[[Any], Any]) -> dict[int, Any]:
    if changes is None:
        return dict(current)
    if not isinstance(changes, dict):
        raise ValueError("forms and tags are objects of id -> name (null removes one)")
    merged = dict(current)
    for raw_id, spec in changes.items():
        if not str(raw_id).isdigit():
            raise ValueError(f"ids must be integers, got {raw_id!r}")
        if spec is None:
            merged.pop(int(raw_id), None)
        else:
            merged[int(raw_id)] = parse(spec)
    return merged


def sandbox_state() -> State:
    return current_app.extensions["convertkit_sandbox"]


def json_answer(body: Any, status: int = 200) -> Response:
    response = jsonify(body)
    response.status_code = status
    return response
