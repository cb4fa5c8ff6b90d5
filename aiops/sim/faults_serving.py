"""Model-serving faults, each tied to what really fixes it:

- ``ModelOverload``: demand on the model server's Service rises for a while; only moving part of it elsewhere (a
  fallback model) or more replicas bring the load per GPU back under capacity, and it ends on its own later;
- ``ServingMemoryGrowth``: one serving pod's GPU memory (and a little of its process memory) grows while it serves
  (a CUDA caching allocator that never gives back; the container's working set does not see GPU memory); a pod that
  stops serving releases it, so isolating the pod is what stops and clears it.
"""

from __future__ import annotations

import math

from aiops.sim.faults import MiB, FaultModel, PodView


class ModelOverload(FaultModel):
    """The workload's demand is multiplied by ``factor`` from ``start`` for ``duration`` seconds."""

    name = "model_overload"

    def __init__(self, workload: str, start: float, factor: float = 2.0, duration: float = 900.0) -> None:
        super().__init__(workload, start)
        self.factor, self.duration = factor, duration

    def demand_factor(self, workload: str, t: float) -> float:
        on = workload == self.workload and self.start <= t < self.start + self.duration
        return self.factor if on else 1.0


class ServingMemoryGrowth(FaultModel):
    """The first pod of ``workload`` running at ``start`` grows ``bytes_per_second`` of resident memory and
    ``fb_mib_per_second`` of GPU memory while it serves, for ``duration`` seconds; a pod left unserved (not
    stepped) releases it with time constant ``release_seconds`` and grows no more."""

    name = "serving_memory_growth"

    def __init__(self, workload: str, start: float, bytes_per_second: float = 0.5 * MiB,
                 fb_mib_per_second: float = 12.0, duration: float = 1800.0, release_seconds: float = 60.0) -> None:
        super().__init__(workload, start)
        self.bytes_per_second, self.fb_mib_per_second = bytes_per_second, fb_mib_per_second
        self.duration, self.release_seconds = duration, release_seconds
        self.victim: str | None = None
        self._grown = 0.0          # seconds of growth accumulated (scaled by the two rates)
        self._last: float | None = None
        self._drained = False

    def serving_memory(self, pod: PodView, t: float, dt: float) -> tuple[float, float]:
        if pod.workload != self.workload or t < self.start:
            return 0.0, 0.0
        if self.victim is None and pod.created <= self.start:
            self.victim = pod.name
        if pod.name != self.victim:
            return 0.0, 0.0
        if self._last is not None and t - self._last > 1.5 * dt:
            # Not stepped in between: the pod served nothing, and the allocator gave memory back (and, drained
            # once, the server starts from a clean pool: the growth does not come back).
            self._grown *= math.exp(-(t - self._last - dt) / self.release_seconds)
            self._drained = True
        if t < self.start + self.duration and not self._drained:
            self._grown += dt
        self._last = t
        return self._grown * self.bytes_per_second, self._grown * self.fb_mib_per_second
