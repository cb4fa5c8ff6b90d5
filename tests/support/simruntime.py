"""The simulator running in real time in a background thread, for tests where a real Prometheus scrapes it."""

from __future__ import annotations

import contextlib
import threading
from typing import Iterator

from aiops.sim.runtime import SimRuntime


@contextlib.contextmanager
def realtime_sim(scenario: str, prefill: float = 0.0) -> Iterator[SimRuntime]:
    """``scenario`` stepping every second of wall time (1 s rollouts), ``prefill`` seconds of history first."""
    runtime = SimRuntime(scenario, realtime=True, step=1.0, rollout_seconds=1.0).start()
    if prefill:
        runtime.prefill(prefill)
    stop = threading.Event()
    ticker = threading.Thread(target=runtime.run_forever, args=(stop,), daemon=True)
    ticker.start()
    try:
        yield runtime
    finally:
        stop.set()
        ticker.join(timeout=5)
        runtime.stop()
