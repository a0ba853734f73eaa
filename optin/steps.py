"""What one signup asks of ConvertKit, per API version: the calls in order, and how to look one up whose answer
was lost. optin/delivery.py makes one of these calls per step, each with its own slot of the shared limit.

- v3: one call, `POST /v3/forms/{id}/subscribe` with the fields and tags. A repeat of it may email the person
  again, so a lost answer is looked up (with the API secret): the person, then the form's subscriptions.
- v4: `POST /v4/subscribers` (create or update), `POST /v4/forms/{id}/subscribers`, then one
  `POST /v4/tags/{id}/subscribers` per tag. Repeating the first or a tag changes nothing and sends nothing, so a
  lost answer there is simply sent again. The form call is looked up first, as v3's is: the person, then the
  people added to the form since the attempt began.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import convertkit

from .signups import Signup

MAX_CHECK_PAGES = 10  # pages of a form's list read for one look-up (v3: 50 each) before sending again anyway


@dataclass(frozen=True)
class Step:
    name: str  # "subscribe" (v3) | "subscriber" | "form" | "tag 101"
    call: Callable[[], dict[str, Any]]
    checked: bool  # a lost answer must be looked up before sending again: a repeat could email twice
    tag: bool = False  # a tag Kit does not have is skipped (and reported), not a reason to hold the signup


@dataclass(frozen=True)
class Finding:
    """What one look-up call found out."""

    kind: Literal["arrived", "absent", "further", "unknowable"]
    why: str = ""
    page: int = 0  # for "further": the next call's page
    cursor: str | None = None
    subscriber_id: int | None = None


def steps(client: convertkit.Client | convertkit.ClientV4, signup: Signup) -> list[Step]:
    fields = signup.fields or None
    if isinstance(client, convertkit.ClientV4):
        return [
            Step(
                "subscriber",
                lambda: client.upsert_subscriber(signup.email, first_name=signup.first_name, fields=fields),
                checked=False,
            ),
            Step(
                "form",
                lambda: client.add_to_form(signup.convertkit_form_id, signup.email, referrer=signup.referrer),
                checked=True,
            ),
            *(
                Step(f"tag {tag}", partial(client.tag_subscriber, tag, signup.email), checked=False, tag=True)
                for tag in signup.tags
            ),
        ]
    return [
        Step(
            "subscribe",
            lambda: client.subscribe_to_form(
                signup.convertkit_form_id,
                signup.email,
                first_name=signup.first_name,
                fields=fields,
                tags=list(signup.tags) or None,
            ),
            checked=True,
        )
    ]


def subscriber_id(answer: dict[str, Any] | None) -> int | None:
    """v3 answers with a subscription holding the subscriber; v4 with the subscriber itself."""
    answer = answer or {}
    nested = answer.get("subscriber")
    value = nested.get("id") if isinstance(nested, dict) else answer.get("id")
    return value if isinstance(value, int) else None


def look_up(client: convertkit.Client | convertkit.ClientV4, signup: Signup, *, since: float) -> Finding:
    """One call: is this person on this form since `since` (the attempt's start, less the clocks' skew)?"""
    if signup.check_page == 0:
        person = client.find_subscriber(signup.email)
        if person is None:
            return Finding("absent", "no such subscriber")
        return Finding("further", page=1, subscriber_id=person.get("id"))
    if isinstance(client, convertkit.ClientV4):
        added_after = dt.datetime.fromtimestamp(since, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        people, cursor = client.form_subscribers(
            signup.convertkit_form_id, added_after=added_after, after=signup.check_cursor
        )
        if any(p.get("id") == signup.subscriber_id and timestamp(p, "added_at") >= since for p in people):
            return Finding("arrived")
        if cursor is None:
            return Finding("absent", f"not on form {signup.convertkit_form_id}")
        return _further(signup, cursor=cursor)
    subscriptions, pages = client.form_subscriptions(signup.convertkit_form_id, page=signup.check_page)
    ours = [s for s in subscriptions if (s.get("subscriber") or {}).get("id") == signup.subscriber_id]
    if any(timestamp(s, "created_at") >= since for s in ours):
        return Finding("arrived")
    older = bool(subscriptions) and min(timestamp(s, "created_at") for s in subscriptions) < since
    if older or signup.check_page >= pages:
        return Finding("absent", f"not on form {signup.convertkit_form_id}")
    return _further(signup)


def _further(signup: Signup, cursor: str | None = None) -> Finding:
    if signup.check_page >= MAX_CHECK_PAGES:
        return Finding("unknowable", f"more than {MAX_CHECK_PAGES} pages of new subscriptions to read")
    return Finding("further", page=signup.check_page + 1, cursor=cursor, subscriber_id=signup.subscriber_id)


def timestamp(record: dict[str, Any], key: str) -> float:
    try:
        return dt.datetime.fromisoformat(str(record.get(key))).timestamp()
    except ValueError:
        return 0.0
