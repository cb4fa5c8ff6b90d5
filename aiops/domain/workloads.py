"""Which workload owns a pod or ReplicaSet, from Kubernetes' naming conventions (pure string rules)."""

from __future__ import annotations

import re

# Deployment pods are <deployment>-<pod-template-hash 5-10>-<suffix 5>; StatefulSet pods are <name>-<ordinal>.
_DEPLOYMENT_POD = re.compile(r"^(?P<name>.+)-(?P<hash>[a-z0-9]{5,10})-(?P<suffix>[a-z0-9]{5})$")
_REPLICASET = re.compile(r"^(?P<name>.+)-(?P<hash>[a-z0-9]{5,10})$")
_STATEFULSET_POD = re.compile(r"^(?P<name>.+)-(?P<ordinal>\d+)$")
_DAEMONSET_POD = re.compile(r"^(?P<name>.+)-(?P<suffix>[a-z0-9]{5})$")
# Kubernetes draws generated names from this vowel-free alphabet, so a vowel-bearing all-letter part is a word
# ("cart-service-redis" is a workload name, not cart + hash + suffix).
_KUBE_ALPHABET = frozenset("bcdfghjklmnpqrstvwxz2456789")
_VOWELS = frozenset("aeiou")


def _looks_generated(part: str) -> bool:
    """True for a part that could be a generated hash: it has a digit, or no vowel at all."""
    return any(c.isdigit() for c in part) or not (set(part) & _VOWELS)


def workload_of_pod(pod_name: str) -> str:
    """The owning workload's name, from a pod name.

    ``cart-7d4b9c8f6-x2k9p`` -> ``cart`` (Deployment: ReplicaSet hash and pod suffix stripped), ``db-0`` -> ``db``
    (StatefulSet ordinal), ``agent-x2k9p`` -> ``agent`` (DaemonSet suffix, only when drawn from Kubernetes'
    generated-name alphabet and holding a digit). Names that fit none of these are returned unchanged.
    """
    m = _DEPLOYMENT_POD.match(pod_name)
    if m and _looks_generated(m["hash"]) and _looks_generated(m["suffix"]):
        return m["name"]
    m = _STATEFULSET_POD.match(pod_name)
    if m:
        return m["name"]
    m = _DAEMONSET_POD.match(pod_name)
    if m and set(m["suffix"]) <= _KUBE_ALPHABET and any(c.isdigit() for c in m["suffix"]):
        return m["name"]
    return pod_name


def workload_of_replicaset(name: str, template_hash: str | None = None) -> str:
    """The Deployment that owns a ReplicaSet: its name without the ``-<pod-template-hash>`` suffix."""
    if template_hash and name.endswith("-" + template_hash):
        return name[: -len(template_hash) - 1]
    m = _REPLICASET.match(name)
    if m and _looks_generated(m["hash"]):
        return m["name"]
    return name
