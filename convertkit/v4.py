"""Kit's v4 API: the key travels only in the X-Kit-Api-Key header, never in a query string or a body.

One form signup is several calls (Kit's own WordPress plugin makes the same ones): create or update the subscriber,
add them to the form (with the page they signed up on), then tag them, one call per tag. Each repeat of a call
is harmless: an existing subscriber is updated, not duplicated (and keeps their state), and adding someone to a
form or a tag they already have answers 200 and sends nothing again.
"""

from __future__ import annotations

import json as jsonlib
from collections.abc import Iterator, Mapping
from typing import Any

from .base import BaseClient, field, resource_id
from .errors import OddAnswer

__all__ = ["DEFAULT_BASE_URL", "ClientV4"]

DEFAULT_BASE_URL = "https://api.kit.com/v4/"
PER_PAGE = 1000  # the most v4 gives per page


class ClientV4(BaseClient):
    default_base_url = DEFAULT_BASE_URL
    version = "v4"
    can_look_up = True  # the key alone may read subscribers (v3 needs the secret)

    def request(
        self, method: str, path: str, *, json: Mapping[str, Any] | None = None, params: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        data = None if json is None else jsonlib.dumps(dict(json)).encode("utf-8")
        return self._send(method.upper(), path, params=params, data=data, headers={"X-Kit-Api-Key": self._api_key})

    # One signup, step by step ------------------------------------------------------------------------------

    def upsert_subscriber(
        self,
        email: str,
        *,
        first_name: str | None = None,
        fields: Mapping[str, Any] | None = None,
        state: str = "inactive",
    ) -> dict[str, Any]:
        """Create the person, or update an existing one (whose state Kit leaves as it is). `inactive` for a new
        person, as Kit's WordPress plugin sends for a form signup, so the form's double opt-in still asks them to
        confirm; an `active` subscriber would skip it."""
        body: dict[str, Any] = {"email_address": email, "state": state}
        if first_name:
            body["first_name"] = first_name
        if fields:
            body["fields"] = dict(fields)
        return _object(field(self.request("POST", "subscribers", json=body), "subscriber"), "subscriber")

    def add_to_form(self, form_id: int | str, email: str, *, referrer: str | None = None) -> dict[str, Any]:
        """201 when added, 200 when already on the form; `referrer` is the page the form was on (Kit keeps it and
        reads its UTM parameters)."""
        body = {"email_address": email} | ({"referrer": referrer} if referrer else {})
        path = f"forms/{resource_id(form_id, 'form_id')}/subscribers"
        return _object(field(self.request("POST", path, json=body), "subscriber"), "subscriber")

    def tag_subscriber(self, tag_id: int | str, email: str) -> dict[str, Any]:
        path = f"tags/{resource_id(tag_id, 'tag_id')}/subscribers"
        return _object(field(self.request("POST", path, json={"email_address": email}), "subscriber"), "subscriber")

    # Look-ups ------------------------------------------------------------------------------------------------

    def find_subscriber(self, email: str) -> dict[str, Any] | None:
        """Any state: a form signup with double opt-in makes an `inactive` subscriber, which v4 lists only when
        asked for every status."""
        found = field(
            self.request("GET", "subscribers", params={"email_address": email, "status": "all"}), "subscribers"
        )
        if not isinstance(found, list):
            raise OddAnswer("Kit's 'subscribers' is not a list.")
        return found[0] if found and isinstance(found[0], dict) else None

    def form_subscribers(
        self, form_id: int | str, *, added_after: str | None = None, after: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of the people on a form (any status), and the cursor of the next page (None at the end)."""
        params = {"status": "all", "per_page": PER_PAGE}
        if added_after:
            params["added_after"] = added_after
        if after:
            params["after"] = after
        data = self.request("GET", f"forms/{resource_id(form_id, 'form_id')}/subscribers", params=params)
        return _page(data, "subscribers")

    # The account -------------------------------------------------------------------------------------------

    def forms(self, *, status: str = "active") -> list[dict[str, Any]]:
        return list(self._every("forms", "forms", {"status": status}))

    def tags(self) -> list[dict[str, Any]]:
        return list(self._every("tags", "tags"))

    def custom_fields(self) -> list[dict[str, Any]]:
        return list(self._every("custom_fields", "custom_fields"))

    def account(self) -> dict[str, Any]:
        return self.request("GET", "account")

    def _every(self, path: str, key: str, params: Mapping[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        after = None
        while True:
            page, after = _page(
                self.request(
                    "GET", path, params={**(params or {}), "per_page": PER_PAGE, **({"after": after} if after else {})}
                ),
                key,
            )
            yield from page
            if after is None:
                return


def _object(value: Any, key: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise OddAnswer(f"Kit's {key!r} is not an object.")
    return value


def _page(data: dict[str, Any], key: str) -> tuple[list[dict[str, Any]], str | None]:
    items = field(data, key)
    if not isinstance(items, list):
        raise OddAnswer(f"Kit's {key!r} is not a list.")
    pagination = data.get("pagination")
    if not isinstance(pagination, dict):
        pagination = {}
    cursor = pagination.get("end_cursor") if pagination.get("has_next_page") else None
    return [item for item in items if isinstance(item, dict)], cursor if isinstance(cursor, str) and cursor else None
