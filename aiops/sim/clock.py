"""Simulation time: a manual clock for fast, deterministic runs and the wall clock for live ones."""

from __future__ import annotations

import threading
import time


class SimClock:
    """A clock that only moves when told to, so a test can run an hour of cluster life in milliseconds."""

    def __init__(self, start: float) -> None:
        self._now = float(start)
        self._lock = threading.Lock()

    def now(self) -> float:
        """Current simulated unix time in seconds."""
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        """Move time forward (never backward) and return the new time."""
        if seconds < 0:
            raise ValueError("a clock cannot go backward")
        with self._lock:
            self._now += float(seconds)
            return self._now


class WallClock:
    """The real time, for ``aiops sim`` in realtime mode."""

    def now(self) -> float:
        """Current unix time in seconds."""
        return time.time()

    def advance(self, seconds: float) -> float:
        """Wall time moves by itself: this only reports the current time."""
        return time.time()
