"""What the simulated apiserver serves, and the discovery documents that tell clients so.

``RESOURCES`` is the one list of served resources: the router takes each one's verbs from it, and ``/api``,
``/apis``, ``/api/v1`` and ``/apis/<group>/<version>`` describe exactly it (short names and categories included, so
``kubectl get deploy,po`` and ``kubectl get all`` resolve). Like kube-apiserver v1.20, there is no aggregated
discovery: a client asking for it gets the plain documents (``application/json``) and falls back to them.
"""

from __future__ import annotations

from dataclasses import dataclass

READ = ("get", "list", "watch")


@dataclass(frozen=True, slots=True)
class Resource:
    """One served resource (``plural`` in ``group``/``version``) and the verbs the simulator answers on it."""

    plural: str
    kind: str
    group: str
    version: str
    verbs: tuple[str, ...]
    namespaced: bool = True
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()

    @property
    def group_version(self) -> str:
        """``apps/v1``, or ``v1`` for the core group: what its objects' ``apiVersion`` says."""
        return f"{self.group}/{self.version}" if self.group else self.version


@dataclass(frozen=True, slots=True)
class Subresource:
    """A served subresource (``pods/log``); ``group``/``version`` name its kind's own when that lives elsewhere."""

    name: str
    kind: str
    group_version: str
    verbs: tuple[str, ...]
    group: str = ""
    version: str = ""


RESOURCES = (
    Resource("configmaps", "ConfigMap", "", "v1", (*READ, "create", "delete", "patch"), short_names=("cm",)),
    Resource("events", "Event", "", "v1", (*READ, "create", "patch"), short_names=("ev",)),
    Resource("namespaces", "Namespace", "", "v1", (*READ, "create", "patch"), namespaced=False,
             short_names=("ns",)),
    Resource("pods", "Pod", "", "v1", (*READ, "patch"), short_names=("po",), categories=("all",)),
    Resource("services", "Service", "", "v1", (*READ, "patch"), short_names=("svc",), categories=("all",)),
    Resource("deployments", "Deployment", "apps", "v1", (*READ, "patch"), short_names=("deploy",),
             categories=("all",)),
    Resource("replicasets", "ReplicaSet", "apps", "v1", (*READ, "patch"), short_names=("rs",), categories=("all",)),
    Resource("leases", "Lease", "coordination.k8s.io", "v1", (*READ, "create", "patch", "update")),
    # Kubernetes 1.20 serves PodDisruptionBudgets only as policy/v1beta1, and so does the simulator.
    Resource("poddisruptionbudgets", "PodDisruptionBudget", "policy", "v1beta1", (*READ, "create", "patch"),
             short_names=("pdb",)),
)
SUBRESOURCES = (
    Subresource("pods/log", "Pod", "v1", ("get",)),
    Subresource("deployments/scale", "Scale", "apps/v1", ("get", "patch"), group="autoscaling", version="v1"),
)
GROUP_VERSIONS = tuple(dict.fromkeys(r.group_version for r in RESOURCES))


def find(group: str, version: str, plural: str) -> Resource | None:
    """The served resource at ``/apis/<group>/<version>/<plural>`` (group "" is ``/api/v1``), or None."""
    return next((r for r in RESOURCES if (r.group, r.version, r.plural) == (group, version, plural)), None)


def subresource(resource: Resource, name: str) -> Subresource | None:
    """The served subresource ``name`` of ``resource`` (``log`` of pods), or None."""
    return next((s for s in SUBRESOURCES if s.name == f"{resource.plural}/{name}"
                 and s.group_version == resource.group_version), None)


def of_kind(kind: str) -> Resource:
    """The served resource holding objects of ``kind``."""
    return next(r for r in RESOURCES if r.kind == kind)


def document(path: str, server_address: str) -> dict | None:
    """The discovery document at ``path`` (``/api``, ``/apis``, ``/api/v1``, ``/apis/apps``, ``/apis/apps/v1``),
    or None for any other path. ``server_address`` is the ``host:port`` clients reach the server at."""
    if path == "/api":
        return {"kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}
    if path == "/apis":
        return {"kind": "APIGroupList", "apiVersion": "v1",
                "groups": [_group(name) for name in dict.fromkeys(r.group for r in RESOURCES if r.group)]}
    if path == "/api/v1":
        return _resource_list("v1")
    if path.startswith("/apis/"):
        rest = path[len("/apis/"):]
        if rest in {r.group for r in RESOURCES}:
            return {"kind": "APIGroup", "apiVersion": "v1", **_group(rest)}
        if "/" in rest and rest in GROUP_VERSIONS:
            return _resource_list(rest)
    return None


def _group(name: str) -> dict:
    versions = [{"groupVersion": gv, "version": gv.split("/")[1]}
                for gv in GROUP_VERSIONS if gv.split("/")[0] == name and "/" in gv]
    return {"name": name, "versions": versions, "preferredVersion": versions[0]}


def _resource_list(group_version: str) -> dict:
    entries = []
    for r in RESOURCES:
        if r.group_version != group_version:
            continue
        entry = {"name": r.plural, "singularName": "", "namespaced": r.namespaced, "kind": r.kind,
                 "verbs": sorted(r.verbs)}
        if r.short_names:
            entry["shortNames"] = list(r.short_names)
        if r.categories:
            entry["categories"] = list(r.categories)
        entries.append(entry)
        for s in SUBRESOURCES:
            if s.group_version == group_version and s.name.split("/")[0] == r.plural:
                entries.append({"name": s.name, "singularName": "", "namespaced": r.namespaced, "kind": s.kind,
                                "verbs": sorted(s.verbs),
                                **({"group": s.group, "version": s.version} if s.group else {})})
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": entries}
