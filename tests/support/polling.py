"""Waiting for something to become true, with a deadline: the only way tests synchronise."""

from __future__ import annotations

import time


def wait_until(predicate, timeout: float, what: str, interval: float = 0.05):
    """Poll ``predicate`` until it returns a truthy value (returned) or ``timeout`` passes (TimeoutError naming
    ``what`` and the last error the predicate raised, if any)."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - not ready yet; report the last failure if we time out
            last_exc = exc
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last_exc})" if last_exc else ""))


def wait_for(predicate, timeout: float = 5.0) -> bool:
    """``wait_until`` for ``assert wait_for(...)``: True when ``predicate`` held in time, else False."""
    try:
        wait_until(predicate, timeout, "condition", interval=0.01)
    except TimeoutError:
        return False
    return True
