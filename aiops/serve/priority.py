"""Which queued incident goes first: a priority 0-9 from alert severity and playbook, and dependencies between work.

Priority 0 is the most urgent, 9 the least (like P0 on a pager). An incident's priority is the mean, rounded down,
of its severity's priority (the most urgent firing alert: ``critical`` 0 ... ``info`` 7; none 5) and its
playbook's (the playbook's own ``priority`` when set, else by action: ``isolate``/``rollback`` 1, ``degrade``/
``shift_traffic`` 2, ``scale``/``restart`` 3, ``escalate`` 5, ``retrain`` 7; unknown 5).

A dependency says one kind of work waits while another kind for the same workload is queued or running: a
detector retrain waits for a rollback (or any other change) of that workload to finish, so it never learns from
the broken version. The table must be acyclic, so the queue cannot deadlock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from aiops.domain.incident import Incident
from aiops.domain.playbook import Playbook

SEVERITY_PRIORITY: dict[str, int] = {"critical": 0, "page": 0, "error": 2, "high": 2, "warning": 4, "medium": 4,
                                     "info": 7, "low": 7, "none": 9}
ACTION_PRIORITY: dict[str, int] = {"isolate": 1, "rollback": 1, "degrade": 2, "shift_traffic": 2, "scale": 3,
                                   "restart": 3, "escalate": 5, "retrain": 7}
UNKNOWN_PRIORITY = 5
# kind -> kinds of work on the same workload it waits for.
DEPENDENCIES: dict[str, tuple[str, ...]] = {
    "retrain": ("rollback", "restart", "scale", "shift_traffic", "degrade", "isolate"),
}
# Alert labels that may name the playbook an alert calls for (set in the Prometheus alert rule).
PLAYBOOK_LABELS = ("aiops_playbook", "playbook")


@dataclass(frozen=True, slots=True)
class WorkTag:
    """How a queued incident is ordered: ``priority`` (0 first), ``kind`` of work ("" when unknown), ``workload``
    (namespace, name) that dependencies are about."""

    priority: int = UNKNOWN_PRIORITY
    kind: str = ""
    workload: tuple[str, str] = ("", "")


def combine(severity: int, playbook: int) -> int:
    """The queue priority from the two: their mean, rounded down, within 0-9."""
    return max(0, min(9, (int(severity) + int(playbook)) // 2))


def severity_priority(incident: Incident) -> int:
    """The most urgent ``severity`` label among the incident's firing alerts (5 when none says)."""
    found = [SEVERITY_PRIORITY.get(str(a.labels.get("severity", "")).lower()) for a in incident.alerts if a.firing]
    known = [p for p in found if p is not None]
    return min(known) if known else UNKNOWN_PRIORITY


def check_acyclic(dependencies: Mapping[str, tuple[str, ...]]) -> None:
    """Raise ``ValueError`` naming a cycle in the dependency table (work that would wait for itself)."""
    state: dict[str, int] = {}

    def visit(kind: str, path: tuple[str, ...]) -> None:
        if state.get(kind) == 1:
            raise ValueError(f"dependency cycle: {' -> '.join(path + (kind,))}")
        if state.get(kind) == 2:
            return
        state[kind] = 1
        for nxt in dependencies.get(kind, ()):
            visit(nxt, path + (kind,))
        state[kind] = 2

    for kind in dependencies:
        visit(kind, ())


class Triage:
    """``WorkTag`` of an incident before it is diagnosed: severity from its alerts, the playbook from an alert's
    ``aiops_playbook``/``playbook`` label, or ``retrain`` for a drift finding."""

    def __init__(self, playbooks: Mapping[str, Playbook] | None = None) -> None:
        self.playbooks = dict(playbooks or {})

    def kind_and_priority(self, incident: Incident) -> tuple[str, int]:
        """The kind of work the incident most likely needs, and that kind's priority."""
        for alert in incident.alerts:
            for key in PLAYBOOK_LABELS:
                book = self.playbooks.get(str(alert.labels.get(key, "")))
                if book is not None:
                    pb = book.priority if book.priority is not None else ACTION_PRIORITY.get(book.action,
                                                                                            UNKNOWN_PRIORITY)
                    return book.action, pb
        if any(a.detector == "drift" or a.signal == "drift" for a in incident.anomalies):
            return "retrain", ACTION_PRIORITY["retrain"]
        return "", UNKNOWN_PRIORITY

    def __call__(self, incident: Incident) -> WorkTag:
        kind, pb = self.kind_and_priority(incident)
        target = incident.target
        return WorkTag(combine(severity_priority(incident), pb), kind, (target.namespace, target.name))
