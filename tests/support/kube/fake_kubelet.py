#!/usr/bin/env python3
"""A kubelet and scheduler stand-in for a real kube-apiserver + kube-controller-manager with no nodes or containers.

Every ``--poll`` seconds it:
- keeps Node ``--node`` registered and Ready (heartbeat every 10 s);
- binds unscheduled pods to that node (what the scheduler does);
- marks bound Pending pods Running, with every container ready (what the kubelet reports once containers start);
  a pod whose image contains ``unready`` runs but never turns Ready, so tests can hold a rollout mid-way;
- confirms graceful deletions of its pods (``grace_period_seconds=0``), as a kubelet does once containers stopped,
  so scale-downs, rollouts and namespace deletion complete.

Usage: ``fake_kubelet.py https://127.0.0.1:PORT TOKEN [--node NAME] [--poll SECONDS]``. Test support only.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from datetime import datetime, timezone

import urllib3
from kubernetes import client
from kubernetes.client.rest import ApiException

UNREADY_MARK = "unready"
HEARTBEAT_SECONDS = 10.0


def rfc3339_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeKubelet:
    """Drives pods on one pretend node through the real API (see the module docstring)."""

    def __init__(self, host: str, token: str, node: str) -> None:
        urllib3.disable_warnings()
        conf = client.Configuration(host=host)
        conf.verify_ssl = False
        conf.api_key = {"BearerToken": token}
        conf.api_key_prefix = {"BearerToken": "Bearer"}
        self.core = client.CoreV1Api(client.ApiClient(conf))
        self.node = node
        self._serial = 0
        self._last_heartbeat = 0.0

    def ensure_node(self) -> None:
        """Create the Node when missing and report it Ready."""
        try:
            self.core.read_node(self.node)
        except ApiException as exc:
            if exc.status != 404:
                raise
            self.core.create_node({"metadata": {"name": self.node, "labels": {"kubernetes.io/hostname": self.node}}})
        now = rfc3339_now()
        resources = {"cpu": "8", "memory": "16Gi", "pods": "110"}
        self.core.patch_node_status(self.node, {"status": {
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                            "message": "fake kubelet is posting ready status",
                            "lastHeartbeatTime": now, "lastTransitionTime": now}],
            "capacity": resources, "allocatable": resources,
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": self.node}],
        }})
        self._last_heartbeat = time.monotonic()

    def step(self) -> None:
        """One pass over all pods."""
        if time.monotonic() - self._last_heartbeat > HEARTBEAT_SECONDS:
            self.ensure_node()
        for pod in self.core.list_pod_for_all_namespaces().items:
            meta, spec = pod.metadata, pod.spec
            try:
                if meta.deletion_timestamp is not None:
                    if spec.node_name == self.node:
                        self.core.delete_namespaced_pod(meta.name, meta.namespace, grace_period_seconds=0)
                    continue
                if not spec.node_name:
                    self._bind(meta.namespace, meta.name)
                    self._start(pod)
                elif spec.node_name == self.node and pod.status.phase == "Pending":
                    self._start(pod)
            except ApiException as exc:
                if exc.status not in (404, 409):  # gone meanwhile / raced with a controller: next pass fixes it
                    print(f"fake-kubelet: {meta.namespace}/{meta.name}: {exc.status} {exc.reason}", flush=True)

    def _bind(self, namespace: str, name: str) -> None:
        body = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
                "target": {"apiVersion": "v1", "kind": "Node", "name": self.node}}
        # The server answers with a v1 Status, which the client cannot parse as a V1Binding.
        self.core.create_namespaced_pod_binding(name, namespace, body, _preload_content=False)

    def _start(self, pod) -> None:
        now = rfc3339_now()
        ready = not any(UNREADY_MARK in (c.image or "") for c in pod.spec.containers)
        flag = "True" if ready else "False"
        self._serial += 1
        ip = f"10.244.{self._serial // 250 % 250}.{self._serial % 250 + 2}"
        conditions = [{"type": t, "status": "True", "lastTransitionTime": now} for t in ("PodScheduled", "Initialized")]
        conditions += [{"type": t, "status": flag, "lastTransitionTime": now} for t in ("ContainersReady", "Ready")]
        statuses = [{"name": c.name, "image": c.image, "imageID": "", "ready": ready, "restartCount": 0,
                     "started": True, "state": {"running": {"startedAt": now}}} for c in pod.spec.containers]
        self.core.patch_namespaced_pod_status(pod.metadata.name, pod.metadata.namespace, {"status": {
            "phase": "Running", "startTime": now, "hostIP": "127.0.0.1", "podIP": ip, "podIPs": [{"ip": ip}],
            "conditions": conditions, "containerStatuses": statuses}})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("host")
    parser.add_argument("token")
    parser.add_argument("--node", default="fake-node-1")
    parser.add_argument("--poll", type=float, default=0.1)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    kubelet = FakeKubelet(args.host, args.token, args.node)
    kubelet.ensure_node()
    print(f"fake-kubelet: node {args.node} registered", flush=True)
    while True:
        try:
            kubelet.step()
        except (ApiException, urllib3.exceptions.HTTPError) as exc:  # apiserver restarting: keep trying
            print(f"fake-kubelet: pass failed: {exc}", flush=True)
        time.sleep(args.poll)  # a polling interval, not synchronisation


if __name__ == "__main__":
    sys.exit(main())
