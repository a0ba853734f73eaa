"""Typed failures, so callers can tell "could not reach ConvertKit" from "ConvertKit said no"."""

from __future__ import annotations

import json
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

BODY_LIMIT = 2048
REDACTED = "[REDACTED]"


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """A key can come back in an echoed URL or body, raw or URL-encoded; none may reach a log."""
    for secret in secrets:
        if secret:
            for form in {secret, quote(secret, safe=""), quote_plus(secret)}:
                text = text.replace(form, REDACTED)
    return text


class ConvertKitError(Exception):
    """Base for every failure the client raises; catch this to handle them all."""

    default_message = "The request to ConvertKit failed."
    # Whether ConvertKit may have acted although the caller cannot tell: sending again could do it twice.
    may_have_arrived = False

    def __init__(self, message: str | None = None, *, status: int | None = None, error: str | None = None) -> None:
        self.message = message or self.default_message
        self.status = status
        self.error = error
        super().__init__(self.message)

    def __str__(self) -> str:
        if self.status is None:
            return self.message
        return f"ConvertKit answered {self.status}: {self.message}"


class MissingSecret(ConvertKitError, ValueError):
    """Raised before sending, because a call that needs api_secret would only earn a 401."""

    default_message = "This ConvertKit call needs api_secret, and the client has none."


class APIConnectionError(ConvertKitError):
    """Nothing came back, so ConvertKit may or may not have acted on the request."""

    default_message = "Could not reach ConvertKit."

    def __init__(self, message: str | None = None, *, may_have_arrived: bool = True, **kwargs) -> None:
        super().__init__(message, **kwargs)
        # False only when no connection was ever made: then a retry cannot be a duplicate.
        self.may_have_arrived = may_have_arrived


class APITimeout(APIConnectionError):
    """No whole answer within the call's deadline (connect to last byte)."""

    default_message = "ConvertKit did not answer in time."


class OddAnswer(ConvertKitError):
    """A 2xx whose body is not what the API documents (empty, not JSON, a field missing, too large): ConvertKit
    (or something in front of it) may well have acted, so this is an unknown outcome, not a success."""

    default_message = "ConvertKit's answer was not what its API documents."
    may_have_arrived = True


class StatusError(ConvertKitError):
    """ConvertKit answered, with a status that is not 2xx."""

    default_message = "ConvertKit refused the request."

    def __init__(
        self,
        message: str | None = None,
        *,
        status: int,
        error: str | None = None,
        body: str = "",
    ) -> None:
        super().__init__(message, status=status, error=error)
        self.body = body


class Unauthorized(StatusError):
    default_message = "ConvertKit rejected the API key."


class Forbidden(StatusError):
    default_message = "ConvertKit refused the request for this account."


class NotFound(StatusError):
    default_message = "ConvertKit could not find that form, tag or resource."


class Invalid(StatusError):
    """The data was refused; `message` is fit to show the visitor who typed it."""

    default_message = "These details could not be accepted. Please check them and try again."


class RateLimited(StatusError):
    default_message = "Too many requests to ConvertKit; retry after a pause of up to 60 seconds."


class ServerError(StatusError):
    """5xx, from ConvertKit or a proxy or load balancer in front of it (502/503/504): it may have acted first."""

    default_message = "ConvertKit had a problem on its side; try again after a short pause."
    may_have_arrived = True


class Redirected(StatusError):
    """A 3xx: the API never redirects, so something in between answered; the request may have been acted on."""

    default_message = "ConvertKit's address answered with a redirect."
    may_have_arrived = True


_BY_STATUS: dict[int, type[StatusError]] = {
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    429: RateLimited,
}


def _status_class(status: int) -> type[StatusError]:
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    if 400 <= status < 500:
        return Invalid
    if 500 <= status < 600:
        return ServerError
    if 300 <= status < 400:
        return Redirected
    return StatusError


def _text(value: object) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def error_for_status(status: int, body_text: str, *, redact_values: Iterable[str | None] = ()) -> StatusError:
    """Bodies may be JSON (v3's {"error", "message"}, v4's {"errors": [...]}), HTML or plain text, so parsing is
    a bonus and never a requirement."""
    redact_values = tuple(redact_values)
    body = redact(body_text or "", redact_values)
    error = message = None
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        error, message = _text(parsed.get("error")), _text(parsed.get("message"))
        errors = parsed.get("errors")  # v4: {"errors": ["...", ...]}
        if message is None and isinstance(errors, list):
            message = _text("; ".join(e for e in errors if isinstance(e, str)))
    cls = _status_class(status)
    if len(body) > BODY_LIMIT:
        body = body[:BODY_LIMIT] + "…"
    return cls(message or error, status=status, error=error, body=body)
