"""Case folders (docs/case-folder.md): a recorded incident as plain files, read into and written from domain types.

Layout: ``metrics.json`` (required; a ``query_range`` ``data.result`` list), ``logs.jsonl``, ``events.jsonl``
(core/v1 Event objects), ``alert.json`` (an Alertmanager webhook body), ``topology.json`` (``{"calls": [[caller,
callee], ...]}``) and ``truth.json`` (``{"workload", "fault", "playbook"}``, for benchmarks), all but the first
optional. Every problem is an ``InputError`` naming the file and the line, index or field.

A missing ``logs.jsonl`` or ``events.jsonl`` means that source was not recorded (``aiops record`` without Kubernetes
access writes neither): the case reads it as not collected, so no rule takes its absence for "nothing happened".
An empty file means it was read and had nothing in the window. (Folders recorded before this distinction hold an
empty file either way, and read as before.)
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from aiops.collect.alertmanager import parse_time, parse_webhook
from aiops.collect.kube import WORKLOAD_ANNOTATION, kube_event
from aiops.collect.prometheus import series_from_result
from aiops.collect.signals import derive_signals
from aiops.collect.workloads import workload_of_pod
from aiops.domain.alerts import Alert
from aiops.domain.errors import InputError
from aiops.domain.observations import EVENTS as EVENTS_SOURCE
from aiops.domain.observations import LOGS as LOGS_SOURCE
from aiops.domain.observations import KubeEvent, LogLine, Observations, Series, SourceGap, Topology

METRICS, LOGS, EVENTS, ALERT, TOPOLOGY, TRUTH = (
    "metrics.json", "logs.jsonl", "events.jsonl", "alert.json", "topology.json", "truth.json")
TRUTH_KEYS = ("workload", "fault", "playbook")


@dataclass(frozen=True)
class Case:
    """A case folder read into memory. ``truth`` is the known answer when the folder has one (generated cases)."""

    observations: Observations
    alerts: list[Alert]
    alert_payload: dict | None
    truth: dict | None
    path: Path


def read_case(path: str | Path, step: float = 15.0) -> Case:
    """Read a case folder; signals are derived on a ``step`` grid spanning the metrics' first to last timestamp."""
    folder = Path(path)
    if not folder.exists():
        raise InputError(str(folder), "case folder not found")
    if not folder.is_dir():
        raise InputError(str(folder), "not a folder (a case is a folder holding metrics.json)")
    metrics_file = folder / METRICS
    if not metrics_file.is_file():
        raise InputError(str(metrics_file), "missing: a case folder needs metrics.json")
    series = _read_metrics(metrics_file)
    stamps = [s.timestamps for s in series if len(s.timestamps)]
    if not stamps:
        raise InputError(str(metrics_file), "holds no samples, so the case has no time window")
    start = float(min(t[0] for t in stamps))
    end = float(max(t[-1] for t in stamps))
    namespace = _most_common(s.namespace for s in series)
    logs = _read_logs(folder / LOGS, namespace)
    events = _read_events(folder / EVENTS)
    gaps = tuple(SourceGap(source, f"not recorded: the case folder has no {name}")
                 for source, name in ((LOGS_SOURCE, LOGS), (EVENTS_SOURCE, EVENTS)) if not (folder / name).is_file())
    namespace = namespace or _most_common([l.namespace for l in logs] + [e.namespace for e in events])
    payload = _read_json(folder / ALERT) if (folder / ALERT).is_file() else None
    alerts = _parse_alerts(folder / ALERT, payload) if payload is not None else []
    observations = Observations(
        namespace=namespace, start=start, end=end, series=tuple(series),
        signals=derive_signals(series, start, end, step), logs=tuple(logs), events=tuple(events),
        topology=_read_topology(folder / TOPOLOGY), not_collected=gaps)
    return Case(observations=observations, alerts=alerts, alert_payload=payload,
                truth=_read_truth(folder / TRUTH), path=folder)


_NESTED_TOO_DEEPLY = "JSON nested too deeply to read"


def _read_json(file: Path) -> Any:
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(str(file), f"cannot read: {exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{file}:{exc.lineno}", f"not valid JSON: {exc.msg}") from None
    except RecursionError:
        raise InputError(str(file), _NESTED_TOO_DEEPLY) from None


def _jsonl(file: Path) -> Iterator[tuple[str, Any]]:
    """``(where, object)`` per non-blank line, ``where`` being ``file:line``."""
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(str(file), f"cannot read: {exc}") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{file}:{number}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            raise InputError(where, "not valid JSON") from None
        except RecursionError:
            raise InputError(where, _NESTED_TOO_DEEPLY) from None
        if not isinstance(obj, dict):
            raise InputError(where, "must be a JSON object")
        yield where, obj


def _read_metrics(file: Path) -> list[Series]:
    raw = _read_json(file)
    if isinstance(raw, dict) and isinstance(raw.get("data"), dict):  # a saved /api/v1/query_range answer
        raw = raw["data"].get("result")
    return series_from_result(raw, where=str(file))


def _read_logs(file: Path, namespace: str) -> list[LogLine]:
    if not file.is_file():
        return []
    out = []
    for where, obj in _jsonl(file):
        if "ts" not in obj:
            raise InputError(f"{where}: ts", "missing")
        ts = parse_time(obj["ts"], f"{where}: ts")
        for key in ("namespace", "pod", "container", "workload", "line"):
            if key in obj and not isinstance(obj[key], str):
                raise InputError(f"{where}: {key}", "must be a string")
        if "line" not in obj:
            raise InputError(f"{where}: line", "missing")
        pod = obj.get("pod", "")
        out.append(LogLine(ts=ts, namespace=obj.get("namespace") or namespace, pod=pod,
                           container=obj.get("container", ""),
                           workload=obj.get("workload") or (workload_of_pod(pod) if pod else ""), line=obj["line"]))
    out.sort(key=lambda l: l.ts)
    return out


def _read_events(file: Path) -> list[KubeEvent]:
    if not file.is_file():
        return []
    events = [kube_event(obj, where) for where, obj in _jsonl(file)]
    events.sort(key=lambda e: e.ts)
    return events


def _parse_alerts(file: Path, payload: Any) -> list[Alert]:
    try:
        return parse_webhook(payload)
    except InputError as exc:
        raise InputError(f"{file}: {exc.where}", exc.reason) from None


def _read_topology(file: Path) -> Topology:
    if not file.is_file():
        return Topology()
    raw = _read_json(file)
    if not isinstance(raw, dict) or not isinstance(raw.get("calls", []), list):
        raise InputError(f"{file}: calls", 'must be {"calls": [["caller", "callee"], ...]}')
    calls = []
    for i, pair in enumerate(raw.get("calls", [])):
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) and x for x in pair)):
            raise InputError(f"{file}: calls[{i}]", 'not a ["caller", "callee"] pair of workload names')
        calls.append((pair[0], pair[1]))
    return Topology(calls=tuple(calls))


def _read_truth(file: Path) -> dict | None:
    if not file.is_file():
        return None
    raw = _read_json(file)
    if not isinstance(raw, dict):
        raise InputError(str(file), 'must be {"workload": ..., "fault": ..., "playbook": ...}')
    for key in TRUTH_KEYS:
        if key in raw and not isinstance(raw[key], str):
            raise InputError(f"{file}: {key}", "must be a string")
    return raw


def _most_common(values) -> str:
    counts = Counter(v for v in values if v)
    if not counts:
        return ""
    best = max(counts.values())
    return min(v for v, c in counts.items() if c == best)  # ties: alphabetical, so the answer is stable


# --- writing ---

def check_writable(path: str | Path) -> None:
    """Raise ``InputError`` now if ``write_case`` could not write a new case folder at ``path``: so a recording that
    takes a while to collect fails before it starts, not after."""
    folder = Path(path)
    if folder.exists() and not (folder.is_dir() and not any(folder.iterdir())):
        raise InputError(str(folder), "already exists and is not empty (choose a new folder)" if folder.is_dir()
                         else "is a file, not a folder (choose a new folder)")
    ancestor = folder.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
        raise InputError(str(folder), f"cannot be created: {ancestor} is not a folder this user can write in")


def write_case(path: str | Path, observations: Observations, alert_payload: dict | None = None,
               truth: dict | None = None, overwrite: bool = False) -> Path:
    """Write ``observations`` as a case folder at ``path``, atomically (a temp folder renamed into place).

    An existing ``path`` is an ``InputError`` unless it is an empty folder or ``overwrite`` is set.
    """
    folder = Path(path)
    if folder.exists() and not overwrite and not (folder.is_dir() and not any(folder.iterdir())):
        raise InputError(str(folder), "already exists and is not empty (choose a new folder)")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        _write_json(tmp / METRICS, [s.to_prometheus() for s in observations.series])
        if observations.collected(LOGS_SOURCE):  # no file: not recorded (an empty one: nothing happened)
            _write_lines(tmp / LOGS, (_log_dict(l) for l in observations.logs))
        if observations.collected(EVENTS_SOURCE):
            _write_lines(tmp / EVENTS, (_event_dict(e, i) for i, e in enumerate(observations.events)))
        if observations.topology.known:
            _write_json(tmp / TOPOLOGY, {"calls": [list(c) for c in observations.topology.calls]})
        if alert_payload is not None:
            _write_json(tmp / ALERT, alert_payload)
        if truth is not None:
            _write_json(tmp / TRUTH, truth)
        _swap_into_place(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def _swap_into_place(tmp: Path, folder: Path) -> None:
    old = None
    if folder.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old.", dir=folder.parent))
        os.rmdir(old)
        os.rename(folder, old)
    os.rename(tmp, folder)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _write_json(file: Path, data: Any) -> None:
    file.write_text(json.dumps(data, separators=(",", ":")) + "\n", encoding="utf-8")


def _write_lines(file: Path, rows) -> None:
    with file.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, separators=(",", ":")) + "\n")


def _log_dict(line: LogLine) -> dict:
    return {"ts": line.ts, "namespace": line.namespace, "pod": line.pod, "container": line.container,
            "workload": line.workload, "line": line.line}


def rfc3339(ts: float) -> str:
    """Unix seconds as RFC3339 UTC, with a microsecond fraction only when there is one."""
    micros = round(ts * 1_000_000)
    seconds, fraction = divmod(micros, 1_000_000)
    whole = datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{whole}.{fraction:06d}".rstrip("0").rstrip(".") + "Z"


def _event_dict(event: KubeEvent, index: int) -> dict:
    stamp = rfc3339(event.ts)
    return {"apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{event.involved_name}.{index:08x}", "namespace": event.namespace,
                         "annotations": {WORKLOAD_ANNOTATION: event.workload}},
            "involvedObject": {"kind": event.involved_kind, "name": event.involved_name,
                               "namespace": event.namespace},
            "reason": event.reason, "message": event.message, "type": event.type, "count": event.count,
            "firstTimestamp": stamp, "lastTimestamp": stamp}
