"""A bad deploy whose old pods get noisier while a rollback replaces them: the first readings after a right
rollback then look worse than the level before it, which must not make the agent undo the rollback."""

from __future__ import annotations

import random

from aiops.sim.faults import BadDeploy, PodView


class DrainingBadDeploy(BadDeploy):
    """``BadDeploy`` whose bad pods, once the Deployment's template no longer runs the bad image (a rollback is
    under way), fail a random ``draining`` share of their requests (what pods being drained under a retry storm
    can look like) until they are gone."""

    def __init__(self, fault: BadDeploy, cluster, namespace: str, draining: tuple[float, float] = (0.5, 0.9),
                 seed: int = 0) -> None:
        super().__init__(fault.workload, fault.start, fault.bad_image, fault.ratio, fault.line)
        self.cluster, self.namespace, self.draining = cluster, namespace, draining
        self._rng = random.Random(seed)

    def _rolling_back(self) -> bool:
        deployment = self.cluster.get("Deployment", self.namespace, self.workload)
        images = [c["image"] for c in deployment["spec"]["template"]["spec"]["containers"]]
        return self.bad_image not in images

    def error_ratio(self, pod: PodView, t: float) -> float:
        if not self._bad(pod):
            return 0.0
        return self._rng.uniform(*self.draining) if self._rolling_back() else self.ratio


def drain_noisily(sim, seed: int = 0) -> DrainingBadDeploy:
    """Swap the running bad_deploy fault of ``sim`` (a ``SimRuntime``) for its draining variant."""
    faults = sim.scenario.faults
    draining = DrainingBadDeploy(faults[0], sim.cluster, sim.namespace, seed=seed)
    faults[0] = draining  # the list is shared with the workload simulator
    return draining
