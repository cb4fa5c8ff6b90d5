"""Which playbook answers which fault (the fault table of docs/case-folder.md), restricted to the playbooks allowed."""

from __future__ import annotations

from typing import Sequence

from aiops.domain.diagnosis import Fault
from aiops.domain.playbook import Playbook

ESCALATE = "escalate"

# The stock answer per fault. crash_loop depends on whether a rollout just happened (see ``playbook_for``).
STOCK_PLAYBOOK: dict[Fault, str] = {
    Fault.MEMORY_LEAK: "restart-workload",
    Fault.CRASH_LOOP: ESCALATE,
    Fault.CPU_SATURATION: "scale-up",
    Fault.TRAFFIC_SURGE: "scale-up",
    Fault.BAD_DEPLOY: "rollback-deploy",
    Fault.BAD_REPLICA_SET: "shift-traffic",
    Fault.DEPENDENCY_LATENCY: ESCALATE,
    Fault.DETECTOR_DRIFT: "retrain-detector",
    Fault.UNKNOWN: ESCALATE,
    Fault.MODEL_OVERLOAD: "degrade-model",
    Fault.MEMORY_GROWTH: "isolate-pod",
}


def playbook_for(fault: Fault, playbooks: Sequence[Playbook], rollout_recent: bool = False) -> str:
    """The playbook to propose for ``fault``: the stock one if allowed, else an allowed one declaring the fault.

    Falls back to ``escalate`` (notify only), so an analyzer never proposes an action outside ``playbooks``.
    """
    allowed = {p.name for p in playbooks}
    wanted = "rollback-deploy" if fault is Fault.CRASH_LOOP and rollout_recent else STOCK_PLAYBOOK[fault]
    if wanted in allowed:
        return wanted
    for p in playbooks:
        if fault.value in p.faults and p.acts:
            return p.name
    return ESCALATE
