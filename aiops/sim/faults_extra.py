"""More injected faults for the scenario generator, each tied to the signals its fault shows (docs/case-folder.md):

- ``CrashLoop``: containers die a little while after each start (all pods, or only those running ``image``);
- ``CpuSaturation``: a hot loop burns the CPU limit and requests queue behind it;
- ``BadReplicaSet``: a few named pods (one version or zone) fail requests, the others are fine;
- ``DependencyLatency``: a callee answers slowly; its callers wait for it;
- ``CronSpike`` (a distractor, not a fault): a cron job inside a workload burns CPU for a few minutes.
"""

from __future__ import annotations

from aiops.sim.faults import FaultModel, PodView


class CrashLoop(FaultModel):
    """Containers of ``workload`` (only those running ``image`` when given) exit ``uptime`` seconds after starting."""

    name = "crash_loop"

    def __init__(self, workload: str, start: float, uptime: float = 30.0, image: str | None = None,
                 line: str = "FATAL could not load configuration: missing key 'database.url'; exiting") -> None:
        super().__init__(workload, start)
        self.uptime, self.image, self.line = uptime, image, line

    def _hit(self, pod: PodView) -> bool:
        return pod.workload == self.workload and (self.image is None or pod.image == self.image)

    def crash(self, pod: PodView, t: float) -> str | None:
        if t < self.start or not self._hit(pod) or t - max(pod.started, self.start) < self.uptime:
            return None
        return self.line

    def error_ratio(self, pod: PodView, t: float) -> float:
        # Requests in flight when the process dies fail.
        return 0.05 if t >= self.start and self._hit(pod) else 0.0

    def error_line(self, pod: PodView, t: float) -> str | None:
        return ("ERROR worker pool shutting down: request aborted" if t >= self.start and self._hit(pod)
                else None)


class CpuSaturation(FaultModel):
    """Pods of ``workload`` burn ``cores`` more (up to the limit) and their latency rises by ``latency`` seconds."""

    name = "cpu_saturation"

    def __init__(self, workload: str, start: float, cores: float = 1.0, latency: float = 0.4) -> None:
        super().__init__(workload, start)
        self.cores, self.latency = cores, latency

    def _on(self, pod: PodView, t: float) -> bool:
        return pod.workload == self.workload and t >= self.start

    def extra_cpu(self, pod: PodView, t: float) -> float:
        return self.cores if self._on(pod, t) else 0.0

    def extra_latency(self, pod: PodView, t: float) -> float:
        # Queueing builds up over a couple of minutes rather than at once.
        return self.latency * min(1.0, (t - self.start) / 120.0 + 0.3) if self._on(pod, t) else 0.0


class BadReplicaSet(FaultModel):
    """The named pods answer ``ratio`` of requests with 500 and log a new error; the workload's other pods do not."""

    name = "bad_replica_set"

    def __init__(self, workload: str, start: float, pods: frozenset[str], ratio: float = 0.5,
                 line: str = "ERROR connection to orders-db.zone-b.internal:5432 failed: i/o timeout") -> None:
        super().__init__(workload, start)
        self.pods, self.ratio, self.line = frozenset(pods), ratio, line

    def _bad(self, pod: PodView, t: float) -> bool:
        return t >= self.start and pod.workload == self.workload and pod.name in self.pods

    def error_ratio(self, pod: PodView, t: float) -> float:
        return self.ratio if self._bad(pod, t) else 0.0

    def error_line(self, pod: PodView, t: float) -> str | None:
        return self.line if self._bad(pod, t) else None


class DependencyLatency(FaultModel):
    """``workload`` (a callee) answers ``latency`` seconds slower from ``start`` on; callers inherit the wait."""

    name = "dependency_latency"

    def __init__(self, workload: str, start: float, latency: float = 0.5) -> None:
        super().__init__(workload, start)
        self.latency = latency

    def extra_latency(self, pod: PodView, t: float) -> float:
        return self.latency if pod.workload == self.workload and t >= self.start else 0.0


class CronSpike(FaultModel):
    """A distractor: ``cores`` of CPU on ``workload``'s pods during ``[start, start + seconds)``, nothing else."""

    name = "cron_spike"

    def __init__(self, workload: str, start: float, seconds: float = 120.0, cores: float = 0.4) -> None:
        super().__init__(workload, start)
        self.seconds, self.cores = seconds, cores

    def extra_cpu(self, pod: PodView, t: float) -> float:
        on = pod.workload == self.workload and self.start <= t < self.start + self.seconds
        return self.cores if on else 0.0
