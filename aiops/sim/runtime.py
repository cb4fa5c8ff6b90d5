"""The whole simulated cluster in one object: clock, cluster, workloads, the Kubernetes API and metrics servers."""

from __future__ import annotations

import math
import threading
import time

from aiops.sim.clock import SimClock, WallClock
from aiops.sim.kubeapi import KubeApiServer
from aiops.sim.promapi import MetricsServer
from aiops.sim.scenarios import Scenario, build_scenario
from aiops.sim.tsdb import SampleStore
from aiops.sim.workloads import WorkloadSimulator

RETENTION_SECONDS = 6 * 3600.0  # samples kept by default, like a small Prometheus


class SimRuntime:
    """Runs a scenario. Simulated time moves only through ``prefill``/``advance`` unless ``realtime``.

    Deterministic for a given ``seed`` and ``start`` (metric values, pod names, uids); ``start`` defaults to the
    current wall time rounded down to ``step``, so sim data lines up with "now" for clients that ask for it.
    """

    def __init__(self, scenario_name: str = "memory_leak", seed: int = 0, realtime: bool = False, step: float = 15.0,
                 *, start: float | None = None, host: str = "127.0.0.1", kube_port: int = 0, metrics_port: int = 0,
                 token: str | None = None, rollout_seconds: float = 10.0,
                 retention_seconds: float = RETENTION_SECONDS, scenario_factory=None) -> None:
        if step <= 0:
            raise ValueError("step must be positive")
        self.step = float(step)
        self.realtime = realtime
        if start is None:
            start = math.floor(time.time() / self.step) * self.step
        self.clock = WallClock() if realtime else SimClock(start)
        # ``scenario_factory(name, clock, seed, rollout_seconds)`` builds other clusters (the case generator's).
        self.scenario: Scenario = (scenario_factory or build_scenario)(scenario_name, self.clock, seed,
                                                                      rollout_seconds)
        self.cluster = self.scenario.cluster
        self.store = SampleStore(retention_seconds)
        self.workloads = WorkloadSimulator(self.cluster, self.scenario.namespace, self.scenario.models,
                                           self.scenario.topology.calls, self.scenario.faults, seed,
                                           origin=self.clock.now())
        self._kube = KubeApiServer(self.cluster, host, kube_port, token)
        try:
            self._metrics = MetricsServer(self, host, metrics_port)
        except OSError:
            self._kube.stop()  # both ports or neither: a busy metrics port must not leave the API port bound
            raise
        self._started = False
        self._step_lock = threading.Lock()

    # --- lifecycle ----------------------------------------------------------------------------------------
    def start(self) -> "SimRuntime":
        """Start both HTTP servers (idempotent); returns self."""
        if not self._started:
            self._kube.start()
            self._metrics.start()
            self._started = True
        return self

    def stop(self) -> None:
        """Stop both HTTP servers."""
        if self._started:
            self._kube.stop()
            self._metrics.stop()
            self._started = False

    def __enter__(self) -> "SimRuntime":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def kube_url(self) -> str:
        """Base URL of the simulated Kubernetes API."""
        return self._kube.url

    @property
    def prom_url(self) -> str:
        """Base URL of the Prometheus-like endpoint (``/metrics`` and ``/api/v1/...``)."""
        return self._metrics.url

    @property
    def namespace(self) -> str:
        return self.scenario.namespace

    # --- time ---------------------------------------------------------------------------------------------
    def prefill(self, seconds: float) -> None:
        """Generate ``seconds`` of healthy history ending at now (objects are backdated to exist through it)."""
        n = int(seconds // self.step)
        if n <= 0:
            return
        now = self.clock.now()
        with self._step_lock:
            if self.store.last_round is not None and self.store.last_round > now - n * self.step:
                raise ValueError("prefill must come before any other history")
            self.cluster.backdate(n * self.step)
            self.workloads.origin -= n * self.step
            for i in range(n - 1, -1, -1):
                t = now - i * self.step
                self.store.record(t, self.workloads.step(t, self.step))

    def advance(self, seconds: float) -> None:
        """Move sim time forward in ``step`` increments: controllers, then metrics and logs, each step."""
        for _ in range(max(1, int(round(seconds / self.step))) if seconds > 0 else 0):
            if not self.realtime:
                self.clock.advance(self.step)
            self._one_step(self.clock.now())

    def run_forever(self, stop_event: threading.Event) -> None:
        """Realtime mode: one step every ``step`` wall seconds until ``stop_event`` is set."""
        while not stop_event.wait(self.step):
            if self.realtime:
                self._one_step(self.clock.now())
            else:
                self.advance(self.step)

    def inject(self):
        """Start the scenario's fault now; returns the fault model."""
        return self.scenario.inject()

    def _one_step(self, t: float) -> None:
        with self._step_lock:
            if self.store.last_round is not None and t <= self.store.last_round:
                return
            self.cluster.tick(t)
            self.store.record(t, self.workloads.step(t, self.step))
