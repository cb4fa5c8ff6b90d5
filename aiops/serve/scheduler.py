"""The scheduled collect/detect loop, on APScheduler 3's ``BackgroundScheduler``."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from typing import Callable

from apscheduler.schedulers.background import BackgroundScheduler

from aiops.serve.metrics import AgentMetrics
from aiops.serve.retry import is_dependency_failure

log = logging.getLogger(__name__)

_JOB_ID = "aiops-loop"


class LoopScheduler:
    """Runs ``job`` every ``interval_seconds`` in a background thread, never two runs at once.

    Missed runs are coalesced into one (a loop that overran does not fire a burst afterwards). Each run's duration
    goes to ``aiops_loop_seconds`` and its outcome to ``aiops_loop_runs_total``; a run that raises is logged and
    the schedule continues.
    """

    def __init__(self, job: Callable[[], None], interval_seconds: float, metrics: AgentMetrics | None = None,
                 *, run_immediately: bool = True) -> None:
        if interval_seconds <= 0:
            raise ValueError(f"interval_seconds must be > 0, got {interval_seconds}")
        self._job = job
        self._interval = interval_seconds
        self._metrics = metrics
        self._run_immediately = run_immediately
        self._scheduler = BackgroundScheduler(timezone=timezone.utc)
        self.runs = 0
        self.failures = 0

    def start(self) -> None:
        """Schedule the job and start the scheduler thread (the first run is right away unless told otherwise)."""
        first = datetime.now(timezone.utc) if self._run_immediately else None
        kwargs = {"next_run_time": first} if first is not None else {}
        self._scheduler.add_job(self._run_once, "interval", seconds=self._interval, id=_JOB_ID, coalesce=True,
                                max_instances=1, misfire_grace_time=None, replace_existing=True, **kwargs)
        self._scheduler.start()

    def shutdown(self, wait: bool = True) -> None:
        """Stop scheduling; with ``wait`` return only after a run in progress has finished."""
        if self._scheduler.running:
            self._scheduler.shutdown(wait=wait)

    @property
    def running(self) -> bool:
        """True between ``start`` and ``shutdown``."""
        return self._scheduler.running

    def _run_once(self) -> None:
        started = time.perf_counter()
        outcome = "ok"
        try:
            self._job()
        except Exception as exc:  # noqa: BLE001 - one failed run must not end the schedule
            self.failures += 1
            outcome = "error"
            if is_dependency_failure(exc):
                # Prometheus or the apiserver down: one line per run, not a traceback (/readyz says which).
                log.warning("scheduled loop run failed: a dependency is unreachable: %s: %s", type(exc).__name__, exc)
            else:
                log.exception("scheduled loop run failed")
        finally:
            self.runs += 1
            if self._metrics is not None:
                self._metrics.loop_seconds.observe(time.perf_counter() - started)
                self._metrics.loop_runs.labels(outcome=outcome).inc()
