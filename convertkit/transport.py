"""A deadline for a whole call, connect to last byte, which requests' time-outs do not give.

requests' read time-out bounds each wait for a byte, so an answer (or a proxy in front of ConvertKit) that
trickles a byte a second never times out: one call could hold a worker or a visitor's request for minutes. Here
every read and write on the connection waits at most until the call's deadline, and a read after it fails at once
with the same socket time-out that requests turns into `requests.ReadTimeout`.
"""

from __future__ import annotations

import io
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

_deadline: ContextVar[float | None] = ContextVar("convertkit_deadline", default=None)


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Every socket operation of the calls made inside ends by `seconds` from now (time.monotonic)."""
    token = _deadline.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _deadline.reset(token)


class _DeadlineSocket:
    """A connected socket whose time-out, before each operation, is cut to what is left of the call's deadline."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._timeout = sock.gettimeout()

    def _arm(self) -> None:
        end = _deadline.get()
        if end is None:
            self._sock.settimeout(self._timeout)
            return
        left = end - time.monotonic()
        if left <= 0:
            raise TimeoutError("the call's deadline passed")
        self._sock.settimeout(left if self._timeout is None else min(left, self._timeout))

    def settimeout(self, value: float | None) -> None:
        self._timeout = value
        self._sock.settimeout(value)

    def gettimeout(self) -> float | None:
        return self._timeout

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        self._arm()
        return self._sock.recv_into(buffer, nbytes, flags)

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        self._arm()
        return self._sock.recv(bufsize, flags)

    def sendall(self, data: Any, flags: int = 0) -> None:
        self._arm()
        self._sock.sendall(data, flags)

    def send(self, data: Any, flags: int = 0) -> int:
        self._arm()
        return self._sock.send(data, flags)

    def makefile(self, mode: str = "r", buffering: int | None = None, **_kwargs: Any) -> io.BufferedReader:
        """http.client reads the status line, headers and body through this file: through recv_into above."""
        if "r" not in mode or "w" in mode:
            raise ValueError("only reading files are made from this socket")
        # As socket.makefile does: the socket stays open until this file is closed too (http.client closes the
        # connection's socket while the response is still being read from its file).
        self._sock._io_refs += 1  # type: ignore[attr-defined]
        return io.BufferedReader(_Reader(self), buffering or io.DEFAULT_BUFFER_SIZE)

    def __getattr__(self, name: str) -> Any:  # fileno, close, getpeercert, shutdown, …
        return getattr(self._sock, name)


class _Reader(io.RawIOBase):
    def __init__(self, sock: _DeadlineSocket) -> None:
        self._sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        return self._sock.recv_into(buffer)

    def close(self) -> None:
        if not self.closed:
            self._sock._sock._decref_socketios()  # type: ignore[attr-defined]
        super().close()


class _DeadlineConnection(HTTPConnection):
    def connect(self) -> None:
        super().connect()
        self.sock = _DeadlineSocket(self.sock)


class _DeadlineTLSConnection(HTTPSConnection):
    def connect(self) -> None:
        super().connect()
        self.sock = _DeadlineSocket(self.sock)


class _Pool(HTTPConnectionPool):
    ConnectionCls = _DeadlineConnection


class _TLSPool(HTTPSConnectionPool):
    ConnectionCls = _DeadlineTLSConnection


POOLS = {"http": _Pool, "https": _TLSPool}


class DeadlineAdapter(HTTPAdapter):
    """Mount on a requests.Session so calls inside `deadline()` end in time, directly or through an HTTP proxy."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = POOLS

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **kwargs)
        manager.pool_classes_by_scheme = POOLS
        return manager
