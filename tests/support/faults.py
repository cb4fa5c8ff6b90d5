"""Switchable faults in front of the agent's dependencies, for the fault tests.

"Down" routes calls to a real client pointed at a closed loopback port, so the agent sees exactly the exception a
dead Prometheus or apiserver gives; 409s are the apiserver's real Conflict status; a full disk is ``OSError(ENOSPC)``.
"""

from __future__ import annotations

import errno
import os
import socket
import threading
import time
from typing import Any

from aiops.clients.kube import KubeClient, KubeError
from aiops.clients.prometheus import PrometheusClient
from aiops.remediate.journal import MemoryJournal

# The apiserver's own words for a lost read-modify-write race (kube fixtures: status_409_conflict_*).
CONFLICT_MESSAGE = ('Operation cannot be fulfilled on deployments.apps "{name}": the object has been modified; '
                    'please apply your changes to the latest version and try again')


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class FaultyKube:
    """A ``KubeClient`` whose calls can fail like a dead apiserver (``down``), lag (``delay_seconds`` on every call,
    ``version_delay_seconds`` on the readiness call) or lose ``patch_deployment`` races (``conflicts``: how many
    of the next patches answer 409; -1 for all of them)."""

    def __init__(self, kube: KubeClient) -> None:
        self._kube = kube
        self._dead = KubeClient.for_host(f"http://127.0.0.1:{closed_port()}")
        self.down = False
        self.delay_seconds = 0.0
        self.version_delay_seconds = 0.0
        self.conflicts = 0
        self.conflicts_sent = 0
        self.calls: list[str] = []
        self._lock = threading.Lock()

    def close(self) -> None:
        self._dead.close()

    def __getattr__(self, name: str) -> Any:
        real = getattr(self._kube, name)
        if not callable(real):
            return real

        def call(*args, **kwargs):
            with self._lock:
                self.calls.append(name)
            delay = self.version_delay_seconds if name == "version" else self.delay_seconds
            if delay:
                time.sleep(delay)  # the injected latency itself, not a wait for something to happen
            if self.down:
                return getattr(self._dead, name)(*args, **kwargs)
            if name == "patch_deployment" and self._take_conflict():
                raise KubeError(409, "Conflict", CONFLICT_MESSAGE.format(name=args[1] if len(args) > 1 else "?"))
            return real(*args, **kwargs)
        return call

    def _take_conflict(self) -> bool:
        with self._lock:
            if self.conflicts == 0:
                return False
            if self.conflicts > 0:
                self.conflicts -= 1
            self.conflicts_sent += 1
            return True


class FaultyPrometheus:
    """A ``PrometheusClient`` that answers like a dead server while ``down``."""

    def __init__(self, prometheus: PrometheusClient) -> None:
        self._prometheus = prometheus
        self._dead = PrometheusClient(f"http://127.0.0.1:{closed_port()}", timeout_seconds=2)
        self.down = False

    def __getattr__(self, name: str) -> Any:
        target = self._dead if self.down else self._prometheus
        return getattr(target, name)


class FullDiskJournal(MemoryJournal):
    """A journal on a disk that can fill up: while ``full``, writes (and the write probe) raise ENOSPC."""

    def __init__(self, clock=None) -> None:
        super().__init__(clock)
        self.full = False
        self.refused = 0

    def _write(self, entry: dict[str, Any]) -> None:
        self._check_space()

    def probe_writable(self) -> None:
        """What ``JournalGuard`` calls to learn whether a write would work now."""
        self._check_space()

    def _check_space(self) -> None:
        if self.full:
            self.refused += 1
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "journal.jsonl")
