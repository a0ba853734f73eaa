"""A clock is passed in wherever time is read, so a test can move time instead of waiting for it."""

from __future__ import annotations

from collections.abc import Callable

Clock = Callable[[], float]  # seconds: time.time for what is stored or compared across processes, else monotonic
