"""Two ``aiops serve`` processes against the real kube-apiserver: kill -9 the leader, the follower takes over.
And the Lease permissions the README documents, checked under RBAC.

Each agent is the real CLI in its own process, configured through a YAML file like a user's. The follower receives
an alert while following and holds it; after the leader is killed (no release, no goodbye) the follower must win
the Lease after the lease duration, hand over what it held, and release the Lease when stopped cleanly.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import yaml
from kubernetes import client as k8s

from aiops.clients.kube import KubeClient
from aiops.remediate.kube_journal import KubeJournal
from aiops.serve.leader import LeaseElector
from tests.support import kubestack
from tests.support.polling import wait_until
from tests.support.realstack import free_port
from tests.test_agent_sim import alert_payload

pytestmark = pytest.mark.kube

REPO = Path(__file__).resolve().parent.parent
# The leader's last write must be over before another may take the Lease: request timeout and journal cache age
# stay under lease_duration - renew_deadline (1.5 s here), as the settings require.
DURATION = 3
HTTP_TIMEOUT = 5.0


class ServeProcess:
    """``python -m aiops.cli serve --config FILE`` with its output in a log file."""

    def __init__(self, kube, workdir: Path, namespace: str, identity: str, extra: dict | None = None,
                 advertise: bool = False) -> None:
        self.identity = identity
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        token_file = workdir / "kube-token"
        token_file.write_text(kube.token)
        config = {
            "webhook": {"listen": f"127.0.0.1:{self.port}"},
            "kubernetes": {"host": kube.url, "token_file": str(token_file), "verify_ssl": False,
                           "request_timeout_seconds": 1.2},
            "journal": {"read_cache_seconds": 0.5},
            "state_dir": str(workdir / identity),
            "log_format": "json",
            "leader_election": {"enabled": True, "namespace": namespace, "identity": identity,
                                "lease_duration_seconds": DURATION, "renew_deadline_seconds": 1.5,
                                "retry_period_seconds": 0.2},
        }
        for key, value in (extra or {}).items():  # extra sections, merged one level deep
            config[key] = {**config[key], **value} if isinstance(value, dict) and key in config else value
        self.config = workdir / f"{identity}.yaml"
        self.config.write_text(yaml.safe_dump(config))
        self.log = workdir / f"{identity}.log"
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        with open(self.log, "wb") as out:
            argv = [sys.executable, "-m", "aiops.cli", "serve", "--config", str(self.config)]
            if advertise:  # as deploy/ runs it: each replica's own URL on the command line
                argv += ["--advertise-url", self.url]
            self.popen = subprocess.Popen(argv, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL)

    def election(self) -> dict:
        """The ``leader_election`` entry of ``/readyz`` (raises while the server is not up yet)."""
        if self.popen.poll() is not None:
            raise AssertionError(f"{self.identity} exited with {self.popen.returncode}:\n{self.tail()}")
        return requests.get(f"{self.url}/readyz", timeout=HTTP_TIMEOUT).json()["leader_election"]

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def stop(self) -> int | None:
        """SIGTERM (the agent stops cleanly and releases the Lease); kill if it hangs."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=5)
        return self.popen.returncode


def show_logs(*procs) -> None:
    """After a failure: the end of each started agent's log, so the report says what the agents saw."""
    for proc in procs:
        if proc is not None:
            print(f"--- {proc.identity}\n{proc.tail()}")


def stop_all(*procs) -> None:
    for proc in procs:
        if proc is not None:
            proc.stop()


def test_killing_the_leader_process_hands_over_to_the_follower(kube_real, tmp_path):
    namespace = f"t-{uuid.uuid4().hex[:10]}"
    kube_real.create_namespace(namespace)
    api = kube_real.client()
    a = ServeProcess(kube_real, tmp_path, namespace, "serve-a")
    b = None
    try:
        wait_until(lambda: a.election()["state"] == "leader", 60, "serve-a leads")
        b = ServeProcess(kube_real, tmp_path, namespace, "serve-b")
        wait_until(lambda: b.election()["holder"] == "serve-a", 60, "serve-b follows serve-a")
        assert b.election()["state"] == "follower"

        payload = alert_payload("shop", "cart", time.time() - 60)
        response = requests.post(f"{b.url}/webhook/alertmanager", json=payload, timeout=HTTP_TIMEOUT)
        assert response.status_code == 200
        wait_until(lambda: b.election()["held_incidents"] == 1, 10, "serve-b holds the alert's incident")

        a.popen.kill()  # SIGKILL: no release, the Lease still names serve-a
        a.popen.wait(timeout=10)
        killed = time.monotonic()
        assert api.get_lease(namespace, "aiops-leader")["spec"]["holderIdentity"] == "serve-a"
        wait_until(lambda: b.election()["state"] == "leader", 3 * DURATION + 5, "serve-b takes over")
        print(f"\nfailover after kill -9: {time.monotonic() - killed:.2f}s (lease {DURATION}s, retry 0.2s)")
        assert api.get_lease(namespace, "aiops-leader")["spec"]["holderIdentity"] == "serve-b"
        wait_until(lambda: b.election()["held_incidents"] == 0, 10, "serve-b hands the held incident over")

        assert b.stop() == 0
        assert api.get_lease(namespace, "aiops-leader")["spec"]["holderIdentity"] == ""  # released on SIGTERM
    except BaseException:
        show_logs(a, b)
        raise
    finally:
        stop_all(a, b)
        api.close()
        kube_real.delete_namespace(namespace)


def test_an_alert_posted_to_the_follower_process_reaches_the_leader(kube_real, tmp_path):
    namespace = f"t-{uuid.uuid4().hex[:10]}"
    kube_real.create_namespace(namespace)
    a = ServeProcess(kube_real, tmp_path, namespace, "serve-a", advertise=True)
    b = None
    try:
        wait_until(lambda: a.election()["state"] == "leader", 60, "serve-a leads")
        # serve-a is a verified peer of serve-b (issue #13: never forward the token to an unverified URL)
        b = ServeProcess(kube_real, tmp_path, namespace, "serve-b", advertise=True,
                         extra={"webhook": {"peer_urls": [a.url]}})
        wait_until(lambda: b.election()["holder_url"] == a.url, 60, "serve-b reads serve-a's URL from the Lease")
        response = requests.post(f"{b.url}/webhook/alertmanager", json=alert_payload("shop", "cart", time.time() - 60),
                                 timeout=HTTP_TIMEOUT)
        assert response.status_code == 200, response.text
        assert response.json()["forwarded_to"] == a.url and len(response.json()["incidents"]) == 1
        assert b.election()["held_incidents"] == 0
        metrics = requests.get(f"{a.url}/metrics", timeout=HTTP_TIMEOUT).text
        assert 'aiops_webhook_requests_total{outcome="accepted"} 1.0' in metrics
    except BaseException:
        show_logs(a, b)
        raise
    finally:
        stop_all(a, b)
        kube_real.delete_namespace(namespace)


def test_the_documented_lease_permissions_are_enough_and_needed(tmp_path):
    """get/create/update on leases, nothing more: an agent with that Role leads; one without it says why."""
    allowed, denied = uuid.uuid4().hex, uuid.uuid4().hex
    stack = kubestack.start_kube(authorization_mode="RBAC",
                                 extra_tokens={allowed: ("aiops-agent", []), denied: ("nobody", [])})
    try:
        namespace = "aiops-system"
        stack.create_namespace(namespace)
        with stack._api() as admin:
            rbac = k8s.RbacAuthorizationV1Api(admin)
            rbac.create_namespaced_role(namespace, {
                "metadata": {"name": "aiops-leader-election"},
                "rules": [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                           "verbs": ["get", "create", "update"]}]})
            rbac.create_namespaced_role_binding(namespace, {
                "metadata": {"name": "aiops-leader-election"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "aiops-leader-election"},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "aiops-agent"}]})
        agent_client = KubeClient.for_host(stack.url, allowed)
        nobody_client = KubeClient.for_host(stack.url, denied)
        agent = LeaseElector(agent_client, namespace, "aiops-leader", "agent", lease_duration=2, renew_deadline=1.5,
                             retry_period=0.2)
        nobody = LeaseElector(nobody_client, namespace, "aiops-leader", "nobody", lease_duration=2,
                              renew_deadline=1.5, retry_period=0.2)
        # RBAC caches can lag the Role's creation by a moment: poll rather than assume.
        wait_until(agent.step, 10, "the agent acquires the Lease with get/create/update")
        assert agent.step() is True  # renews
        assert nobody.step() is False
        assert "403" in nobody.status().error and "forbidden" in nobody.status().error.lower()
        assert agent.release() is True
        agent_client.close()
        nobody_client.close()
    finally:
        stack.stop()


# --- the leader dies mid-plan: the follower resumes it from the journal both share in the API ---------------------

MEMORY_BYTES = 200e6
VERIFY_WINDOW = 6.0


class FlatPrometheus:
    """A Prometheus HTTP API answering every range query for the working-set memory of ``deployment`` with a flat
    line (every other metric: no series). Enough for a plan to have a pre-action level and a verify window."""

    def __init__(self, namespace: str, deployment: str) -> None:
        labels = {"__name__": "container_memory_working_set_bytes", "namespace": namespace,
                  "deployment": deployment, "container": "app"}

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                url = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                if url.path == "/api/v1/query_range":
                    result = []
                    if query.get("query", "").startswith("container_memory_working_set_bytes"):
                        start, end = float(query["start"]), float(query["end"])
                        step = float(query["step"].removesuffix("s"))
                        count = int((end - start) // step) + 1
                        result = [{"metric": labels,
                                   "values": [[start + i * step, str(MEMORY_BYTES)] for i in range(count)]}]
                    body = {"status": "success", "data": {"resultType": "matrix", "result": result}}
                elif url.path == "/api/v1/query":
                    body = {"status": "success", "data": {"resultType": "vector", "result": []}}
                else:
                    body = {"status": "success"}
                payload = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format, *args) -> None:  # noqa: A002 - the stdlib's signature
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="flat-prometheus", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def slow_knowledge(workdir: Path) -> tuple[Path, Path]:
    """The stock playbooks plus ``scale-slow`` (scale 2 -> 4, verified on memory for ``VERIFY_WINDOW`` seconds),
    and one rule sending the HighErrorRate alert to it."""
    playbooks, rules = workdir / "playbooks", workdir / "rules"
    shutil.copytree(REPO / "playbooks", playbooks)
    rules.mkdir()
    (playbooks / "scale-slow.yaml").write_text(yaml.safe_dump({
        "name": "scale-slow", "description": "scale out, then watch memory for a while", "action": "scale",
        "faults": ["traffic_surge"], "params": {"factor": 2, "step_min": 1, "max_replicas": 10},
        "approval": "auto", "undo_on_worse": True,
        # The whole window is watched (no early end, no settle, no rollout wait): the leader must still be
        # verifying when it is killed.
        "verify": {"signals": ["memory"], "window_seconds": VERIFY_WINDOW, "interval_seconds": 0.5,
                   "recovered_ratio": 1.0, "worse_ratio": 2.0, "settle_seconds": 0, "wait_for_rollout": False,
                   "recovered_samples": int(VERIFY_WINDOW / 0.5)}}))
    (rules / "alert.yaml").write_text(yaml.safe_dump({"rules": [{
        "name": "errors-mean-scale-out", "description": "the test's one rule", "fault": "traffic_surge",
        "playbook": "scale-slow", "confidence": 0.95, "when": [{"alert": {"alertname": "HighErrorRate"}}]}]}))
    return playbooks, rules


def test_the_follower_resumes_the_plan_the_killed_leader_was_verifying(kube_real, tmp_path):
    namespace = f"t-{uuid.uuid4().hex[:10]}"
    kube_real.create_namespace(namespace)
    kube_real.create_app(namespace, "cart", replicas=2)
    api = kube_real.client()
    prometheus = FlatPrometheus(namespace, "cart")
    playbooks, rules = slow_knowledge(tmp_path)
    extra = {"mode": "act", "playbooks_dir": str(playbooks), "rules_dir": str(rules),
             "prometheus": {"url": prometheus.url},
             "kubernetes": {"namespaces": [namespace]}, "loop": {"interval_seconds": 3600},
             "journal": {"backend": "kubernetes"}}
    journal = KubeJournal(api, namespace)
    a = ServeProcess(kube_real, tmp_path, namespace, "serve-a", extra)
    b = None
    try:
        wait_until(lambda: a.election()["state"] == "leader", 60, "serve-a leads")
        b = ServeProcess(kube_real, tmp_path, namespace, "serve-b", extra)
        wait_until(lambda: b.election()["holder"] == "serve-a", 60, "serve-b follows serve-a")
        generation = api.get_deployment(namespace, "cart")["metadata"]["generation"]

        payload = alert_payload(namespace, "cart", time.time() - 60)
        assert requests.post(f"{a.url}/webhook/alertmanager", json=payload, timeout=HTTP_TIMEOUT).status_code == 200
        verifying = wait_until(lambda: [r for r in journal.latest() if r["state"] == "verifying"], 60,
                               "serve-a journals the plan as verifying")
        plan = verifying[0]["plan_id"]
        a.popen.kill()  # SIGKILL in the middle of the verify window
        a.popen.wait(timeout=10)
        killed = time.monotonic()
        assert journal.history(plan)[-1]["state"] == "verifying", "killed before the verdict"
        assert api.get_deployment(namespace, "cart")["spec"]["replicas"] == 4

        wait_until(lambda: b.election()["state"] == "leader", 3 * DURATION + 5, "serve-b takes over")
        final = wait_until(lambda: journal.history(plan)[-1]["state"] in ("succeeded", "failed", "rolled_back")
                           and journal.history(plan), VERIFY_WINDOW + 30, "serve-b finishes the plan")
        print(f"\nplan finished by the new leader {time.monotonic() - killed:.2f}s after kill -9 "
              f"(lease {DURATION}s, verify window {VERIFY_WINDOW}s)")
        notes = [r["note"] for r in final]
        assert final[-1]["state"] == "succeeded", notes
        assert any("resumed after a restart: verifying again" in n for n in notes), notes
        deployment = api.get_deployment(namespace, "cart")
        assert deployment["spec"]["replicas"] == 4, "scaled 2 -> 4 once, not 8"
        assert deployment["metadata"]["generation"] == generation + 1, "the Deployment was changed exactly once"
        assert journal.unfinished() == []
        assert b.stop() == 0
    except BaseException:
        show_logs(a, b)
        raise
    finally:
        stop_all(a, b)
        prometheus.stop()
        api.close()
        kube_real.delete_namespace(namespace)
