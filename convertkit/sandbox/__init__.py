"""A local stand-in for ConvertKit's v3 API and Kit's v4 API, so development, tests and benchmarks never touch
an account.

Both APIs share one account (a subscriber made through v3 is found through v4). The sandbox answers with the
success and error bodies recorded in the API notes, enforces the per-key rolling rate limit, and has control
endpoints under /_sandbox/ to inspect what arrived and inject faults.
"""

from .server import SandboxServer, create_sandbox, main
from .state import (
    BAD_JSON,
    CREATED_AT,
    DEFAULT_API_KEY,
    DEFAULT_API_SECRET,
    DEFAULT_CUSTOM_FIELDS,
    DEFAULT_FORMS,
    DEFAULT_TAGS,
    DEFAULT_V4_API_KEY,
    EMBED_HOST,
    INVALID_EMAIL,
    NOT_FOUND,
    NOT_PRESENT,
    NOT_VALID,
    RETRY_LATER,
    SERVER_ERROR_HTML,
    TAG_NOT_FOUND,
    V4_INVALID_EMAIL,
    V4_INVALID_TOKEN,
    V4_NOT_FOUND,
    Fault,
    parse_rate_limit,
)

__all__ = [
    "BAD_JSON",
    "CREATED_AT",
    "DEFAULT_API_KEY",
    "DEFAULT_API_SECRET",
    "DEFAULT_CUSTOM_FIELDS",
    "DEFAULT_FORMS",
    "DEFAULT_TAGS",
    "DEFAULT_V4_API_KEY",
    "EMBED_HOST",
    "INVALID_EMAIL",
    "NOT_FOUND",
    "NOT_PRESENT",
    "NOT_VALID",
    "RETRY_LATER",
    "SERVER_ERROR_HTML",
    "TAG_NOT_FOUND",
    "V4_INVALID_EMAIL",
    "V4_INVALID_TOKEN",
    "V4_NOT_FOUND",
    "Fault",
    "SandboxServer",
    "create_sandbox",
    "main",
    "parse_rate_limit",
]
