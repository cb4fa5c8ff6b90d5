"""Rows 5 and 6 of the fault-injection bench: alerts posted to the real webhook of a started ``Agent``, the way
Alertmanager posts them (a payload answered with anything but 2xx is sent again, whole, after a back-off).

5. ``queue_full``: a worker queue of ``QUEUE_SIZE`` entries and a slow handler (it records what it handled and
   takes ``HANDLER_SECONDS``), flooded with distinct alerts from several senders at once: the webhook must refuse
   (503) what the queue cannot take, and every alert sent must be handled in the end.
6. ``resends``: the simulator's memory leak on shop/cart, the agent diagnosing and acting on its own metrics; the
   same firing alert is sent again and again while the plan runs, after it ended, and after the agent restarted
   (a new agent on the same journal, with nothing in memory): one incident, one change, verified.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import requests

from bench.fault_plans import Trial, judge
from bench.fault_world import TOKEN, AgentUnderTest, World

QUEUE_SIZE = 3
HANDLER_SECONDS = 0.02     # wall seconds each update takes the slow handler
SENDERS = 4                # Alertmanager's concurrent notifications
BACKOFF_FIRST, BACKOFF_MAX = 0.01, 0.2  # wall seconds between two tries of a refused payload
SEND_DEADLINE = 60.0       # a payload still refused after this long is lost
HTTP_TIMEOUT = 10.0
DRAIN_SECONDS = 120.0
RESENDS_AFTER = 5
RESEND_INTERVAL = 0.05     # wall seconds between two re-sends while the alert is handled
MAX_RESENDS = 1000
REPEATS = 3                # rows 5 and 6 depend on timing: each --trials runs them this often
VERIFY_PACE = 0.1          # wall seconds each verify wait takes too, so re-sends arrive while the plan runs


def payload(namespace: str, workload: str, names: list[str], starts_at: float) -> dict[str, Any]:
    """An Alertmanager v4 webhook body: one firing alert per name in ``names`` on ``namespace/workload``."""
    started = datetime.fromtimestamp(starts_at, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    alerts = []
    for name in names:
        labels = {"alertname": name, "namespace": namespace, "deployment": workload, "severity": "critical"}
        alerts.append({"status": "firing", "labels": labels,
                       "annotations": {"summary": f"{name} on {namespace}/{workload}"}, "startsAt": started,
                       "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://prometheus.invalid/graph",
                       "fingerprint": hashlib.sha256(json.dumps(sorted(labels.items())).encode()).hexdigest()[:16]})
    group = {"namespace": namespace, "deployment": workload}
    return {"receiver": "aiops", "status": "firing", "alerts": alerts, "groupLabels": group,
            "commonLabels": {**group, "severity": "critical"}, "commonAnnotations": {}, "externalURL": "",
            "version": "4", "groupKey": f'{{}}:{{namespace="{namespace}", deployment="{workload}"}}',
            "truncatedAlerts": 0}


def fingerprints(body: dict[str, Any]) -> set[str]:
    return {a["fingerprint"] for a in body["alerts"]}


class Alertmanager:
    """Posts payloads to the agent's webhook like Alertmanager: until a 2xx answer, backing off between tries."""

    def __init__(self, url: str) -> None:
        self.url = f"{url}/webhook/alertmanager"
        self.headers = {"Authorization": f"Bearer {TOKEN}"}
        self.refused = 0
        self.outcomes: dict[str, int] = {}
        self._lock = threading.Lock()

    def send(self, body: dict[str, Any]) -> bool:
        """True once the agent took ``body`` (2xx); False when it still refused at the deadline."""
        deadline, delay = time.monotonic() + SEND_DEADLINE, BACKOFF_FIRST
        while time.monotonic() < deadline:
            try:
                answer = requests.post(self.url, json=body, headers=self.headers, timeout=HTTP_TIMEOUT)
            except requests.RequestException:
                answer = None
            if answer is not None and answer.ok:
                with self._lock:
                    for outcome, n in answer.json().get("outcomes", {}).items():
                        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + n
                return True
            with self._lock:
                self.refused += 1
            time.sleep(delay)  # Alertmanager's back-off before it sends the notification again
            delay = min(BACKOFF_MAX, delay * 2)
        return False


class HandledAlerts:
    """Wraps the worker's handler: what it does, plus which alert fingerprints reached it."""

    def __init__(self, handle: Any, seconds: float = 0.0) -> None:
        self._handle = handle
        self._seconds = seconds
        self.fingerprints: set[str] = set()
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, incident: Any) -> Any:
        with self._lock:
            self.fingerprints |= {a.fingerprint for a in incident.alerts}
            self.calls += 1
        if self._seconds:
            time.sleep(self._seconds)  # the slow handler itself: the queue fills meanwhile
        return self._handle(incident) if self._handle is not None else None


def started(world: World, *, prometheus: bool, handler_seconds: float = 0.0, queue: int | None = None,
            stub: bool = False, pace: float = 0.0) -> tuple[AgentUnderTest, HandledAlerts]:
    """A started agent whose worker reports what it handled (``stub``: and does nothing else)."""
    under_test = world.agent(prometheus=prometheus, pace=pace)
    worker = under_test.agent.worker
    # The agent has no setting for these (its queue holds 1000 updates): the bench reaches into its worker.
    handled = HandledAlerts(None if stub else worker._handle, handler_seconds)  # noqa: SLF001
    worker._handle = handled  # noqa: SLF001
    if queue is not None:
        worker._max_queue = queue  # noqa: SLF001
    under_test.start()
    return under_test, handled


def queue_full_trial(folder: Path, seed: int, workloads: int, per_workload: int) -> Trial:
    world = World(folder, seed=seed)
    try:
        under_test, handled = started(world, prometheus=False, handler_seconds=HANDLER_SECONDS, queue=QUEUE_SIZE,
                                      stub=True)
        sender = Alertmanager(under_test.agent.server.url)
        now = world.sim.clock.now()
        # Two payloads per workload (Alertmanager's group, then the group grown by more alerts), all distinct.
        bodies = []
        for w in range(workloads):
            names = [f"FaultsBench{seed}x{w}x{i}" for i in range(per_workload)]
            half = max(1, per_workload // 2)
            bodies += [payload(world.namespace, f"svc-{w}", names[:half], now - 60),
                       payload(world.namespace, f"svc-{w}", names, now - 60)]
        sent = set().union(*(fingerprints(b) for b in bodies))
        with ThreadPoolExecutor(SENDERS) as pool:
            taken = list(pool.map(sender.send, bodies))
        under_test.agent.worker.drain(DRAIN_SECONDS)
        trial = Trial("queue_full", f"{workloads}x{per_workload} alerts, queue {QUEUE_SIZE}", incidents=workloads)
        trial.sent, trial.lost = len(sent), len(sent - handled.fingerprints)
        trial.detail = {"payloads": len(bodies), "answered_503": sender.refused, "updates_handled": handled.calls}
        if sender.refused == 0:
            trial.violations.append("fault not reached: the queue never refused an update")
        if not all(taken) or trial.lost:
            trial.violations.append(f"alerts lost: {trial.lost} of {trial.sent} never handled "
                                    f"({taken.count(False)} payloads still refused at the deadline)")
        return trial
    finally:
        world.close()


def resend_trial(folder: Path, seed: int) -> Trial:
    world = World(folder, seed=seed)
    try:
        sim = world.sim
        sim.prefill(4200)  # the healthy history the detectors learn from, then the leak, five minutes in
        sim.inject()
        sim.advance(300)
        body = payload(world.namespace, "cart", ["HighMemory"], sim.clock.now() - 120)
        first, handled = started(world, prometheus=True, pace=VERIFY_PACE)
        sender = Alertmanager(first.agent.server.url)
        if not sender.send(body):
            raise RuntimeError("the agent refused the first delivery for a minute")
        during = in_plan = 0
        while first.agent.worker.pending and during < MAX_RESENDS:  # diagnosis, the action, its verification
            in_plan += bool(first.journal.in_flight())
            sender.send(body)
            during += 1
            time.sleep(RESEND_INTERVAL)  # Alertmanager's pace, not a wait for the agent
        first.agent.worker.drain(DRAIN_SECONDS)
        for _ in range(RESENDS_AFTER):
            sender.send(body)
        first.stop()
        restarted, handled_after = started(world, prometheus=True)  # nothing in memory; the journal remembers
        again = Alertmanager(restarted.agent.server.url)
        for _ in range(RESENDS_AFTER):
            again.send(body)
        restarted.agent.worker.drain(DRAIN_SECONDS)
        trial = Trial("resends", f"{during} re-sends while handled ({in_plan} while the plan ran), "
                                 f"{RESENDS_AFTER} after, {RESENDS_AFTER} after a restart")
        verdicts = [r["data"]["verification"]["outcome"] for r in restarted.journal.records()
                    if (r["data"].get("verification") or {}).get("outcome")]
        trial.outcome = verdicts[0] if verdicts else ""
        trial.detail = {"resent_while_handled": during, "resent_while_plan_ran": in_plan,
                        "resent_after": 2 * RESENDS_AFTER,
                        "handled_by_first": handled.calls, "handled_after_restart": handled_after.calls}
        if in_plan == 0:
            trial.violations.append("fault not reached: no re-send while the plan ran")
        trial.sent = len(fingerprints(body))
        trial.lost = len(fingerprints(body) - handled.fingerprints)
        if trial.lost:
            trial.violations.append(f"alerts lost: {trial.lost} of {trial.sent} never handled")
        if handled.calls != 1:
            trial.violations.append(f"double handling: the first agent handled the alert {handled.calls} times")
        plans = [r["plan_id"] for r in restarted.journal.latest()]
        judge(world, plans, trial)
        if trial.changes != [1]:
            trial.violations.append(f"expected one change for the incident, got {trial.changes}")
        return trial
    finally:
        world.close()


def intake_rows(folder: Path, seed: int, trials: int, smoke: bool) -> dict[str, list[Trial]]:
    """Rows 5 and 6, ``REPEATS`` x ``trials`` times each, with their own seeds (``smoke``: a small flood and one
    re-send run)."""
    rows: dict[str, list[Trial]] = {"queue_full": [], "resends": []}
    for i in range(trials if smoke else REPEATS * trials):
        rows["queue_full"].append(queue_full_trial(folder / f"q{i}", seed + i, 4 if smoke else 12,
                                                   4 if smoke else 6))
        rows["resends"].append(resend_trial(folder / f"r{i}", seed + i))
    return rows
