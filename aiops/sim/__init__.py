"""The simulated cluster: a Kubernetes REST API, workloads whose metrics/logs/events react, fault scenarios."""

from aiops.sim.clock import SimClock, WallClock
from aiops.sim.cluster import SimCluster
from aiops.sim.kubeapi import KubeApiServer
from aiops.sim.promapi import MetricsServer
from aiops.sim.runtime import SimRuntime
from aiops.sim.scenarios import SCENARIOS, Scenario, build_scenario

__all__ = ["SCENARIOS", "KubeApiServer", "MetricsServer", "Scenario", "SimClock", "SimCluster", "SimRuntime",
           "WallClock", "build_scenario"]
