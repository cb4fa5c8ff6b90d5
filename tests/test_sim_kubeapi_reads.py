"""What read clients such as kubectl need from the simulator's Kubernetes API, over HTTP: discovery (short names,
categories, verbs), server-side Tables, field and label selectors, and watches."""

from __future__ import annotations

import json
import threading
from itertools import groupby
from pathlib import Path

import pytest
import requests

from aiops.sim import discovery
from aiops.sim.changes import ChangeLog, Expired
from aiops.sim.clock import SimClock
from aiops.sim.cluster import SimCluster
from aiops.sim.kubeapi import KubeApiServer
from aiops.sim.tables import human_duration
from tests.support.polling import wait_for

START = 1_800_000_000.0
RECORDED_COLUMNS = json.loads((Path(__file__).parent / "fixtures" / "kube" / "table_columns.json").read_text())
TABLE = ("application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,"
         "application/json")
AGGREGATED = ("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
              "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json")
DEPLOYMENTS = "/apis/apps/v1/namespaces/shop/deployments"


@pytest.fixture()
def sim():
    cluster = SimCluster(SimClock(START), rollout_seconds=10, max_changes=50)
    cluster.add_deployment("shop", "cart", replicas=2)
    cluster.add_deployment("shop", "catalog", replicas=1, labels={"tier": "backend"})
    cluster.add_deployment("other", "cart", replicas=1, service=False)
    server = KubeApiServer(cluster).start()
    yield cluster, server
    server.stop()


def get(server, path: str, accept: str = "application/json", **params):
    answer = requests.get(server.url + path, params=params, headers={"Accept": accept}, timeout=10)
    return answer.status_code, answer.json()


def names(listing: dict) -> list[str]:
    return [i["metadata"]["name"] for i in listing["items"]]


def watch(server, path: str, accept: str = "application/json", **params) -> list[dict]:
    """Every event of a watch that the server ends after ``timeoutSeconds`` (1 unless given)."""
    params = {"watch": "true", "timeoutSeconds": "1", **params}
    with requests.get(server.url + path, params=params, headers={"Accept": accept}, stream=True, timeout=10) as answer:
        assert answer.status_code == 200, answer.text
        return [json.loads(line) for line in answer.iter_lines() if line]


# --- discovery ---------------------------------------------------------------------------------------------------

def test_every_advertised_group_version_and_resource_is_served(sim):
    _, server = sim
    versions = ["v1"] + [v["groupVersion"] for g in get(server, "/apis")[1]["groups"] for v in g["versions"]]
    assert get(server, "/api")[1]["versions"] == ["v1"]
    assert sorted(versions) == ["apps/v1", "coordination.k8s.io/v1", "policy/v1beta1", "v1"]
    listed = {}
    for gv in versions:
        code, resources = get(server, ("/api/" if gv == "v1" else "/apis/") + gv)
        assert code == 200 and resources["kind"] == "APIResourceList" and resources["groupVersion"] == gv
        for r in resources["resources"]:
            listed[r["name"]] = r
            if "list" in r["verbs"]:
                path = ("/api/" if gv == "v1" else "/apis/") + gv + f"/{r['name']}"
                assert get(server, path)[0] == 200, path
    assert {n: r.get("shortNames") for n, r in listed.items() if r.get("shortNames")} == {
        "configmaps": ["cm"], "events": ["ev"], "namespaces": ["ns"], "pods": ["po"], "services": ["svc"],
        "deployments": ["deploy"], "replicasets": ["rs"], "poddisruptionbudgets": ["pdb"]}
    assert {n for n, r in listed.items() if "all" in r.get("categories", [])} == {
        "pods", "services", "deployments", "replicasets"}
    assert listed["deployments/scale"]["group"] == "autoscaling" and listed["pods/log"]["verbs"] == ["get"]
    assert get(server, "/apis/autoscaling/v1")[0] == 404
    assert get(server, "/apis/apps")[1]["preferredVersion"]["groupVersion"] == "apps/v1"


def test_a_verb_discovery_does_not_list_is_refused(sim):
    _, server = sim
    assert "create" not in next(r for r in get(server, "/api/v1")[1]["resources"] if r["name"] == "pods")["verbs"]
    answer = requests.post(server.url + "/api/v1/namespaces/shop/pods", json={"metadata": {"name": "x"}}, timeout=5)
    assert answer.status_code == 405 and answer.json()["reason"] == "MethodNotAllowed"


def test_a_client_asking_for_aggregated_discovery_gets_the_plain_documents(sim):
    _, server = sim
    for path, kind in (("/api", "APIVersions"), ("/apis", "APIGroupList")):
        answer = requests.get(server.url + path, headers={"Accept": AGGREGATED}, timeout=5)
        assert answer.headers["Content-Type"] == "application/json" and answer.json()["kind"] == kind


# --- tables ------------------------------------------------------------------------------------------------------

def test_deployments_print_ready_up_to_date_available_and_age_in_sim_time(sim):
    cluster, server = sim
    cluster.clock.advance(150)
    code, tabled = get(server, "/apis/apps/v1/deployments", TABLE)

    assert code == 200 and tabled["kind"] == "Table" and tabled["apiVersion"] == "meta.k8s.io/v1"
    columns = [(c["name"], c["priority"]) for c in tabled["columnDefinitions"]]
    assert columns == [("Name", 0), ("Ready", 0), ("Up-to-date", 0), ("Available", 0), ("Age", 0),
                       ("Containers", 1), ("Images", 1), ("Selector", 1)]
    rows = {(r["object"]["metadata"]["namespace"], r["cells"][0]): r["cells"] for r in tabled["rows"]}
    assert rows[("shop", "cart")] == ["cart", "2/2", 2, 2, "2m30s", "app", "registry.local/cart:1.0", "app=cart"]
    assert rows[("other", "cart")][1] == "1/1"
    assert tabled["rows"][0]["object"]["kind"] == "PartialObjectMetadata"


def test_pods_print_ready_status_restarts_age_and_wide_columns(sim):
    cluster, server = sim
    pod = cluster.list("Pod", "shop", "app=catalog")[0]["metadata"]["name"]
    cluster.restart_container("shop", pod, START, backoff_seconds=60)
    cluster.clock.advance(30)
    cluster.tick()

    _, tabled = get(server, "/api/v1/namespaces/shop/pods", TABLE, labelSelector="app=catalog")

    assert [c["name"] for c in tabled["columnDefinitions"]][:5] == ["Name", "Ready", "Status", "Restarts", "Age"]
    [row] = tabled["rows"]
    assert row["cells"][:5] == [pod, "0/1", "Running", 1, "30s"]
    assert row["cells"][5].startswith("10.244.") and row["cells"][6] == "sim-node-1"


def test_every_served_kind_prints_the_columns_recorded_from_the_real_apiserver(sim):
    cluster, server = sim
    cluster.create("ConfigMap", "shop", {"metadata": {"name": "settings"}, "data": {"a": "1", "b": "2"}})
    cluster.create("Lease", "shop", {"metadata": {"name": "leader"}, "spec": {"holderIdentity": "agent-0"}})
    cluster.create("PodDisruptionBudget", "shop", {"metadata": {"name": "cart"}, "spec": {
        "minAvailable": 1, "selector": {"matchLabels": {"app": "cart"}}}})
    printed = set()
    for resource in discovery.RESOURCES:
        base = "/api/v1" if not resource.group else f"/apis/{resource.group_version}"
        _, tabled = get(server, f"{base}/{resource.plural}", TABLE)
        assert tabled["columnDefinitions"] == RECORDED_COLUMNS[resource.kind], resource.kind
        assert tabled["rows"] and all(len(r["cells"]) == len(RECORDED_COLUMNS[resource.kind])
                                      for r in tabled["rows"]), resource.kind
        printed.add(resource.kind)
    assert printed == set(RECORDED_COLUMNS)
    cells = {k: get(server, p, TABLE)[1]["rows"][0]["cells"][:-1] for k, p in (
        ("cm", "/api/v1/namespaces/shop/configmaps"), ("lease", "/apis/coordination.k8s.io/v1/leases"),
        ("pdb", "/apis/policy/v1beta1/namespaces/shop/poddisruptionbudgets"))}
    assert cells == {"cm": ["settings", 2], "lease": ["leader", "agent-0"], "pdb": ["cart", "1", "N/A", 1]}


def test_table_cells_of_services_and_events(sim):
    cluster, server = sim
    _, services = get(server, "/api/v1/namespaces/shop/services", TABLE)
    assert services["rows"][0]["cells"][1:5] == ["ClusterIP", cluster.get("Service", "shop", "cart")["spec"]
                                                 ["clusterIP"], "<none>", "80/TCP"]
    _, events = get(server, "/api/v1/namespaces/shop/events", TABLE, fieldSelector="involvedObject.name=cart")
    [row] = events["rows"]
    assert row["cells"][1:4] == ["Normal", "ScalingReplicaSet", "deployment/cart"]
    assert row["cells"][6].startswith("Scaled up replica set cart-") and row["cells"][8] == 1


def test_one_object_as_a_table_and_what_rows_carry(sim):
    _, server = sim
    _, one = get(server, f"{DEPLOYMENTS}/cart", TABLE)
    assert one["kind"] == "Table" and [r["cells"][0] for r in one["rows"]] == ["cart"]
    _, bare = get(server, DEPLOYMENTS, TABLE, includeObject="None")
    assert [r["object"] for r in bare["rows"]] == [None, None]
    _, full = get(server, DEPLOYMENTS, TABLE, includeObject="Object")
    assert full["rows"][0]["object"]["spec"]["replicas"] == 2
    code, status = get(server, DEPLOYMENTS, TABLE, includeObject="Everything")
    assert (code, status["message"]) == (400, "Unable to convert to Table as requested: includeObject: Invalid value: "
                                              "\"Everything\": must be 'Metadata', 'Object', 'None', or empty")
    assert get(server, DEPLOYMENTS, "application/json;as=Table;v=v1beta1;g=meta.k8s.io")[1]["apiVersion"] == \
        "meta.k8s.io/v1beta1"
    assert get(server, DEPLOYMENTS)[1]["kind"] == "DeploymentList"


@pytest.mark.parametrize("seconds, printed", [
    (-5, "<invalid>"), (-1, "0s"), (0, "0s"), (119, "119s"), (120, "2m"), (121, "2m1s"), (599, "9m59s"),
    (600, "10m"), (3 * 3600 - 1, "179m"), (3 * 3600, "3h"), (8 * 3600 - 60, "7h59m"), (8 * 3600, "8h"),
    (47 * 3600, "47h"), (48 * 3600, "2d"), (8 * 86400 - 3600, "7d23h"), (8 * 86400, "8d"), (729 * 86400, "729d"),
    (731 * 86400, "2y1d"), (8 * 365 * 86400, "8y")])
def test_ages_print_like_the_apiserver(seconds, printed):
    assert human_duration(seconds) == printed


# --- selectors ---------------------------------------------------------------------------------------------------

def test_field_selectors_on_names_and_namespaces(sim):
    _, server = sim
    assert names(get(server, DEPLOYMENTS, fieldSelector="metadata.name=catalog")[1]) == ["catalog"]
    assert names(get(server, DEPLOYMENTS, fieldSelector="metadata.name!=catalog")[1]) == ["cart"]
    everywhere = get(server, "/apis/apps/v1/deployments", fieldSelector="metadata.namespace=other")[1]
    assert [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in everywhere["items"]] == [("other", "cart")]
    assert names(get(server, DEPLOYMENTS, fieldSelector="metadata.name=cart,metadata.name=catalog")[1]) == []
    first, second = names(get(server, "/api/v1/namespaces/shop/pods", labelSelector="app=cart")[1])
    fields = f"status.phase=Running,metadata.namespace=shop,metadata.name!={first}"
    both = get(server, "/api/v1/pods", fieldSelector=fields, labelSelector="app=cart")[1]
    assert names(both) == [second]


def test_event_field_selectors_pick_one_objects_events(sim):
    cluster, server = sim
    cart = cluster.get("Deployment", "shop", "cart")
    cluster.emit_event("shop", {"apiVersion": "v1", "kind": "Pod", "name": "cart", "namespace": "shop"},
                       "Pulled", "a pod named like the deployment", component="kubelet")
    events = "/api/v1/namespaces/shop/events"

    by_name = get(server, events, fieldSelector="involvedObject.name=cart")[1]["items"]
    assert {e["involvedObject"]["kind"] for e in by_name} == {"Deployment", "Pod"}
    selector = (f"involvedObject.name=cart,involvedObject.namespace=shop,involvedObject.kind=Deployment,"
                f"involvedObject.uid={cart['metadata']['uid']}")
    [event] = get(server, events, fieldSelector=selector)[1]["items"]
    assert event["reason"] == "ScalingReplicaSet" and "cart-" in event["message"]
    assert [e["reason"] for e in get(server, events, fieldSelector="source=kubelet,type=Normal")[1]["items"]] == \
        ["Pulled"]


@pytest.mark.parametrize("path, selector, message", [
    (DEPLOYMENTS, "spec.replicas=2",
     '"spec.replicas" is not a known field selector: only "metadata.name", "metadata.namespace"'),
    ("/api/v1/namespaces/shop/pods", "spec.replicas=2", "field label not supported: spec.replicas"),
    ("/api/v1/namespaces/shop/events", r"message=a\,b", "field label not supported: message"),
    (DEPLOYMENTS, "metadata.name", "invalid selector: 'metadata.name'; can't understand 'metadata.name'"),
    (DEPLOYMENTS, "metadata.name=cart,x", "invalid selector: 'metadata.name=cart,x'; can't understand 'x'"),
])
def test_a_field_selector_the_apiserver_refuses_is_400_with_its_message(sim, path, selector, message):
    _, server = sim
    code, status = get(server, path, fieldSelector=selector)
    assert (code, status["reason"], status["message"]) == (400, "BadRequest", message)


def test_a_label_selector_that_does_not_parse_is_one_400(sim):
    _, server = sim
    code, status = get(server, DEPLOYMENTS, labelSelector="app in (cart")
    assert code == 400 and status["message"] == "unable to parse requirement: 'app in (cart'"


# --- watch -------------------------------------------------------------------------------------------------------

def test_a_watch_selected_by_name_streams_only_that_object(sim):
    cluster, server = sim
    since = get(server, DEPLOYMENTS)[1]["metadata"]["resourceVersion"]
    for name in ("cart", "catalog", "cart"):
        cluster.scale("shop", name, 3)
        cluster.scale("shop", name, 2)

    events = watch(server, DEPLOYMENTS, fieldSelector="metadata.name=catalog", resourceVersion=since)

    assert events and {(e["type"], e["object"]["metadata"]["name"]) for e in events} == {("MODIFIED", "catalog")}
    assert [replicas for replicas, _ in groupby(e["object"]["spec"]["replicas"] for e in events)] == [3, 2]
    assert events[0]["object"]["kind"] == "Deployment"
    versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert versions == sorted(versions) and versions[0] > int(since)


def test_a_watch_without_a_version_starts_with_the_current_objects(sim):
    _, server = sim
    events = watch(server, "/apis/apps/v1/deployments", labelSelector="app=cart")
    assert [(e["type"], e["object"]["metadata"]["namespace"]) for e in events] == [("ADDED", "shop"),
                                                                                    ("ADDED", "other")] or \
        sorted((e["type"], e["object"]["metadata"]["namespace"]) for e in events) == [("ADDED", "other"),
                                                                                       ("ADDED", "shop")]


def test_an_object_leaving_the_selection_is_deleted_for_the_watch_and_pods_going_away_are_deleted(sim):
    cluster, server = sim
    since = cluster.resource_version()
    cluster.patch("Deployment", "shop", "catalog", {"metadata": {"labels": {"tier": None}}})
    cluster.scale("shop", "cart", 1)

    left = watch(server, DEPLOYMENTS, labelSelector="tier=backend", resourceVersion=since)
    pods = watch(server, "/api/v1/namespaces/shop/pods", labelSelector="app=cart", resourceVersion=since)

    assert [(e["type"], e["object"]["metadata"]["name"]) for e in left] == [("DELETED", "catalog")]
    assert [e["type"] for e in pods] == ["DELETED"]
    assert cluster.get("Pod", "shop", pods[0]["object"]["metadata"]["name"]) is None


def test_a_watch_from_a_version_no_longer_kept_is_410_expired(sim):
    cluster, server = sim
    since = cluster.resource_version()
    for i in range(30):  # more changes than the 50 the fixture's cluster keeps
        cluster.scale("shop", "cart", 2 + i % 2)
    [event] = watch(server, DEPLOYMENTS, resourceVersion=since)
    assert event["type"] == "ERROR"
    assert (event["object"]["code"], event["object"]["reason"]) == (410, "Expired")
    assert event["object"]["message"].startswith(f"too old resource version: {since} (")


def test_a_watch_of_tables_sends_column_definitions_once(sim):
    cluster, server = sim
    since = cluster.resource_version()
    cluster.scale("shop", "cart", 3)
    cluster.scale("shop", "cart", 4)
    events = watch(server, DEPLOYMENTS, TABLE, resourceVersion=since, fieldSelector="metadata.name=cart")
    assert [e["object"]["kind"] for e in events] == ["Table"] * len(events) and len(events) >= 2
    assert events[0]["object"]["columnDefinitions"] and not events[1]["object"]["columnDefinitions"]
    assert [ready for ready, _ in groupby(e["object"]["rows"][0]["cells"][1] for e in events)] == ["2/3", "2/4"]


def test_an_open_watch_ends_when_the_server_stops(sim):
    _, server = sim
    answer = requests.get(server.url + DEPLOYMENTS, params={"watch": "true"}, stream=True, timeout=10)
    lines = answer.iter_lines()
    assert json.loads(next(lines))["type"] == "ADDED"
    ended = threading.Event()

    def drain():
        for _ in lines:
            pass
        ended.set()

    threading.Thread(target=drain, daemon=True).start()
    server.stop()
    assert wait_for(ended.is_set, 5), "the watch outlived the server"


def test_bad_watch_parameters_are_400_before_anything_streams(sim):
    _, server = sim
    assert get(server, DEPLOYMENTS, watch="true", resourceVersion="abc")[0] == 400
    assert get(server, DEPLOYMENTS, watch="true", fieldSelector="spec.x=1")[0] == 400


def test_the_change_log_keeps_the_last_changes_and_knows_when_it_has_lost_some():
    log = ChangeLog(threading.RLock(), capacity=2)
    for rv, name in ((1, "a"), (2, "b"), (3, "a")):
        log.record(rv, "Pod", {"metadata": {"name": name, "namespace": "ns"}})
    changes = log.wait_since(1, timeout=0)
    assert [(c.resource_version, c.type) for c in changes] == [(2, "ADDED"), (3, "MODIFIED")]
    assert changes[1].previous()["metadata"]["name"] == "a"
    assert log.wait_since(3, timeout=0) == []
    with pytest.raises(Expired):
        log.wait_since(0, timeout=0)
