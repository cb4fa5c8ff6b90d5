"""Which workload owns an alert: read from its labels, the way Prometheus rules usually label them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

# Labels that name the workload directly, most specific first.
WORKLOAD_LABELS: tuple[str, ...] = ("workload", "deployment", "app", "service")

# Kubernetes generates name suffixes from this alphabet (no vowels, no 0/1/3), which is what keeps the stripping
# below from eating a real name part such as "-redis".
_SAFE = "[bcdfghjklmnpqrstvwxz2456789]"
# <deployment>-<replicaset hash>-<pod suffix>, e.g. cart-7d9f8b6c5d-x2k4p
_DEPLOYMENT_POD = re.compile(rf"^(?P<owner>.+)-{_SAFE}{{6,10}}-{_SAFE}{{5}}$")
# <daemonset or job>-<pod suffix>, e.g. node-agent-x2k4p
_SINGLE_SUFFIX_POD = re.compile(rf"^(?P<owner>.+)-{_SAFE}{{5}}$")


@dataclass(frozen=True, slots=True)
class Owner:
    """The owning workload of an alert, or why none could be found (``reason`` non-empty)."""

    namespace: str
    workload: str
    reason: str = ""

    @property
    def found(self) -> bool:
        return not self.reason


def workload_from_pod(pod: str) -> str:
    """Strip the ReplicaSet hash and pod suffix Kubernetes adds (``cart-7d9f8b6c5d-x2k4p`` -> ``cart``)."""
    for pattern in (_DEPLOYMENT_POD, _SINGLE_SUFFIX_POD):
        match = pattern.match(pod)
        if match:
            return match.group("owner")
    return pod


def owner_of(labels: Mapping[str, str]) -> Owner:
    """Find the namespace and workload an alert is about, from ``workload``/``deployment``/``app``/``service``/``pod``."""
    namespace = labels.get("namespace", "").strip()
    workload = ""
    for key in WORKLOAD_LABELS:
        workload = labels.get(key, "").strip()
        if workload:
            break
    if not workload and labels.get("pod", "").strip():
        workload = workload_from_pod(labels["pod"].strip())
    if not namespace:
        return Owner("", workload, "alert has no namespace label")
    if not workload:
        return Owner(namespace, "", "alert names no workload (labels workload, deployment, app, service or pod)")
    return Owner(namespace, workload)
