"""How every benchmark writes its JSON result: one format, parent folders created."""

from __future__ import annotations

import json
from pathlib import Path


def _plain(value):
    """numpy numbers and arrays as Python values, anything else (enums, datetimes, paths) as text."""
    return value.tolist() if hasattr(value, "tolist") else str(value)


def write_json(path: Path, body) -> None:
    """Write ``body`` to ``path`` as indented JSON with a trailing newline, creating the parent folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(body, indent=2, default=_plain) + "\n", encoding="utf-8")
