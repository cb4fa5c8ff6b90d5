"""A plan executor that dies (``os._exit``, no cleanup, like SIGKILL) at a chosen point: for crash-recovery tests.

    python -m tests.support.crashrun URL TOKEN JOURNAL PLAN_JSON CRASH_POINT OUTCOME

JOURNAL is a SQLite file, or ``kube:NAMESPACE`` for the journal in ConfigMaps of that namespace (on the same API).

Crash points: ``after_decided`` (``executing`` journaled, nothing patched), ``after_patch`` (the patch landed,
``verifying`` not journaled), ``during_verify`` (``verifying`` journaled, verification under way),
``after_rolled_back`` (``rolled_back`` journaled, the undo not done). OUTCOME is what the probe reports after the
action: ``recovered`` or ``worse``.
"""

from __future__ import annotations

import json
import os
import sys
import time

from aiops.clients.kube import KubeClient
from aiops.domain.plans import ActionPlan
from aiops.domain.playbook import Playbook
from aiops.remediate.actions import ACTIONS
from aiops.remediate.kube_journal import KubeJournal
from aiops.remediate.runner import PlaybookRunner
from aiops.remediate.sqlite_journal import SqliteJournal
from aiops.remediate.verify import Verifier
from aiops.sim.clock import WallClock

CRASHED = 137
BEFORE = {"latency_p99": 1.0}
READINGS = {"recovered": {"latency_p99": 0.2}, "worse": {"latency_p99": 5.0}}
PLAYBOOK = Playbook(name="scale-up", action="scale", params={"factor": 2, "step_min": 1, "max_replicas": 10},
                    verify={"signals": ["latency_p99"], "window_seconds": 0.3, "interval_seconds": 0.1,
                            "settle_seconds": 0})


def crash() -> None:
    sys.stdout.flush()
    os._exit(CRASHED)


class CrashingJournal(SqliteJournal):
    def __init__(self, path, crash_after_state: str | None) -> None:
        super().__init__(path)
        self.crash_after_state = crash_after_state

    def record(self, plan_id, state, note, data):
        super().record(plan_id, state, note, data)
        if state == self.crash_after_state and data.get("trigger"):
            crash()


class CrashingKubeJournal(KubeJournal):
    def __init__(self, kube, namespace, crash_after_state: str | None) -> None:
        super().__init__(kube, namespace)
        self.crash_after_state = crash_after_state

    def record(self, plan_id, state, note, data):
        super().record(plan_id, state, note, data)
        if state == self.crash_after_state and data.get("trigger"):
            crash()


class Probe:
    def __init__(self, outcome: str, crash_on_read: bool) -> None:
        self.outcome = outcome
        self.crash_on_read = crash_on_read

    def read(self, namespace, workload, signals):
        if self.crash_on_read:
            crash()
        return dict(READINGS[self.outcome])


def runner_for(kube: KubeClient, journal, probe, gate=None) -> PlaybookRunner:
    """A runner like the crashing executor's; ``gate`` (a ``WriteGate``) for one with the agent's checks."""
    clock = WallClock()
    return PlaybookRunner(kube, journal, Verifier(probe, time.sleep, clock), {PLAYBOOK.name: PLAYBOOK}, clock,
                          gate=gate)


def main(url: str, token: str, journal_path: str, plan_json: str, point: str, outcome: str) -> None:
    kube = KubeClient.for_host(url, token or None)
    plan = ActionPlan.from_dict(json.loads(plan_json))
    crash_after = {"after_decided": "executing", "after_rolled_back": "rolled_back"}.get(point)
    if journal_path.startswith("kube:"):
        journal = CrashingKubeJournal(kube, journal_path.removeprefix("kube:"), crash_after)
    else:
        journal = CrashingJournal(journal_path, crash_after)
    runner = runner_for(kube, journal, Probe(outcome, crash_on_read=point == "during_verify"))
    if point == "after_patch":
        scale = ACTIONS["scale"](kube, runner.clock)
        real_apply = scale.apply

        def apply_then_die(plan, dry_run):
            change = real_apply(plan, dry_run)
            if not dry_run:
                crash()
            return change
        scale.apply = apply_then_die
        runner.actions["scale"] = scale
    runner.run(plan, BEFORE)
    print("finished without crashing")


if __name__ == "__main__":
    main(*sys.argv[1:])
