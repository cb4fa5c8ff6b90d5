"""A real HTTP server speaking the Kubernetes REST API over a ``SimCluster``.

Just enough of core/v1, apps/v1 and coordination.k8s.io/v1 for the agent (pods, logs, events, services, namespaces,
deployments and their scale subresource, replicasets, leases for leader election, configmaps for the shared
journal), with the apiserver's Status errors, so the official client runs unchanged.
"""

from __future__ import annotations

import json
import re
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

from aiops.sim import objects as ob
from aiops.sim.httpserver import BackgroundHttpServer
from aiops.sim.apierrors import ApiError, not_found
from aiops.sim.cluster import SimCluster
from aiops.sim.selectors import SelectorError

PATCH_CONTENT_TYPES = {"application/merge-patch+json": "merge",
                       "application/strategic-merge-patch+json": "strategic",
                       "application/json-patch+json": "json"}
CORE = {"pods": "Pod", "events": "Event", "services": "Service", "namespaces": "Namespace", "configmaps": "ConfigMap"}
APPS = {"deployments": "Deployment", "replicasets": "ReplicaSet"}
POLICY = {"poddisruptionbudgets": "PodDisruptionBudget"}
COORDINATION = {"leases": "Lease"}
_CORE_NS = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/(?P<res>pods|events|services|configmaps)"
                      r"(?:/(?P<name>[^/]+)(?:/(?P<sub>log))?)?$")
_APPS_NS = re.compile(r"^/apis/apps/v1/namespaces/(?P<ns>[^/]+)/(?P<res>deployments|replicasets)"
                      r"(?:/(?P<name>[^/]+)(?:/(?P<sub>scale))?)?$")
# Kubernetes 1.20 serves PodDisruptionBudgets only as policy/v1beta1, and so does the simulator.
_POLICY_NS = re.compile(r"^/apis/policy/v1beta1/namespaces/(?P<ns>[^/]+)/poddisruptionbudgets(?:/(?P<name>[^/]+))?$")
_LEASES = re.compile(r"^/apis/coordination\.k8s\.io/v1/namespaces/(?P<ns>[^/]+)/leases(?:/(?P<name>[^/]+))?$")
_NAMESPACES = re.compile(r"^/api/v1/namespaces(?:/(?P<name>[^/]+))?$")
_ALL_NS = re.compile(r"^/(?:api/v1|apis/apps/v1)/(?P<res>pods|events|services|deployments|replicasets)$")

VERSION = {"major": "1", "minor": "20", "gitVersion": "v1.20.2-aiops-sim", "gitCommit": "0" * 40,
           "gitTreeState": "clean", "buildDate": "2021-01-13T13:20:00Z", "goVersion": "go1.19.8",
           "compiler": "gc", "platform": "linux/amd64"}


class KubeApiServer(BackgroundHttpServer):
    """Serves ``cluster`` on ``host:port`` (0 = a free port) from a background thread."""

    thread_name = "sim-kube-api"

    def __init__(self, cluster: SimCluster, host: str = "127.0.0.1", port: int = 0, token: str | None = None) -> None:
        self.cluster = cluster
        self.token = token
        super().__init__(_make_handler(self), host, port)

    # --- request handling (called from handler threads) ---------------------------------------------------
    def handle(self, method: str, path: str, query: dict, headers, body: bytes) -> tuple[int, str, bytes]:
        """Answer one request: (status code, content type, body)."""
        if self.token is not None and headers.get("Authorization", "") != f"Bearer {self.token}":
            return _json(401, ob.status(401, "Unauthorized", "Unauthorized"))
        try:
            return self._route(method, path, query, headers, body)
        except ApiError as exc:
            return _json(exc.code, exc.status)
        except SelectorError as exc:
            return _json(400, ob.status(400, "BadRequest", f"unable to parse requirement: {exc}"))

    def _route(self, method, path, query, headers, body):
        static = {"/version": VERSION, "/api": _api_versions(self.url), "/apis": _API_GROUPS,
                  "/api/v1": _resource_list("v1", CORE), "/apis/apps/v1": _resource_list("apps/v1", APPS),
                  "/apis/policy/v1beta1": _resource_list("policy/v1beta1", POLICY),
                  "/apis/coordination.k8s.io": {"kind": "APIGroup", "apiVersion": "v1",
                                                **_group("coordination.k8s.io", "v1")},
                  "/apis/coordination.k8s.io/v1": _resource_list("coordination.k8s.io/v1", COORDINATION)}
        if path in static and method == "GET":
            return _json(200, static[path])
        if m := _CORE_NS.match(path):
            return self._resource(method, CORE[m["res"]], m["ns"], m["name"], m["sub"], query, headers, body)
        if m := _APPS_NS.match(path):
            return self._resource(method, APPS[m["res"]], m["ns"], m["name"], m["sub"], query, headers, body)
        if m := _POLICY_NS.match(path):
            return self._resource(method, "PodDisruptionBudget", m["ns"], m["name"], None, query, headers, body)
        if m := _LEASES.match(path):
            return self._lease(method, m["ns"], m["name"], query, headers, body)
        if m := _NAMESPACES.match(path):
            return self._resource(method, "Namespace", "", m["name"], None, query, headers, body)
        if (m := _ALL_NS.match(path)) and method == "GET":
            kind = {**CORE, **APPS}[m["res"]]
            return _json(200, self._list(kind, None, query))
        return _json(404, ob.status(404, "NotFound", "the server could not find the requested resource"))

    def _resource(self, method, kind, ns, name, sub, query, headers, body):
        if sub == "log":
            return self._log(ns, name, query) if method == "GET" else _method_not_allowed()
        if sub == "scale":
            if method == "GET":
                return _json(200, self.cluster.get_scale(ns, name))
            if method == "PATCH":
                patch_type, doc = _patch_body(headers, body)
                return _json(200, self.cluster.patch_scale(ns, name, doc, patch_type))
            return _method_not_allowed()
        if name is None:
            if method == "GET":
                return _json(200, self._list(kind, ns, query))
            if method == "POST" and kind in ("Event", "Namespace", "PodDisruptionBudget", "ConfigMap"):
                return _json(201, self.cluster.create(kind, ns, _parse_json(body)))
            return _method_not_allowed()
        if method == "GET":
            obj = self.cluster.get(kind, ns, name)
            if obj is None:
                raise not_found(kind, name)
            return _json(200, obj)
        if method == "PATCH":
            patch_type, doc = _patch_body(headers, body)
            return _json(200, self.cluster.patch(kind, ns, name, doc, patch_type))
        if method == "DELETE" and kind == "ConfigMap":
            return _json(200, self.cluster.delete(kind, ns, name))
        return _method_not_allowed()

    def _lease(self, method, ns, name, query, headers, body):
        if name is None and method == "POST":
            return _json(201, self.cluster.create("Lease", ns, _parse_json(body)))
        if name is not None and method == "PUT":
            return _json(*self.cluster.replace("Lease", ns, name, _parse_json(body)))
        if method in ("GET", "PATCH"):
            return self._resource(method, "Lease", ns, name, None, query, headers, body)
        return _method_not_allowed()

    def _list(self, kind: str, ns: str | None, query: dict) -> dict:
        selector = query.get("labelSelector", [None])[0]
        items = self.cluster.list(kind, ns, selector)
        for item in items:  # the real API leaves kind and apiVersion to the list, not its items
            item.pop("kind", None)
            item.pop("apiVersion", None)
        api_version = {"PodDisruptionBudget": "policy/v1beta1", "Lease": "coordination.k8s.io/v1"}.get(
            kind, "apps/v1" if kind in APPS.values() else "v1")
        return {"kind": f"{kind}List", "apiVersion": api_version,
                "metadata": {"resourceVersion": self.cluster.resource_version()}, "items": items}

    def _log(self, ns: str, name: str, query: dict):
        def number(key):
            raw = query.get(key, [None])[0]
            if raw is None:
                return None
            try:
                return int(raw)
            except ValueError:
                raise ApiError(400, "BadRequest", f"invalid {key}: {raw!r}") from None

        pod = self.cluster.get("Pod", ns, name)
        if pod is None:
            raise not_found("Pod", name)
        container = query.get("container", [None])[0]
        names = [c["name"] for c in pod["spec"]["containers"]]
        if container and container not in names:
            raise ApiError(400, "BadRequest", f"container {container} is not valid for pod {name}")
        text = self.cluster.read_log(ns, name, since_seconds=number("sinceSeconds"), tail_lines=number("tailLines"),
                                     timestamps=query.get("timestamps", ["false"])[0] == "true")
        if text is None:
            raise not_found("Pod", name)
        return 200, "text/plain", text.encode()


def _make_handler(server: KubeApiServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # else every small response waits ~40 ms for the delayed ACK

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            url = urlsplit(self.path)
            code, ctype, payload = server.handle(self.command, url.path.rstrip("/") or "/", parse_qs(url.query),
                                                 self.headers, body)
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

        def log_message(self, format, *args) -> None:  # noqa: A002 - the stdlib's signature
            pass

    return Handler


def _json(code: int, obj: dict) -> tuple[int, str, bytes]:
    return code, "application/json", json.dumps(obj).encode()


def _method_not_allowed():
    return _json(405, ob.status(405, "MethodNotAllowed", "the server does not allow this method on the requested "
                                                          "resource"))


def _parse_json(body: bytes):
    try:
        return json.loads(body or b"null")
    except ValueError as exc:
        raise ApiError(400, "BadRequest", f"the body of the request was in an unknown format: {exc}") from None


def _patch_body(headers, body: bytes):
    ctype = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if ctype not in PATCH_CONTENT_TYPES:
        raise ApiError(415, "UnsupportedMediaType", "415: Unsupported Media Type")
    return PATCH_CONTENT_TYPES[ctype], _parse_json(body)


def _api_versions(url: str) -> dict:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": url.split("//")[1]}]}


def _group(name: str, version: str) -> dict:
    gv = {"groupVersion": f"{name}/{version}", "version": version}
    return {"name": name, "versions": [gv], "preferredVersion": gv}


_API_GROUPS = {"kind": "APIGroupList", "apiVersion": "v1",
               "groups": [_group("apps", "v1"), _group("autoscaling", "v1"), _group("policy", "v1beta1"),
                          _group("coordination.k8s.io", "v1")]}


def _resource_list(group_version: str, resources: dict) -> dict:
    verbs = ["get", "list", "patch"]
    items = [{"name": res, "singularName": kind.lower(), "namespaced": kind != "Namespace", "kind": kind,
              "verbs": verbs + (["create"] if kind in ("Event", "Namespace", "PodDisruptionBudget", "Lease",
                                                       "ConfigMap") else [])
              + (["update"] if kind == "Lease" else []) + (["delete"] if kind == "ConfigMap" else [])}
             for res, kind in resources.items()]
    if group_version == "apps/v1":
        items.append({"name": "deployments/scale", "singularName": "", "namespaced": True, "group": "autoscaling",
                      "version": "v1", "kind": "Scale", "verbs": ["get", "patch"]})
    if group_version == "v1":
        items.append({"name": "pods/log", "singularName": "", "namespaced": True, "kind": "Pod", "verbs": ["get"]})
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": items}
