"""The Kubernetes API, through the official ``kubernetes`` client, as plain dicts.

Everything above this module speaks dicts shaped exactly like the API's JSON, so no stage depends on the client's
model classes, and the same code runs against a real cluster, the real kube-apiserver in the tests, and the
project's simulator.

Every call is bounded (``request_timeout``, ``kubernetes.request_timeout_seconds``): connecting plus waiting for
the answer's headers takes at most that long, then the call raises the transport's timeout (a ``urllib3``
exception). The client never retries by itself: a retried read multiplies the bound, and a retried write (a Lease
``PUT``, a patch) could land long after the caller gave up on it. Callers that want a retry do it themselves.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import ConnectTimeoutError
from urllib3.exceptions import HTTPError as TransportError

from aiops.domain.errors import InputError
from aiops.settings import KubernetesSettings

MERGE_PATCH = "application/merge-patch+json"
LEASES = "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
JSON_PATCH = "application/json-patch+json"


class KubeError(Exception):
    """The API answered with an error status (``status`` is the HTTP code, ``reason`` the Status reason)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        self.status = status
        self.reason = reason
        super().__init__(f"{status} {reason}: {message}")

    @property
    def conflict(self) -> bool:
        return self.status == 409

    @property
    def not_found(self) -> bool:
        return self.status == 404


def is_unavailable(exc: BaseException) -> bool:
    """True when a call failed because the apiserver was unreachable, slow or overloaded (a timeout, a refused
    connection, 5xx, 429): a later try may pass. An answer refusing the request itself (4xx) is not."""
    if isinstance(exc, KubeError):
        return exc.status == 0 or exc.status >= 500 or exc.status == 429
    # The kubernetes client lets urllib3's connection and timeout errors through unwrapped.
    return isinstance(exc, OSError) or type(exc).__module__.split(".")[0] == "urllib3"


def _wrap(exc: ApiException) -> KubeError:
    reason, message = exc.reason or "", str(exc.body or "")
    try:
        body = json.loads(exc.body or "{}")
        reason, message = body.get("reason", reason), body.get("message", message)
    except (ValueError, AttributeError):
        pass
    return KubeError(exc.status or 0, reason, message)


# The API's own answers that do not say whether a write was done: a failure inside it, its or a proxy's timeout.
_OUTCOME_UNKNOWN_STATUSES = frozenset({500, 502, 503, 504})


def outcome_unknown(exc: BaseException) -> bool:
    """True when a call failed without the API saying what became of it, so a write may have landed all the same:
    the answer timed out or the connection broke after the request was sent, or the API answered 500/502/503/504.
    False for an answer that says what happened (404, 409, 422 ...), for a request that never left (connecting
    failed), and for anything that is not a call's failure."""
    if isinstance(exc, KubeError):
        return exc.status in _OUTCOME_UNKNOWN_STATUSES
    if isinstance(exc, (ConnectTimeoutError, ConnectionRefusedError)):  # NewConnectionError too: nothing was sent
        return False
    return isinstance(exc, (TransportError, ConnectionError, TimeoutError))


# What a KubeClient waits for an answer unless told otherwise (the default of kubernetes.request_timeout_seconds).
DEFAULT_REQUEST_TIMEOUT = 4.0


def api_client_from_settings(settings: KubernetesSettings) -> k8s.ApiClient:
    """Build an ``ApiClient`` from the config: explicit host, in-cluster, or kubeconfig (in that order)."""
    if settings.host:
        conf = k8s.Configuration(host=settings.host)
        conf.verify_ssl = settings.verify_ssl
        if settings.token_file:
            try:
                token = settings.token_file.read_text().strip()
            except OSError as exc:
                raise InputError("kubernetes.token_file", f"cannot read {settings.token_file}: {exc}") from None
            conf.api_key = {"BearerToken": token}
            conf.api_key_prefix = {"BearerToken": "Bearer"}
        return k8s.ApiClient(conf)
    if settings.in_cluster:
        conf = k8s.Configuration()
        try:
            k8s_config.load_incluster_config(client_configuration=conf)
        except k8s_config.ConfigException as exc:
            raise InputError("kubernetes.in_cluster", f"cannot use the pod's service account (not in a pod?): "
                                                      f"{exc}") from None
        return k8s.ApiClient(conf)
    try:
        return k8s_config.new_client_from_config(
            config_file=str(settings.kubeconfig) if settings.kubeconfig else None, context=settings.context)
    # The loader lets a file that is no kubeconfig through as whatever it tripped on (YAML, text, shape).
    except (k8s_config.ConfigException, OSError, yaml.YAMLError, ValueError, TypeError, AttributeError,
            KeyError) as exc:
        why = " ".join(str(exc).split()) or type(exc).__name__  # one line (YAML's messages span three)
        raise InputError("kubernetes.kubeconfig", f"cannot load kubeconfig: {why}") from None


class KubeClient:
    """The handful of API calls the agent makes, returning API-shaped dicts.

    ``request_timeout`` (seconds) bounds every call: connecting plus waiting for the answer (``urllib3``'s
    ``total``); a call given its own ``timeout`` uses that instead.
    """

    def __init__(self, api_client: k8s.ApiClient, request_timeout: float = DEFAULT_REQUEST_TIMEOUT) -> None:
        if not request_timeout > 0:
            raise ValueError(f"request_timeout must be > 0, got {request_timeout!r}")
        self.request_timeout = float(request_timeout)
        self._api = api_client
        _without_retries(api_client)
        self._apps = k8s.AppsV1Api(api_client)
        self._core = k8s.CoreV1Api(api_client)
        self._version = k8s.VersionApi(api_client)

    @classmethod
    def from_settings(cls, settings: KubernetesSettings) -> "KubeClient":
        """The client the ``kubernetes`` settings describe: where the API is, how to log in, how long to wait."""
        return cls(api_client_from_settings(settings), settings.request_timeout_seconds)

    @classmethod
    def for_host(cls, host: str, token: str | None = None, verify_ssl: bool = False,
                 request_timeout: float = DEFAULT_REQUEST_TIMEOUT) -> "KubeClient":
        """A client for a bare API URL (the simulator, or the test apiserver)."""
        conf = k8s.Configuration(host=host)
        conf.verify_ssl = verify_ssl
        if token:
            conf.api_key = {"BearerToken": token}
            conf.api_key_prefix = {"BearerToken": "Bearer"}
        return cls(k8s.ApiClient(conf), request_timeout)

    def close(self) -> None:
        self._api.close()

    def _timeout(self, timeout: float | None) -> float:
        return self.request_timeout if timeout is None else timeout

    def _call(self, fn, *args, _request_timeout: float | None = None, **kwargs) -> Any:
        try:
            result = fn(*args, _request_timeout=self._timeout(_request_timeout), **kwargs)
        except ApiException as exc:
            raise _wrap(exc) from None
        return self._api.sanitize_for_serialization(result)

    # --- cluster ---
    def version(self) -> dict:
        return self._call(self._version.get_code)

    # --- deployments ---
    def get_deployment(self, namespace: str, name: str) -> dict:
        return self._call(self._apps.read_namespaced_deployment, name, namespace)

    def list_deployments(self, namespace: str, selector: str | None = None) -> list[dict]:
        kw = {"label_selector": selector} if selector else {}
        return self._call(self._apps.list_namespaced_deployment, namespace, **kw)["items"]

    def patch_deployment(self, namespace: str, name: str, patch: dict | list) -> dict:
        """Merge-patch a dict (RFC 7386) or JSON-patch a list (RFC 6902, e.g. with a ``test`` precondition)."""
        ctype = JSON_PATCH if isinstance(patch, list) else MERGE_PATCH
        return self._call(self._apps.patch_namespaced_deployment, name, namespace, patch, _content_type=ctype)

    def get_scale(self, namespace: str, name: str) -> dict:
        return self._call(self._apps.read_namespaced_deployment_scale, name, namespace)

    def patch_scale(self, namespace: str, name: str, replicas: int) -> dict:
        return self._call(self._apps.patch_namespaced_deployment_scale, name, namespace,
                          {"spec": {"replicas": int(replicas)}}, _content_type=MERGE_PATCH)

    def list_replicasets(self, namespace: str, selector: str | None = None) -> list[dict]:
        kw = {"label_selector": selector} if selector else {}
        return self._call(self._apps.list_namespaced_replica_set, namespace, **kw)["items"]

    # --- pods, logs, events ---
    def list_pods(self, namespace: str, selector: str | None = None) -> list[dict]:
        kw = {"label_selector": selector} if selector else {}
        return self._call(self._core.list_namespaced_pod, namespace, **kw)["items"]

    def get_pod(self, namespace: str, name: str) -> dict:
        return self._call(self._core.read_namespaced_pod, name, namespace)

    def patch_pod(self, namespace: str, name: str, patch: dict | list) -> dict:
        """Merge-patch a dict or JSON-patch a list (e.g. a label removal guarded by a ``test``)."""
        ctype = JSON_PATCH if isinstance(patch, list) else MERGE_PATCH
        return self._call(self._core.patch_namespaced_pod, name, namespace, patch, _content_type=ctype)

    def read_pod_log(self, namespace: str, pod: str, container: str | None = None,
                     since_seconds: int | None = None, tail_lines: int | None = None,
                     timestamps: bool = True) -> str:
        kw: dict[str, Any] = {"timestamps": timestamps}
        if container:
            kw["container"] = container
        if since_seconds:
            kw["since_seconds"] = int(since_seconds)
        if tail_lines:
            kw["tail_lines"] = int(tail_lines)
        return self._call(self._core.read_namespaced_pod_log, pod, namespace, **kw)

    def list_events(self, namespace: str) -> list[dict]:
        return self._call(self._core.list_namespaced_event, namespace)["items"]

    def create_event(self, namespace: str, event: dict) -> dict:
        return self._call(self._core.create_namespaced_event, namespace, event)

    # --- namespaces, disruption budgets ---
    def get_namespace(self, name: str) -> dict:
        return self._call(self._core.read_namespace, name)

    def list_pdbs(self, namespace: str) -> list[dict]:
        """PodDisruptionBudgets: policy/v1 (Kubernetes >= 1.21), else policy/v1beta1 (older servers)."""
        for version in ("v1", "v1beta1"):
            try:
                return self._get(f"/apis/policy/{version}/namespaces/{{namespace}}/poddisruptionbudgets",
                                 {"namespace": namespace})["items"]
            except KubeError as exc:
                if not exc.not_found or version == "v1beta1":
                    raise
        raise AssertionError("unreachable")

    def _get(self, path: str, path_params: dict[str, str]) -> dict:
        """A GET the generated API classes do not offer (e.g. an API version this client no longer ships)."""
        return self.request("GET", path, path_params)

    def request(self, method: str, path: str, path_params: dict[str, str], body: dict | None = None,
                timeout: float | None = None) -> dict:
        """One raw JSON request through the configured client (auth, TLS), errors as ``KubeError``."""
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            params = self._api.param_serialize(method, path, path_params=path_params, header_params=headers,
                                               body=body, auth_settings=["BearerToken"])
            response = self._api.call_api(*params, _request_timeout=self._timeout(timeout))
            response.read()
            return self._api.response_deserialize(response, {"200": "object", "201": "object"}).data
        except ApiException as exc:
            raise _wrap(exc) from None

    # --- services ---
    def get_service(self, namespace: str, name: str) -> dict:
        return self._call(self._core.read_namespaced_service, name, namespace)

    def list_services(self, namespace: str) -> list[dict]:
        return self._call(self._core.list_namespaced_service, namespace)["items"]

    def patch_service(self, namespace: str, name: str, patch: dict | list) -> dict:
        ctype = JSON_PATCH if isinstance(patch, list) else MERGE_PATCH
        return self._call(self._core.patch_namespaced_service, name, namespace, patch, _content_type=ctype)

    # --- configmaps (the shared execution journal) ---
    def get_configmap(self, namespace: str, name: str, timeout: float | None = None) -> dict:
        """One ConfigMap; ``KubeError`` (``not_found``) when there is none."""
        return self._call(self._core.read_namespaced_config_map, name, namespace, _request_timeout=timeout)

    def list_configmaps(self, namespace: str, selector: str | None = None, timeout: float | None = None) -> list[dict]:
        kw = {"label_selector": selector} if selector else {}
        return self._call(self._core.list_namespaced_config_map, namespace, _request_timeout=timeout, **kw)["items"]

    def create_configmap(self, namespace: str, configmap: dict, timeout: float | None = None) -> dict:
        """POST a ConfigMap; ``KubeError`` 409 (AlreadyExists) when one of that name exists."""
        return self._call(self._core.create_namespaced_config_map, namespace, configmap, _request_timeout=timeout)

    def patch_configmap(self, namespace: str, name: str, patch: dict | list, timeout: float | None = None) -> dict:
        """Merge-patch a dict or JSON-patch a list (``add`` of a new data key needs no read first)."""
        ctype = JSON_PATCH if isinstance(patch, list) else MERGE_PATCH
        return self._call(self._core.patch_namespaced_config_map, name, namespace, patch, _content_type=ctype,
                          _request_timeout=timeout)

    def delete_configmap(self, namespace: str, name: str, timeout: float | None = None) -> dict:
        """DELETE a ConfigMap; ``KubeError`` (``not_found``) when it is already gone."""
        return self._call(self._core.delete_namespaced_config_map, name, namespace, _request_timeout=timeout)

    # --- leases (coordination.k8s.io/v1) ---
    # Sent and read as raw JSON: the client's V1Lease model re-serialises a MicroTime with zero microseconds
    # without its fraction, and the apiserver answers 400; raw dicts keep the timestamps exactly as written.
    def get_lease(self, namespace: str, name: str, timeout: float | None = None) -> dict:
        """The Lease as the API returns it; ``KubeError`` (``not_found``) when there is none."""
        return self._raw("GET", LEASES + "/{name}", {"namespace": namespace, "name": name}, timeout=timeout)

    def create_lease(self, namespace: str, lease: dict, timeout: float | None = None) -> dict:
        """POST a Lease; ``KubeError`` 409 (AlreadyExists) when another client created it first."""
        return self._raw("POST", LEASES, {"namespace": namespace}, lease, timeout)

    def replace_lease(self, namespace: str, name: str, lease: dict, timeout: float | None = None) -> dict:
        """PUT a Lease; it must carry the ``metadata.resourceVersion`` it was read at (else 422), and a concurrent
        change since then makes it ``KubeError`` 409 Conflict. A Lease that does not exist is created."""
        return self._raw("PUT", LEASES + "/{name}", {"namespace": namespace, "name": name}, lease, timeout)

    def _raw(self, method: str, path: str, path_params: dict, body: dict | None = None,
             timeout: float | None = None) -> dict:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        request = self._api.param_serialize(method=method, resource_path=path, path_params=path_params,
                                            header_params=headers, body=body, auth_settings=["BearerToken"])
        try:
            response = self._api.call_api(*request, _request_timeout=self._timeout(timeout))
            response.read()
            if not 200 <= response.status <= 299:
                ApiException.from_response(http_resp=response, body=response.data.decode("utf-8", "replace"),
                                           data=None)
        except ApiException as exc:
            raise _wrap(exc) from None
        return json.loads(response.data)


def _without_retries(api_client: k8s.ApiClient) -> None:
    """Turn off ``urllib3``'s own retries for every connection pool of ``api_client``.

    By default it retries a read that timed out three times for GET and PUT (a 4 s bound became 16 s, and a Lease
    PUT could be sent again after the caller gave up). Set on the pool manager, not the ``Configuration``, so it
    holds however the ``ApiClient`` was built (kubeconfig, in-cluster, explicit host, a test's own).
    """
    pools = api_client.rest_client.pool_manager
    pools.connection_pool_kw["retries"] = False
    pools.clear()  # pools made before this (none, normally) would keep the old setting


def micro_time(ts: float) -> str:
    """A ``metav1.MicroTime`` for a Unix time: RFC 3339 with exactly six fractional digits, as the API requires."""
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
