"""An in-memory Kubernetes cluster: API-shaped objects plus the deployment/replicaset controllers and a kubelet.

Objects are stored as the JSON the apiserver would return. ``tick(now)`` does what the controllers do: a changed
pod template gets a new ReplicaSet (revision + 1, or an older ReplicaSet revived on rollback), new pods become
Ready after ``rollout_seconds`` and then replace the old ones; replica counts and Deployment status follow.
One re-entrant lock guards everything, because the HTTP API serves from other threads.
"""

from __future__ import annotations

import copy
import threading
from collections import deque
from dataclasses import dataclass

from aiops.sim import objects as ob
from aiops.sim.apierrors import RESOURCE, ApiError, apply_patch, check_version, not_found
from aiops.sim.changes import ChangeLog
from aiops.sim.configmaps import check_configmap_body, validate_configmap
from aiops.sim.leases import API_VERSION as LEASE_API_VERSION
from aiops.sim.leases import check_lease_body, require_resource_version, validate_lease
from aiops.sim.patching import merge_patch
from aiops.sim.selectors import field_selector_matches, parse_field_selector, parse_selector, selector_matches

KINDS = ("Namespace", "Deployment", "ReplicaSet", "Pod", "Service", "Event", "PodDisruptionBudget", "Lease",
         "ConfigMap")
# Deployment annotations the real controller does not copy onto the new ReplicaSet (it copies all others).
_NOT_COPIED = {"kubectl.kubernetes.io/last-applied-configuration", ob.REVISION_ANNOTATION,
               "deployment.kubernetes.io/revision-history", "deployment.kubernetes.io/desired-replicas",
               "deployment.kubernetes.io/max-replicas", "deprecated.deployment.rollback.to"}


@dataclass(slots=True)
class PodRuntime:
    """What the kubelet knows about a pod's one container: times are sim seconds."""

    created: float
    started: float
    ready_at: float
    restarts: int = 0
    last_terminated: dict | None = None
    shown_ready: bool = False


class SimCluster:
    """The cluster's objects and controllers. Reads return deep copies; every write bumps ``resourceVersion``."""

    def __init__(self, clock, rollout_seconds: float = 10.0, node: str = "sim-node-1",
                 max_events: int = 2000, max_log_lines: int = 2000, max_changes: int = 4000) -> None:
        self.clock = clock
        self.rollout_seconds = float(rollout_seconds)
        self.node = node
        self.lock = threading.RLock()
        self._rv = 100
        self._serial = 0
        self._objects: dict[str, dict[tuple[str, str], dict]] = {k: {} for k in KINDS}
        self._pods: dict[tuple[str, str], PodRuntime] = {}
        self._logs: dict[tuple[str, str], deque] = {}
        self._max_events = max_events
        self._max_log_lines = max_log_lines
        self.changes = ChangeLog(self.lock, max_changes)  # what watches follow

    # --- generic access -------------------------------------------------------------------------------------
    def resource_version(self) -> str:
        """The current global resourceVersion (what list responses carry)."""
        with self.lock:
            return str(self._rv)

    def get(self, kind: str, namespace: str, name: str) -> dict | None:
        """A copy of one object, or None."""
        with self.lock:
            obj = self._objects[kind].get((namespace if kind != "Namespace" else "", name))
            return copy.deepcopy(obj) if obj else None

    def list(self, kind: str, namespace: str | None = None, selector: str | None = None,
             fields: str | None = None) -> list[dict]:
        """Copies of the objects of ``kind`` (in ``namespace`` unless None) matching a label selector string and a
        field selector string. Raises ``SelectorError`` for either that does not parse."""
        requirements = parse_selector(selector)
        field_requirements = parse_field_selector(fields, kind)
        with self.lock:
            # Events in the order they happened (what readers want); everything else by name, like etcd.
            pairs = self._objects[kind].items() if kind == "Event" else sorted(self._objects[kind].items())
            found = [o for (ns, _), o in pairs
                     if (namespace is None or kind == "Namespace" or ns == namespace)
                     and selector_matches(requirements, o["metadata"].get("labels"))
                     and field_selector_matches(field_requirements, o, kind)]
            if kind == "PodDisruptionBudget":
                for pdb in found:
                    self._pdb_status(pdb)
            return copy.deepcopy(found)

    def _pdb_status(self, pdb: dict) -> None:
        """What the disruption controller writes: how many matching pods may be taken down now."""
        spec, ns = pdb.get("spec") or {}, pdb["metadata"]["namespace"]
        match = (spec.get("selector") or {}).get("matchLabels") or {}
        pods = [p for (n, _), p in self._objects["Pod"].items() if n == ns and match
                and all((p["metadata"].get("labels") or {}).get(k) == v for k, v in match.items())]
        now = self.clock.now()
        healthy, expected = sum(self._is_ready(p, now) for p in pods), len(pods)

        def count(value) -> int:
            text = str(value)
            return -(-expected * int(text[:-1]) // 100) if text.endswith("%") else int(text)

        if "minAvailable" in spec:
            desired = count(spec["minAvailable"])
        else:
            desired = expected - count(spec.get("maxUnavailable", 0))
        pdb["status"] = {"observedGeneration": pdb["metadata"].get("generation", 1), "currentHealthy": healthy,
                         "desiredHealthy": desired, "expectedPods": expected,
                         "disruptionsAllowed": max(0, healthy - desired)}

    def create(self, kind: str, namespace: str, obj: dict) -> dict:
        """Create an object the way POST does (used for Events, Namespaces and Leases)."""
        if kind == "Lease":
            check_lease_body(obj)
        if kind == "ConfigMap":
            check_configmap_body(obj)
        with self.lock:
            meta = obj.setdefault("metadata", {})
            if meta.get("resourceVersion"):
                raise ApiError(500, "", "resourceVersion should not be set on objects to be created")
            if not meta.get("name"):
                if not meta.get("generateName"):
                    raise ApiError(422, "Invalid", f"{kind} is invalid: metadata.name: Required value: name or "
                                                   "generateName is required")
                meta["name"] = meta["generateName"] + ob.safe_suffix(5, "gen", self._next_serial())
            ns = "" if kind == "Namespace" else namespace
            if kind == "ConfigMap" and ("", namespace) not in self._objects["Namespace"]:
                raise not_found("Namespace", namespace)  # the NamespaceLifecycle admission plugin's answer
            if (ns, meta["name"]) in self._objects[kind]:
                resource, group = RESOURCE[kind]
                raise ApiError(409, "AlreadyExists", f'{resource} "{meta["name"]}" already exists',
                               {"name": meta["name"], "group": group, "kind": resource})
            if kind == "Namespace":
                obj = merge_patch(ob.namespace(meta["name"]), obj)
                meta = obj["metadata"]
            else:
                meta["namespace"] = namespace
            obj.setdefault("apiVersion", "v1")
            if kind == "Lease":
                obj["apiVersion"] = LEASE_API_VERSION
                validate_lease(obj)
            if kind == "ConfigMap":
                validate_configmap(obj)
            obj["kind"] = kind
            self._store(kind, obj)
            if kind == "Event":
                self._trim_events(namespace)
            return copy.deepcopy(obj)

    def patch(self, kind: str, namespace: str, name: str, body, patch_type: str = "merge") -> dict:
        """PATCH an object: ``patch_type`` is ``merge``, ``strategic`` or ``json``. Raises ``ApiError``."""
        with self.lock:
            current = self._objects[kind].get((namespace, name))
            if current is None:
                raise not_found(kind, name)
            patched = apply_patch(current, body, patch_type)
            check_version(kind, name, current, patched)
            if kind == "Lease":
                check_lease_body(patched)
                validate_lease(patched)
            if kind == "ConfigMap":
                check_configmap_body(patched)
                validate_configmap(patched)
            for key in ("uid", "creationTimestamp", "generation", "namespace", "name"):
                if key in current["metadata"]:
                    patched["metadata"][key] = current["metadata"][key]
            if kind == "Deployment":
                patched["status"] = current["status"]
                # Like the apiserver's Deployment strategy: spec or annotation changes bump generation, labels do not.
                if patched["spec"] != current["spec"] or _annotations(patched) != _annotations(current):
                    patched["metadata"]["generation"] = current["metadata"].get("generation", 1) + 1
            if patched != current:
                self._store(kind, patched)
            if kind == "Deployment":
                self._reconcile(patched, self.clock.now())
            return copy.deepcopy(self._objects[kind][(namespace, name)])

    def delete(self, kind: str, namespace: str, name: str) -> dict:
        """DELETE an object that has no finalizers or dependents (ConfigMaps): gone at once. Returns the
        apiserver's success ``Status``; a missing object is a 404."""
        with self.lock:
            current = self._objects[kind].get((namespace, name))
            if current is None:
                raise not_found(kind, name)
            self._drop(kind, (namespace, name))
            resource, group = RESOURCE[kind]
            return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                    "details": {"name": name, "group": group, "kind": resource, "uid": current["metadata"]["uid"]}}

    def replace(self, kind: str, namespace: str, name: str, obj) -> tuple[int, dict]:
        """PUT an object (Leases only): (201, created) when it did not exist, else (200, replaced). A stale
        ``metadata.resourceVersion`` is a 409 Conflict; a missing one a 422, like the Lease strategy."""
        check_lease_body(obj)
        meta = obj.setdefault("metadata", {})
        if meta.get("name", name) != name:
            raise ApiError(400, "BadRequest", f"the name of the object ({meta['name']}) does not match the name on "
                                              f"the URL ({name})")
        with self.lock:
            current = self._objects[kind].get((namespace, name))
            if current is None:
                meta.pop("resourceVersion", None)
                meta["name"] = name
                return 201, self.create(kind, namespace, obj)
            require_resource_version(obj)
            check_version(kind, name, current, obj)
            for key in ("uid", "creationTimestamp"):
                meta[key] = current["metadata"][key]
            meta["namespace"] = namespace
            obj.update(apiVersion=current["apiVersion"], kind=kind)
            validate_lease(obj)
            if obj != current:
                self._store(kind, obj)
            return 200, copy.deepcopy(self._objects[kind][(namespace, name)])

    def get_scale(self, namespace: str, name: str) -> dict:
        """The autoscaling/v1 Scale of a Deployment. Raises ``ApiError`` 404."""
        with self.lock:
            dep = self._objects["Deployment"].get((namespace, name))
            if dep is None:
                raise not_found("Scale", name)
            meta = dep["metadata"]
            return {"kind": "Scale", "apiVersion": "autoscaling/v1",
                    "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion",
                                                     "creationTimestamp")},
                    "spec": {"replicas": dep["spec"]["replicas"]},
                    "status": {"replicas": dep["status"].get("replicas", 0),
                               "selector": ",".join(f"{k}={v}" for k, v in
                                                    sorted(dep["spec"]["selector"]["matchLabels"].items()))}}

    def patch_scale(self, namespace: str, name: str, body, patch_type: str = "merge") -> dict:
        """PATCH the scale subresource; returns the new Scale."""
        with self.lock:
            if (namespace, name) not in self._objects["Deployment"]:
                raise not_found("Deployment", name)  # the real PATCH names the Deployment, GET the scale
            scale = self.get_scale(namespace, name)
            patched = apply_patch(scale, body, patch_type)
            check_version("Deployment", name, scale, patched)
            replicas = patched.get("spec", {}).get("replicas")
            if not isinstance(replicas, int) or replicas < 0:
                raise ApiError(422, "Invalid", f'Scale.autoscaling "{name}" is invalid: spec.replicas: Invalid '
                                               f"value: {replicas!r}: must be greater than or equal to 0")
            self.patch("Deployment", namespace, name, {"spec": {"replicas": replicas}})
            return self.get_scale(namespace, name)

    def scale(self, namespace: str, name: str, replicas: int) -> dict:
        """Set a Deployment's replicas (what ``kubectl scale`` does); returns the new Scale."""
        return self.patch_scale(namespace, name, {"spec": {"replicas": int(replicas)}})

    # --- convenience for scenarios and workloads ------------------------------------------------------------
    def add_namespace(self, name: str) -> dict:
        """Create the namespace unless it exists."""
        with self.lock:
            existing = self._objects["Namespace"].get(("", name))
            return copy.deepcopy(existing) if existing else self.create("Namespace", "", ob.namespace(name))

    def add_deployment(self, namespace: str, name: str, replicas: int = 2, image: str | None = None,
                       labels: dict | None = None, service: bool = True, containers_port: int = 8080,
                       memory_limit: str = "512Mi", pod_labels: dict | None = None) -> dict:
        """A Deployment with its first ReplicaSet (revision 1), Ready pods and (by default) a Service."""
        with self.lock:
            self.add_namespace(namespace)
            dep = ob.deployment(namespace, name, replicas, image or f"registry.local/{name}:1.0",
                                {"app": name, **(labels or {})}, containers_port, memory_limit, pod_labels)
            dep["metadata"]["generation"] = 1
            self._store("Deployment", dep)
            if service:
                self._store("Service", ob.service(namespace, name, containers_port,
                                                  f"10.96.0.{10 + self._next_serial() % 240}"))
            self._reconcile(dep, self.clock.now(), instant=True)
            return copy.deepcopy(self._objects["Deployment"][(namespace, name)])

    def emit_event(self, namespace: str, involved: dict, reason: str, message: str, type: str = "Normal",
                   component: str = "aiops-sim", ts: float | None = None) -> dict:
        """Record an Event about ``involved`` (an object dict or an involvedObject-shaped dict)."""
        with self.lock:
            if "metadata" in involved:
                meta = involved["metadata"]
                involved = {"apiVersion": involved.get("apiVersion", ""), "kind": involved.get("kind", ""),
                            "name": meta["name"], "namespace": meta.get("namespace", namespace),
                            "uid": meta.get("uid"), "resourceVersion": meta.get("resourceVersion")}
            ts = self.clock.now() if ts is None else ts
            same = next((e for (n, _), e in reversed(self._objects["Event"].items())
                         if n == namespace and e["reason"] == reason and e["message"] == message
                         and e["involvedObject"].get("name") == involved.get("name")
                         and e["involvedObject"].get("kind") == involved.get("kind")), None)
            if same is not None:  # the event recorder's aggregation: one Event with a count
                same["count"] = same.get("count", 1) + 1
                same["lastTimestamp"] = ob.rfc3339(ts)
                self._store("Event", same)
                return copy.deepcopy(same)
            name = f"{involved.get('name', 'unknown')}.{ob.safe_suffix(16, 'event', self._next_serial())}"
            ev = ob.event(namespace, name, involved, reason, message, type, component, ts)
            return self.create("Event", namespace, ev)

    def pod_runtime(self, namespace: str, pod: str) -> PodRuntime | None:
        """A copy of the kubelet state of a pod."""
        with self.lock:
            rt = self._pods.get((namespace, pod))
            return copy.copy(rt) if rt else None

    def workload_pods(self, namespace: str, app: str) -> list[tuple[str, str, PodRuntime]]:
        """(pod name, container image, kubelet state copy) of the pods labelled ``app=<app>``, by name.

        A cheap read for the workload simulator, which asks every step.
        """
        with self.lock:
            return [(name, p["spec"]["containers"][0]["image"], copy.copy(self._pods[(ns, name)]))
                    for (ns, name), p in sorted(self._objects["Pod"].items())
                    if ns == namespace and p["metadata"].get("labels", {}).get("app") == app
                    and (ns, name) in self._pods]

    def deployment_replicas(self, namespace: str, name: str) -> tuple[int, int] | None:
        """(spec.replicas, status.availableReplicas) of a Deployment, or None."""
        with self.lock:
            dep = self._objects["Deployment"].get((namespace, name))
            return (dep["spec"]["replicas"], dep["status"].get("availableReplicas", 0)) if dep else None

    def restart_container(self, namespace: str, pod: str, now: float, reason: str = "OOMKilled",
                          exit_code: int = 137, backoff_seconds: float = 10.0) -> None:
        """The container died and the kubelet restarted it: restartCount + 1, unready for ``backoff_seconds``."""
        with self.lock:
            rt = self._pods.get((namespace, pod))
            if rt is None:
                return
            rt.last_terminated = {"exitCode": exit_code, "reason": reason, "startedAt": ob.rfc3339(rt.started),
                                  "finishedAt": ob.rfc3339(now),
                                  "containerID": "containerd://" + ob.safe_suffix(20, pod, rt.restarts)}
            rt.restarts += 1
            rt.started = now
            rt.ready_at = now + backoff_seconds
            self._render_pod(namespace, pod)

    def append_log(self, namespace: str, pod: str, ts: float, line: str) -> None:
        """The container wrote ``line`` at ``ts``."""
        with self.lock:
            if (namespace, pod) in self._pods:
                self._logs.setdefault((namespace, pod), deque(maxlen=self._max_log_lines)).append((ts, line))

    def read_log(self, namespace: str, pod: str, since_seconds: float | None = None, tail_lines: int | None = None,
                 timestamps: bool = False) -> str | None:
        """The pod's log like the kubelet serves it; None when the pod does not exist."""
        with self.lock:
            if (namespace, pod) not in self._pods:
                return None
            lines = list(self._logs.get((namespace, pod), ()))
            now = self.clock.now()
        if since_seconds is not None:
            lines = [(ts, l) for ts, l in lines if ts >= now - since_seconds]
        if tail_lines is not None:
            lines = lines[-tail_lines:] if tail_lines > 0 else []
        return "".join((f"{ob.rfc3339_nano(ts)} {l}\n" if timestamps else f"{l}\n") for ts, l in lines)

    def backdate(self, seconds: float) -> None:
        """Pretend everything was created ``seconds`` earlier (so prefilled history has its pods)."""
        with self.lock:
            for rt in self._pods.values():
                rt.created -= seconds
                rt.started -= seconds
                rt.ready_at -= seconds
            for kind in ("Namespace", "Deployment", "ReplicaSet", "Service", "Pod"):
                for obj in self._objects[kind].values():
                    ts = ob.parse_rfc3339(obj["metadata"]["creationTimestamp"])
                    obj["metadata"]["creationTimestamp"] = ob.rfc3339(ts - seconds)
            for ev in self._objects["Event"].values():
                for key in ("firstTimestamp", "lastTimestamp"):
                    ev[key] = ob.rfc3339(ob.parse_rfc3339(ev[key]) - seconds)
            for ns, name in list(self._pods):
                self._render_pod(ns, name)

    # --- controllers --------------------------------------------------------------------------------------
    def tick(self, now: float | None = None) -> None:
        """Run the controllers and the kubelet once at ``now``."""
        now = self.clock.now() if now is None else now
        with self.lock:
            for ns, name in list(self._pods):
                self._render_pod(ns, name, now)
            for dep in list(self._objects["Deployment"].values()):
                self._reconcile(dep, now)

    def _reconcile(self, dep: dict, now: float, instant: bool = False) -> None:
        ns, uid = dep["metadata"]["namespace"], dep["metadata"]["uid"]
        owned = [rs for (n, _), rs in self._objects["ReplicaSet"].items() if n == ns and _owner_uid(rs) == uid]
        pod_hash = ob.template_hash(dep["spec"]["template"])
        newest = max((_revision(rs) for rs in owned), default=0)
        new = next((rs for rs in owned if rs["metadata"]["labels"].get(ob.TEMPLATE_HASH_LABEL) == pod_hash), None)
        if new is None:
            new = ob.replica_set(dep, pod_hash, newest + 1)
            self._store("ReplicaSet", new)
            owned.append(new)
        elif _revision(new) < newest:
            new["metadata"]["annotations"][ob.REVISION_ANNOTATION] = str(newest + 1)
            self._store("ReplicaSet", new)
        copied = {k: v for k, v in _annotations(dep).items() if k not in _NOT_COPIED}
        if any(new["metadata"]["annotations"].get(k) != v for k, v in copied.items()):
            new["metadata"]["annotations"].update(copied)  # the controller adds and overwrites, never removes
            self._store("ReplicaSet", new)
        desired = dep["spec"]["replicas"]
        if new["spec"]["replicas"] != desired:
            self._scale_rs(dep, new, desired, now)
        for rs in owned:
            self._claim_pods(rs)
        for rs in owned:
            self._sync_pods(rs, now, instant)
        new_ready = sum(self._is_ready(p, now) for p in self._pods_of(new))
        if new_ready >= desired:
            for rs in owned:
                if rs is not new and rs["spec"]["replicas"] > 0:
                    self._scale_rs(dep, rs, 0, now)
                    self._sync_pods(rs, now, instant)
        self._prune_history(dep, new, owned)
        for rs in owned:
            self._update_rs_status(rs, now)
        self._update_deployment_status(dep, new, owned, now)

    def _prune_history(self, dep: dict, new: dict, owned: list[dict]) -> None:
        # Like the controller: keep only revisionHistoryLimit scaled-down ReplicaSets (bounds memory too).
        idle = sorted((rs for rs in owned if rs is not new and rs["spec"]["replicas"] == 0
                       and not self._pods_of(rs)), key=_revision)
        for rs in idle[:max(0, len(idle) - dep["spec"].get("revisionHistoryLimit", 10))]:
            self._drop("ReplicaSet", (rs["metadata"]["namespace"], rs["metadata"]["name"]))
            owned.remove(rs)

    def _scale_rs(self, dep: dict, rs: dict, replicas: int, now: float) -> None:
        verb = "up" if replicas > rs["spec"]["replicas"] else "down"
        rs["spec"]["replicas"] = replicas
        rs["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"] = str(dep["spec"]["replicas"])
        self._store("ReplicaSet", rs)
        self.emit_event(dep["metadata"]["namespace"], dep, "ScalingReplicaSet",
                        f"Scaled {verb} replica set {rs['metadata']['name']} to {replicas}",
                        component="deployment-controller", ts=now)

    def _sync_pods(self, rs: dict, now: float, instant: bool) -> None:
        ns = rs["metadata"]["namespace"]
        pods = self._pods_of(rs)
        for _ in range(rs["spec"]["replicas"] - len(pods)):
            serial = self._next_serial()
            name = f"{rs['metadata']['name']}-{ob.safe_suffix(5, rs['metadata']['uid'], serial)}"
            p = ob.pod(rs, name, self.node, f"10.244.{serial // 250 % 250}.{serial % 250 + 2}")
            self._pods[(ns, name)] = PodRuntime(now, now, now if instant else now + self.rollout_seconds)
            self._store("Pod", p)
            self._render_pod(ns, name, now)
        excess = len(pods) - rs["spec"]["replicas"]
        if excess > 0:
            # Like the controller: unready pods go first, then the youngest.
            victims = sorted(pods, key=lambda p: (self._is_ready(p, now),
                                                  -self._pods[(ns, p["metadata"]["name"])].created))[:excess]
            for p in victims:
                key = (ns, p["metadata"]["name"])
                self._drop("Pod", key)
                self._pods.pop(key, None)
                self._logs.pop(key, None)

    def _claim_pods(self, rs: dict) -> None:
        """Like the ReplicaSet controller: release owned pods whose labels left the selector (the pod keeps
        running, the ReplicaSet replaces it) and adopt orphans that match it again."""
        ns, uid = rs["metadata"]["namespace"], rs["metadata"]["uid"]
        selector = rs["spec"]["selector"]["matchLabels"]
        for (n, _), p in list(self._objects["Pod"].items()):
            if n != ns:
                continue
            labels = p["metadata"].get("labels") or {}
            matches = all(labels.get(k) == v for k, v in selector.items())
            owner = _owner_uid(p)
            if owner == uid and not matches:
                p["metadata"]["ownerReferences"] = []
                self._store("Pod", p)
            elif owner is None and matches:
                p["metadata"]["ownerReferences"] = [ob.owner_reference(rs)]
                self._store("Pod", p)

    def _update_rs_status(self, rs: dict, now: float) -> None:
        pods = self._pods_of(rs)
        ready = sum(self._is_ready(p, now) for p in pods)
        status = {"replicas": len(pods), "fullyLabeledReplicas": len(pods), "readyReplicas": ready,
                  "availableReplicas": ready, "observedGeneration": 1}
        if rs["status"] != status:
            rs["status"] = status
            self._store("ReplicaSet", rs)

    def _update_deployment_status(self, dep: dict, new: dict, owned: list[dict], now: float) -> None:
        pods = [p for rs in owned for p in self._pods_of(rs)]
        ready = sum(self._is_ready(p, now) for p in pods)
        status = ob.deployment_status(dep["metadata"].get("generation", 1), dep["spec"]["replicas"], len(pods),
                                      len(self._pods_of(new)), ready, new["metadata"]["name"])
        annotations = dep["metadata"].setdefault("annotations", {})
        revision = new["metadata"]["annotations"][ob.REVISION_ANNOTATION]
        old_status = copy.deepcopy(dep["status"])
        for cond in old_status.get("conditions", []):
            cond.pop("lastUpdateTime", None), cond.pop("lastTransitionTime", None)
        if old_status != status or annotations.get(ob.REVISION_ANNOTATION) != revision:
            stamp = ob.rfc3339(now)
            for cond in status["conditions"]:
                cond["lastUpdateTime"] = cond["lastTransitionTime"] = stamp
            dep["status"] = status
            annotations[ob.REVISION_ANNOTATION] = revision
            self._store("Deployment", dep)

    # --- internals ----------------------------------------------------------------------------------------
    def _pods_of(self, rs: dict) -> list[dict]:
        ns, uid = rs["metadata"]["namespace"], rs["metadata"]["uid"]
        return [p for (n, _), p in self._objects["Pod"].items() if n == ns and _owner_uid(p) == uid]

    def _is_ready(self, p: dict, now: float) -> bool:
        rt = self._pods.get((p["metadata"]["namespace"], p["metadata"]["name"]))
        return bool(rt) and rt.ready_at <= now

    def _render_pod(self, namespace: str, name: str, now: float | None = None) -> None:
        now = self.clock.now() if now is None else now
        rt, p = self._pods.get((namespace, name)), self._objects["Pod"].get((namespace, name))
        if rt is None or p is None:
            return
        ready = rt.ready_at <= now
        status = ob.pod_status(p, rt.created, rt.started, ready, rt.restarts, rt.last_terminated)
        if status != p["status"]:
            p["status"] = status
            rt.shown_ready = ready
            self._store("Pod", p)

    def _store(self, kind: str, obj: dict) -> None:
        self._rv += 1
        meta = obj["metadata"]
        meta["resourceVersion"] = str(self._rv)
        meta.setdefault("uid", ob.stable_uid(kind, meta.get("namespace", ""), meta["name"], self._rv))
        meta.setdefault("creationTimestamp", ob.rfc3339(self.clock.now()))
        self._objects[kind][(meta.get("namespace", "") if kind != "Namespace" else "", meta["name"])] = obj
        self.changes.record(self._rv, kind, obj)

    def _drop(self, kind: str, key: tuple[str, str]) -> None:
        """Delete a stored object: a write of its own (a resourceVersion), which watches see."""
        obj = self._objects[kind].pop(key)
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        self.changes.record(self._rv, kind, obj, deleted=True)

    def _trim_events(self, namespace: str) -> None:
        keys = [k for k in self._objects["Event"] if k[0] == namespace]
        for key in keys[:max(0, len(keys) - self._max_events)]:
            self._drop("Event", key)

    def _next_serial(self) -> int:
        self._serial += 1
        return self._serial


def _annotations(obj: dict) -> dict:
    return obj["metadata"].get("annotations") or {}


def _owner_uid(obj: dict) -> str | None:
    refs = obj["metadata"].get("ownerReferences") or []
    return refs[0]["uid"] if refs else None


def _revision(rs: dict) -> int:
    return int(rs["metadata"].get("annotations", {}).get(ob.REVISION_ANNOTATION, "0"))
