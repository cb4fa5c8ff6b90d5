"""Which workload owns an alert: read from its labels, the way Prometheus rules usually label them.

The names read here become Kubernetes object names (API paths, selectors, plans), so each label that can name one
must be a valid Kubernetes name; an alert where one is not is not owned by anything (the reason names the label).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from aiops.domain.names import dns_label_problem, dns_subdomain_problem
from aiops.domain.workloads import workload_of_pod

# Labels that name the workload directly, most specific first.
WORKLOAD_LABELS: tuple[str, ...] = ("workload", "deployment", "app", "service")
# Labels that name Kubernetes objects whenever they are present, whether or not they pick the workload.
_NAME_LABELS: tuple[str, ...] = ("workload", "deployment", "pod")


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
    workload, source = "", ""
    for key in WORKLOAD_LABELS:
        workload = labels.get(key, "").strip()
        if workload:
            source = key
            break
    if not workload and labels.get("pod", "").strip():
        workload, source = workload_of_pod(labels["pod"].strip()), "pod"
    if not namespace:
        return Owner("", workload, "alert has no namespace label")
    if not workload:
        return Owner(namespace, "", "alert names no workload (labels workload, deployment, app, service or pod)")
    problem = _name_problem(labels, namespace, workload, source)
    if problem:
        return Owner(namespace, workload, problem)
    return Owner(namespace, workload)


def _name_problem(labels: Mapping[str, str], namespace: str, workload: str, source: str) -> str:
    """The first label whose value cannot be the Kubernetes name it stands for ('' when all can)."""
    if (why := dns_label_problem(namespace)) is not None:
        return f"label namespace={namespace[:80]!r} is not a valid namespace name: {why}"
    checks = [(key, labels.get(key, "").strip()) for key in _NAME_LABELS]
    if source not in _NAME_LABELS:  # app or service picked the workload: it names a Deployment now
        checks.append((source, workload))
    for key, value in checks:
        if value and (why := dns_subdomain_problem(value)) is not None:
            return f"label {key}={value[:80]!r} is not a valid Kubernetes name: {why}"
    if source == "pod" and (why := dns_subdomain_problem(workload)) is not None:
        return f"workload {workload[:80]!r} (from label pod) is not a valid Kubernetes name: {why}"
    return ""
