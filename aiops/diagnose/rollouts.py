"""Which Kubernetes events belong to a workload, and when a workload rolled onto a new ReplicaSet.

The deployment controller reports every rollout step as a ``ScalingReplicaSet`` event on the Deployment
("Scaled up replica set cart-5d4f8b7c9 to 1", newer servers append "from 0"). Scaling a Deployment also emits
"Scaled up" for the *same* ReplicaSet, so a rollout is a scale-up of one ReplicaSet while another ReplicaSet of
the same Deployment is (or was earlier in the window) in play.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

from aiops.domain.observations import KubeEvent

_ROLLOUT_SPAN = 900.0  # seconds a rolling update may take to scale the old ReplicaSet down
_SCALED = re.compile(r"Scaled (up|down) replica set (\S+) to (\d+)")


def belongs_to(event: KubeEvent, workload: str) -> bool:
    """True when the event is about the workload itself or one of its ReplicaSets/pods (``<workload>-...``)."""
    if event.workload:
        return event.workload == workload
    name = event.involved_name
    return name == workload or name.startswith(workload + "-")


@dataclass(frozen=True, slots=True)
class Rollout:
    """The workload started rolling onto ``new_replica_set`` at ``ts`` (``old_replica_set`` may be unknown)."""

    ts: float
    workload: str
    new_replica_set: str
    old_replica_set: str = ""


def find_rollouts(events: Iterable[KubeEvent], workload: str) -> list[Rollout]:
    """Every rollout of ``workload`` seen in ``events``, oldest first, one per new ReplicaSet."""
    steps: list[tuple[float, str, str]] = []  # (ts, direction, replica set)
    for ev in events:
        if ev.reason != "ScalingReplicaSet" or not belongs_to(ev, workload):
            continue
        m = _SCALED.search(ev.message)
        if m:
            steps.append((ev.ts, m.group(1), m.group(2)))
    steps.sort()
    rollouts: dict[str, Rollout] = {}
    for ts, direction, rs in steps:
        if direction != "up" or rs in rollouts:
            continue
        # Another ReplicaSet seen before, or scaled down soon after: the Deployment moved between ReplicaSets.
        others = [other for t, d, other in steps
                  if other != rs and (t < ts or (d == "down" and t <= ts + _ROLLOUT_SPAN))]
        if others:
            rollouts[rs] = Rollout(ts=ts, workload=workload, new_replica_set=rs, old_replica_set=others[-1])
    return sorted(rollouts.values(), key=lambda r: r.ts)


def latest_rollout(events: Iterable[KubeEvent], workload: str, since: float) -> Rollout | None:
    """The most recent rollout at or after ``since``, if any."""
    found = [r for r in find_rollouts(events, workload) if r.ts >= since]
    return found[-1] if found else None
