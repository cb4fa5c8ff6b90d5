"""Log lines for people (text) or for log pipelines (one JSON object per line)."""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
from datetime import datetime, timezone
from typing import Any, TextIO

from aiops.domain.errors import InputError

# Attributes every LogRecord has; anything else on a record came from ``extra=`` and is worth keeping.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime",
                                                                                    "taskName"}
# Context ids first, so a reader finds them in the same place on every line.
_CONTEXT_KEYS = ("incident", "plan")
# The ids of the work the current thread (or task) is doing: set by the worker and the pipeline, read by the
# formatters, so every line logged while handling an incident carries its id without each call passing ``extra``.
_CONTEXT_VARS = {key: contextvars.ContextVar(f"aiops_log_{key}", default=None) for key in _CONTEXT_KEYS}

# Libraries kept at WARNING or above whatever ``log_level`` says: they log routine work at INFO that the agent's own
# lines and journal already say (transitions every callback; APScheduler every run of every job: "Running job ...",
# "Job ... executed successfully"; Drain3 every template miner the log detector starts, once per loop run).
QUIET_LOGGERS = ("transitions", "apscheduler", "drain3")


@contextlib.contextmanager
def log_context(**ids: str | None):
    """Within the block, log lines of this thread carry ``ids`` (``incident=``, ``plan=``); restored after."""
    unknown = set(ids) - set(_CONTEXT_KEYS)
    if unknown:
        raise ValueError(f"unknown log context keys {sorted(unknown)}; known: {list(_CONTEXT_KEYS)}")
    tokens = [(_CONTEXT_VARS[key], _CONTEXT_VARS[key].set(value)) for key, value in ids.items()]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def context_ids(record: logging.LogRecord | None = None) -> dict[str, str]:
    """The incident/plan ids for a line: the record's own ``extra`` first, else the current log context."""
    out = {}
    for key in _CONTEXT_KEYS:
        value = getattr(record, key, None) if record is not None else None
        if value is None:
            value = _CONTEXT_VARS[key].get()
        if value is not None:
            out[key] = value
    return out


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line: ``ts``, ``level``, ``logger``, ``msg``, then ``incident``/``plan`` and any
    other ``extra`` fields, and ``exc`` with the traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        line.update(context_ids(record))
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and key not in line:
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """The classic one-line text format, with ``[incident=... plan=...]`` appended when present."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        context = " ".join(f"{k}={v}" for k, v in context_ids(record).items() if v)
        if context:
            head, sep, tail = text.partition("\n")
            text = f"{head} [{context}]{sep}{tail}"
        return text


class _AiopsHandler(logging.StreamHandler):
    """Marks the handler we install, so configuring twice replaces it instead of doubling every line."""


def configure_logging(fmt: str = "json", level: int | str = "INFO", stream: TextIO | None = None) -> None:
    """Send the root logger's records to ``stream`` (stderr by default) as JSON lines or text."""
    formatters = {"json": JsonFormatter, "text": TextFormatter}
    if fmt not in formatters:
        raise InputError("log_format", f"must be one of {sorted(formatters)}, got {fmt!r}")
    resolved = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    if not isinstance(resolved, int):
        raise InputError("log_level", f"unknown level {level!r}")
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _AiopsHandler)]:
        root.removeHandler(handler)
    handler = _AiopsHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(formatters[fmt]())
    root.addHandler(handler)
    root.setLevel(resolved)
    for noisy in QUIET_LOGGERS:
        logging.getLogger(noisy).setLevel(max(resolved, logging.WARNING))
