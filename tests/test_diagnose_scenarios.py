"""Synthetic observation builders shared by the diagnose tests (no tests of its own).

A ``Scenario`` is one namespace observed for an hour on a 15 s grid: every workload starts with steady, slightly
noisy signals, and a scenario function bends some of them from ``FAULT_AT`` on, as the named fault would.
"""

from __future__ import annotations

import numpy as np

from aiops.domain import signals as sig
from aiops.domain.alerts import Alert
from aiops.domain.incident import Anomaly, Incident
from aiops.domain.observations import KubeEvent, LogLine, Observations, Series, Topology
from aiops.domain.playbook import Playbook
from aiops.domain.target import Target

NS = "shop"
T0 = 1_800_000_000.0
STEP = 15.0
MINUTES = 60
FAULT_AT = T0 + 45 * 60
WORKLOADS = ("frontend", "cart", "redis", "payments", "checkout")
CALLS = (("frontend", "cart"), ("cart", "redis"), ("frontend", "checkout"), ("checkout", "payments"))

BASE = {sig.CPU: 0.2, sig.MEMORY: 200e6, sig.RESTARTS: 0.0, sig.AVAILABLE_RATIO: 1.0,
        sig.REQUEST_RATE: 50.0, sig.ERROR_RATIO: 0.001, sig.LATENCY_P99: 0.05}


def stock_playbooks() -> list[Playbook]:
    """The stock playbooks, as the project ships them (only the fields diagnosis reads)."""
    return [
        Playbook(name="restart-workload", action="restart", faults=("memory_leak",)),
        Playbook(name="scale-up", action="scale", faults=("cpu_saturation", "traffic_surge"),
                 params={"factor": 2, "step_min": 1, "max_replicas": 10}),
        Playbook(name="rollback-deploy", action="rollback", faults=("bad_deploy", "crash_loop")),
        Playbook(name="shift-traffic", action="shift_traffic", faults=("bad_replica_set",)),
        Playbook(name="escalate", action="escalate", faults=("unknown", "crash_loop", "dependency_latency")),
        Playbook(name="degrade-model", action="degrade", faults=("model_overload",)),
        Playbook(name="isolate-pod", action="isolate", faults=("memory_growth",), params={"pod": None}),
    ]


class Scenario:
    """A namespace's signals, logs and events, built step by step."""

    def __init__(self, seed: int = 7, workloads: tuple[str, ...] = WORKLOADS) -> None:
        self.rng = np.random.default_rng(seed)
        self.ts = T0 + STEP * np.arange(MINUTES * 60 // STEP)
        self.values: dict[tuple[str, str], np.ndarray] = {}
        for w in workloads:
            for name, base in BASE.items():
                noise = 0.0 if name in (sig.RESTARTS, sig.AVAILABLE_RATIO) else 0.02 * base
                self.values[(w, name)] = base + self.rng.normal(0.0, noise, len(self.ts)) if noise else \
                    np.full(len(self.ts), base)
        self.logs: list[LogLine] = []
        self.events: list[KubeEvent] = []
        self.alerts: list[Alert] = []
        self.calls: tuple[tuple[str, str], ...] = ()
        for w in workloads:  # ordinary chatter, so "new template" has a baseline to compare with
            for i, t in enumerate(self.ts[::8]):
                self.log(w, float(t), f"GET /api/items/{i} 200 in {10 + i % 7}ms", pod=f"{w}-abc12-x{i % 2}")

    def after(self, at: float) -> np.ndarray:
        return self.ts >= at

    def shift(self, workload: str, signal: str, at: float, add: float) -> "Scenario":
        """A step change of ``add`` from ``at`` on."""
        self.values[(workload, signal)][self.after(at)] += add
        return self

    def ramp(self, workload: str, signal: str, at: float, to_add: float) -> "Scenario":
        """A linear climb from ``at`` to ``+to_add`` at the end of the window."""
        mask = self.after(at)
        self.values[(workload, signal)][mask] += np.linspace(0.0, to_add, int(mask.sum()))
        return self

    def log(self, workload: str, ts: float, line: str, pod: str | None = None) -> "Scenario":
        pod = pod or f"{workload}-abc12-x0"
        self.logs.append(LogLine(ts=ts, namespace=NS, pod=pod, container="app", workload=workload, line=line))
        return self

    def event(self, workload: str, ts: float, reason: str, message: str, type_: str = "Warning",
              kind: str = "Pod", name: str | None = None) -> "Scenario":
        self.events.append(KubeEvent(ts=ts, namespace=NS, involved_kind=kind, involved_name=name or workload + "-abc12-x0",
                                     reason=reason, message=message, type=type_, workload=workload))
        return self

    def rollout(self, workload: str, at: float) -> "Scenario":
        """The deployment controller's events for a rolling update from ReplicaSet abc12 to def34."""
        for dt, msg in ((0, f"Scaled up replica set {workload}-def34 to 1"),
                        (5, f"Scaled down replica set {workload}-abc12 to 1"),
                        (10, f"Scaled up replica set {workload}-def34 to 2"),
                        (15, f"Scaled down replica set {workload}-abc12 to 0")):
            self.event(workload, at + dt, "ScalingReplicaSet", msg, type_="Normal", kind="Deployment",
                       name=workload)
        return self

    def alert(self, workload: str, name: str, at: float) -> "Scenario":
        self.alerts.append(Alert(fingerprint=f"fp-{name}-{workload}", status="firing",
                                 labels={"alertname": name, "namespace": NS, "deployment": workload,
                                         "severity": "critical"}, starts_at=at))
        return self

    def with_topology(self, calls=CALLS) -> "Scenario":
        self.calls = tuple(calls)
        return self

    def observations(self) -> Observations:
        signals = tuple(Series(name=name, labels={"namespace": NS, "workload": w}, timestamps=self.ts.copy(),
                               values=vals.copy()) for (w, name), vals in sorted(self.values.items()))
        return Observations(namespace=NS, start=float(self.ts[0]), end=float(self.ts[-1]), signals=signals,
                            logs=tuple(sorted(self.logs, key=lambda l: l.ts)),
                            events=tuple(sorted(self.events, key=lambda e: e.ts)), topology=Topology(self.calls))

    def incident(self, workload: str, signal: str = "", at: float = FAULT_AT + 120,
                 severity: float = 0.0) -> Incident:
        anomalies = ()
        if signal:
            anomalies = (Anomaly(target=Target.deployment(NS, workload), signal=signal, score=severity * 1.5,
                                 threshold=1.5, start=at, contributors=((signal, 1.0),), detector="lof"),)
        return Incident(id=f"inc-{workload}", target=Target.deployment(NS, workload), opened=at,
                        alerts=tuple(self.alerts), anomalies=anomalies)


# -- the fault scenarios --------------------------------------------------------------------------------------

def memory_leak(workload: str = "cart") -> Scenario:
    s = Scenario().ramp(workload, sig.MEMORY, FAULT_AT, 300e6)
    s.event(workload, FAULT_AT + 12 * 60, "OOMKilling", "Memory cgroup out of memory: Killed process 4242 (app)")
    s.event(workload, FAULT_AT + 13 * 60, "BackOff", "Back-off restarting failed container app")
    return s.with_topology()


def slow_dependency(callee: str = "redis") -> Scenario:
    s = Scenario().shift(callee, sig.LATENCY_P99, FAULT_AT, 0.3)
    s.shift("cart", sig.LATENCY_P99, FAULT_AT + STEP, 0.3)
    s.shift("frontend", sig.LATENCY_P99, FAULT_AT + 2 * STEP, 0.3)
    return s


def bad_deploy(workload: str = "checkout") -> Scenario:
    s = Scenario().rollout(workload, FAULT_AT)
    s.shift(workload, sig.ERROR_RATIO, FAULT_AT + 30, 0.2)
    s.shift(workload, sig.LATENCY_P99, FAULT_AT + 30, 0.05)
    for i in range(20):
        s.log(workload, FAULT_AT + 40 + 20 * i,
              f"ERROR NullPointerException in PriceService.compute order={1000 + i}", pod=f"{workload}-def34-y{i % 2}")
    s.alert(workload, "HighErrorRate", FAULT_AT + 120)
    return s.with_topology()


def traffic_surge(workload: str = "frontend") -> Scenario:
    s = Scenario().shift(workload, sig.REQUEST_RATE, FAULT_AT, 250.0)
    s.shift(workload, sig.LATENCY_P99, FAULT_AT + 30, 0.2)
    s.shift(workload, sig.CPU, FAULT_AT, 0.6)
    return s.with_topology()


def quiet() -> Scenario:
    return Scenario().with_topology()
