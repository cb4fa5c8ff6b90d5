"""Builders for complete, API-shaped objects (what kube-apiserver v1.20 returns), so validating clients accept them."""

from __future__ import annotations

import copy
import hashlib
import json
import uuid
from datetime import datetime, timezone

# The alphabet Kubernetes uses for generated name suffixes and pod-template hashes (no vowels, no look-alikes).
SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
TEMPLATE_HASH_LABEL = "pod-template-hash"
CONTAINER = "app"


def rfc3339(ts: float) -> str:
    """Seconds precision, like ``metadata.creationTimestamp``."""
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339_nano(ts: float) -> str:
    """Nanosecond precision, like the kubelet's ``timestamps=true`` log prefix."""
    whole = int(ts)
    nanos = int(round((ts - whole) * 1e9))
    if nanos >= 1_000_000_000:
        whole, nanos = whole + 1, nanos - 1_000_000_000
    return datetime.fromtimestamp(whole, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos:09d}Z"


def stable_uid(*parts: object) -> str:
    """A UUID derived from ``parts``, so a seeded simulation gives the same uids every run."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


def safe_suffix(length: int, *parts: object) -> str:
    """A name suffix in the Kubernetes safe alphabet, derived from ``parts``."""
    n = int.from_bytes(hashlib.sha256("/".join(map(str, parts)).encode()).digest()[:8], "big")
    chars = []
    for _ in range(length):
        n, r = divmod(n, len(SAFE_ALPHABET))
        chars.append(SAFE_ALPHABET[r])
    return "".join(chars)


def template_hash(template: dict) -> str:
    """The ``pod-template-hash`` of a pod template (stable for equal templates, like the controller's).

    Nulls and empty maps/lists do not count: clients drop them when they send a template back (a rollback).
    """
    return safe_suffix(10, json.dumps(_canonical(template), sort_keys=True))


def _canonical(value):
    if isinstance(value, dict):
        items = {k: _canonical(v) for k, v in value.items() if k != TEMPLATE_HASH_LABEL}
        return {k: v for k, v in items.items() if v not in (None, {}, [])}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    return value


def deployment(namespace: str, name: str, replicas: int, image: str, labels: dict, port: int,
               memory_limit: str, pod_labels: dict | None = None) -> dict:
    """A Deployment as a client would create it, with the defaults the apiserver fills in (its pods carry
    ``app=<name>`` plus ``pod_labels``)."""
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels), "annotations": {}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"creationTimestamp": None, "labels": {**(pod_labels or {}), "app": name}},
                "spec": {
                    "containers": [{
                        "name": CONTAINER, "image": image, "imagePullPolicy": "IfNotPresent",
                        "ports": [{"containerPort": port, "name": "http", "protocol": "TCP"}],
                        "resources": {"limits": {"cpu": "1", "memory": memory_limit},
                                      "requests": {"cpu": "250m", "memory": "256Mi"}},
                        "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
                    }],
                    "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
                    "securityContext": {}, "schedulerName": "default-scheduler",
                },
            },
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
            "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600,
        },
        "status": {},
    }


def replica_set(dep: dict, pod_hash: str, revision: int) -> dict:
    """The ReplicaSet the deployment controller creates for the Deployment's current template."""
    meta, spec = dep["metadata"], dep["spec"]
    template = copy.deepcopy(spec["template"])
    template["metadata"].setdefault("labels", {})[TEMPLATE_HASH_LABEL] = pod_hash
    selector = {"matchLabels": {**spec["selector"]["matchLabels"], TEMPLATE_HASH_LABEL: pod_hash}}
    return {
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {
            "name": f"{meta['name']}-{pod_hash}", "namespace": meta["namespace"],
            "labels": dict(template["metadata"]["labels"]),
            "annotations": {REVISION_ANNOTATION: str(revision),
                            "deployment.kubernetes.io/desired-replicas": str(spec["replicas"]),
                            "deployment.kubernetes.io/max-replicas": str(spec["replicas"] + 1)},
            "ownerReferences": [_owner(dep)],
        },
        "spec": {"replicas": 0, "selector": selector, "template": template},
        "status": {"replicas": 0, "observedGeneration": 1},
    }


def owner_reference(obj: dict) -> dict:
    """The controller owner reference pointing at ``obj`` (what the ReplicaSet controller writes on adoption)."""
    return _owner(obj)


def pod(rs: dict, name: str, node: str, ip: str) -> dict:
    """A pod of ``rs``, scheduled on ``node``; its status is filled by ``pod_status``."""
    template = rs["spec"]["template"]
    spec = copy.deepcopy(template["spec"])
    spec.update({
        "nodeName": node, "serviceAccountName": "default", "serviceAccount": "default", "priority": 0,
        "enableServiceLinks": True, "preemptionPolicy": "PreemptLowerPriority",
        "tolerations": [
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
             "tolerationSeconds": 300},
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
             "tolerationSeconds": 300}],
    })
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "generateName": rs["metadata"]["name"] + "-", "namespace": rs["metadata"]["namespace"],
            "labels": dict(template["metadata"].get("labels") or {}),
            "annotations": dict(template["metadata"].get("annotations") or {}),
            "ownerReferences": [_owner(rs)],
        },
        "spec": spec,
        "status": {"phase": "Pending", "hostIP": "10.0.0.10", "podIP": ip, "podIPs": [{"ip": ip}],
                   "qosClass": "Burstable"},
    }


def pod_status(p: dict, created: float, started: float, ready: bool, restarts: int,
               last_terminated: dict | None) -> dict:
    """The kubelet's view of a one-container pod."""
    container = p["spec"]["containers"][0]
    ready_s = "True" if ready else "False"
    cs = {
        "name": container["name"], "image": container["image"],
        "imageID": "docker-pullable://" + container["image"].split(":")[0] + "@sha256:" + safe_suffix(12, container["image"]),
        "containerID": "containerd://" + hashlib.sha256(f"{p['metadata']['name']}/{restarts}".encode()).hexdigest(),
        "ready": ready, "started": True, "restartCount": restarts,
        "state": {"running": {"startedAt": rfc3339(started)}},
        "lastState": {"terminated": last_terminated} if last_terminated else {},
    }
    conditions = [
        {"type": "Initialized", "status": "True", "lastTransitionTime": rfc3339(created)},
        {"type": "Ready", "status": ready_s, "lastTransitionTime": rfc3339(started)},
        {"type": "ContainersReady", "status": ready_s, "lastTransitionTime": rfc3339(started)},
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": rfc3339(created)},
    ]
    if not ready:
        for c in conditions[1:3]:
            c["reason"] = "ContainersNotReady"
            c["message"] = f"containers with unready status: [{container['name']}]"
    return {**p["status"], "phase": "Running", "conditions": conditions, "containerStatuses": [cs],
            "startTime": rfc3339(created)}


def service(namespace: str, name: str, port: int, cluster_ip: str) -> dict:
    """A ClusterIP Service selecting ``app=<name>``."""
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {
            "selector": {"app": name}, "type": "ClusterIP", "clusterIP": cluster_ip, "clusterIPs": [cluster_ip],
            "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": port}],
            "sessionAffinity": "None",
        },
        "status": {"loadBalancer": {}},
    }


def namespace(name: str) -> dict:
    """An Active namespace."""
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}


def event(namespace: str, name: str, involved: dict, reason: str, message: str, type_: str,
          component: str, ts: float) -> dict:
    """A core/v1 Event as the controllers and kubelet write them."""
    involved = {"apiVersion": involved.get("apiVersion", ""), "kind": involved.get("kind", ""),
                "name": involved.get("name", ""), "namespace": involved.get("namespace", namespace),
                **({"uid": involved["uid"]} if involved.get("uid") else {}),
                **({"resourceVersion": involved["resourceVersion"]} if involved.get("resourceVersion") else {})}
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": name, "namespace": namespace},
        "involvedObject": involved, "reason": reason, "message": message,
        "source": {"component": component}, "firstTimestamp": rfc3339(ts), "lastTimestamp": rfc3339(ts),
        "count": 1, "type": type_, "eventTime": None, "reportingComponent": "", "reportingInstance": "",
    }


def deployment_status(generation: int, desired: int, total: int, updated: int, ready: int, new_rs: str) -> dict:
    """A Deployment's status as the controller reports it (condition timestamps are added by the caller)."""
    complete = updated == desired and ready >= desired and total == desired
    available = ready >= desired * 0.75
    status = {
        "observedGeneration": generation, "replicas": total, "updatedReplicas": updated,
        "readyReplicas": ready, "availableReplicas": ready,
        "conditions": [
            {"type": "Available", "status": "True" if available else "False",
             "reason": "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
             "message": "Deployment has minimum availability." if available
             else "Deployment does not have minimum availability."},
            {"type": "Progressing", "status": "True",
             "reason": "NewReplicaSetAvailable" if complete else "ReplicaSetUpdated",
             "message": f'ReplicaSet "{new_rs}" ' + ("has successfully progressed." if complete
                                                      else "is progressing.")},
        ],
    }
    if total > ready:
        status["unavailableReplicas"] = total - ready
    return status


def _owner(obj: dict) -> dict:
    return {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": obj["metadata"]["name"],
            "uid": obj["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}


def status(code: int, reason: str, message: str, details: dict | None = None) -> dict:
    """A ``Status`` error body, as the apiserver returns it."""
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "details": details or {}, "code": code}


def parse_rfc3339(text: str) -> float:
    """Unix seconds of an RFC 3339 timestamp with a ``Z`` suffix."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
