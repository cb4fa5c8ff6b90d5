"""Contract tests for what kubectl reads, on the real kube-apiserver v1.20 and on the simulator alike (``kube`` is
parametrized; see ``tests/test_kube_contract.py``): discovery, server-side Tables, field selectors and watches.

The Table columns are compared with ``tests/fixtures/kube/table_columns.json``, recorded from the real apiserver, so
the simulator prints exactly what a real cluster prints.
"""

from __future__ import annotations

import json
import os
import subprocess
from itertools import groupby
from pathlib import Path

import pytest
import requests

from aiops.sim.kubeapi import KubeApiServer
from tests.support import render
from tests.support.realstack import wait_until
from tests.test_kube_contract import APP, DEADLINE, IMAGE_1, api, app, wait_rolled_out  # noqa: F401 - fixtures

KUBECTL = render.tools_dir() / "kubectl"
COLUMNS = json.loads((Path(__file__).parent / "fixtures" / "kube" / "table_columns.json").read_text())
TABLE = ("application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,"
         "application/json")
AGGREGATED = ("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
              "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json")
# resource -> (group version, shortNames, categories), as kube-apiserver v1.20 advertises them
DISCOVERY = {
    "pods": ("v1", ["po"], ["all"]), "services": ("v1", ["svc"], ["all"]), "namespaces": ("v1", ["ns"], None),
    "events": ("v1", ["ev"], None), "configmaps": ("v1", ["cm"], None),
    "deployments": ("apps/v1", ["deploy"], ["all"]), "replicasets": ("apps/v1", ["rs"], ["all"]),
    "leases": ("coordination.k8s.io/v1", None, None), "poddisruptionbudgets": ("policy/v1beta1", ["pdb"], None)}


def raw(kube, path: str, accept: str = "application/json", **params) -> requests.Response:
    return requests.get(kube.url + path, params=params, verify=False, timeout=10,
                        headers={"Accept": accept, "Authorization": f"Bearer {kube.token}"})


def watch(kube, path: str, **params) -> list[dict]:
    """The events of a watch the server ends after a second."""
    params = {"watch": "true", "timeoutSeconds": "1", **params}
    with requests.get(kube.url + path, params=params, verify=False, timeout=10, stream=True,
                      headers={"Authorization": f"Bearer {kube.token}"}) as answer:
        assert answer.status_code == 200, answer.text
        return [json.loads(line) for line in answer.iter_lines() if line]


def test_discovery_names_short_names_categories_and_no_aggregated_documents(kube):
    listed = {}
    for gv in sorted({gv for gv, _, _ in DISCOVERY.values()}):
        answer = raw(kube, ("/api/" if gv == "v1" else "/apis/") + gv).json()
        listed.update({(gv, r["name"]): r for r in answer["resources"]})
    for name, (gv, short_names, categories) in DISCOVERY.items():
        entry = listed[(gv, name)]
        assert (entry.get("shortNames"), entry.get("categories")) == (short_names, categories), name
        assert {"get", "list", "watch"} <= set(entry["verbs"]) and entry["singularName"] == ""
    assert listed[("apps/v1", "deployments/scale")]["group"] == "autoscaling"
    for path, kind in (("/api", "APIVersions"), ("/apis", "APIGroupList")):
        answer = raw(kube, path, AGGREGATED)
        assert answer.headers["Content-Type"] == "application/json" and answer.json()["kind"] == kind


@pytest.mark.parametrize("kind, path", [
    ("Deployment", "/apis/apps/v1/namespaces/{ns}/deployments"),
    ("ReplicaSet", "/apis/apps/v1/namespaces/{ns}/replicasets"),
    ("Pod", "/api/v1/namespaces/{ns}/pods"),
    ("Service", "/api/v1/namespaces/{ns}/services"),
    ("Event", "/api/v1/namespaces/{ns}/events"),
    ("Namespace", "/api/v1/namespaces"),
])
def test_tables_have_the_apiservers_columns(kube, api, ns, app, kind, path):
    answer = raw(kube, path.format(ns=ns), TABLE)
    tabled = answer.json()
    assert (tabled["kind"], tabled["apiVersion"]) == ("Table", "meta.k8s.io/v1")
    assert tabled["columnDefinitions"] == COLUMNS[kind]
    assert tabled["rows"] and all(len(r["cells"]) == len(COLUMNS[kind]) for r in tabled["rows"])
    assert all(r["object"]["kind"] == "PartialObjectMetadata" for r in tabled["rows"])


def test_table_cells_of_a_rolled_out_deployment_and_its_pods(kube, api, ns, app):
    [deployment] = raw(kube, f"/apis/apps/v1/namespaces/{ns}/deployments", TABLE).json()["rows"]
    assert deployment["cells"][:4] == [APP, "2/2", 2, 2]
    assert deployment["cells"][5:] == ["app", IMAGE_1, f"app={APP}"]
    pods = raw(kube, f"/api/v1/namespaces/{ns}/pods", TABLE).json()["rows"]
    assert [p["cells"][1:4] for p in pods] == [["1/1", "Running", 0]] * 2
    assert all(p["cells"][7:] == ["<none>", "<none>"] for p in pods)
    [service] = raw(kube, f"/api/v1/namespaces/{ns}/services", TABLE).json()["rows"]
    assert service["cells"][1] == "ClusterIP" and service["cells"][3:5] == ["<none>", "80/TCP"]
    assert service["cells"][6] == f"app={APP}"


def test_field_selectors_pick_one_deployment_and_its_events(kube, api, ns, app):
    kube.create_app(ns, "other", replicas=1, image=IMAGE_1)
    deployments = f"/apis/apps/v1/namespaces/{ns}/deployments"
    assert [d["metadata"]["name"] for d in raw(kube, deployments, fieldSelector=f"metadata.name={APP}")
            .json()["items"]] == [APP]
    uid = api.get_deployment(ns, APP)["metadata"]["uid"]
    selector = (f"involvedObject.name={APP},involvedObject.namespace={ns},involvedObject.kind=Deployment,"
                f"involvedObject.uid={uid}")
    events = raw(kube, f"/api/v1/namespaces/{ns}/events", fieldSelector=selector).json()["items"]
    assert events and {(e["involvedObject"]["name"], e["reason"]) for e in events} == {(APP, "ScalingReplicaSet")}
    refused = raw(kube, deployments, fieldSelector="spec.replicas=2")
    assert (refused.status_code, refused.json()["message"]) == (
        400, '"spec.replicas" is not a known field selector: only "metadata.name", "metadata.namespace"')
    refused = raw(kube, f"/api/v1/namespaces/{ns}/events", fieldSelector="message=x")
    assert (refused.status_code, refused.json()["message"]) == (400, "field label not supported: message")


def test_a_watch_selected_by_name_streams_only_that_deployment(kube, api, ns, app):
    kube.create_app(ns, "other", replicas=1, image=IMAGE_1)
    wait_until(lambda: api.get_deployment(ns, "other")["status"].get("availableReplicas") == 1, DEADLINE, "other")
    since = raw(kube, f"/apis/apps/v1/namespaces/{ns}/deployments").json()["metadata"]["resourceVersion"]
    for name in ("other", APP, "other"):
        api.patch_scale(ns, name, 3)

    events = watch(kube, f"/apis/apps/v1/namespaces/{ns}/deployments", fieldSelector=f"metadata.name={APP}",
                   resourceVersion=since)

    assert {(e["type"], e["object"]["metadata"]["name"]) for e in events} == {("MODIFIED", APP)}
    assert [r for r, _ in groupby(e["object"]["spec"]["replicas"] for e in events)] == [3]
    assert events[0]["object"]["kind"] == "Deployment" and events[0]["object"]["apiVersion"] == "apps/v1"


@pytest.fixture
def kubectl(kube, ns, tmp_path):
    """Run the real kubectl in ``ns`` of ``kube``; returns its stdout (a failure fails the test)."""
    if not os.access(KUBECTL, os.X_OK):
        pytest.skip(f"kubectl is not cached in {render.tools_dir()}: run `make kube`")
    # kubectl sends no bearer token over plain http: it reaches the simulated cluster through a token-less server.
    server = KubeApiServer(kube.cluster).start() if kube.name == "sim" else None
    auth = ["--server", server.url] if server else ["--server", kube.url, "--token", kube.token,
                                                   "--insecure-skip-tls-verify"]

    def run(*args: str) -> str:
        proc = subprocess.run([str(KUBECTL), *auth, "--cache-dir", str(tmp_path), "-n", ns, *args],
                              capture_output=True, text=True, timeout=60, env={**os.environ, "KUBECONFIG": os.devnull})
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    yield run
    if server:
        server.stop()


def test_kubectl_prints_the_same_tables_and_rollout_status_on_both(app, kubectl):
    assert kubectl("rollout", "status", f"deployment/{APP}") == f'deployment "{APP}" successfully rolled out\n'
    sections = [s.splitlines() for s in kubectl("get", "deploy,rs,pods,svc", "-o", "wide").split("\n\n")]
    assert [s[0].split() for s in sections] == [
        ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"],
        ["NAME", "DESIRED", "CURRENT", "READY", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"],
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED", "NODE", "READINESS", "GATES"],
        ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE", "SELECTOR"]]
    assert [len(s) - 1 for s in sections] == [1, 1, 2, 1]
    assert sections[0][1].split()[:4] == [f"deployment.apps/{APP}", "2/2", "2", "2"]
