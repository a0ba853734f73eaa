"""Keyed pseudonyms: how logs, rate windows and stored records name an address or an IP without holding it.

An unkeyed hash of an address is no pseudonym: hashing a list of likely addresses finds it again. These are
HMACs under a key derived from SECRET_KEY, which never leaves the server, so every process and machine of one
deploy names a person alike and nobody else can. A rotated SECRET_KEY names them anew: rate windows then start
over once, which only ever lets one more signup through.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

# Until configure() runs, a key of this process alone: its pseudonyms link nothing across processes.
_key = secrets.token_bytes(32)


def configure(secret_key: str) -> None:
    """Called once by create_app, before anything is named."""
    global _key
    _key = hmac.new(secret_key.encode(), b"optin.pseudonym.v1", hashlib.sha256).digest()


def pseudonym(kind: str, value: str, length: int = 24) -> str:
    """`kind` keeps an address's pseudonym apart from an IP's, and a log's from a rate window's."""
    return hmac.new(_key, f"{kind}\0{value}".encode(), hashlib.sha256).hexdigest()[:length]


def mask_email(email: str) -> str:
    """Logs name a signup's address like this: enough to correlate lines, useless to a reader of the log."""
    return "email#" + pseudonym("email", email.strip().lower(), 10)


def fingerprint(secret: str, length: int = 16) -> str:
    """A name for a high-entropy secret (an API key): its hash cannot be reversed, and unlike a pseudonym it
    survives a SECRET_KEY rotation, as the limiter's windows for that key must."""
    return hashlib.sha256(secret.encode()).hexdigest()[:length]
