"""One inbox, one key: the per-email rate limit counts the mailbox an address reaches, not its spelling.

`ann+1@example.com` and `ann+2@example.com` land in one inbox, and so do `a.n.n@gmail.com` and
`ann@googlemail.com`. Subscription bombing uses exactly these aliases, so the limit's key is the canonical
form below; what is stored and sent to ConvertKit stays what the visitor typed.
"""

from __future__ import annotations

GMAIL_DOMAINS = {"gmail.com", "googlemail.com"}  # Gmail ignores dots in the local part; one mailbox for both


def canonical(email: str) -> str:
    """The mailbox an address reaches, for counting: lower case, without a +tag, and Gmail without dots."""
    local, at, domain = email.strip().lower().rpartition("@")
    if not at:
        return email.strip().lower()
    local = local.split("+", 1)[0] or local  # "+tag@x" alone is not a tag on an empty name
    if domain in GMAIL_DOMAINS:
        local, domain = local.replace(".", ""), "gmail.com"
    return f"{local}@{domain}"
