"""Log lines for people (text) or for log pipelines (one JSON object per line)."""

from __future__ import annotations

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
        for key in _CONTEXT_KEYS:
            if getattr(record, key, None) is not None:
                line[key] = getattr(record, key)
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
        context = " ".join(f"{k}={getattr(record, k)}" for k in _CONTEXT_KEYS if getattr(record, k, None))
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
    # transitions logs every callback at INFO; our own journal and log lines already say what happened.
    logging.getLogger("transitions").setLevel(max(resolved, logging.WARNING))
