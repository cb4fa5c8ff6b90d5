"""The real kubectl (v1.32, cached by ``make kube``) against the simulator, as an SRE would use it after
``aiops sim``: discovery with short names and categories, server-side tables, selectors, rollouts and their watches.

Each test gets its own simulated cluster stepping in real time (1 s steps and rollouts) and its own discovery cache.
Without the kubectl binary the tests skip, naming how to fetch it; under CI (where ``make test`` fetches it) they fail.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import pytest

from tests.support import render
from tests.support.realstack import free_port
from tests.support.simruntime import realtime_sim

KUBECTL = render.tools_dir() / "kubectl"
REPO = render.ROOT


@pytest.fixture(scope="module", autouse=True)
def _kubectl_binary():
    if not os.access(KUBECTL, os.X_OK):
        reason = f"kubectl is not cached in {render.tools_dir()}: run `make kube` / {render.TOOLS_SCRIPT}"
        if os.environ.get("CI"):
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)


@pytest.fixture()
def sim():
    with realtime_sim("memory_leak") as runtime:
        yield runtime


@pytest.fixture()
def kubectl(sim, tmp_path):
    """Run kubectl against ``sim``; returns the finished process (stdout, stderr, returncode)."""
    def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return _kubectl(sim.kube_url, tmp_path, *args, timeout=timeout)
    return run


def _kubectl(url: str, cache, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    # No kubeconfig of the user's: nothing but the flags decides the server, the namespace and the credentials.
    return subprocess.run([str(KUBECTL), "--server", url, "--cache-dir", str(cache / "kube-cache"), *args],
                          capture_output=True, text=True, timeout=timeout, env={**os.environ, "KUBECONFIG": os.devnull})


def ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, f"kubectl exited {proc.returncode}: {proc.stderr}"
    return proc.stdout


def rows(text: str) -> list[list[str]]:
    """Whitespace-split lines (cells here never contain spaces)."""
    return [line.split() for line in text.splitlines() if line.strip()]


def test_get_deployments_and_pods_in_all_namespaces(sim, kubectl):
    out = ok(kubectl("get", "deploy,pods", "-A"))
    deployments, pods = out.split("\n\n")
    header, *deployment_rows = rows(deployments)
    assert header == ["NAMESPACE", "NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    expected = {d["metadata"]["name"]: d["spec"]["replicas"] for d in sim.cluster.list("Deployment")}
    assert {r[1]: r[2:5] for r in deployment_rows} == {
        f"deployment.apps/{name}": [f"{n}/{n}", str(n), str(n)] for name, n in expected.items()}
    assert all(r[0] == "shop" and re.fullmatch(r"\d+s", r[5]) for r in deployment_rows)
    header, *pod_rows = rows(pods)
    assert header == ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert len(pod_rows) == sum(expected.values())
    assert all(r[1].startswith("pod/") and r[2:5] == ["1/1", "Running", "0"] for r in pod_rows)


def test_short_names_the_all_category_and_wide_columns(sim, kubectl):
    out = ok(kubectl("get", "deploy,po,svc,rs,ns,ev", "-n", "shop"))
    for kind in ("deployment.apps/cart", "pod/cart-", "service/cart", "replicaset.apps/cart-", "namespace/shop"):
        assert kind in out, kind
    assert re.search(r"ScalingReplicaSet +deployment/cart +Scaled up replica set cart-", out)  # the events
    everything = ok(kubectl("get", "all", "-n", "shop"))
    assert [line.split()[0] for line in everything.splitlines() if line.startswith("NAME")] == ["NAME"] * 4
    assert {r[0].split("/")[0] for r in rows(everything) if "/" in r[0]} == {
        "pod", "service", "deployment.apps", "replicaset.apps"}
    none = kubectl("get", "cm", "-n", "shop")
    assert none.returncode == 0 and "No resources found in shop namespace." in none.stderr
    wide = rows(ok(kubectl("get", "pods", "-n", "shop", "-l", "app=redis", "-o", "wide")))
    assert wide[0][:7] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"]
    assert wide[1][6] == sim.cluster.node


def test_rollout_status_follows_the_deployment_it_names(sim, kubectl):
    assert "deployment.apps/redis restarted" in ok(kubectl("rollout", "restart", "deployment/redis", "-n", "shop"))
    out = ok(kubectl("rollout", "status", "deployment/redis", "-n", "shop", "--timeout=60s"))
    assert out.splitlines()[-1] == 'deployment "redis" successfully rolled out'
    assert all('"redis"' in line for line in out.splitlines()), out
    [rs_new, rs_old] = sorted(sim.cluster.list("ReplicaSet", "shop", "app=redis"),
                              key=lambda rs: -int(rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]))
    assert (rs_new["status"]["readyReplicas"], rs_old["spec"]["replicas"]) == (1, 0)


def test_describe_shows_only_the_deployments_own_events(sim, kubectl):
    catalog = sim.cluster.get("Deployment", "shop", "catalog")
    sim.cluster.emit_event("shop", catalog, "Noted", "this event is about catalog only")
    sim.cluster.emit_event("shop", {"apiVersion": "v1", "kind": "Pod", "name": "cart", "namespace": "shop"},
                           "Noted", "this event is about a pod named cart")

    out = ok(kubectl("describe", "deployment", "cart", "-n", "shop"))

    events = out.split("\nEvents:")[1]
    assert "Scaled up replica set cart-" in events
    assert "catalog" not in events and "a pod named cart" not in events
    assert out.startswith("Name:                   cart\n")


def test_events_and_pods_selected_by_field_and_label(sim, kubectl):
    out = ok(kubectl("get", "events", "-n", "shop", "--field-selector", "involvedObject.name=catalog"))
    header, *event_rows = rows(out)
    assert header[:4] == ["LAST", "SEEN", "TYPE", "REASON"]
    assert event_rows and all(r[3] == "deployment/catalog" for r in event_rows)
    names = ok(kubectl("get", "pods", "-n", "shop", "-l", "app=cart", "-o", "name")).split()
    assert len(names) == 2 and all(n.startswith("pod/cart-") for n in names)
    refused = kubectl("get", "pods", "-n", "shop", "--field-selector", "spec.replicas=1")
    assert refused.returncode == 1 and "field label not supported: spec.replicas" in refused.stderr


def test_set_image_then_rollout_undo_brings_the_previous_image_back(sim, kubectl):
    def image() -> str:
        return ok(kubectl("get", "deployment", "payments", "-n", "shop", "-o",
                          "jsonpath={.spec.template.spec.containers[0].image}"))

    ok(kubectl("set", "image", "deployment/payments", "app=registry.local/payments:2.0", "-n", "shop"))
    ok(kubectl("rollout", "status", "deployment/payments", "-n", "shop", "--timeout=60s"))
    assert image() == "registry.local/payments:2.0"

    assert "rolled back" in ok(kubectl("rollout", "undo", "deployment/payments", "-n", "shop"))
    assert 'deployment "payments" successfully rolled out' in ok(
        kubectl("rollout", "status", "deployment/payments", "-n", "shop", "--timeout=60s"))
    assert image() == "registry.local/payments:1.0"
    history = rows(ok(kubectl("rollout", "history", "deployment/payments", "-n", "shop")))
    assert [r[0] for r in history[2:]] == ["2", "3"]


def test_the_kubectl_command_aiops_sim_prints_works_as_printed(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "aiops.cli", "sim", "--kube-port", str(free_port()), "--metrics-port",
         str(free_port())], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        hint = next((line for line in process.stdout if "kubectl" in line), "")  # until printed, or the sim ends
        assert hint, f"aiops sim printed no kubectl command: {process.stderr.read()}"
        command = re.search(r"\((kubectl [^)]*)\)", hint)[1].split()
        assert command[1] == "--server"
        out = ok(_kubectl(command[2], tmp_path, *command[3:]))
        assert "deployment.apps/cart" in out and "pod/cart-" in out
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
