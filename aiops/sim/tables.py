"""Server-side printing: the ``meta.k8s.io`` Table kube-apiserver v1.20 answers when a client asks for one.

``kubectl get`` sends ``Accept: application/json;as=Table;v=v1;g=meta.k8s.io`` and prints the columns the server
chooses: the same columns (``tablecolumns``), cells and priorities (1 = only with ``-o wide``) as the apiserver's
printers for each kind the simulator serves. Ages count on the cluster's clock: a simulated cluster ages in sim time.
"""

from __future__ import annotations

from aiops.sim import objects as ob
from aiops.sim.tablecolumns import COLUMNS

TABLE_GROUP = "meta.k8s.io"
INCLUDE_OBJECT = ("None", "Metadata", "Object")


def table_version(accept: str | None) -> str | None:
    """``v1`` or ``v1beta1`` when the ``Accept`` header's first choice is a Table, else None (plain objects)."""
    for media in (accept or "").split(","):
        params = dict(p.strip().split("=", 1) for p in media.split(";")[1:] if "=" in p)
        if media.split(";")[0].strip() not in ("application/json", "*/*"):
            continue
        if params.get("as") == "Table" and params.get("g") == TABLE_GROUP and params.get("v") in ("v1", "v1beta1"):
            return params["v"]
        return None
    return None


def table(kind: str, objects: list[dict], now: float, resource_version: str, version: str = "v1",
          include_object: str = "Metadata", headers: bool = True) -> dict:
    """The Table of ``objects`` (of ``kind``) at time ``now``; ``include_object`` is what each row carries:
    ``None`` (null), its ``Metadata`` (a PartialObjectMetadata) or the whole ``Object``. Without ``headers`` the
    columns are left out, as in a watch's events after the first."""
    rows = []
    for obj in objects:
        embedded = None
        if include_object == "Metadata":
            embedded = {"kind": "PartialObjectMetadata", "apiVersion": f"{TABLE_GROUP}/{version}",
                        "metadata": obj["metadata"]}
        elif include_object == "Object":
            embedded = obj
        rows.append({"cells": _CELLS[kind](obj, now), "object": embedded})
    return {"kind": "Table", "apiVersion": f"{TABLE_GROUP}/{version}",
            "metadata": {"resourceVersion": resource_version},
            "columnDefinitions": [dict(c) for c in COLUMNS[kind]] if headers else [], "rows": rows}


def human_duration(seconds: float) -> str:
    """An age as kubectl and the apiserver print it (``duration.HumanDuration``): ``45s``, ``3m20s``, ``5h12m``."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes, hours = s // 60, s // 3600
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if hours < 24 * 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    if hours < 24 * 365 * 2:
        return f"{days}d"
    if hours < 24 * 365 * 8:
        return f"{days // 365}y{days % 365}d" if days % 365 else f"{days // 365}y"
    return f"{days // 365}y"


def _age(obj: dict, now: float, key: str = "creationTimestamp") -> str:
    stamp = obj["metadata"].get(key) if key == "creationTimestamp" else obj.get(key)
    return human_duration(now - ob.parse_rfc3339(stamp)) if stamp else "<unknown>"


def _labels(labels: dict | None) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted((labels or {}).items())) or "<none>"


def _containers(obj: dict) -> list[str]:
    containers = obj["spec"]["template"]["spec"]["containers"]
    return [",".join(c["name"] for c in containers), ",".join(c.get("image", "") for c in containers),
            ",".join(f"{k}={v}" for k, v in sorted(obj["spec"]["selector"].get("matchLabels", {}).items()))]


def _pod(p: dict, now: float) -> list:
    status = p.get("status") or {}
    reason = status.get("reason") or status.get("phase", "")
    ready = restarts = 0
    running = False
    for c in reversed(status.get("containerStatuses") or []):
        restarts += c.get("restartCount", 0)
        state = c.get("state") or {}
        waiting, terminated = state.get("waiting") or {}, state.get("terminated")
        if waiting.get("reason"):
            reason = waiting["reason"]
        elif terminated is not None:
            reason = terminated.get("reason") or (f"Signal:{terminated['signal']}" if terminated.get("signal")
                                                  else f"ExitCode:{terminated.get('exitCode', 0)}")
        elif c.get("ready") and "running" in state:
            running = True
            ready += 1
    if reason == "Completed" and running:
        reason = "Running"
    if p["metadata"].get("deletionTimestamp"):
        reason = "Terminating"
    gates = p["spec"].get("readinessGates") or []
    true = {c["type"] for c in status.get("conditions") or [] if c.get("status") == "True"}
    return [p["metadata"]["name"], f"{ready}/{len(p['spec']['containers'])}", reason, restarts, _age(p, now),
            (status.get("podIPs") or [{}])[0].get("ip") or "<none>", p["spec"].get("nodeName") or "<none>",
            status.get("nominatedNodeName") or "<none>",
            f"{sum(g['conditionType'] in true for g in gates)}/{len(gates)}" if gates else "<none>"]


def _deployment(d: dict, now: float) -> list:
    status = d.get("status") or {}
    return [d["metadata"]["name"], f"{status.get('readyReplicas', 0)}/{d['spec'].get('replicas', 0)}",
            status.get("updatedReplicas", 0), status.get("availableReplicas", 0), _age(d, now), *_containers(d)]


def _replica_set(rs: dict, now: float) -> list:
    status = rs.get("status") or {}
    return [rs["metadata"]["name"], rs["spec"].get("replicas", 0), status.get("replicas", 0),
            status.get("readyReplicas", 0), _age(rs, now), *_containers(rs)]


def _service(svc: dict, now: float) -> list:
    spec = svc["spec"]
    ports = ",".join(f"{p['port']}:{p['nodePort']}/{p.get('protocol', 'TCP')}" if p.get("nodePort")
                     else f"{p['port']}/{p.get('protocol', 'TCP')}" for p in spec.get("ports") or [])
    return [svc["metadata"]["name"], spec.get("type", "ClusterIP"), (spec.get("clusterIPs") or ["<none>"])[0],
            ",".join(spec.get("externalIPs") or []) or "<none>", ports or "<none>", _age(svc, now),
            _labels(spec.get("selector"))]


def _event(e: dict, now: float) -> list:
    involved, source = e.get("involvedObject") or {}, e.get("source") or {}
    first = _age(e, now, "firstTimestamp") if e.get("firstTimestamp") else _age(e, now, "eventTime")
    last = _age(e, now, "lastTimestamp") if e.get("lastTimestamp") else first
    target = involved.get("kind", "").lower() + (f"/{involved['name']}" if involved.get("name") else "")
    return [last, e.get("type", ""), e.get("reason", ""), target, involved.get("fieldPath", ""),
            ", ".join(filter(None, (source.get("component"), source.get("host")))),
            (e.get("message") or "").strip(), first, e.get("count", 0), e["metadata"]["name"]]


def _pdb(pdb: dict, now: float) -> list:
    spec = pdb.get("spec") or {}
    return [pdb["metadata"]["name"], str(spec.get("minAvailable", "N/A")), str(spec.get("maxUnavailable", "N/A")),
            (pdb.get("status") or {}).get("disruptionsAllowed", 0), _age(pdb, now)]


_CELLS = {"Pod": _pod, "Deployment": _deployment, "ReplicaSet": _replica_set, "Service": _service, "Event": _event,
          "Namespace": lambda n, now: [n["metadata"]["name"], (n.get("status") or {}).get("phase", ""), _age(n, now)],
          "ConfigMap": lambda c, now: [c["metadata"]["name"],
                                       len(c.get("data") or {}) + len(c.get("binaryData") or {}), _age(c, now)],
          "Lease": lambda le, now: [le["metadata"]["name"], (le.get("spec") or {}).get("holderIdentity") or "",
                                    _age(le, now)],
          "PodDisruptionBudget": _pdb}
