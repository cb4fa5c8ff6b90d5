"""How every benchmark writes its JSON result (one format, parent folders created), and keeps the agent quiet while
it breaks things on purpose."""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Iterator


def _plain(value):
    """numpy numbers and arrays as Python values, anything else (enums, datetimes, paths) as text."""
    return value.tolist() if hasattr(value, "tolist") else str(value)


def write_json(path: Path, body) -> None:
    """Write ``body`` to ``path`` as indented JSON with a trailing newline, creating the parent folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(body, indent=2, default=_plain) + "\n", encoding="utf-8")


@contextlib.contextmanager
def quiet_logs(level: int, logger: str = "aiops") -> Iterator[None]:
    """Raise ``logger``'s level for the block, then put it back: a benchmark that breaks things on purpose expects
    the agent's warnings, and a test running the benchmark in-process must not lose later tests' log records."""
    log = logging.getLogger(logger)
    before = log.level
    log.setLevel(level)
    try:
        yield
    finally:
        log.setLevel(before)
