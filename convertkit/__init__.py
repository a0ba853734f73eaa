"""ConvertKit v3 client with no web framework in it; the sandbox server is convertkit.sandbox."""

from .client import Client
from .errors import (
    APIConnectionError,
    APITimeout,
    ConvertKitError,
    Forbidden,
    Invalid,
    MissingSecret,
    NotFound,
    OddAnswer,
    RateLimited,
    Redirected,
    ServerError,
    StatusError,
    Unauthorized,
    error_for_status,
)

__all__ = [
    "APIConnectionError",
    "APITimeout",
    "Client",
    "ConvertKitError",
    "Forbidden",
    "Invalid",
    "MissingSecret",
    "NotFound",
    "OddAnswer",
    "RateLimited",
    "Redirected",
    "ServerError",
    "StatusError",
    "Unauthorized",
    "error_for_status",
]
