"""A real HTTP server speaking the Kubernetes REST API over a ``SimCluster``.

Just enough of core/v1, apps/v1, policy/v1beta1 and coordination.k8s.io/v1 for the agent and for kubectl (pods and
their logs, events, services, namespaces, configmaps, deployments and their scale subresource, replicasets, leases,
poddisruptionbudgets; the verbs ``aiops.sim.discovery`` lists), with label and field selectors, watches, server-side
Tables and the apiserver's Status errors, so the official client and kubectl run unchanged.
"""

from __future__ import annotations

import json
import select
import socket
import threading
from http.server import BaseHTTPRequestHandler
from typing import Iterator
from urllib.parse import parse_qs, urlsplit

from aiops.sim import discovery
from aiops.sim import objects as ob
from aiops.sim.apierrors import ApiError, not_found
from aiops.sim.cluster import SimCluster
from aiops.sim.httpserver import BackgroundHttpServer
from aiops.sim.selectors import SelectorError
from aiops.sim.tables import INCLUDE_OBJECT, table, table_version
from aiops.sim.watch import DEFAULT_TIMEOUT, Watch

PATCH_CONTENT_TYPES = {"application/merge-patch+json": "merge",
                       "application/strategic-merge-patch+json": "strategic",
                       "application/json-patch+json": "json"}

VERSION = {"major": "1", "minor": "20", "gitVersion": "v1.20.2-aiops-sim", "gitCommit": "0" * 40,
           "gitTreeState": "clean", "buildDate": "2021-01-13T13:20:00Z", "goVersion": "go1.19.8",
           "compiler": "gc", "platform": "linux/amd64"}
# A request's verb, from its method and whether it names one object.
_VERBS = {("GET", False): "list", ("GET", True): "get", ("POST", False): "create", ("PUT", True): "update",
          ("PATCH", True): "patch", ("DELETE", True): "delete"}


class KubeApiServer(BackgroundHttpServer):
    """Serves ``cluster`` on ``host:port`` (0 = a free port) from a background thread."""

    thread_name = "sim-kube-api"

    def __init__(self, cluster: SimCluster, host: str = "127.0.0.1", port: int = 0, token: str | None = None) -> None:
        self.cluster = cluster
        self.token = token
        self._stopping = threading.Event()
        super().__init__(_make_handler(self), host, port)

    def stop(self) -> None:
        """Stop serving; open watches end at once."""
        self._stopping.set()
        self.cluster.changes.wake()
        super().stop()

    # --- request handling (called from handler threads) ---------------------------------------------------
    def handle(self, method: str, path: str, query: dict, headers, body: bytes) -> tuple[int, str, bytes | Iterator]:
        """Answer one request: (status code, content type, body); a watch's body is an iterator of chunks (an
        empty chunk when nothing happened for a while)."""
        if self.token is not None and headers.get("Authorization", "") != f"Bearer {self.token}":
            return _json(401, ob.status(401, "Unauthorized", "Unauthorized"))
        try:
            return self._route(method, path, query, headers, body)
        except ApiError as exc:
            return _json(exc.code, exc.status)
        except SelectorError as exc:
            return _json(400, ob.status(400, "BadRequest", str(exc)))

    def _route(self, method, path, query, headers, body):
        if method == "GET" and path == "/version":
            return _json(200, VERSION)
        if method == "GET" and (doc := discovery.document(path, self.url.split("//")[1])) is not None:
            return _json(200, doc)
        target = _target(path)
        if target is None:
            return _json(404, ob.status(404, "NotFound", "the server could not find the requested resource"))
        resource, ns, name, sub = target
        if sub is not None:
            return self._subresource(method, resource, ns, name, sub, query, headers, body)
        verb = _VERBS.get((method, name is not None))
        if verb in ("list", "get") and query.get("watch", ["false"])[0] in ("true", "1"):
            verb = "watch"
        if verb not in resource.verbs:
            return _method_not_allowed()
        kind, ns = resource.kind, ns or ""
        if verb == "watch":
            return self._watch(resource, ns, name, query, headers)
        if verb == "list":
            return _json(200, self._list(kind, ns or None, query, headers))
        if verb == "get":
            obj = self.cluster.get(kind, ns, name)
            if obj is None:
                raise not_found(kind, name)
            return _json(200, self._as_table(kind, [obj], obj["metadata"]["resourceVersion"], query, headers) or obj)
        if verb == "create":
            return _json(201, self.cluster.create(kind, ns, _parse_json(body)))
        if verb == "update":
            return _json(*self.cluster.replace(kind, ns, name, _parse_json(body)))
        if verb == "patch":
            patch_type, doc = _patch_body(headers, body)
            return _json(200, self.cluster.patch(kind, ns, name, doc, patch_type))
        return _json(200, self.cluster.delete(kind, ns, name))

    def _subresource(self, method, resource, ns, name, sub, query, headers, body):
        served = discovery.subresource(resource, sub)
        if served is None:
            return _json(404, ob.status(404, "NotFound", "the server could not find the requested resource"))
        if {"GET": "get", "PATCH": "patch"}.get(method) not in served.verbs:
            return _method_not_allowed()
        if sub == "log":
            return self._log(ns, name, query)
        if method == "GET":
            return _json(200, self.cluster.get_scale(ns, name))
        patch_type, doc = _patch_body(headers, body)
        return _json(200, self.cluster.patch_scale(ns, name, doc, patch_type))

    def _list(self, kind: str, ns: str | None, query: dict, headers) -> dict:
        items = self.cluster.list(kind, ns, _param(query, "labelSelector"), _param(query, "fieldSelector"))
        resource_version = self.cluster.resource_version()
        if (tabled := self._as_table(kind, items, resource_version, query, headers)) is not None:
            return tabled
        for item in items:  # the real API leaves kind and apiVersion to the list, not its items
            item.pop("kind", None)
            item.pop("apiVersion", None)
        return {"kind": f"{kind}List", "apiVersion": discovery.of_kind(kind).group_version,
                "metadata": {"resourceVersion": resource_version}, "items": items}

    def _as_table(self, kind: str, items: list[dict], resource_version: str, query: dict, headers,
                  headings: bool = True) -> dict | None:
        """The Table of ``items`` when the client asked for one (``Accept``), else None."""
        version = table_version(headers.get("Accept"))
        if version is None:
            return None
        include = _param(query, "includeObject") or "Metadata"
        if include not in INCLUDE_OBJECT:
            raise ApiError(400, "BadRequest", f'Unable to convert to Table as requested: includeObject: Invalid '
                                              f"value: \"{include}\": must be 'Metadata', 'Object', 'None', or empty")
        return table(kind, items, self.cluster.clock.now(), resource_version, version, include, headings)

    def _watch(self, resource, ns: str, name: str | None, query: dict, headers):
        fields = _param(query, "fieldSelector")
        if name is not None:  # a watch on one object is a watch on the list, selected by its name
            fields = ",".join(filter(None, (fields, f"metadata.name={name}")))
        watch = Watch(self.cluster, resource.kind, ns if resource.namespaced and ns else None,
                      _param(query, "labelSelector"), fields, _param(query, "resourceVersion"))
        try:
            timeout = float(_param(query, "timeoutSeconds") or DEFAULT_TIMEOUT)
        except ValueError:
            raise ApiError(400, "BadRequest", "timeoutSeconds: must be a number") from None
        self._as_table(resource.kind, [], "", query, headers)  # a bad includeObject fails before streaming

        def chunks():
            headings = True
            for event in watch.events(self._stopping, timeout):
                if event is None:
                    yield b""
                    continue
                obj = event["object"]
                if event["type"] != "ERROR" and (tabled := self._as_table(
                        resource.kind, [obj], obj["metadata"]["resourceVersion"], query, headers, headings)):
                    event, headings = {"type": event["type"], "object": tabled}, False
                yield json.dumps(event).encode() + b"\n"

        return 200, "application/json", chunks()

    def _log(self, ns: str, name: str, query: dict):
        def number(key):
            raw = _param(query, key)
            if raw is None:
                return None
            try:
                return int(raw)
            except ValueError:
                raise ApiError(400, "BadRequest", f"invalid {key}: {raw!r}") from None

        pod = self.cluster.get("Pod", ns, name)
        if pod is None:
            raise not_found("Pod", name)
        container = _param(query, "container")
        names = [c["name"] for c in pod["spec"]["containers"]]
        if container and container not in names:
            raise ApiError(400, "BadRequest", f"container {container} is not valid for pod {name}")
        text = self.cluster.read_log(ns, name, since_seconds=number("sinceSeconds"), tail_lines=number("tailLines"),
                                     timestamps=_param(query, "timestamps") == "true")
        if text is None:
            raise not_found("Pod", name)
        return 200, "text/plain", text.encode()


def _target(path: str):
    """(resource, namespace or None, name or None, subresource or None) that ``path`` addresses, or None."""
    parts = path.strip("/").split("/")
    if parts[:2] == ["api", "v1"]:
        group, version, rest = "", "v1", parts[2:]
    elif parts[0] == "apis" and len(parts) >= 3:
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    ns = None
    if len(rest) >= 3 and rest[0] == "namespaces" and (r := discovery.find(group, version, rest[2])) and r.namespaced:
        ns, rest = rest[1], rest[2:]
    resource = discovery.find(group, version, rest[0]) if rest else None
    if resource is None or len(rest) > 3 or (ns is None and resource.namespaced and len(rest) > 1):
        return None
    return resource, ns, (rest[1] if len(rest) > 1 else None), (rest[2] if len(rest) > 2 else None)


def _param(query: dict, key: str) -> str | None:
    return query.get(key, [None])[0]


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
            if isinstance(payload, bytes):
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            else:
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                self._stream(payload)

        def _stream(self, chunks) -> None:
            try:
                for chunk in chunks:
                    if chunk:
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    elif _closed_by_peer(self.connection):
                        break
                self.wfile.write(b"0\r\n\r\n")
            except OSError:  # the client went away mid-stream
                self.close_connection = True
            finally:
                chunks.close()

        do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

        def log_message(self, format, *args) -> None:  # noqa: A002 - the stdlib's signature
            pass

    return Handler


def _closed_by_peer(sock: socket.socket) -> bool:
    """True when the client closed its end (readable, and reading would give nothing)."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


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
