"""A real Kubernetes control plane for the tests, and the simulator behind the same interface.

``start_kube()`` runs Debian's etcd, kube-apiserver and kube-controller-manager v1.20.2 (built and cached by
``tests/support/kube/build.sh``) and ``fake_kubelet.py`` on free loopback ports, in a throwaway directory.
``SimKube`` serves ``aiops.sim`` over HTTP with the same methods, so one contract test runs against both.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests
import urllib3
import yaml
from kubernetes import client as k8s

from aiops.clients.kube import KubeClient
from aiops.sim import objects as sim_objects
from aiops.sim.clock import WallClock
from aiops.sim.cluster import SimCluster
from aiops.sim.kubeapi import KubeApiServer
from tests.support.realstack import Process, free_port, wait_until

KUBE_DIR = Path(__file__).parent / "kube"
BUILD_SCRIPT = KUBE_DIR / "build.sh"
ETCD = Path("/usr/bin/etcd")
UNREADY_MARK = "unready"  # images containing this never turn Ready (both harnesses), to hold a rollout mid-way
CONTAINER_PORT = 8080
urllib3.disable_warnings()  # the test apiserver's certificate is self-signed and clients skip verification
MEMORY_LIMIT = "512Mi"  # the sim builder requests 256Mi; a lower limit is invalid on the real apiserver


def bin_dir() -> Path:
    """Where build.sh caches the binaries. Reads the same knob as build.sh, so both agree on one place."""
    cache = os.environ.get("AIOPS_KUBE_CACHE") or str(Path.home() / ".cache/aiops/kube-v1.20.2")
    return Path(cache) / "bin"


def available() -> bool:
    """True when kube-apiserver, kube-controller-manager (cached by build.sh) and etcd are installed."""
    return all(os.access(p, os.X_OK) for p in (bin_dir() / "kube-apiserver", bin_dir() / "kube-controller-manager",
                                               ETCD))


def app_objects(namespace: str, name: str, replicas: int, image: str) -> tuple[dict, dict]:
    """The Deployment and Service bodies of a test app: the simulator's own builders, so both sides hold the same."""
    dep = sim_objects.deployment(namespace, name, replicas, image, {"app": name}, CONTAINER_PORT, MEMORY_LIMIT)
    dep.pop("status")
    dep["metadata"].pop("annotations")
    svc = sim_objects.service(namespace, name, CONTAINER_PORT, "")
    svc.pop("status")
    for key in ("clusterIP", "clusterIPs"):  # the apiserver allocates them
        svc["spec"].pop(key)
    return dep, svc


@dataclass
class KubeStack:
    """A running real control plane. ``url``/``token`` reach the apiserver (self-signed cert: no TLS verify)."""

    workdir: Path
    url: str = ""
    token: str = ""
    ca_file: Path | None = None
    processes: list[Process] = field(default_factory=list)
    name = "real"

    def client(self) -> KubeClient:
        """A new ``KubeClient`` on this apiserver."""
        return KubeClient.for_host(self.url, self.token, verify_ssl=False)

    def _api(self) -> k8s.ApiClient:
        conf = k8s.Configuration(host=self.url)
        conf.verify_ssl = False
        conf.api_key = {"BearerToken": self.token}
        conf.api_key_prefix = {"BearerToken": "Bearer"}
        return k8s.ApiClient(conf)

    def create_namespace(self, name: str) -> None:
        """Create a namespace."""
        with self._api() as api:
            k8s.CoreV1Api(api).create_namespace({"metadata": {"name": name}})

    def delete_namespace(self, name: str) -> None:
        """Start deleting a namespace; never waits (the real one takes ~10 s)."""
        with self._api() as api:
            k8s.CoreV1Api(api).delete_namespace(name, _preload_content=False)

    def create_app(self, namespace: str, name: str, replicas: int = 2, image: str = "registry.local/app:1.0") -> None:
        """A Deployment and a Service (selector ``app=<name>``) named ``name``."""
        dep, svc = app_objects(namespace, name, replicas, image)
        with self._api() as api:
            k8s.AppsV1Api(api).create_namespaced_deployment(namespace, dep)
            k8s.CoreV1Api(api).create_namespaced_service(namespace, svc)

    def logs(self) -> str:
        """The tail of every process log, for failure messages."""
        return "\n".join(f"--- {p.name}\n{p.tail()}" for p in self.processes)

    def stop(self) -> None:
        """Terminate everything (kubelet first, etcd last) and remove the work directory (data, certs, logs)."""
        for proc in reversed(self.processes):
            proc.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_kube(workdir: Path | None = None, authorization_mode: str = "AlwaysAllow",
               extra_tokens: dict[str, tuple[str, list[str]]] | None = None, timeout: float = 90.0) -> KubeStack:
    """Start etcd + kube-apiserver + kube-controller-manager + fake kubelet; return when controllers run.

    ``authorization_mode`` may be ``"RBAC"``: the stack's own token is then in ``system:masters``.
    ``extra_tokens`` maps more bearer tokens to (user, groups), e.g. to test an RBAC-limited agent.
    A port taken between choosing it and binding it (another server of the same test run) is retried with
    fresh ports.
    """
    for attempt in range(3):
        try:
            return _start_kube_once(workdir, authorization_mode, extra_tokens, timeout)
        except RuntimeError as exc:
            if "address already in use" not in str(exc) or attempt == 2:
                raise
    raise AssertionError("unreachable")


def _start_kube_once(workdir: Path | None, authorization_mode: str,
                     extra_tokens: dict[str, tuple[str, list[str]]] | None, timeout: float) -> KubeStack:
    if not available():
        raise RuntimeError(f"the kube binaries are not built: run `make kube` / {BUILD_SCRIPT}")
    # etcd fsyncs every write: on tmpfs that costs nothing, and the data is throwaway anyway.
    shm = Path("/dev/shm")
    workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="aiops-kube-",
                                                                  dir=shm if shm.is_dir() else None))
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    stack = KubeStack(workdir, url=f"https://127.0.0.1:{port}", token=secrets.token_hex(16))
    try:
        _write_credentials(stack, extra_tokens or {})
        etcd_url = _start_etcd(stack)
        stack.processes.append(_spawn("kube-apiserver", [
            str(bin_dir() / "kube-apiserver"),
            f"--etcd-servers={etcd_url}", "--etcd-prefix=/registry",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={port}",
            f"--tls-cert-file={workdir / 'apiserver.crt'}", f"--tls-private-key-file={workdir / 'apiserver.key'}",
            f"--token-auth-file={workdir / 'tokens.csv'}", f"--authorization-mode={authorization_mode}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={workdir / 'sa.pub'}",
            f"--service-account-signing-key-file={workdir / 'sa.key'}",
            "--api-audiences=https://kubernetes.default.svc.cluster.local",
            "--service-cluster-ip-range=10.96.0.0/16",
            # Pods would need their ServiceAccount's token Secret, which nothing here creates quickly enough.
            "--disable-admission-plugins=ServiceAccount",
            "--enable-priority-and-fairness=false", "--profiling=false", "--v=1",
        ], workdir))
        _wait(stack, lambda: _get(stack, "/readyz") == "ok", timeout, "kube-apiserver /readyz")
        stack.processes.append(_spawn("kube-controller-manager", [
            str(bin_dir() / "kube-controller-manager"),
            f"--kubeconfig={workdir / 'kubeconfig'}", "--secure-port=0", "--port=0", "--leader-elect=false",
            f"--service-account-private-key-file={workdir / 'sa.key'}", "--use-service-account-credentials=false",
            # only what Deployments, namespaces and garbage collection need; no nodes, clouds or volumes
            "--controllers=*,-nodeipam,-nodelifecycle,-cloud-node-lifecycle,-route,-service,-csrsigning,"
            "-csrapproving,-csrcleaner,-ttl,-bootstrapsigner,-tokencleaner,-persistentvolume-binder,-attachdetach,"
            "-persistentvolume-expander,-pvc-protection,-pv-protection",
            "--concurrent-deployment-syncs=5", "--concurrent-replicaset-syncs=5", "--v=1",
        ], workdir))
        stack.processes.append(_spawn("fake-kubelet", [
            sys.executable, str(KUBE_DIR / "fake_kubelet.py"), stack.url, stack.token], workdir))
        # The ServiceAccount controller creating `default` proves the controllers are running.
        _wait(stack, lambda: _get(stack, "/api/v1/namespaces/default/serviceaccounts/default"),
                   timeout, "kube-controller-manager (default ServiceAccount)")
        _wait(stack, lambda: '"Ready"' in (_get(stack, "/api/v1/nodes/fake-node-1") or ""),
                   timeout, "fake kubelet node Ready")
        return stack
    except BaseException as exc:
        logs = stack.logs()
        stack.stop()
        raise RuntimeError(f"kube stack failed to start: {exc}\n{logs}") from exc


def _write_credentials(stack: KubeStack, extra_tokens: dict[str, tuple[str, list[str]]]) -> None:
    d = stack.workdir
    openssl = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
               "-keyout", str(d / "apiserver.key"), "-out", str(d / "apiserver.crt"),
               "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"]
    subprocess.run(openssl, check=True, capture_output=True)
    subprocess.run(["openssl", "genrsa", "-out", str(d / "sa.key"), "2048"], check=True, capture_output=True)
    subprocess.run(["openssl", "rsa", "-in", str(d / "sa.key"), "-pubout", "-out", str(d / "sa.pub")],
                   check=True, capture_output=True)
    stack.ca_file = d / "apiserver.crt"
    rows = [f'{stack.token},aiops-admin,uid-admin,"system:masters"']
    rows += [f'{token},{user},uid-{user},"{",".join(groups)}"' for token, (user, groups) in extra_tokens.items()]
    (d / "tokens.csv").write_text("\n".join(rows) + "\n")
    (d / "kubeconfig").write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "test", "cluster": {"server": stack.url,
                                                  "certificate-authority": str(stack.ca_file)}}],
        "users": [{"name": "admin", "user": {"token": stack.token}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "admin"}}]}))


def _start_etcd(stack: KubeStack) -> str:
    client_port, peer_port = free_port(), free_port()
    client_url, peer_url = f"http://127.0.0.1:{client_port}", f"http://127.0.0.1:{peer_port}"
    stack.processes.append(_spawn("etcd", [
        str(ETCD), "--name=aiops", f"--data-dir={stack.workdir / 'etcd'}",
        f"--listen-client-urls={client_url}", f"--advertise-client-urls={client_url}",
        f"--listen-peer-urls={peer_url}", f"--initial-advertise-peer-urls={peer_url}",
        f"--initial-cluster=aiops={peer_url}", "--log-level=warn",
    ], stack.workdir))
    _wait(stack, lambda: requests.get(f"{client_url}/health", timeout=1).ok, 30, "etcd /health")
    return client_url


def _spawn(name: str, argv: list[str], workdir: Path) -> Process:
    log = workdir / f"{name}.log"
    with open(log, "wb") as out:
        popen = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 cwd=workdir)
    return Process(name, popen, log)


def _wait(stack: KubeStack, predicate, timeout: float, what: str) -> None:
    """``wait_until``, but a process that died fails at once instead of at the deadline."""
    def check():
        dead = [p for p in stack.processes if p.popen.poll() is not None]
        if dead:
            raise _Died(f"{dead[0].name} exited with {dead[0].popen.returncode}")
        return predicate()
    wait_until(check, timeout, what)


class _Died(BaseException):
    """Escapes ``wait_until``'s retry loop (which retries any ``Exception``)."""


def _get(stack: KubeStack, path: str) -> str | None:
    resp = requests.get(stack.url + path, headers={"Authorization": f"Bearer {stack.token}"}, verify=False,
                        timeout=2)
    return resp.text if resp.ok else None


class SimKube:
    """``aiops.sim`` behind ``KubeStack``'s interface: a ``SimCluster`` on the wall clock, served over HTTP, with a
    background ticker so rollouts progress in real time (pods are Ready ``rollout_seconds`` after creation)."""

    name = "sim"

    def __init__(self, rollout_seconds: float = 0.5, tick_seconds: float = 0.05) -> None:
        self.token = secrets.token_hex(16)
        self.cluster = SimCluster(WallClock(), rollout_seconds=rollout_seconds)
        self.server = KubeApiServer(self.cluster, token=self.token).start()
        self.url = self.server.url
        self._stop = threading.Event()
        self._tick_seconds = tick_seconds
        self._ticker = threading.Thread(target=self._run, name="sim-kube-ticker", daemon=True)
        self._ticker.start()

    def _run(self) -> None:
        while not self._stop.wait(self._tick_seconds):
            self._hold_unready(time.time())
            self.cluster.tick()

    def _hold_unready(self, now: float) -> None:
        # The sim's kubelet has no "never ready" image; keeping such pods in a long restart back-off does the same.
        # This runs before every tick in the same thread, so such a pod is never seen Ready by a tick.
        for pod in self.cluster.list("Pod"):
            meta = pod["metadata"]
            if any(UNREADY_MARK in c.get("image", "") for c in pod["spec"]["containers"]):
                runtime = self.cluster.pod_runtime(meta["namespace"], meta["name"])
                if runtime is not None and runtime.ready_at < now + 600:
                    self.cluster.restart_container(meta["namespace"], meta["name"], now, reason="Error",
                                                   exit_code=1, backoff_seconds=3600)

    def client(self) -> KubeClient:
        """A new ``KubeClient`` on the simulator's API."""
        return KubeClient.for_host(self.url, self.token)

    def create_namespace(self, name: str) -> None:
        """Create a namespace."""
        self.cluster.add_namespace(name)

    def delete_namespace(self, name: str) -> None:
        """The simulator cannot delete namespaces; each test's namespace is unique, so leftovers do no harm."""

    def create_app(self, namespace: str, name: str, replicas: int = 2, image: str = "registry.local/app:1.0") -> None:
        """A Deployment and a Service (selector ``app=<name>``) named ``name`` (the sim has no POST for these)."""
        self.cluster.add_deployment(namespace, name, replicas=replicas, image=image, service=True,
                                    containers_port=CONTAINER_PORT, memory_limit=MEMORY_LIMIT)

    def logs(self) -> str:
        """Nothing to show: the simulator runs in this process."""
        return ""

    def stop(self) -> None:
        """Stop the ticker and the HTTP server."""
        self._stop.set()
        self._ticker.join(timeout=5)
        self.server.stop()
