"""What every ConvertKit client shares, whatever the API version: one session, one request path with a deadline
and a bounded read, typed errors, and no credential in a repr, a log line or an exception message."""

from __future__ import annotations

import json as jsonlib
import logging
import threading
import weakref
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3

from .errors import APIConnectionError, APITimeout, OddAnswer, error_for_status, redact
from .transport import DeadlineAdapter, deadline

DEFAULT_TIMEOUT = 5.0  # seconds for a whole call, connect to last byte
CONNECT_TIMEOUT = 3.05
MAX_ANSWER_BYTES = 1024 * 1024  # ConvertKit's answers are a few kB; a larger one is read no further
DEFAULT_USER_AGENT = "convertkit-optin/0.1 (+python-requests)"

# urllib3 logs request URLs here, and GET calls carry a credential in the query string.
_URL_LOGGERS = (
    "urllib3.connection",
    "urllib3.connectionpool",
    "urllib3.poolmanager",
    "urllib3.response",
    "urllib3.util.retry",
)


class _RedactCredentials(logging.Filter):
    """Keeps every live client's key and secret out of urllib3's debug and warning lines."""

    def __init__(self) -> None:
        super().__init__()
        self._clients: weakref.WeakSet[BaseClient] = weakref.WeakSet()
        self._lock = threading.Lock()

    def add(self, client: BaseClient) -> None:
        with self._lock:
            self._clients.add(client)

    def filter(self, record: logging.LogRecord) -> bool:
        with self._lock:
            secrets = [value for client in self._clients for value in client._credentials()]
        if secrets:
            text = record.getMessage()
            clean = redact(text, secrets)
            if clean != text:
                record.msg, record.args = clean, ()
        return True


_log_filter = _RedactCredentials()
for _name in _URL_LOGGERS:
    logging.getLogger(_name).addFilter(_log_filter)


def _scrub_chain(exc: BaseException, secrets: Iterable[str | None]) -> None:
    """requests' messages embed the full URL; a logged traceback of them must not show a key."""
    secrets = tuple(secrets)
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        text = str(current)
        clean = redact(text, secrets)
        if clean != text:
            current.args = (clean,)
        pending += [current.__cause__, current.__context__]


def resource_id(value: int | str, what: str) -> str:
    """Ids go into the URL path, so anything but digits could address another endpoint."""
    text = str(value).strip()
    if isinstance(value, bool) or not text.isdigit():
        raise ValueError(f"{what} must be a positive integer, got {value!r}")
    return text


def field(data: dict[str, Any], key: str) -> Any:
    """A 2xx without the expected field is a broken answer, not a success to build on."""
    if key not in data:
        raise OddAnswer(f"ConvertKit's answer has no {key!r} field.")
    return data[key]


def _timeouts(timeout: float | tuple[float, float]) -> tuple[float, float]:
    """(connect, whole call): a number bounds the whole call and connecting gets at most CONNECT_TIMEOUT of it."""
    if isinstance(timeout, tuple):
        return timeout
    return min(CONNECT_TIMEOUT, timeout), timeout


class BaseClient:
    """One account's API; the instance owns its HTTP session and is safe to repr or log."""

    default_base_url = ""

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str | None = None,
        timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
        session: requests.Session | None = None,
        user_agent: str = DEFAULT_USER_AGENT,
    ) -> None:
        if not api_key or not api_key.strip():
            raise ValueError("api_key is empty")
        base_url = base_url or self.default_base_url
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
        self._api_key = api_key
        self._host = parts.netloc.rpartition("@")[2]
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.timeout = _timeouts(timeout)
        self.user_agent = user_agent
        self._owns_session = session is None
        if session is None:
            session = requests.Session()
            # Only the client's own session: mounting on a borrowed one would change it for its owner.
            adapter = DeadlineAdapter()
            session.mount("http://", adapter)
            session.mount("https://", adapter)
        self.session = session
        _log_filter.add(self)

    def _credentials(self) -> tuple[str, ...]:
        return (self._api_key,)

    def __repr__(self) -> str:
        tail = self._api_key[-4:] if len(self._api_key) >= 12 else ""
        return f"{type(self).__name__}(base_url={self.base_url!r}, api_key='…{tail}')"

    def sibling(self, cls: type[BaseClient], base_url: str) -> BaseClient:
        """The same key on another client class (another API version), e.g. to tell which version a key is for."""
        return cls(self._api_key, base_url=base_url, timeout=self.timeout, user_agent=self.user_agent)

    def close(self) -> None:
        if self._owns_session:
            self.session.close()

    def __enter__(self) -> BaseClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None,
        data: bytes | None,
        headers: Mapping[str, str],
    ) -> dict[str, Any]:
        """The one way out, so the deadline, the bounded read and the error mapping cannot be skipped."""
        headers = {"User-Agent": self.user_agent, "Accept": "application/json", **headers}
        if data is not None:
            headers["Content-Type"] = "application/json; charset=utf-8"
        try:
            with deadline(self.timeout[1]):
                response = self.session.request(
                    method,
                    self.base_url + path.lstrip("/"),
                    params=params or None,
                    data=data,
                    headers=headers,
                    timeout=self.timeout,
                    allow_redirects=False,
                    stream=True,
                )
                ok = 200 <= response.status_code < 300
                body, whole = _read_bounded(response)
        except requests.Timeout as exc:
            _scrub_chain(exc, self._credentials())
            raise APITimeout(
                f"timed out talking to ConvertKit at {self._host}: {type(exc).__name__}",
                may_have_arrived=_connected(exc),
            ) from exc
        except requests.RequestException as exc:
            _scrub_chain(exc, self._credentials())
            timed_out = _deadline_passed(exc)
            raise (APITimeout if timed_out else APIConnectionError)(
                f"{'timed out talking to' if timed_out else 'could not reach'} ConvertKit at {self._host}: "
                f"{type(exc).__name__}",
                may_have_arrived=_connected(exc),
            ) from exc
        text = body.decode(response.encoding or "utf-8", errors="replace")
        if not ok:
            raise error_for_status(response.status_code, text, redact_values=self._credentials())
        if not whole:
            raise OddAnswer(f"ConvertKit's answer was larger than {MAX_ANSWER_BYTES} bytes.")
        try:
            parsed = jsonlib.loads(text)
        except (ValueError, RecursionError):
            parsed = None
        if not isinstance(parsed, dict):
            raise OddAnswer(f"ConvertKit answered {response.status_code} without a JSON object.")
        return parsed


def _read_bounded(response: requests.Response) -> tuple[bytes, bool]:
    """At most MAX_ANSWER_BYTES of the body, and whether that was all of it: a huge answer (or a proxy's endless
    stream) must not grow a worker's memory. An unread rest is not kept: the connection is closed instead."""
    chunks, size = [], 0
    try:
        for chunk in response.iter_content(64 * 1024):
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_ANSWER_BYTES:
                return b"".join(chunks)[:MAX_ANSWER_BYTES], False
        return b"".join(chunks), True
    finally:
        response.close()


def _deadline_passed(exc: BaseException) -> bool:
    """requests reports a read time-out in the body as a ConnectionError; find the time-out in its causes."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, TimeoutError | urllib3.exceptions.ReadTimeoutError):
            return True
        nested = current.args[0] if current.args and isinstance(current.args[0], BaseException) else None
        current = nested or current.__cause__ or current.__context__
    return False


def _connected(exc: requests.RequestException) -> bool:
    """False when the failure came before a connection existed (refused, DNS, connect time-out)."""
    if isinstance(exc, requests.ConnectTimeout):
        return False
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return not isinstance(reason, urllib3.exceptions.ConnectTimeoutError)  # NewConnectionError is one
