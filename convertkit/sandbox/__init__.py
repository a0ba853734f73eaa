"""A local stand-in for ConvertKit v3, so development, tests and benchmarks never touch an account.

It answers with the success and error bodies recorded in the API notes, enforces the per-key rolling
rate limit, and has control endpoints under /_sandbox/ to inspect what arrived and inject faults.
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
    EMBED_HOST,
    INVALID_EMAIL,
    NOT_FOUND,
    NOT_PRESENT,
    NOT_VALID,
    RETRY_LATER,
    SERVER_ERROR_HTML,
    TAG_NOT_FOUND,
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
    "EMBED_HOST",
    "INVALID_EMAIL",
    "NOT_FOUND",
    "NOT_PRESENT",
    "NOT_VALID",
    "RETRY_LATER",
    "SERVER_ERROR_HTML",
    "TAG_NOT_FOUND",
    "Fault",
    "SandboxServer",
    "create_sandbox",
    "main",
    "parse_rate_limit",
]
