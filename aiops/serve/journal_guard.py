"""Watching the execution journal: a failed write turns the agent into an observer until writes work again.

Every plan transition is journaled *before* its side effect (``remediate/machine.py``), so a journal that refuses a
write already stops the plan before it touches the cluster. ``JournalGuard`` wraps any ``ExecutionStore`` and adds
what the operator needs to see and what recovery needs: any exception from ``record`` (a full disk, a read-only or
deleted state directory, a locked database) marks the journal unwritable, counts it in
``aiops_journal_write_failures_total``, drops ``aiops_journal_writable`` to 0 and is re-raised as
``JournalUnwritable``; the readiness check then reports the reason. The journal is writable again after the next
successful ``record`` or a successful probe: the store's own ``probe_writable()`` when it has one, else (for stores
with a ``path``) writing and syncing a small scratch file beside it, which fails the same way on a full or read-only
disk.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

from aiops.serve.metrics import AgentMetrics

log = logging.getLogger(__name__)

# Large enough that a full filesystem refuses it (a zero-byte file needs only an inode).
_PROBE_BYTES = 4096


class JournalUnwritable(RuntimeError):
    """A journal write failed: the transition (and the side effect after it) did not happen."""


class JournalGuard:
    """An ``ExecutionStore`` that forwards to ``store`` and remembers whether its last write worked.

    Reads (``history``, ``latest``, ``acted``, ...) and every other attribute pass straight through.
    ``on_recover`` callbacks run (outside the lock) when the journal becomes writable again.
    """

    def __init__(self, store: Any, metrics: AgentMetrics | None = None) -> None:
        self.store = store
        self._metrics = metrics
        self._lock = threading.Lock()
        self._failure: str | None = None
        self._failed_since: float | None = None
        self._recover_listeners: list[Callable[[], None]] = []
        if metrics is not None:
            metrics.journal_writable.set(1)

    # --- the ExecutionStore surface ---
    def record(self, plan_id: str, state: str, note: str, data: dict[str, Any]) -> None:
        """Forward one transition; on any failure mark the journal unwritable and raise ``JournalUnwritable``."""
        try:
            self.store.record(plan_id, state, note, data)
        except Exception as exc:  # noqa: BLE001 - whatever the store raises, the write did not happen
            self._failed(exc, f"writing {state!r} of plan {plan_id}")
            raise JournalUnwritable(f"execution journal unwritable: {type(exc).__name__}: {exc}") from exc
        self._succeeded("a journal write succeeded")

    def history(self, plan_id: str) -> list[dict[str, Any]]:
        return self.store.history(plan_id)

    def latest(self) -> list[dict[str, Any]]:
        return self.store.latest()

    def __getattr__(self, name: str) -> Any:
        # Only reached for attributes the guard lacks: the wrapped store's other methods (acted, records, path...).
        if name == "store":
            raise AttributeError(name)
        return getattr(self.store, name)

    # --- state ---
    @property
    def writable(self) -> bool:
        """False from a failed write until a write or a probe succeeds."""
        with self._lock:
            return self._failure is None

    @property
    def failure(self) -> str | None:
        """Why the journal is unwritable (``None`` when it is writable)."""
        with self._lock:
            return self._failure

    def on_recover(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` each time the journal becomes writable again."""
        self._recover_listeners.append(listener)

    def check(self) -> str | None:
        """The readiness check: ``None`` when writable (probing again first if the last write failed), else why."""
        with self._lock:
            failure, since = self._failure, self._failed_since
        if failure is None:
            return None
        probe_error = self.probe()
        if probe_error is None:
            self._succeeded("the journal probe succeeded")
            return None
        age = time.time() - since if since is not None else 0.0
        return f"unwritable for {age:.0f}s (no action is taken): {failure}; probe: {probe_error}"

    def probe(self) -> str | None:
        """Try the store without journaling anything: ``None`` when it would accept a write, else why not."""
        try:
            own = getattr(self.store, "probe_writable", None)
            if callable(own):
                own()
                return None
            path = getattr(self.store, "path", None)
            if path is None:
                return "the store has no probe; the next write decides"
            _write_scratch(Path(path).parent)
        except Exception as exc:  # noqa: BLE001 - any failure is the reason shown
            return f"{type(exc).__name__}: {exc}"
        return None

    def _failed(self, exc: Exception, what: str) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        with self._lock:
            first = self._failure is None
            self._failure = reason
            if first:
                self._failed_since = time.time()
        if self._metrics is not None:
            self._metrics.journal_write_failures.inc()
            self._metrics.journal_writable.set(0)
        log.error("execution journal unwritable (%s): %s; the agent takes no action until it recovers",
                  what, reason)

    def _succeeded(self, how: str) -> None:
        with self._lock:
            was = self._failure
            self._failure = None
            self._failed_since = None
        if was is None:
            return
        if self._metrics is not None:
            self._metrics.journal_writable.set(1)
        log.warning("execution journal writable again (%s); it had failed with %s", how, was)
        for listener in list(self._recover_listeners):
            try:
                listener()
            except Exception:  # noqa: BLE001 - recovery listeners must not undo the recovery
                log.exception("journal recovery listener failed")


def _write_scratch(folder: Path) -> None:
    """Create, fill, fsync and remove a scratch file in ``folder`` (raises what the filesystem says)."""
    fd, name = tempfile.mkstemp(prefix=".aiops-probe-", dir=folder)
    try:
        os.write(fd, b"\0" * _PROBE_BYTES)
        os.fsync(fd)
    finally:
        os.close(fd)
        os.unlink(name)
