"""Muting the alerts of an incident while its remediation runs, so on-call is not paged for what is being fixed.

``PlanSilencer`` is a transition observer: when a plan starts acting it creates one Alertmanager silence per
alert of the incident and journals the silence ids; when the plan reaches a final state it expires them. A silence
also ends by itself (``max_seconds``), so an agent that dies mid-plan never mutes an alert for long.
"""

from __future__ import annotations

import logging
import re
from typing import Iterable, Protocol

from aiops.domain.alerts import Alert
from aiops.domain.plans import ExecutionState
from aiops.domain.protocols import Clock
from aiops.remediate.machine import PlanExecution

log = logging.getLogger(__name__)

# Labels that change when pods are replaced: matching on them exactly would let the same alert through after a
# restart, and dropping them would mute the alert for every workload. ``pod`` becomes "any pod of the workload".
VOLATILE_LABELS = frozenset({"pod", "instance", "pod_template_hash", "container_id", "uid"})
SILENCE_FLAG = "silence_id"


class SilenceApi(Protocol):
    def create_silence(self, matchers: list[dict], starts: float, ends: float, comment: str,
                       created_by: str = "aiops") -> str: ...

    def expire_silence(self, silence_id: str) -> None: ...


def silence_matchers(alerts: Iterable[Alert], workload: str) -> list[list[dict]]:
    """One matcher list per distinct firing alert: its labels exactly, minus those that move with pods, with
    ``pod`` matching any pod of ``workload``."""
    seen: list[list[dict]] = []
    for alert in alerts:
        if not alert.firing:
            continue
        matchers = [{"name": k, "value": v, "isRegex": False, "isEqual": True}
                    for k, v in sorted(alert.labels.items()) if k not in VOLATILE_LABELS]
        if "pod" in alert.labels:
            matchers.append({"name": "pod", "value": f"{re.escape(workload)}-.+", "isRegex": True, "isEqual": True})
        if matchers and matchers not in seen:
            seen.append(matchers)
    return seen


class PlanSilencer:
    """Creates silences when a plan starts acting and expires them when it ends."""

    def __init__(self, api: SilenceApi, clock: Clock, max_seconds: float = 1800.0) -> None:
        self.api = api
        self.clock = clock
        self.max_seconds = max_seconds

    def __call__(self, exe: PlanExecution, state: str, note: str, data: dict) -> None:
        plan = exe.execution.plan
        if state == ExecutionState.EXECUTING.value and data.get("silence"):
            now = self.clock.now()
            for matchers in data["silence"]:
                silence_id = self.api.create_silence(
                    matchers, now, now + self.max_seconds,
                    f"aiops plan {plan.id}: {plan.playbook} on {plan.target} is running")
                exe.record_fact(f"silenced alerts while the plan runs (silence {silence_id})",
                                {SILENCE_FLAG: silence_id})
        elif ExecutionState(state).final:
            for silence_id in self.silence_ids(exe):
                try:
                    self.api.expire_silence(silence_id)
                except Exception:  # noqa: BLE001 - it still ends by itself at max_seconds
                    log.exception("cannot expire silence %s", silence_id, extra={"plan": plan.id})

    @staticmethod
    def silence_ids(exe: PlanExecution) -> list[str]:
        """The silences this plan created (from the journal, so a restarted agent finds them too)."""
        store = exe.store
        return [r["data"][SILENCE_FLAG] for r in store.history(exe.execution.plan.id) if r["data"].get(SILENCE_FLAG)]
