"""ConvertKit v3 client: the key (or the secret) travels in the query string or the JSON body."""

from __future__ import annotations

import json as jsonlib
from collections.abc import Iterable, Mapping
from typing import Any

from .base import MAX_ANSWER_BYTES, BaseClient, field, resource_id
from .errors import MissingSecret, OddAnswer

__all__ = ["DEFAULT_BASE_URL", "MAX_ANSWER_BYTES", "Client"]

DEFAULT_BASE_URL = "https://api.convertkit.com/v3/"


class Client(BaseClient):
    """ConvertKit v3 API. The secret, when given, is needed only to look people up and read the account."""

    default_base_url = DEFAULT_BASE_URL
    version = "v3"

    def __init__(self, api_key: str, *, api_secret: str | None = None, **options: Any) -> None:
        self._api_secret = api_secret or None  # before the base registers this client's credentials for redaction
        super().__init__(api_key, **options)

    def _credentials(self) -> tuple[str, ...]:
        return tuple(value for value in (self._api_key, self._api_secret) if value)

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        secret: bool = False,
    ) -> dict[str, Any]:
        """Every v3 call: the credential goes where v3 reads it (query for reads, body for writes)."""
        method = method.upper()
        name, credential = ("api_secret", self._api_secret) if secret else ("api_key", self._api_key)
        if not credential:
            raise MissingSecret()
        query = dict(params or {})
        data = None
        if method in ("GET", "HEAD"):
            query[name] = credential
        else:
            data = jsonlib.dumps({**(json or {}), name: credential}).encode("utf-8")
        return self._send(method, path, params=query, data=data, headers={})

    def subscribe_to_form(
        self,
        form_id: int | str,
        email: str,
        *,
        first_name: str | None = None,
        fields: Mapping[str, Any] | None = None,
        tags: Iterable[int] | None = None,
    ) -> dict[str, Any]:
        """Subscribing via the form keeps the form's double opt-in and incentive email."""
        path = f"forms/{resource_id(form_id, 'form_id')}/subscribe"
        body = _subscriber(email, first_name=first_name, fields=fields, tags=tags)
        return field(self.request("POST", path, json=body), "subscription")

    def subscribe_to_tag(
        self,
        tag_id: int | str,
        email: str,
        *,
        first_name: str | None = None,
        fields: Mapping[str, Any] | None = None,
        tags: Iterable[int] | None = None,
    ) -> dict[str, Any]:
        path = f"tags/{resource_id(tag_id, 'tag_id')}/subscribe"
        body = _subscriber(email, first_name=first_name, fields=fields, tags=tags)
        return field(self.request("POST", path, json=body), "subscription")

    def forms(self) -> list[dict[str, Any]]:
        return field(self.request("GET", "forms"), "forms")

    def tags(self) -> list[dict[str, Any]]:
        return field(self.request("GET", "tags"), "tags")

    def custom_fields(self) -> list[dict[str, Any]]:
        return field(self.request("GET", "custom_fields"), "custom_fields")

    @property
    def has_secret(self) -> bool:
        return bool(self._api_secret)

    @property
    def can_look_up(self) -> bool:
        """v3 reads subscribers only with the secret: without it, a lost answer cannot be checked."""
        return bool(self._api_secret)

    def find_subscriber(self, email: str) -> dict[str, Any] | None:
        """Look an address up (needs api_secret). None means a request that got no answer did not create them;
        a subscriber found may come from any earlier signup, so it alone proves nothing (see form_subscriptions)."""
        found = field(self.request("GET", "subscribers", params={"email_address": email}, secret=True), "subscribers")
        if not isinstance(found, list):
            raise OddAnswer("ConvertKit's 'subscribers' is not a list.")
        return found[0] if found and isinstance(found[0], dict) else None

    def form_subscriptions(self, form_id: int | str, *, page: int = 1) -> tuple[list[dict[str, Any]], int]:
        """One page of a form's subscriptions, newest first, and the number of pages (needs api_secret). The only
        way v3 tells whether a person is on a given form: an existing subscriber proves nothing about this form."""
        data = self.request(
            "GET",
            f"forms/{resource_id(form_id, 'form_id')}/subscriptions",
            params={"sort_order": "desc", "page": int(page)},
            secret=True,
        )
        subscriptions = field(data, "subscriptions")
        if not isinstance(subscriptions, list):
            raise OddAnswer("ConvertKit's 'subscriptions' is not a list.")
        try:
            pages = int(data.get("total_pages") or 1)
        except (TypeError, ValueError):
            raise OddAnswer("ConvertKit's 'total_pages' is not a number.") from None
        return [s for s in subscriptions if isinstance(s, dict)], pages

    def account(self) -> dict[str, Any]:
        """A cheap check that the secret works (the public key cannot stand in for it)."""
        return self.request("GET", "account", secret=True)


def _subscriber(
    email: str,
    *,
    first_name: str | None,
    fields: Mapping[str, Any] | None,
    tags: Iterable[int] | None,
) -> dict[str, Any]:
    """Only documented, non-empty fields: the deprecated name/courses/forms are never sent."""
    body: dict[str, Any] = {"email": email}
    if first_name:
        body["first_name"] = first_name
    if fields:
        body["fields"] = dict(fields)
    tag_ids = [int(resource_id(tag, "tag id")) for tag in tags or ()]
    if tag_ids:
        body["tags"] = tag_ids
    return body
