"""The model-serving cluster: a gateway in front of a GPU model server, and a smaller fallback model.

``llm`` (two replicas) answers the gateway's requests; ``llm-small`` (one replica, a quantised model) answers its
own few requests. Both Deployments' pods carry ``model-group=llm``, so a Service selecting on that label reaches
both: what the ``degrade-model`` playbook switches the ``llm`` Service to.
"""

from __future__ import annotations

from aiops.sim.faults import MiB
from aiops.sim.serving import GiB, GpuProfile
from aiops.sim.workloads import ServiceModel

SERVING_NAMESPACE = "ml"
SERVING_CALLS: tuple[tuple[str, str], ...] = (("gateway", "llm"),)
MODEL_GROUP = {"model-group": "llm"}


def serving_models() -> dict[str, ServiceModel]:
    """At normal load the model server runs at about half its GPU capacity."""
    models = [
        ServiceModel("gateway", base_rps=20, replicas=2, capacity_rps=200, latency_seconds=0.004,
                     path="/v1/chat/completions", daily_amplitude=0.05),
        ServiceModel("llm", base_rps=20, replicas=2, capacity_rps=20, latency_seconds=0.05, cpu_per_request=0.01,
                     memory_baseline=1536 * MiB, memory_limit=8 * GiB, path="/v1/completions",
                     daily_amplitude=0.05, gpu=GpuProfile(weights_mib=9000.0, kv_pool_mib=4000.0)),
        ServiceModel("llm-small", base_rps=3, replicas=1, capacity_rps=30, latency_seconds=0.03,
                     cpu_per_request=0.006, memory_baseline=1024 * MiB, memory_limit=8 * GiB,
                     path="/v1/completions", daily_amplitude=0.05, base_error_ratio=0.0,
                     gpu=GpuProfile(model_name="llama-3-8b-instruct-awq", weights_mib=6000.0, kv_pool_mib=4000.0,
                                    median_latency=0.03, process_memory=3 * GiB)),
    ]
    return {m.name: m for m in models}


def pod_labels(name: str) -> dict[str, str]:
    """Extra pod labels per workload: the model servers share ``model-group``."""
    return dict(MODEL_GROUP) if name in ("llm", "llm-small") else {}
