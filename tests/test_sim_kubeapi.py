"""The simulator's Kubernetes API, driven through the real client wrapper (``KubeClient``)."""

from __future__ import annotations

import json
import urllib.request

import pytest

from aiops.clients.kube import KubeClient, KubeError
from aiops.sim.clock import SimClock
from aiops.sim.cluster import SimCluster
from aiops.sim.kubeapi import KubeApiServer

START = 1_800_000_000.0


@pytest.fixture()
def sim():
    cluster = SimCluster(SimClock(START), rollout_seconds=10)
    cluster.add_deployment("shop", "cart", replicas=2)
    cluster.add_deployment("shop", "catalog", replicas=1, labels={"tier": "backend"})
    server = KubeApiServer(cluster).start()
    client = KubeClient.for_host(server.url)
    yield cluster, server, client
    client.close()
    server.stop()


def _raw(url: str, method: str = "GET", body: bytes | None = None, headers: dict | None = None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_version_and_discovery(sim):
    _, server, client = sim
    assert client.version()["major"] == "1"
    code, groups = _raw(server.url + "/apis")
    assert code == 200 and {g["name"] for g in groups["groups"]} == {"apps", "coordination.k8s.io", "policy"}
    assert _raw(server.url + "/api")[1]["versions"] == ["v1"]


def test_deployment_objects_are_complete(sim):
    _, _, client = sim
    dep = client.get_deployment("shop", "cart")
    assert dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
    assert dep["metadata"]["generation"] == 1 and int(dep["metadata"]["resourceVersion"]) > 0
    assert dep["status"]["availableReplicas"] == 2 and dep["status"]["observedGeneration"] == 1
    (rs,) = client.list_replicasets("shop", "app=cart")
    pod_hash = rs["metadata"]["labels"]["pod-template-hash"]
    pods = client.list_pods("shop", "app=cart")
    assert len(pods) == 2
    for pod in pods:
        assert pod["metadata"]["name"].startswith(f"cart-{pod_hash}-")
        assert len(pod["metadata"]["name"].split("-")[-1]) == 5
        assert pod["status"]["containerStatuses"][0]["ready"] is True
    svc = client.get_service("shop", "cart")
    assert svc["spec"]["selector"] == {"app": "cart"}
    assert [s["metadata"]["name"] for s in client.list_services("shop")] == ["cart", "catalog"]
    assert {d["metadata"]["name"] for d in client.list_deployments("shop")} == {"cart", "catalog"}


def test_label_selectors(sim):
    _, _, client = sim
    assert len(client.list_pods("shop", "app in (cart,catalog)")) == 3
    assert len(client.list_pods("shop", "app=cart,pod-template-hash")) == 2
    assert len(client.list_pods("shop", "app!=cart")) == 1
    assert len(client.list_pods("shop", "app notin (cart)")) == 1
    assert [d["metadata"]["name"] for d in client.list_deployments("shop", "tier=backend")] == ["catalog"]
    assert client.list_pods("shop", "!app") == []
    assert client.list_pods("other") == []


def test_merge_patch_and_json_patch(sim):
    _, _, client = sim
    dep = client.patch_deployment("shop", "cart", {"metadata": {"labels": {"team": "a", "app": None}}})
    assert dep["metadata"]["labels"] == {"team": "a"}
    assert dep["metadata"]["generation"] == 1  # metadata changes do not bump generation
    dep = client.patch_deployment("shop", "cart", [
        {"op": "test", "path": "/spec/replicas", "value": 2},
        {"op": "replace", "path": "/spec/replicas", "value": 3}])
    assert dep["spec"]["replicas"] == 3 and dep["metadata"]["generation"] == 2
    with pytest.raises(KubeError) as err:
        client.patch_deployment("shop", "cart", [{"op": "test", "path": "/spec/replicas", "value": 2},
                                                 {"op": "replace", "path": "/spec/replicas", "value": 9}])
    assert err.value.status == 422 and err.value.reason == "Invalid"
    assert client.get_deployment("shop", "cart")["spec"]["replicas"] == 3


def test_scale_subresource(sim):
    cluster, _, client = sim
    scale = client.get_scale("shop", "cart")
    assert scale["kind"] == "Scale" and scale["spec"]["replicas"] == 2 and scale["status"]["selector"] == "app=cart"
    assert client.patch_scale("shop", "cart", 5)["spec"]["replicas"] == 5
    assert len(client.list_pods("shop", "app=cart")) == 5
    assert client.get_deployment("shop", "cart")["status"]["availableReplicas"] == 2  # new pods not ready yet
    cluster.clock.advance(10)
    cluster.tick()
    assert client.get_deployment("shop", "cart")["status"]["availableReplicas"] == 5
    client.patch_scale("shop", "cart", 1)
    assert len(client.list_pods("shop", "app=cart")) == 1
    messages = [e["message"] for e in client.list_events("shop")]
    assert any("Scaled up replica set cart-" in m and m.endswith(" to 5") for m in messages)


def test_rollout_restart_creates_new_replicaset_and_replaces_pods(sim):
    cluster, _, client = sim
    old_pods = {p["metadata"]["name"] for p in client.list_pods("shop", "app=cart")}
    client.patch_deployment("shop", "cart", {"spec": {"template": {"metadata": {"annotations": {
        "kubectl.kubernetes.io/restartedAt": "2027-01-15T08:00:00Z"}}}}})
    rses = client.list_replicasets("shop", "app=cart")
    assert sorted(r["metadata"]["annotations"]["deployment.kubernetes.io/revision"] for r in rses) == ["1", "2"]
    # The old pods serve until the new ones are ready.
    assert old_pods < {p["metadata"]["name"] for p in client.list_pods("shop", "app=cart")}
    cluster.clock.advance(5)
    cluster.tick()
    assert old_pods < {p["metadata"]["name"] for p in client.list_pods("shop", "app=cart")}
    cluster.clock.advance(5)
    cluster.tick()
    new_pods = {p["metadata"]["name"] for p in client.list_pods("shop", "app=cart")}
    assert len(new_pods) == 2 and not (new_pods & old_pods)
    dep = client.get_deployment("shop", "cart")
    assert dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    assert dep["status"]["updatedReplicas"] == 2 and dep["status"]["availableReplicas"] == 2
    events = [e for e in client.list_events("shop") if e["reason"] == "ScalingReplicaSet"]
    assert events[-1]["message"].startswith("Scaled down replica set") and events[-1]["message"].endswith("to 0")
    assert events[-1]["source"]["component"] == "deployment-controller"


def test_strategic_merge_patch_merges_containers_by_name(sim):
    cluster, server, _ = sim
    body = json.dumps({"spec": {"template": {"spec": {"containers": [
        {"name": "app", "image": "registry.local/cart:2.0"}]}}}}).encode()
    code, dep = _raw(f"{server.url}/apis/apps/v1/namespaces/shop/deployments/cart", "PATCH", body,
                     {"Content-Type": "application/strategic-merge-patch+json"})
    assert code == 200
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "registry.local/cart:2.0" and container["ports"][0]["containerPort"] == 8080


def test_errors_404_409_415(sim):
    _, server, client = sim
    with pytest.raises(KubeError) as err:
        client.get_deployment("shop", "nope")
    assert err.value.not_found and err.value.reason == "NotFound"
    stale = client.get_deployment("shop", "cart")["metadata"]["resourceVersion"]
    client.patch_scale("shop", "cart", 3)
    with pytest.raises(KubeError) as err:
        client.patch_deployment("shop", "cart", {"metadata": {"resourceVersion": stale}, "spec": {"replicas": 1}})
    assert err.value.conflict
    fresh = client.get_deployment("shop", "cart")["metadata"]["resourceVersion"]
    assert client.patch_deployment("shop", "cart", {"metadata": {"resourceVersion": fresh},
                                                    "spec": {"replicas": 1}})["spec"]["replicas"] == 1
    code, status = _raw(f"{server.url}/apis/apps/v1/namespaces/shop/deployments/cart", "PATCH", b"{}",
                        {"Content-Type": "application/apply-patch+yaml"})
    assert code == 415 and status["reason"] == "UnsupportedMediaType" and status["kind"] == "Status"
    code, status = _raw(f"{server.url}/api/v1/namespaces/shop/pods/ghost/log")
    assert code == 404 and status["reason"] == "NotFound"


def test_bearer_token_required():
    cluster = SimCluster(SimClock(START))
    cluster.add_deployment("shop", "cart")
    server = KubeApiServer(cluster, token="s3cret").start()
    try:
        with pytest.raises(KubeError) as err:
            KubeClient.for_host(server.url).get_deployment("shop", "cart")
        assert err.value.status == 401
        assert KubeClient.for_host(server.url, token="s3cret").get_deployment("shop", "cart")["spec"]["replicas"] == 2
    finally:
        server.stop()


def test_pod_logs(sim):
    cluster, _, client = sim
    pod = client.list_pods("shop", "app=cart")[0]["metadata"]["name"]
    for i in range(5):
        cluster.append_log("shop", pod, START + i * 10, f"line {i}")
    cluster.clock.advance(40)
    text = client.read_pod_log("shop", pod, timestamps=False)
    assert text.splitlines() == [f"line {i}" for i in range(5)]
    assert client.read_pod_log("shop", pod, tail_lines=2, timestamps=False).splitlines() == ["line 3", "line 4"]
    assert client.read_pod_log("shop", pod, since_seconds=15, timestamps=False).splitlines() == ["line 3", "line 4"]
    first = client.read_pod_log("shop", pod, timestamps=True).splitlines()[0]
    stamp, line = first.split(" ", 1)
    assert line == "line 0" and stamp.endswith("Z") and len(stamp.split(".")[1]) == 10  # 9 digits + Z


def test_events_create_and_list(sim):
    _, _, client = sim
    created = client.create_event("shop", {
        "metadata": {"generateName": "cart."},
        "involvedObject": {"kind": "Deployment", "namespace": "shop", "name": "cart", "apiVersion": "apps/v1"},
        "reason": "AIOpsRemediation", "message": "scaled cart to 3", "type": "Normal",
        "source": {"component": "aiops-agent"}})
    assert created["metadata"]["name"].startswith("cart.") and created["metadata"]["uid"]
    events = client.list_events("shop")
    assert events[-1]["reason"] == "AIOpsRemediation" and events[-1]["message"] == "scaled cart to 3"


def test_namespaces(sim):
    _, server, _ = sim
    code, ns = _raw(f"{server.url}/api/v1/namespaces", "POST", json.dumps({"metadata": {"name": "team-b"}}).encode(),
                    {"Content-Type": "application/json"})
    assert code == 201 and ns["metadata"]["name"] == "team-b"
    code, listing = _raw(f"{server.url}/api/v1/namespaces")
    assert listing["kind"] == "NamespaceList" and {n["metadata"]["name"] for n in listing["items"]} == {"shop", "team-b"}
    assert _raw(f"{server.url}/api/v1/namespaces/team-b")[1]["status"]["phase"] == "Active"
    code, status = _raw(f"{server.url}/api/v1/namespaces", "POST", json.dumps({"metadata": {"name": "team-b"}}).encode())
    assert code == 409 and status["reason"] == "AlreadyExists"


def test_old_replicasets_are_pruned_to_revision_history_limit(sim):
    cluster, _, client = sim
    for i in range(13):
        client.patch_deployment("shop", "catalog", {"spec": {"template": {"metadata": {"annotations": {
            "kubectl.kubernetes.io/restartedAt": f"2027-01-15T08:00:{i:02d}Z"}}}}})
        cluster.clock.advance(10)
        cluster.tick()
    rses = client.list_replicasets("shop", "app=catalog")
    assert len(rses) == 11  # the current one + revisionHistoryLimit (10)
    revisions = sorted(int(r["metadata"]["annotations"]["deployment.kubernetes.io/revision"]) for r in rses)
    assert revisions == list(range(4, 15))
