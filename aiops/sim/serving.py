"""Simulated model servers: GPU utilisation and memory (DCGM exporter), inference latency histogram, queue and
KV-cache pressure (vLLM), process memory, all reacting to the load each pod serves.

A GPU workload's pods get their requests through Services, the way a cluster routes them: every Service spreads
its demand evenly over its Ready endpoints (the pods its selector matches), so a Service whose selector also
matches a fallback Deployment's pods sends them their share, and a pod that lost the selector's label gets none.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

import numpy as np

from aiops.domain import signals as sig
from aiops.sim.tsdb import Sample

# vLLM's own bucket bounds are for seconds-long generations; these suit a small model answering in ~50 ms.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)
Z99 = 2.3263  # the standard normal's 0.99 quantile
GiB = 1024 ** 3


@dataclass(frozen=True, slots=True)
class GpuProfile:
    """One pod's GPU and model server. Memory in MiB as DCGM reports it; latency in seconds."""

    model_name: str = "llama-3-8b-instruct"
    gpu_model: str = "NVIDIA A10G"
    fb_total_mib: float = 23028.0
    weights_mib: float = 15500.0
    kv_pool_mib: float = 5000.0
    median_latency: float = 0.05
    process_memory: float = 4 * GiB


@dataclass(slots=True)
class PodGpuState:
    """Cumulative histogram counts of one pod (``vllm:e2e_request_latency_seconds_bucket`` is a counter)."""

    buckets: list[float] = field(default_factory=lambda: [0.0] * (len(LATENCY_BUCKETS) + 1))


def _cdf(x: float, median: float, sigma: float) -> float:
    """P(latency <= x) for a log-normal latency with this median and log-sd."""
    if x <= 0:
        return 0.0
    return 0.5 * (1.0 + math.erf(math.log(x / median) / (sigma * math.sqrt(2.0))))


def latency_shape(profile: GpuProfile, util: float) -> tuple[float, float]:
    """(median, p99) of a pod's end-to-end latency at utilisation ``util`` (sharp rise past ~90 %)."""
    median = profile.median_latency * (1 + 0.4 * util)
    p99 = profile.median_latency * 3 * (1 + 0.6 * util ** 3) + max(0.0, util - 0.9) * 2.0
    return median, max(p99, median * 1.05)


def routed_load(cluster, namespace: str, rates: dict[str, float], services: list[str], t: float) -> dict[str, float]:
    """Requests/s each pod serves: every named Service spreads its workload's demand over its Ready endpoints."""
    load: dict[str, float] = {}
    for name in services:
        svc = cluster.get("Service", namespace, name)
        selector = ((svc or {}).get("spec") or {}).get("selector") or {}
        if not selector:
            continue
        text = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
        ready = [p["metadata"]["name"] for p in cluster.list("Pod", namespace, text)
                 if (rt := cluster.pod_runtime(namespace, p["metadata"]["name"])) is not None and rt.ready_at <= t]
        for pod in ready:
            load[pod] = load.get(pod, 0.0) + rates.get(name, 0.0) / len(ready)
    return load


def gpu_samples(profile: GpuProfile, state: PodGpuState, labels: dict[str, str], node: str, load: float,
                util: float, dt: float, rng: np.random.Generator, extra_process: float = 0.0,
                extra_fb_mib: float = 0.0) -> list[Sample]:
    """One scrape of a pod's DCGM, vLLM and process metrics after serving ``load`` req/s for ``dt`` seconds."""
    pod = labels["pod"]
    uuid = "GPU-" + hashlib.sha256(pod.encode()).hexdigest()[:8]
    dcgm = {**labels, "gpu": "0", "UUID": uuid, "device": "nvidia0", "modelName": profile.gpu_model,
            "Hostname": node}
    noise = float(rng.normal(1.0, 0.02))
    gpu_util = float(np.clip((6 + 90 * util) * noise, 0, 100)) if load > 0 else 0.0
    kv = float(np.clip((0.12 + 0.7 * util) * noise, 0, 1))
    fb_used = profile.weights_mib + profile.kv_pool_mib * kv + extra_fb_mib
    fb_used = min(fb_used, profile.fb_total_mib)
    waiting = max(0.0, util - 0.85) * 40 * noise
    median, p99 = latency_shape(profile, util)
    sigma = math.log(p99 / median) / Z99
    served = load * dt
    for i, bound in enumerate(LATENCY_BUCKETS):
        state.buckets[i] += served * _cdf(bound, median, sigma)
    state.buckets[-1] += served
    vllm = {**labels, "model_name": profile.model_name}
    out = [Sample(sig.RAW_GPU_UTIL, dcgm, round(gpu_util)),
           Sample(sig.RAW_FB_USED, dcgm, round(fb_used)),
           Sample(sig.RAW_FB_FREE, dcgm, round(profile.fb_total_mib - fb_used)),
           Sample(sig.RAW_REQUESTS_WAITING, vllm, round(waiting)),
           Sample(sig.RAW_GPU_CACHE_USAGE, vllm, round(kv, 4)),
           Sample(sig.RAW_PROCESS_MEMORY, labels, round(profile.process_memory * (1 + 0.03 * util) + extra_process))]
    bounds = [_le(b) for b in LATENCY_BUCKETS] + ["+Inf"]
    out += [Sample(sig.RAW_E2E_LATENCY_BUCKET, {**vllm, "le": le}, round(count, 3))
            for le, count in zip(bounds, state.buckets)]
    return out


def _le(bound: float) -> str:
    """A bucket bound as client libraries print it (``0.05``, ``1.0``)."""
    return repr(float(bound))
