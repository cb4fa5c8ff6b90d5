"""Readiness: injected dependency checks, run off the event loop with a timeout, results cached briefly."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from typing import Callable, Mapping

log = logging.getLogger(__name__)

# A check returns None when the dependency is fine, or a short reason why it is not.
Check = Callable[[], "str | None"]

OK = "ok"


class Readiness:
    """Runs named checks (``{"prometheus": fn, "kubernetes": fn}``) and reports which dependency failed and why.

    Checks run in threads so a slow dependency never blocks the event loop; one that does not answer within
    ``timeout_seconds`` counts as failed. Results are reused for ``cache_seconds`` so probes cannot hammer the
    dependencies. A check still hanging from an earlier probe is not started again.
    """

    def __init__(self, checks: Mapping[str, Check], timeout_seconds: float = 2.0, cache_seconds: float = 5.0,
                 on_result: Callable[[bool, dict[str, str]], None] | None = None) -> None:
        self._checks = dict(checks)
        # Told every fresh result (not cached re-reads): the agent mirrors it into its metrics.
        self._on_result = on_result
        self._timeout = timeout_seconds
        self._cache_seconds = cache_seconds
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=max(2, 2 * len(self._checks)),
                                                               thread_name_prefix="aiops-readyz")
        self._lock = threading.Lock()
        self._running: dict[str, concurrent.futures.Future] = {}
        self._cached: tuple[float, dict[str, str]] | None = None
        self._info: dict[str, Callable[[], object]] = {}

    async def check(self) -> tuple[bool, dict[str, str]]:
        """``(ready, {name: "ok" | reason})``; ready only when every check says ok."""
        return await asyncio.get_running_loop().run_in_executor(None, self.check_blocking)

    def check_blocking(self) -> tuple[bool, dict[str, str]]:
        """The same as ``check`` for callers without an event loop (blocks up to the timeout)."""
        with self._lock:
            if self._cached is not None and time.monotonic() - self._cached[0] < self._cache_seconds:
                results = self._cached[1]
            else:
                results = self._run_all()
                self._cached = (time.monotonic(), results)
                self._tell(results)
        return all(v == OK for v in results.values()), dict(results)

    def add_info(self, name: str, describe: Callable[[], object]) -> None:
        """Show ``describe()`` (JSON-able, cheap, never blocking) under ``name`` on every probe answer, without it
        deciding readiness (e.g. leader/follower: a follower is ready)."""
        self._info[name] = describe

    def info(self) -> dict[str, object]:
        """The extra facts registered with ``add_info``, freshly described."""
        return {name: describe() for name, describe in self._info.items()}

    def _tell(self, results: dict[str, str]) -> None:
        if self._on_result is None:
            return
        try:
            self._on_result(all(v == OK for v in results.values()), dict(results))
        except Exception:  # noqa: BLE001 - a broken listener must not break the probe
            log.exception("readiness listener failed")

    def invalidate(self) -> None:
        """Forget cached results, so the next probe runs the checks again."""
        with self._lock:
            self._cached = None

    def close(self) -> None:
        """Stop the check threads (does not wait for a hanging check)."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _run_all(self) -> dict[str, str]:
        futures = {}
        for name, fn in self._checks.items():
            running = self._running.get(name)
            if running is None or running.done():
                running = self._executor.submit(fn)
                self._running[name] = running
            futures[name] = running
        deadline = time.monotonic() + self._timeout
        return {name: _outcome(future, deadline - time.monotonic()) for name, future in futures.items()}


def _outcome(future: concurrent.futures.Future, remaining: float) -> str:
    try:
        reason = future.result(timeout=max(0.0, remaining))
    except concurrent.futures.TimeoutError:
        return "timeout: no answer within the readiness timeout"
    except Exception as exc:  # noqa: BLE001 - a crashing check means "not ready", with the reason shown
        return f"error: {type(exc).__name__}: {exc}"
    return OK if reason is None else str(reason)
