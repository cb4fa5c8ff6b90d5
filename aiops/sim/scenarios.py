"""The built-in fault scenarios: a small shop (5 workloads) and one fault each, with the fix that should work; and
a model-serving cluster (``scenarios_serving``) for the serving policies."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiops.domain.errors import InputError
from aiops.domain.observations import Topology
from aiops.sim.cluster import SimCluster
from aiops.sim.faults import BadDeploy, FaultModel, MemoryLeak, TrafficSurge
from aiops.sim.faults_serving import ModelOverload, ServingMemoryGrowth
from aiops.sim.scenarios_serving import SERVING_CALLS, SERVING_NAMESPACE, pod_labels, serving_models
from aiops.sim.workloads import ServiceModel

SCENARIOS = frozenset({"memory_leak", "traffic_surge", "bad_deploy", "model_overload", "model_memory_growth"})
SERVING_SCENARIOS = frozenset({"model_overload", "model_memory_growth"})
NAMESPACE = "shop"
SHOP_CALLS: tuple[tuple[str, str], ...] = (
    ("frontend", "cart"), ("frontend", "catalog"), ("cart", "redis"), ("cart", "payments"))


def shop_models() -> dict[str, ServiceModel]:
    """The shop's services: only the frontend runs close to its capacity under a surge."""
    models = [
        ServiceModel("frontend", base_rps=60, replicas=2, capacity_rps=100, latency_seconds=0.015, path="/"),
        ServiceModel("cart", base_rps=30, replicas=2, capacity_rps=100, latency_seconds=0.02, path="/api/cart"),
        ServiceModel("catalog", base_rps=40, replicas=2, capacity_rps=120, latency_seconds=0.012,
                     path="/api/products"),
        ServiceModel("redis", base_rps=60, replicas=1, capacity_rps=2000, latency_seconds=0.001,
                     cpu_per_request=0.0002, memory_baseline=64 * 1024 * 1024, path="GET"),
        ServiceModel("payments", base_rps=5, replicas=2, capacity_rps=50, latency_seconds=0.05,
                     path="/api/payments"),
    ]
    return {m.name: m for m in models}


@dataclass(frozen=True, slots=True)
class Expected:
    """What a correct diagnosis says, and the stock playbook that fixes it."""

    fault: str
    workload: str
    playbook: str
    namespace: str = NAMESPACE


_EXPECTED = {
    "memory_leak": Expected("memory_leak", "cart", "restart-workload"),
    "traffic_surge": Expected("traffic_surge", "frontend", "scale-up"),
    "bad_deploy": Expected("bad_deploy", "cart", "rollback-deploy"),
    "model_overload": Expected("model_overload", "llm", "degrade-model", SERVING_NAMESPACE),
    "model_memory_growth": Expected("memory_growth", "llm", "isolate-pod", SERVING_NAMESPACE),
}


@dataclass
class Scenario:
    """A cluster populated with the shop, plus the fault it will inject (``faults`` is shared with the workloads)."""

    name: str
    cluster: SimCluster
    namespace: str
    topology: Topology
    models: dict[str, ServiceModel]
    expected: Expected
    faults: list[FaultModel] = field(default_factory=list)
    injected_at: float | None = None

    @property
    def fault_workload(self) -> str:
        """The workload the fault hits."""
        return self.expected.workload

    def inject(self) -> FaultModel:
        """Start the fault at the cluster's current time (a second call returns the running fault)."""
        if self.faults:
            return self.faults[0]
        now = self.cluster.clock.now()
        workload = self.fault_workload
        if self.name == "memory_leak":
            fault: FaultModel = MemoryLeak(workload, now)
        elif self.name == "traffic_surge":
            fault = TrafficSurge(workload, now)
        elif self.name == "model_overload":
            fault = ModelOverload(workload, now)
        elif self.name == "model_memory_growth":
            fault = ServingMemoryGrowth(workload, now)
        else:
            bad_image = f"registry.local/{workload}:1.1"
            fault = BadDeploy(workload, now, bad_image)
            self.cluster.patch("Deployment", self.namespace, workload, {"spec": {"template": {"spec": {
                "containers": [{"name": "app", "image": bad_image}]}}}}, "strategic")
        self.faults.append(fault)
        self.injected_at = now
        return fault


def build_scenario(name: str, clock, seed: int = 0, rollout_seconds: float = 10.0) -> Scenario:
    """The shop on a fresh ``SimCluster`` with the named fault ready to inject. Unknown name -> ``InputError``."""
    if name not in SCENARIOS:
        raise InputError("--scenario", f"unknown scenario {name!r}; choose from {', '.join(sorted(SCENARIOS))}")
    cluster = SimCluster(clock, rollout_seconds=rollout_seconds)
    if name in SERVING_SCENARIOS:
        return _serving_scenario(name, cluster)
    models = shop_models()
    for model in models.values():
        cluster.add_deployment(NAMESPACE, model.name, replicas=model.replicas,
                               labels={"app.kubernetes.io/part-of": "shop"},
                               memory_limit=f"{int(model.memory_limit // (1024 * 1024))}Mi")
    return Scenario(name, cluster, NAMESPACE, Topology(SHOP_CALLS), models, _EXPECTED[name])


def _serving_scenario(name: str, cluster: SimCluster) -> Scenario:
    models = serving_models()
    for model in models.values():
        cluster.add_deployment(SERVING_NAMESPACE, model.name, replicas=model.replicas,
                               labels={"app.kubernetes.io/part-of": "chat"}, pod_labels=pod_labels(model.name),
                               memory_limit=f"{int(model.memory_limit // (1024 * 1024))}Mi")
    return Scenario(name, cluster, SERVING_NAMESPACE, Topology(SERVING_CALLS), models, _EXPECTED[name])
