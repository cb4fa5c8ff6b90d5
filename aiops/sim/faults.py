"""Injected faults. Each is tied to what really fixes it, never to a "fixed" flag:

- ``MemoryLeak``: pods that were running when the leak started leak; fresh pods (a rollout restart) do not;
- ``TrafficSurge``: the entry workload's demand rises; only more replicas bring load per pod back under capacity;
- ``BadDeploy``: pods running the bad image fail requests; only a template rollback replaces them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class PodView:
    """What a fault needs to know about one pod at one time (sim seconds)."""

    name: str
    workload: str
    image: str
    created: float
    started: float
    restarts: int


class FaultModel:
    """No effect anywhere; the concrete faults override what they change."""

    name = "none"

    def __init__(self, workload: str, start: float) -> None:
        self.workload = workload
        self.start = start

    def demand_factor(self, workload: str, t: float) -> float:
        """Multiplier on the workload's own incoming demand."""
        return 1.0

    def leaked_bytes(self, pod: PodView, t: float) -> float:
        """Extra working-set bytes of the pod's container."""
        return 0.0

    def error_ratio(self, pod: PodView, t: float) -> float:
        """Extra share of requests the pod answers with 500."""
        return 0.0

    def error_line(self, pod: PodView, t: float) -> str | None:
        """The error log line the pod writes when this fault makes it fail a request."""
        return None

    def extra_cpu(self, pod: PodView, t: float) -> float:
        """Extra CPU cores the pod's container burns (capped by its limit)."""
        return 0.0

    def extra_latency(self, pod: PodView, t: float) -> float:
        """Extra seconds on the pod's p99 latency (the p50 gets half)."""
        return 0.0

    def crash(self, pod: PodView, t: float) -> str | None:
        """The last log line of a container this fault kills now (the kubelet restarts it), else None."""
        return None

    def serving_memory(self, pod: PodView, t: float, dt: float) -> tuple[float, float]:
        """Extra (process resident bytes, GPU framebuffer MiB) of a model-serving pod stepped at ``t``."""
        return 0.0, 0.0


class MemoryLeak(FaultModel):
    """Pods running at ``start`` grow their working set by ``bytes_per_second`` (varying a little by pod)."""

    name = "memory_leak"

    def __init__(self, workload: str, start: float, bytes_per_second: float = 0.65 * MiB) -> None:
        super().__init__(workload, start)
        self.bytes_per_second = bytes_per_second

    def leaked_bytes(self, pod: PodView, t: float) -> float:
        if pod.workload != self.workload or pod.created > self.start or t < self.start:
            return 0.0
        jitter = 0.85 + 0.3 * (int(hashlib.sha256(pod.name.encode()).hexdigest()[:4], 16) / 0xFFFF)
        return self.bytes_per_second * jitter * (t - max(pod.started, self.start))


class TrafficSurge(FaultModel):
    """The entry workload's demand is multiplied by ``factor`` from ``start`` on (callees see it too)."""

    name = "traffic_surge"

    def __init__(self, workload: str, start: float, factor: float = 4.0) -> None:
        super().__init__(workload, start)
        self.factor = factor

    def demand_factor(self, workload: str, t: float) -> float:
        return self.factor if workload == self.workload and t >= self.start else 1.0


class BadDeploy(FaultModel):
    """Pods of ``workload`` running ``bad_image`` answer ``ratio`` of requests with 500 and log a new error."""

    name = "bad_deploy"

    def __init__(self, workload: str, start: float, bad_image: str, ratio: float = 0.3,
                 line: str = "ERROR upstream request failed: NullPointerException at "
                             "CartService.checkout(CartService.java:142)") -> None:
        super().__init__(workload, start)
        self.bad_image, self.ratio, self.line = bad_image, ratio, line

    def _bad(self, pod: PodView) -> bool:
        return pod.workload == self.workload and pod.image == self.bad_image

    def error_ratio(self, pod: PodView, t: float) -> float:
        return self.ratio if self._bad(pod) else 0.0

    def error_line(self, pod: PodView, t: float) -> str | None:
        return self.line if self._bad(pod) else None
