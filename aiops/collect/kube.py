"""Pod logs and core/v1 Events of one namespace, through the Kubernetes API, attributed to workloads."""

from __future__ import annotations

import math
import time
from typing import Callable, Mapping

from aiops.clients.kube import KubeClient, KubeError
from aiops.collect.alertmanager import parse_time
from aiops.collect.workloads import workload_of_pod, workload_of_pod_object, workload_of_replicaset
from aiops.domain.errors import InputError
from aiops.domain.observations import KubeEvent, LogLine

_OWNER_KINDS = ("Deployment", "StatefulSet", "DaemonSet")
# Written by ``write_case`` so a recorded event keeps the workload it was attributed to.
WORKLOAD_ANNOTATION = "aiops.dev/workload"


def parse_log_text(text: str, namespace: str, pod: str, container: str, workload: str) -> list[LogLine]:
    """Lines of ``read_pod_log(timestamps=True)`` output; a line without a time prefix (a continuation) takes the
    previous line's time, and one before any timestamp is dropped."""
    out: list[LogLine] = []
    last_ts: float | None = None
    for raw in text.splitlines():
        if not raw:
            continue
        stamp, _, rest = raw.partition(" ")
        try:
            if not (stamp[:4].isdigit() and "T" in stamp):  # only an RFC3339 prefix, never a number in the text
                raise InputError("log", "no timestamp")
            ts, line = parse_time(stamp, "log"), rest
        except InputError:
            ts, line = last_ts, raw
        if ts is None:
            continue
        last_ts = ts
        out.append(LogLine(ts=ts, namespace=namespace, pod=pod, container=container, workload=workload, line=line))
    return out


def event_time(event: Mapping) -> float | None:
    """When an Event last happened: lastTimestamp, eventTime, firstTimestamp, then creationTimestamp."""
    series = event.get("series") or {}
    for value in (event.get("lastTimestamp"), series.get("lastObservedTime"), event.get("eventTime"),
                  event.get("firstTimestamp"), (event.get("metadata") or {}).get("creationTimestamp")):
        if value:
            try:
                return parse_time(value, "event")
            except InputError:
                continue
    return None


def event_workload(involved: Mapping) -> str:
    """The workload an Event is about: Pods and ReplicaSets map to their owner by name, owners to themselves."""
    kind, name = involved.get("kind", ""), involved.get("name", "") or ""
    if kind == "Pod":
        return workload_of_pod(name)
    if kind == "ReplicaSet":
        return workload_of_replicaset(name)
    if kind in _OWNER_KINDS:
        return name
    return ""


def kube_event(event: Mapping, where: str = "event") -> KubeEvent:
    """A ``KubeEvent`` from a core/v1 Event object; ``InputError`` if it is not one."""
    if not isinstance(event, Mapping):
        raise InputError(where, "not a core/v1 Event object")
    involved = event.get("involvedObject") or event.get("regarding")
    if not isinstance(involved, Mapping):
        raise InputError(f"{where}.involvedObject", "missing or not an object")
    ts = event_time(event)
    if ts is None:
        raise InputError(where, "has no lastTimestamp, eventTime, firstTimestamp or creationTimestamp")
    count = event.get("count") or (event.get("series") or {}).get("count") or 1
    if isinstance(count, bool) or not isinstance(count, (int, float)):
        raise InputError(f"{where}.count", f"must be a number, got {count!r}")
    annotations = (event.get("metadata") or {}).get("annotations") or {}
    namespace = involved.get("namespace") or (event.get("metadata") or {}).get("namespace") or ""
    return KubeEvent(ts=ts, namespace=namespace, involved_kind=str(involved.get("kind", "")),
                     involved_name=str(involved.get("name", "")), reason=str(event.get("reason") or ""),
                     message=str(event.get("message") or event.get("note") or ""),
                     type=str(event.get("type") or "Normal"), count=int(count),
                     workload=annotations.get(WORKLOAD_ANNOTATION) or event_workload(involved))


class KubeCollector:
    """Pod logs and Events of a namespace over a time window.

    Pods whose logs cannot be read (a container still waiting, a pod gone) are skipped: that is normal churn. Other
    API errors propagate as ``KubeError``.
    """

    def __init__(self, kube: KubeClient, clock: Callable[[], float] = time.time) -> None:
        self.kube = kube
        self._clock = clock

    def logs(self, namespace: str, start: float, end: float, tail_lines: int = 500) -> list[LogLine]:
        """Container log lines with ``start <= ts <= end``, oldest first."""
        # Never ask for less than the window: a clock behind the window's end would cut its start off unseen.
        since = max(1, math.ceil(max(self._clock(), end) - start))
        out: list[LogLine] = []
        for pod in self.kube.list_pods(namespace):
            name = (pod.get("metadata") or {}).get("name", "")
            workload = workload_of_pod_object(pod)
            for container in (pod.get("spec") or {}).get("containers") or ():
                try:
                    text = self.kube.read_pod_log(namespace, name, container.get("name"), since_seconds=since,
                                                  tail_lines=tail_lines, timestamps=True)
                except KubeError as exc:
                    # 400/404: no log (yet). 5xx: the apiserver could not reach the pod's kubelet (node down,
                    # unresolvable node name): that pod's log is missing, the incident can still be diagnosed.
                    if exc.status in (400, 404) or exc.status >= 500:
                        continue
                    raise
                out.extend(line for line in parse_log_text(text or "", namespace, name, container.get("name", ""),
                                                           workload) if start <= line.ts <= end)
        out.sort(key=lambda l: l.ts)
        return out

    def events(self, namespace: str, start: float, end: float) -> list[KubeEvent]:
        """Events whose time falls in ``[start, end]``, oldest first; malformed items are skipped."""
        out = []
        for i, raw in enumerate(self.kube.list_events(namespace)):
            try:
                event = kube_event(raw, f"events[{i}]")
            except InputError:
                continue
            if start <= event.ts <= end:
                out.append(event)
        out.sort(key=lambda e: e.ts)
        return out
