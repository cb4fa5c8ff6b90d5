"""The scenario generator: random clusters (4-15 workloads on a call DAG), one injected fault each, distractors.

``plan_case(seed, index)`` draws a ``CaseSpec`` (pure, deterministic); ``run_case(spec)`` drives the simulator through
it in simulated time and hands back the running simulator at the end of the incident window, with the ground truth
and the Alertmanager payload that would have fired. Recording the case folder is the caller's job (``bench.casegen``
records through the real collectors, which this package may not import).

Every case has an hour of data: healthy history, a benign rollout or a cron job's CPU spike elsewhere as
distractors (anywhere in the hour), and the fault starting 2.5-8.5 minutes before the end. Kinds cycle through
``FAULT_KINDS`` so any ``count`` covers them evenly; ``none`` cases have distractors only.

Ground truth follows the fault table (docs/case-folder.md) and the stock rules:
- ``crash_loop`` right after a rollout of the crashing version -> ``rollback-deploy``; otherwise ``escalate``;
- ``dependency_latency`` -> the callee is the root cause and the playbook is ``escalate``: the stock rule
  ``slow-dependency`` acts on the callee only by notifying (the cause inside it is not known), never on callers;
- ``none`` -> workload ``""``, fault ``unknown``, playbook ``escalate``.
"""

from __future__ import annotations

import hashlib
import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Iterator

from aiops.domain import signals as sig
from aiops.domain.observations import Topology
from aiops.domain.workloads import workload_of_pod
from aiops.sim.cluster import SimCluster
from aiops.sim.faults import MiB, BadDeploy, FaultModel, MemoryLeak, TrafficSurge
from aiops.sim.faults_extra import BadReplicaSet, CpuSaturation, CrashLoop, CronSpike, DependencyLatency
from aiops.sim.runtime import SimRuntime
from aiops.sim.scenarios import Expected, Scenario
from aiops.sim.workloads import DAY, ServiceModel

FAULT_KINDS = ("memory_leak", "crash_loop", "cpu_saturation", "traffic_surge", "bad_deploy", "bad_replica_set",
               "dependency_latency", "none")
PLAYBOOK = {"memory_leak": "restart-workload", "cpu_saturation": "scale-up", "traffic_surge": "scale-up",
            "bad_deploy": "rollback-deploy", "bad_replica_set": "shift-traffic", "dependency_latency": "escalate",
            "none": "escalate"}
WINDOW = 3600.0          # seconds of data in every case
LIVE = 40 * 60.0         # the last part is simulated with the controllers running (rollouts, crashes, events)
STEP = 15.0
NAMES = ("frontend", "gateway", "cart", "catalog", "checkout", "payments", "shipping", "currency", "email",
         "recommendation", "ads", "auth", "user-profile", "inventory", "search", "reviews", "redis", "orders-db",
         "quote", "fraud-check")
NAMESPACES = ("shop", "store", "prod-web", "checkout-system")
ERROR_LINES = (
    "ERROR upstream request failed: NullPointerException at CartService.checkout(CartService.java:142)",
    "ERROR failed to serialize response: json: unsupported type map[interface {}]interface {}",
    "ERROR panic: runtime error: index out of range [3] with length 3",
    "ERROR TypeError: Cannot read properties of undefined (reading 'price') at /app/dist/handler.js:88:17",
)
CRASH_LINES = (
    "FATAL could not load configuration: missing key 'database.url'; exiting",
    "FATAL listen tcp :8080: bind: address already in use",
    "panic: assignment to entry in nil map goroutine 1 [running]: main.init.0()",
)
ZONE_LINES = (
    "ERROR connection to orders-db.zone-b.internal:5432 failed: i/o timeout",
    "ERROR TLS handshake with cache-2.zone-c failed: x509: certificate has expired",
)


@dataclass(frozen=True, slots=True)
class Distractor:
    """Something harmless that happens ``before_end`` seconds before the end: a benign ``deploy`` or a ``cron``
    CPU spike of ``seconds`` burning ``cores``."""

    kind: str
    workload: str
    before_end: float
    seconds: float = 0.0
    cores: float = 0.0


@dataclass(frozen=True)
class CaseSpec:
    """Everything random about one case, drawn up front so a case is reproducible from ``(seed, index)``."""

    name: str
    seed: int
    namespace: str
    models: tuple[ServiceModel, ...]
    calls: tuple[tuple[str, str], ...]
    fault: str
    workload: str
    onset_before_end: float
    params: dict = field(default_factory=dict)
    distractors: tuple[Distractor, ...] = ()
    topology_known: bool = True
    start: float = 1_790_000_000.0
    day_offset: float = 0.0

    @property
    def truth(self) -> dict:
        """``truth.json``: the workload at fault, the fault and the playbook that answers it."""
        if self.fault == "none":
            return {"workload": "", "fault": "unknown", "playbook": "escalate"}
        playbook = PLAYBOOK.get(self.fault, "escalate")
        if self.fault == "crash_loop":
            playbook = "rollback-deploy" if self.params.get("after_rollout") else "escalate"
        return {"workload": self.workload, "fault": self.fault, "playbook": playbook}


# --- planning -----------------------------------------------------------------------------------------------

def _topology(rng: random.Random) -> tuple[list[str], list[tuple[str, str]], set[str]]:
    n = rng.randint(4, 15)
    names = rng.sample(NAMES, n)
    entries = set(names[:1 if n < 7 or rng.random() < 0.6 else 2])
    calls = []
    for i, name in enumerate(names):
        if name in entries:
            continue
        earlier = names[:i]
        for caller in rng.sample(earlier, min(len(earlier), 1 if rng.random() < 0.7 else 2)):
            calls.append((caller, name))
    return names, calls, entries


def _models(rng: random.Random, names: list[str], entries: set[str], fault: str, target: str) -> list[ServiceModel]:
    out = []
    for name in names:
        replicas = rng.randint(3, 4) if (fault == "bad_replica_set" and name == target) else rng.randint(2, 4)
        rps = rng.uniform(30, 100) if name in entries else rng.uniform(8, 70)
        util = rng.uniform(0.2, 0.35) if name in entries else rng.uniform(0.1, 0.3)
        memory = rng.uniform(96, 400) * MiB
        out.append(ServiceModel(
            name, base_rps=round(rps, 1), replicas=replicas, capacity_rps=round(rps / replicas / util, 1),
            latency_seconds=round(rng.uniform(0.005, 0.06), 4), cpu_per_request=round(rng.uniform(0.002, 0.01), 4),
            memory_baseline=memory, memory_limit=float(int(memory * rng.uniform(1.7, 2.5) / MiB) * MiB),
            noise=round(rng.uniform(0.02, 0.06), 3), daily_amplitude=round(rng.uniform(0.05, 0.25), 3),
            path=f"/api/{name}"))
    return out


def plan_case(seed: int, index: int, kind: str | None = None) -> CaseSpec:
    """Draw case ``index`` of the set generated with ``seed``; ``kind`` defaults to ``FAULT_KINDS`` in turn."""
    rng = random.Random(f"aiops-casegen/{seed}/{index}")
    fault = kind or FAULT_KINDS[index % len(FAULT_KINDS)]
    names, calls, entries = _topology(rng)
    callees = sorted({b for _, b in calls})
    if fault == "traffic_surge":
        target = rng.choice(sorted(entries))
    elif fault == "dependency_latency":
        target = rng.choice(callees)
    elif fault == "none":
        target = ""
    else:
        target = rng.choice(names)
    models = _models(rng, names, entries, fault, target)
    params: dict = {}
    if fault == "memory_leak":
        params["bytes_per_second"] = rng.uniform(0.4, 1.0) * MiB
    elif fault == "crash_loop":
        params.update(after_rollout=rng.random() < 0.5, uptime=rng.uniform(20, 60), line=rng.choice(CRASH_LINES))
    elif fault == "cpu_saturation":
        params.update(latency=rng.uniform(0.25, 0.8))
    elif fault == "traffic_surge":
        model = next(m for m in models if m.name == target)
        util = model.base_rps / model.replicas / model.capacity_rps
        params["factor"] = round(max(3.0, rng.uniform(1.3, 1.8) / util), 2)
    elif fault == "bad_deploy":
        params.update(ratio=rng.uniform(0.15, 0.5), line=rng.choice(ERROR_LINES))
    elif fault == "bad_replica_set":
        params.update(ratio=rng.uniform(0.3, 0.7), line=rng.choice(ZONE_LINES))
    elif fault == "dependency_latency":
        params.update(latency=rng.uniform(0.3, 1.0))
    others = [n for n in names if n != target]
    distractors = []
    for _ in range(rng.choice((0, 1, 1, 2)) if fault != "none" else rng.choice((1, 1, 2))):
        kind_ = rng.choice(("deploy", "cron"))
        distractors.append(Distractor(kind_, rng.choice(others), rng.uniform(60, LIVE - 120),
                                      rng.uniform(60, 240), rng.uniform(0.15, 0.5)))
    return CaseSpec(name=f"s{seed}-{index:04d}-{fault}", seed=seed * 100_003 + index,
                    namespace=rng.choice(NAMESPACES), models=tuple(models), calls=tuple(calls), fault=fault,
                    workload=target, onset_before_end=rng.uniform(150, 510), params=params,
                    distractors=tuple(distractors), topology_known=rng.random() < 0.7,
                    start=1_790_000_000.0 + STEP * rng.randint(0, 200_000), day_offset=rng.uniform(0, DAY))


# --- running --------------------------------------------------------------------------------------------------

@dataclass
class GeneratedCase:
    """A case at the end of its window: the running simulator, the window, the truth and the alert payload."""

    spec: CaseSpec
    runtime: SimRuntime
    start: float
    end: float
    truth: dict
    alert_payload: dict | None
    topology: Topology


def _scenario_factory(spec: CaseSpec) -> Callable:
    def build(name, clock, seed, rollout_seconds) -> Scenario:
        cluster = SimCluster(clock, rollout_seconds=rollout_seconds)
        for model in spec.models:
            cluster.add_deployment(spec.namespace, model.name, replicas=model.replicas,
                                   labels={"app.kubernetes.io/part-of": spec.namespace},
                                   memory_limit=f"{int(model.memory_limit // MiB)}Mi")
        truth = spec.truth
        expected = Expected(truth["fault"], truth["workload"], truth["playbook"], spec.namespace)
        return Scenario(name, cluster, spec.namespace, Topology(spec.calls), {m.name: m for m in spec.models},
                        expected)
    return build


def _roll_out(runtime: SimRuntime, spec: CaseSpec, workload: str, version: str) -> str:
    image = f"registry.local/{workload}:{version}"
    runtime.cluster.patch("Deployment", spec.namespace, workload, {"spec": {"template": {"spec": {
        "containers": [{"name": "app", "image": image}]}}}}, "strategic")
    return image


def _inject(runtime: SimRuntime, spec: CaseSpec) -> list[FaultModel]:
    """Start the spec's fault now (with the rollout that carries it, for bad versions)."""
    now, w, p = runtime.clock.now(), spec.workload, spec.params
    if spec.fault == "memory_leak":
        return [MemoryLeak(w, now, p["bytes_per_second"])]
    if spec.fault == "crash_loop":
        image = _roll_out(runtime, spec, w, "2.0.0") if p["after_rollout"] else None
        return [CrashLoop(w, now, p["uptime"], image, p["line"])]
    if spec.fault == "cpu_saturation":
        return [CpuSaturation(w, now, cores=1.0, latency=p["latency"])]
    if spec.fault == "traffic_surge":
        return [TrafficSurge(w, now, p["factor"])]
    if spec.fault == "bad_deploy":
        return [BadDeploy(w, now, _roll_out(runtime, spec, w, "2.0.0"), p["ratio"], p["line"])]
    if spec.fault == "bad_replica_set":
        pods = sorted(name for name, _, _ in runtime.cluster.workload_pods(spec.namespace, w))
        return [BadReplicaSet(w, now, frozenset(pods[:1]), p["ratio"], p["line"])]
    if spec.fault == "dependency_latency":
        return [DependencyLatency(w, now, p["latency"])]
    return []


def _distract(runtime: SimRuntime, spec: CaseSpec, d: Distractor) -> list[FaultModel]:
    if d.kind == "deploy":
        _roll_out(runtime, spec, d.workload, "1.0.1")
        return []
    return [CronSpike(d.workload, runtime.clock.now(), d.seconds, d.cores)]


def run_case(spec: CaseSpec) -> GeneratedCase:
    """Drive a fresh simulator through ``spec``; the caller must ``runtime.stop()`` the returned case's runtime."""
    runtime = SimRuntime(spec.name, seed=spec.seed, step=STEP, start=spec.start,
                         scenario_factory=_scenario_factory(spec))
    runtime.workloads.origin -= spec.day_offset  # a different time of day for the daily wave
    runtime.start()
    try:
        runtime.prefill(WINDOW - LIVE + 4 * STEP)
        end = runtime.clock.now() + LIVE
        actions = [(end - d.before_end, "distractor", d) for d in spec.distractors]
        if spec.fault != "none":
            actions.append((end - spec.onset_before_end, "fault", None))
        actions.sort(key=lambda a: a[0])
        onset = None
        while runtime.clock.now() < end:
            while actions and actions[0][0] <= runtime.clock.now():
                _, what, d = actions.pop(0)
                if what == "fault":
                    onset = runtime.clock.now()
                    runtime.scenario.faults.extend(_inject(runtime, spec))
                else:
                    runtime.scenario.faults.extend(_distract(runtime, spec, d))
            runtime.advance(STEP)
        end = runtime.clock.now()
        truth = dict(spec.truth, namespace=spec.namespace, case=spec.name)
        if onset is not None:
            truth["onset"] = onset
        topology = Topology(spec.calls) if spec.topology_known else Topology()
        return GeneratedCase(spec, runtime, end - WINDOW, end, truth, alert_payload(runtime, spec, end), topology)
    except BaseException:
        runtime.stop()
        raise


def generate(count: int, seed: int) -> Iterator[GeneratedCase]:
    """``count`` cases of the set ``seed``, one at a time (each simulator is stopped when the next is asked for)."""
    for index in range(count):
        case = run_case(plan_case(seed, index))
        try:
            yield case
        finally:
            case.runtime.stop()


# --- the alerts that would have fired --------------------------------------------------------------------------

def _increase(store, name: str, labels: dict, t0: float, t1: float) -> float | None:
    a, b = store.value_at(name, labels, t0), store.value_at(name, labels, t1)
    if b is None:
        return None
    return b if a is None or b < a else b - a  # a new pod (or a reset) counts from zero


def _workload_state(runtime: SimRuntime, ns: str, t: float, series: dict) -> dict[str, dict[str, float]]:
    """Per workload at ``t``: error ratio and restarts over trailing windows, mean p99."""
    out: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    store = runtime.store
    for name, labels in series[sig.RAW_REQUESTS]:
        inc = _increase(store, name, labels, t - 120, t)
        if inc is not None:
            out[workload_of_pod(labels["pod"])]["failed" if labels.get("code") == "500" else "ok"] += inc
    for name, labels in series[sig.RAW_RESTARTS]:
        inc = _increase(store, name, labels, t - 600, t)
        if inc is not None:
            out[workload_of_pod(labels["pod"])]["restarts"] += inc
    for name, labels in series[sig.RAW_DURATION]:
        if labels.get("quantile") == "0.99" and (v := store.value_at(name, labels, t)) is not None:
            state = out[workload_of_pod(labels["pod"])]
            state["p99_sum"] += v
            state["p99_n"] += 1
    return out


def _firing(state: dict[str, float], baseline: dict[str, float]) -> list[tuple[str, str]]:
    alerts = []
    total = state.get("ok", 0.0) + state.get("failed", 0.0)
    if total > 0 and state.get("failed", 0.0) / total > 0.05:
        alerts.append(("HighErrorRate", "critical"))
    p99 = state["p99_sum"] / state["p99_n"] if state.get("p99_n") else 0.0
    base = baseline["p99_sum"] / baseline["p99_n"] if baseline.get("p99_n") else 0.0
    if p99 > max(0.3, 3 * base):
        alerts.append(("HighLatency", "warning"))
    if state.get("restarts", 0.0) >= 2:
        alerts.append(("KubePodCrashLooping", "warning"))
    return alerts


def alert_payload(runtime: SimRuntime, spec: CaseSpec, end: float) -> dict | None:
    """The Alertmanager webhook body (grouped by namespace) for alerts firing at ``end``, or None.

    Rules: error ratio over 2 min above 5 %, mean p99 above max(0.3 s, 3x its value 30 min earlier), two or more
    restarts in 10 min; each must hold for a minute, and ``startsAt`` is when it first did.
    """
    ns = spec.namespace
    series = {m: runtime.store.select(lambda n, l, m=m: n == m and l.get("namespace") == ns)
              for m in (sig.RAW_REQUESTS, sig.RAW_RESTARTS, sig.RAW_DURATION)}
    baseline = _workload_state(runtime, ns, end - 1800, series)
    since: dict[tuple[str, str], float] = {}
    held: dict[tuple[str, str], float] = {}
    t = end - 900
    while t <= end:
        firing = set()
        for workload, state in _workload_state(runtime, ns, t, series).items():
            for alertname, severity in _firing(state, baseline.get(workload, {})):
                key = (workload, alertname)
                firing.add(key)
                held.setdefault(key, t)
                since[key] = held[key]
        for key in list(held):
            if key not in firing:
                held.pop(key)
                since.pop(key, None)
        t += STEP
    alerts = []
    for (workload, alertname), first in sorted(since.items(), key=lambda kv: (kv[1], kv[0])):
        if end - first < 60:
            continue
        labels = {"alertname": alertname, "namespace": ns, "deployment": workload,
                  "severity": "critical" if alertname == "HighErrorRate" else "warning"}
        alerts.append({"status": "firing", "labels": labels,
                       "annotations": {"summary": f"{alertname} on {ns}/{workload}"},
                       "startsAt": _rfc3339(first), "endsAt": "0001-01-01T00:00:00Z",
                       "generatorURL": "http://prometheus.sim:9090/graph", "fingerprint": _fingerprint(ns, workload, alertname)})
    if not alerts:
        return None
    return {"receiver": "aiops-webhook", "status": "firing", "alerts": alerts, "groupLabels": {"namespace": ns},
            "commonLabels": {"namespace": ns}, "commonAnnotations": {}, "externalURL": "http://alertmanager.sim:9093",
            "version": "4", "groupKey": f'{{}}:{{namespace="{ns}"}}', "truncatedAlerts": 0}


def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _fingerprint(*parts: str) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:16]
