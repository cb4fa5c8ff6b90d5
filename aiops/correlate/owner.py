"""Which workload owns an alert: read from its labels, the way Prometheus rules usually label them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from aiops.domain.workloads import workload_of_pod

# Labels that name the workload directly, most specific first.
WORKLOAD_LABELS: tuple[str, ...] = ("workload", "deployment", "app", "service")


@dataclass(frozen=True, slots=True)
class Owner:
    """The owning workload of an alert, or why none could be found (``reason`` non-empty)."""

    namespace: str
    workload: str
    reason: str = ""

    @property
    def found(self) -> bool:
        return not self.reason


def owner_of(labels: Mapping[str, str]) -> Owner:
    """Find the namespace and workload an alert is about, from ``workload``/``deployment``/``app``/``service``/``pod``."""
    namespace = labels.get("namespace", "").strip()
    workload = ""
    for key in WORKLOAD_LABELS:
        workload = labels.get(key, "").strip()
        if workload:
            break
    if not workload and labels.get("pod", "").strip():
        workload = workload_of_pod(labels["pod"].strip())
    if not namespace:
        return Owner("", workload, "alert has no namespace label")
    if not workload:
        return Owner(namespace, "", "alert names no workload (labels workload, deployment, app, service or pod)")
    return Owner(namespace, workload)
