"""The model registry in words, for ``aiops models list|show``."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

from aiops.detect.store import ModelRecord


def _time(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M")


def score_of(record: ModelRecord) -> str:
    """The held-back criterion score the version was saved with (training report or retrain holdout), or ``-``."""
    metrics = record.extra.get("metrics") or {}
    for key in ("test", "holdout"):
        value = metrics.get(key)
        if isinstance(value, dict) and "score" in value:
            return f"{value['score']:.3f} ({value.get('criterion', '?')})"
    return "-"


def window_of(record: ModelRecord) -> str:
    """The training window, ``start .. end`` in UTC."""
    return f"{_time(record.trained_start)} .. {_time(record.trained_end)}"


def render_list(rows: Sequence[tuple[ModelRecord, int]], directory: Path) -> str:
    """One line per model: current version, how many versions, training window, held-back score."""
    if not rows:
        return f"no models in {directory}"
    lines = [f"{'NAME':<20} {'CURRENT':>7} {'VERSIONS':>8}  {'TRAINED ON (UTC)':<36} SCORE"]
    for record, count in rows:
        lines.append(f"{record.name:<20} {'v' + str(record.version):>7} {count:>8}  {window_of(record):<36} "
                     f"{score_of(record)}")
    return "\n".join(lines)


def render_versions(records: Sequence[ModelRecord], current: int) -> str:
    """Every given version of one model, the current one marked with ``*``."""
    lines = []
    for r in records:
        mark = "*" if r.version == current else " "
        params = r.extra.get("params") or {}
        lines.append(f"{mark} v{r.version}  created {_time(r.created)}  trained on {window_of(r)}  "
                     f"score {score_of(r)}")
        if params:
            lines.append("      params " + ", ".join(f"{k}={v}" for k, v in params.items()))
        origin = r.extra.get("plan_id") or r.extra.get("config")
        if origin:
            lines.append(f"      from {'plan ' if r.extra.get('plan_id') else ''}{origin}")
    return "\n".join(lines) if lines else "no versions"
