"""Kit's v4 API as /work/shared/kit-v4.md records it: the key in `X-Kit-Api-Key` only, `{"errors": [...]}` bodies,
cursor pagination, and subscribing to a form in two calls (upsert the subscriber, then add them to the form)."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from flask import Blueprint, Response, g, request

from .state import (
    ACCOUNT_EMAIL,
    ACCOUNT_NAME,
    CREATED_AT,
    V4_INVALID_EMAIL,
    V4_INVALID_TOKEN,
    V4_NOT_FOUND,
    State,
    json_answer,
    plausible_email,
    sandbox_state,
)

API_KEY_HEADER = "X-Kit-Api-Key"
EMAIL_REQUIRED = {"errors": ["Email address or subscriber id is required"]}
NO_SUBSCRIBER = {"errors": ["Subscriber does not exist"]}
SUBSCRIBER_STATES = ("active", "inactive", "bounced", "complained", "cancelled")
FORM_STATUSES = ("active", "archived", "trashed", "all")
ASYNC_FIELDS = 10  # more custom fields than this in one call: Kit answers 202 and writes them later
PER_PAGE, MAX_PER_PAGE = 500, 1000
UTM_PARAMETERS = ("source", "medium", "campaign", "term", "content")

api = Blueprint("sandbox_api_v4", __name__, url_prefix="/v4")


class Unprocessable(Exception):
    """A parameter Kit would refuse with a 422 and this message."""


@api.errorhandler(Unprocessable)
def _unprocessable(error: Unprocessable) -> Response:
    return _errors(422, str(error))


def _errors(status: int, *messages: str) -> Response:
    return json_answer({"errors": list(messages)}, status)


def credential() -> str:
    """The key whose rate-limit bucket this call spends: only the header counts, never the query."""
    return request.headers.get(API_KEY_HEADER, "")


@api.before_request
def _authenticate() -> Response | None:
    """After the arrival path (log, limit, faults): a v3 key or secret here is as wrong as any other."""
    state = sandbox_state()
    with state.lock:
        valid = credential() == state.v4_api_key
    if not valid:
        return json_answer(V4_INVALID_TOKEN, 401)
    if g.malformed:
        return _errors(400, "The request body is not valid JSON")
    return None


# Subscribers


@api.post("/subscribers")
def upsert_subscriber() -> Response:
    payload = g.payload or {}
    email, first_name = payload.get("email_address"), payload.get("first_name")
    new_state, fields = payload.get("state", "active"), payload.get("fields") or {}
    if not plausible_email(email):
        return json_answer(V4_INVALID_EMAIL, 422)
    if not isinstance(first_name, str | None):
        raise Unprocessable("First name is invalid")
    if new_state not in SUBSCRIBER_STATES:
        raise Unprocessable(f"State must be one of: {', '.join(SUBSCRIBER_STATES)}")
    if not isinstance(fields, dict) or not all(isinstance(v, str | int | float | None) for v in fields.values()):
        raise Unprocessable("Fields must be an object of custom field keys and values")
    state = sandbox_state()
    with state.lock:
        subscriber, created, unknown = state.upsert(email, first_name=first_name, fields=fields, new_state=new_state)
        body: dict[str, Any] = {"subscriber": _subscriber_json(subscriber)}
    if unknown:
        body["warnings"] = [f"Custom field '{key}' does not exist" for key in unknown]
    return json_answer(body, 202 if len(fields) > ASYNC_FIELDS else 201 if created else 200)


@api.get("/subscribers")
def list_subscribers() -> Response:
    wanted, status = (request.args.get("email_address") or "").lower(), _status()
    state = sandbox_state()
    with state.lock:
        found = [
            (subscriber["id"], _subscriber_json(subscriber))
            for key, subscriber in state.subscribers.items()
            if (not wanted or key == wanted) and status in ("all", subscriber["state"])
        ]
    return _paginated("subscribers", found)


@api.get("/subscribers/<int:subscriber_id>")
def get_subscriber(subscriber_id: int) -> Response:
    state = sandbox_state()
    with state.lock:
        subscriber = state.find_by_id(subscriber_id)
        if subscriber is None:
            return json_answer(V4_NOT_FOUND, 404)
        return json_answer({"subscriber": _subscriber_json(subscriber)})


def _subscriber_json(subscriber: dict[str, Any]) -> dict[str, Any]:
    return {**subscriber, "fields": dict(subscriber["fields"])}


# Forms and tags: adding a subscriber, listing who was added


@api.post("/forms/<int:form_id>/subscribers")
@api.post("/forms/<int:form_id>/subscribers/<int:subscriber_id>")
def add_to_form(form_id: int, subscriber_id: int | None = None) -> Response:
    return _add("form", form_id, subscriber_id)


@api.post("/tags/<int:tag_id>/subscribers")
@api.post("/tags/<int:tag_id>/subscribers/<int:subscriber_id>")
def tag_subscriber(tag_id: int, subscriber_id: int | None = None) -> Response:
    return _add("tag", tag_id, subscriber_id)


def _add(kind: str, target: int, subscriber_id: int | None) -> Response:
    """Both steps count in the signup counter the v3 subscribe calls count in, a repeat (200) included."""
    payload = g.payload or {}
    email, referrer = payload.get("email_address"), payload.get("referrer")
    state = sandbox_state()
    with state.lock:
        if target not in (state.forms if kind == "form" else state.tags):
            return json_answer(V4_NOT_FOUND, 404)
        if subscriber_id is None and not (isinstance(email, str) and email):
            return json_answer(EMAIL_REQUIRED, 422)
        if kind == "form" and not isinstance(referrer, str | None):
            raise Unprocessable("Referrer must be a URL")
        if subscriber_id is not None:
            subscriber = state.find_by_id(subscriber_id)
        else:
            subscriber = state.find(email) if isinstance(email, str) else None  # a str: checked above
        if subscriber is None:
            return json_answer(NO_SUBSCRIBER, 422)
        if kind == "form":
            membership, created = state.add_to_form(target, subscriber, referrer)
            body = _member_json(subscriber, membership)
            if created:
                state.record_subscription(kind, target, subscriber)  # so v3 lists it among the form's
        else:
            tagging, created = state.tag(target, subscriber)
            body = _tagged_json(subscriber, tagging)
        state.count_signup(kind, target, subscriber, "v4")
    return json_answer({"subscriber": body}, 201 if created else 200)


@api.get("/forms/<int:form_id>/subscribers")
def list_form_subscribers(form_id: int) -> Response:
    return _list_members("form", form_id)


@api.get("/tags/<int:tag_id>/subscribers")
def list_tag_subscribers(tag_id: int) -> Response:
    return _list_members("tag", tag_id)


def _list_members(kind: str, target: int) -> Response:
    """Oldest addition first; `added_after`/`added_before` (or tagged_…) bound the time of the first addition."""
    word = "added" if kind == "form" else "tagged"
    status, after, before = _status(), _instant(f"{word}_after"), _instant(f"{word}_before")
    state = sandbox_state()
    with state.lock:
        if target not in (state.forms if kind == "form" else state.tags):
            return json_answer(V4_NOT_FOUND, 404)
        links = (state.memberships if kind == "form" else state.taggings).get(target, {})
        found = []
        for subscriber_id, link in links.items():
            subscriber = state.find_by_id(subscriber_id)
            at = _parse_instant(link[f"{word}_at"])
            if (
                subscriber is not None
                and status in ("all", subscriber["state"])
                and (after is None or at >= after)
                and (before is None or at < before)
            ):
                as_json = _member_json(subscriber, link) if kind == "form" else _tagged_json(subscriber, link)
                found.append((link["cursor"], as_json))
    return _paginated("subscribers", found)


def _member_json(subscriber: dict[str, Any], membership: dict[str, Any]) -> dict[str, Any]:
    referrer = membership["referrer"]
    query = parse_qs(urlsplit(referrer).query) if referrer else {}
    return {
        "id": subscriber["id"],
        "first_name": subscriber["first_name"],
        "email_address": subscriber["email_address"],
        "state": subscriber["state"],
        "created_at": subscriber["created_at"],
        "added_at": membership["added_at"],
        "fields": dict(subscriber["fields"]),
        "referrer": referrer,
        "referrer_utm_parameters": {name: query.get(f"utm_{name}", [""])[0] for name in UTM_PARAMETERS},
    }


def _tagged_json(subscriber: dict[str, Any], tagging: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": subscriber["id"],
        "first_name": subscriber["first_name"],
        "email_address": subscriber["email_address"],
        "state": subscriber["state"],
        "created_at": subscriber["created_at"],
        "tagged_at": tagging["tagged_at"],
        "fields": dict(subscriber["fields"]),
    }


# What the account has


@api.get("/forms")
def list_forms() -> Response:
    status = request.args.get("status") or "active"
    if status not in FORM_STATUSES:
        raise Unprocessable(f"Status must be one of: {', '.join(FORM_STATUSES)}")
    state = sandbox_state()
    with state.lock:
        found = [
            (form_id, state.form_json(form_id))
            for form_id in sorted(state.forms)
            if _form_listed(state, form_id, status)
        ]
    return _paginated("forms", found)


def _form_listed(state: State, form_id: int, status: str) -> bool:
    """The sandbox never trashes a form, so `trashed` lists none."""
    archived = state.forms[form_id].archived
    return status == "all" or (status == "archived" and archived) or (status == "active" and not archived)


@api.get("/tags")
def list_tags() -> Response:
    state = sandbox_state()
    with state.lock:
        return _paginated("tags", sorted((tag["id"], tag) for tag in state.tag_list()))


@api.get("/custom_fields")
def list_custom_fields() -> Response:
    state = sandbox_state()
    with state.lock:
        return _paginated("custom_fields", [(field["id"], field) for field in state.custom_field_list()])


@api.get("/account")
def account() -> Response:
    return json_answer(
        {
            "user": {"id": 1, "email": ACCOUNT_EMAIL},
            "account": {
                "id": 1,
                "name": ACCOUNT_NAME,
                "plan_type": "creator",
                "primary_email_address": ACCOUNT_EMAIL,
                "created_at": CREATED_AT,
                "timezone": {"name": "Etc/UTC", "friendly_name": "UTC", "utc_offset": "+00:00"},
            },
        }
    )


# Query parameters and pagination


def _status() -> str:
    """Subscriber lists hold only confirmed (active) people unless asked: a double opt-in signup is inactive."""
    status = request.args.get("status") or "active"
    if status != "all" and status not in SUBSCRIBER_STATES:
        raise Unprocessable(f"Status must be one of: all, {', '.join(SUBSCRIBER_STATES)}")
    return status


def _instant(name: str) -> datetime | None:
    """An ISO 8601 date (midnight UTC) or date-time (UTC unless it names an offset)."""
    text = request.args.get(name)
    if not text:
        return None
    try:
        return _parse_instant(text)
    except ValueError:
        raise Unprocessable(f"{name.replace('_', ' ').capitalize()} must be an ISO 8601 date or date-time") from None


def _parse_instant(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def encode_cursor(position: int) -> str:
    """Opaque to callers, as Kit's are (theirs look the same: base64 of a JSON array)."""
    return base64.b64encode(json.dumps([position]).encode()).decode()


def _cursor(name: str) -> int | None:
    text = request.args.get(name)
    if not text:
        return None
    try:
        [position] = json.loads(base64.b64decode(text, validate=True))
        if isinstance(position, int) and not isinstance(position, bool):
            return position
    except (binascii.Error, ValueError, TypeError):
        pass
    raise Unprocessable(f"The '{name}' cursor is invalid")


def _per_page() -> int:
    """Above the maximum is answered with the maximum."""
    text = request.args.get("per_page")
    if not text:
        return PER_PAGE
    if not text.isdigit() or int(text) < 1:
        raise Unprocessable("Per page must be a positive integer")
    return min(int(text), MAX_PER_PAGE)


def _paginated(name: str, items: list[tuple[int, dict[str, Any]]]) -> Response:
    """One page of (position, object) pairs in ascending position, `after`/`before` being cursors of positions."""
    per_page, after, before = _per_page(), _cursor("after"), _cursor("before")
    chosen = [
        (position, item)
        for position, item in items
        if (after is None or position > after) and (before is None or position < before)
    ]
    # `before` alone asks for the page just before the cursor, the way back from a later page.
    page = chosen[-per_page:] if before is not None and after is None else chosen[:per_page]
    positions = [position for position, _ in items]
    if page:
        first, last = page[0][0], page[-1][0]
        has_previous, has_next = any(p < first for p in positions), any(p > last for p in positions)
    else:
        has_previous = after is not None and any(p <= after for p in positions)
        has_next = before is not None and any(p >= before for p in positions)
    return json_answer(
        {
            name: [item for _, item in page],
            "pagination": {
                "has_previous_page": has_previous,
                "has_next_page": has_next,
                "start_cursor": encode_cursor(page[0][0]) if page else None,
                "end_cursor": encode_cursor(page[-1][0]) if page else None,
                "per_page": per_page,
            },
        }
    )
