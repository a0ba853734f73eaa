"""ConvertKit (Kit) API clients, v3 and v4, with no web framework in them; the sandbox server is
convertkit.sandbox."""

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
from .v4 import ClientV4

__all__ = [
    "APIConnectionError",
    "APITimeout",
    "Client",
    "ClientV4",
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
