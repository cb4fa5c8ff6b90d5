"""Simulated services: per-pod metrics and log lines that follow the cluster's state and the injected faults.

Each Deployment has a ``ServiceModel``: demand (requests/s with a mild daily-ish wave and seeded noise), per-pod
capacity (latency rises sharply past it), CPU per request, a memory baseline. Demand flows along the call graph
(a callee sees its callers' surges), latency and errors flow back (a caller waits for and fails with its callees).
Only Ready pods serve. Every ``step`` produces samples under the real exporters' metric names and labels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from aiops.domain import signals as sig
from aiops.sim.cluster import SimCluster
from aiops.sim.faults import MiB, FaultModel, PodView
from aiops.sim.serving import GpuProfile, PodGpuState, gpu_samples, routed_load
from aiops.sim.tsdb import Sample

DAY = 86400.0
CONTAINER = "app"


@dataclass(frozen=True, slots=True)
class ServiceModel:
    """How one workload behaves. Rates are requests/s, latencies seconds, CPU cores, memory bytes."""

    name: str
    base_rps: float
    replicas: int = 2
    capacity_rps: float = 100.0
    latency_seconds: float = 0.02
    cpu_per_request: float = 0.008
    idle_cpu: float = 0.02
    cpu_limit: float = 1.0
    memory_baseline: float = 200 * MiB
    memory_limit: float = 512 * MiB
    base_error_ratio: float = 0.002
    path: str = "/"
    # Demand noise (relative standard deviation) and the amplitude of the daily wave.
    noise: float = 0.03
    daily_amplitude: float = 0.12
    # A model server on a GPU (``sim.serving``): its pods get their load through Services and export DCGM/vLLM.
    gpu: GpuProfile | None = None


@dataclass(slots=True)
class _PodState:
    cpu_seconds: float = 0.0
    ok: float = 0.0
    failed: float = 0.0
    seen_start: float = -1.0


@dataclass(slots=True)
class _WorkloadStep:
    p50: float = 0.0
    p99: float = 0.0
    error_ratio: float = 0.0
    pods: list = field(default_factory=list)


class WorkloadSimulator:
    """Turns cluster state + faults into samples (and pod logs, OOM kills, events) one step at a time."""

    def __init__(self, cluster: SimCluster, namespace: str, models: dict[str, ServiceModel],
                 calls: tuple[tuple[str, str], ...], faults: list[FaultModel], seed: int = 0,
                 origin: float = 0.0) -> None:
        self.cluster, self.namespace, self.models, self.calls = cluster, namespace, models, calls
        self.faults = faults
        self.origin = origin
        self._rng = np.random.default_rng(seed)
        self._order = _callers_first(sorted(models), calls)
        self._pods: dict[str, _PodState] = {}
        self._gpu: dict[str, PodGpuState] = {}
        self._gpu_workloads = sorted(n for n, m in models.items() if m.gpu is not None)
        self._routed: dict[str, float] = {}

    def step(self, t: float, dt: float) -> list[Sample]:
        """Simulate the ``dt`` seconds ending at ``t``; returns that scrape's samples."""
        with self.cluster.lock:
            rates = self._demand(t)
            if self._gpu_workloads:
                self._routed = routed_load(self.cluster, self.namespace, rates, self._gpu_workloads, t)
            results: dict[str, _WorkloadStep] = {}
            samples: list[Sample] = []
            live: set[str] = set()
            for name in reversed(self._order):  # callees first: callers add their latency and errors
                results[name] = self._simulate_workload(name, rates[name], results, t, dt, samples, live)
            for gone in set(self._pods) - live:
                del self._pods[gone]
            for gone in set(self._gpu) - live:
                del self._gpu[gone]
            return samples

    # --- demand -------------------------------------------------------------------------------------------
    def _demand(self, t: float) -> dict[str, float]:
        multiplier: dict[str, float] = {}
        rates = {}
        for name in self._order:
            inherited = max((multiplier[c] for c, callee in self.calls if callee == name and c in multiplier),
                            default=1.0)
            own = math.prod(f.demand_factor(name, t) for f in self.faults)
            multiplier[name] = own * inherited
            model = self.models[name]
            phase = sorted(self.models).index(name) * 0.7  # workloads peak at different times
            age = t - self.origin
            wave = (1 + model.daily_amplitude * math.sin(2 * math.pi * age / DAY + phase)
                    + 0.04 * math.sin(2 * math.pi * age / 1020))
            noise = float(self._rng.normal(1.0, model.noise))
            rates[name] = max(0.0, model.base_rps * wave * noise * multiplier[name])
        return rates

    # --- one workload -------------------------------------------------------------------------------------
    def _simulate_workload(self, name, rate, results, t, dt, samples, live) -> _WorkloadStep:
        model, ns = self.models[name], self.namespace
        callees = {c: results[c] for caller, c in self.calls if caller == name and c in results}
        pods = [(PodView(pod, name, image, rt.created, rt.started, rt.restarts), rt.ready_at <= t)
                for pod, image, rt in self.cluster.workload_pods(ns, name)]
        serving = [view for view, ready in pods if ready]
        per_pod = rate / len(serving) if serving else 0.0
        util = per_pod / model.capacity_rps
        callee_p50 = sum(c.p50 for c in callees.values())
        callee_p99 = sum(c.p99 for c in callees.values())
        failing = max(callees, key=lambda c: callees[c].error_ratio, default="")
        callee_err = callees[failing].error_ratio if failing else 0.0
        out = _WorkloadStep()
        for view, ready in pods:
            live.add(view.name)
            state = self._pods.setdefault(view.name, _PodState())
            if state.seen_start != view.started:
                state.seen_start = view.started
                self._log(view, max(view.started, t - dt), f"INFO Started {name.capitalize()}Application in "
                          f"{3.5 + self._rng.random():.1f} seconds (image {view.image})")
            if model.gpu is not None:  # a model server: its own share of the Services routing to it
                pod_load = self._routed.get(view.name, 0.0)
                util = pod_load / model.capacity_rps
            view = self._memory(model, view, util if ready else 0.0, t, samples)
            if ready and self._crash(view, t):
                view = PodView(view.name, view.workload, view.image, view.created, t, view.restarts + 1)
                ready = False
            load = (pod_load if model.gpu is not None else per_pod) if ready else 0.0
            cpu = min(model.cpu_limit, model.idle_cpu + sum(f.extra_cpu(view, t) for f in self.faults)
                      + model.cpu_per_request * load * float(self._rng.normal(1.0, 0.03)))
            state.cpu_seconds += max(0.0, cpu) * dt
            labels = {"namespace": ns, "pod": view.name, "container": CONTAINER}
            samples.append(Sample(sig.RAW_CPU, labels, state.cpu_seconds))
            samples.append(Sample(sig.RAW_RESTARTS, labels, float(view.restarts)))
            if not ready:
                continue
            if model.gpu is not None:
                extra = [f.serving_memory(view, t, dt) for f in self.faults]
                samples += gpu_samples(model.gpu, self._gpu.setdefault(view.name, PodGpuState()), labels,
                                       self.cluster.node, load, util, dt, self._rng,
                                       sum(e[0] for e in extra), sum(e[1] for e in extra))
            err = min(1.0, model.base_error_ratio + min(0.5, max(0.0, util - 1.0) * 0.25)
                      + sum(f.error_ratio(view, t) for f in self.faults) + 0.5 * callee_err)
            slow = sum(f.extra_latency(view, t) for f in self.faults)
            p50 = model.latency_seconds * (1 + 0.3 * util) + callee_p50 + 0.5 * slow
            p99 = min(10.0, model.latency_seconds * 4 * (1 + 0.5 * util ** 3) + max(0.0, util - 0.9) * 3.0
                      + (0.15 if any(f.error_ratio(view, t) for f in self.faults) else 0.0) + callee_p99 + slow)
            jitter = float(self._rng.normal(1.0, 0.04))
            p50, p99 = p50 * jitter, p99 * jitter
            state.ok += load * dt * (1 - err)
            state.failed += load * dt * err
            http = {"namespace": ns, "pod": view.name}
            samples += [Sample(sig.RAW_REQUESTS, {**http, "code": "200"}, round(state.ok)),
                        Sample(sig.RAW_REQUESTS, {**http, "code": "500"}, round(state.failed)),
                        Sample(sig.RAW_DURATION, {**http, "quantile": "0.5"}, p50),
                        Sample(sig.RAW_DURATION, {**http, "quantile": "0.99"}, p99)]
            out.pods.append(view.name)
            out.p50 += p50 / len(serving)
            out.p99 += p99 / len(serving)
            out.error_ratio += err / len(serving)
            self._access_logs(model, view, t, dt, p50, err, util, failing, callee_err)
        replicas = self.cluster.deployment_replicas(ns, name)
        if replicas is not None:
            kube = {"namespace": ns, "deployment": name}
            samples.append(Sample(sig.RAW_AVAILABLE, kube, float(replicas[1])))
            samples.append(Sample(sig.RAW_SPEC_REPLICAS, kube, float(replicas[0])))
        return out

    def _memory(self, model: ServiceModel, view: PodView, util: float, t: float, samples: list) -> PodView:
        leak = sum(f.leaked_bytes(view, t) for f in self.faults)
        memory = model.memory_baseline * (1 + 0.1 * util + float(self._rng.normal(0, 0.01))) + leak
        if leak and memory >= model.memory_limit:
            self._oom_kill(view, t)
            view = PodView(view.name, view.workload, view.image, view.created, t, view.restarts + 1)
            memory = model.memory_baseline * (1 + float(self._rng.normal(0, 0.01)))
        elif leak and memory >= 0.85 * model.memory_limit:
            self._log(view, t, f"WARN GC overhead high: heap used {100 * memory / model.memory_limit:.0f}% "
                               f"after full GC (pause {int(200 + self._rng.random() * 400)}ms)")
        labels = {"namespace": self.namespace, "pod": view.name, "container": CONTAINER}
        samples.append(Sample(sig.RAW_MEMORY, labels, round(memory)))
        return view

    def _crash(self, view: PodView, t: float) -> bool:
        """A fault kills the running container: its last words, a restart with back-off, a BackOff event."""
        line = next((l for f in self.faults if (l := f.crash(view, t))), None)
        if line is None:
            return False
        ns = self.namespace
        self._log(view, t - 0.5, line)
        self.cluster.restart_container(ns, view.name, t, reason="Error", exit_code=1,
                                       backoff_seconds=min(80.0, 10.0 * 2 ** min(view.restarts, 3)))
        pod = {"apiVersion": "v1", "kind": "Pod", "name": view.name, "namespace": ns}
        self.cluster.emit_event(ns, pod, "BackOff", f"Back-off restarting failed container {CONTAINER} in pod "
                                f"{view.name}_{ns}", type="Warning", component="kubelet", ts=t)
        return True

    def _oom_kill(self, view: PodView, t: float) -> None:
        ns = self.namespace
        self._log(view, t - 0.5, "ERROR java.lang.OutOfMemoryError: Java heap space")
        self.cluster.restart_container(ns, view.name, t, reason="OOMKilled", exit_code=137)
        pod = {"apiVersion": "v1", "kind": "Pod", "name": view.name, "namespace": ns}
        self.cluster.emit_event(ns, pod, "OOMKilling", f"Memory cgroup out of memory: Killed process "
                                f"{1000 + view.restarts} (java) in container {CONTAINER} of pod {view.name}",
                                type="Warning", component="kernel-monitor", ts=t)
        self.cluster.emit_event(ns, pod, "BackOff", f"Back-off restarting failed container {CONTAINER} in pod "
                                f"{view.name}_{ns}", type="Warning", component="kubelet", ts=t)

    # --- logs ---------------------------------------------------------------------------------------------
    def _access_logs(self, model, view, t, dt, p50, err, util, failing, callee_err) -> None:
        for i in range(2):
            ms = max(1, int(p50 * 1000 * float(self._rng.normal(1.0, 0.2))))
            self._log(view, t - dt + (i + 1) * dt / 3, f"INFO request method=GET path={model.path} status=200 "
                                                         f"duration_ms={ms}")
        failures = min(4, int(err * 10 + self._rng.random()))
        for i in range(failures):
            line = next((l for f in self.faults if (l := f.error_line(view, t))), None)
            if line is None and util > 1.0:
                line = (f"WARN request timed out after 2000ms waiting for a worker thread "
                        f"(queue depth {int(util * 40)})")
            elif line is None and callee_err > 0.05:
                line = f"ERROR call to {failing} failed: HTTP 500 Internal Server Error"
            line = line or "ERROR request failed: connection reset by peer"
            self._log(view, t - dt / 2 + i * 0.01, line)

    def _log(self, view: PodView, ts: float, line: str) -> None:
        self.cluster.append_log(self.namespace, view.name, ts, line)


def _callers_first(names: list[str], calls: tuple[tuple[str, str], ...]) -> list[str]:
    """Topological order of the call graph, entry workloads first (ties broken by name)."""
    order, placed = [], set()
    while len(order) < len(names):
        ready = [n for n in names if n not in placed
                 and all(caller in placed for caller, callee in calls if callee == n and caller in names)]
        if not ready:  # a cycle: take the rest by name rather than loop forever
            ready = [n for n in names if n not in placed]
        order.append(ready[0])
        placed.add(ready[0])
    return order
