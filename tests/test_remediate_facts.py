"""The guards' view of the cluster (``ClusterFacts``), checked against the real kube-apiserver and the simulator:
PodDisruptionBudgets (with the real disruption controller's status), paused and rolling-out Deployments, and the
kill-switch annotation."""

from __future__ import annotations

from aiops.remediate.facts import KILL_SWITCH_ANNOTATION, ClusterFacts, blocking_pdb, rolling_out
from tests.test_kube_contract import APP, DEADLINE, STUCK_IMAGE, api, app, set_image, wait_until  # noqa: F401


def create_pdb(api, ns: str, name: str, spec: dict) -> None:
    body = {"apiVersion": "policy/v1beta1", "kind": "PodDisruptionBudget", "metadata": {"name": name},
            "spec": {"selector": {"matchLabels": {"app": APP}}, **spec}}
    api.request("POST", "/apis/policy/v1beta1/namespaces/{namespace}/poddisruptionbudgets", {"namespace": ns}, body)


def test_a_settled_deployment_has_no_blocking_fact(api, app):
    facts = ClusterFacts(api).read(app)
    assert (facts.replicas, facts.paused, facts.rolling_out) == (2, False, False)
    assert facts.pdb_blocking is None and facts.kill_switch is None
    assert facts.namespace_workloads == 1 and facts.labels.get("app") == APP


def test_a_pdb_that_allows_no_disruption_blocks_and_one_that_allows_one_does_not(api, app):
    create_pdb(api, app.namespace, "loose", {"maxUnavailable": 1})
    wait_until(lambda: any((p.get("status") or {}).get("disruptionsAllowed") == 1
                           for p in api.list_pdbs(app.namespace)), DEADLINE, "loose PDB status written")
    assert ClusterFacts(api).read(app).pdb_blocking is None
    create_pdb(api, app.namespace, "strict", {"minAvailable": 2})
    wait_until(lambda: ClusterFacts(api).read(app).pdb_blocking == "strict", DEADLINE, "strict PDB blocks")


def test_paused_and_mid_rollout_deployments_are_seen(api, app):
    set_image(api, app.namespace, STUCK_IMAGE)  # never becomes Ready: the rollout stays half-way
    wait_until(lambda: ClusterFacts(api).read(app).rolling_out, DEADLINE, "rollout in progress seen")
    api.patch_deployment(app.namespace, APP, {"spec": {"paused": True}})
    assert ClusterFacts(api).read(app).paused


def test_the_kill_switch_annotation_on_the_namespace_or_the_workload(api, app):
    api._call(api._core.patch_namespace, app.namespace,
              {"metadata": {"annotations": {KILL_SWITCH_ANNOTATION: "true"}}})
    assert "namespace" in ClusterFacts(api).read(app).kill_switch
    api._call(api._core.patch_namespace, app.namespace,
              {"metadata": {"annotations": {KILL_SWITCH_ANNOTATION: "false"}}})
    assert ClusterFacts(api).read(app).kill_switch is None
    api.patch_deployment(app.namespace, APP, {"metadata": {"annotations": {KILL_SWITCH_ANNOTATION: "true"}}})
    assert str(app) in ClusterFacts(api).read(app).kill_switch


def test_rolling_out_reads_generation_and_replica_counts():
    settled = {"metadata": {"generation": 3}, "spec": {"replicas": 2},
               "status": {"observedGeneration": 3, "updatedReplicas": 2, "replicas": 2}}
    assert not rolling_out(settled)
    assert rolling_out({**settled, "metadata": {"generation": 4}})
    assert rolling_out({**settled, "status": {"observedGeneration": 3, "updatedReplicas": 1, "replicas": 2}})
    assert rolling_out({**settled, "status": {"observedGeneration": 3, "updatedReplicas": 2, "replicas": 3}})


def test_a_pdb_without_status_or_for_other_pods_is_judged_safely():
    dep = {"spec": {"template": {"metadata": {"labels": {"app": "web"}}}}}
    other = {"metadata": {"name": "other"}, "spec": {"selector": {"matchLabels": {"app": "db"}}},
             "status": {"disruptionsAllowed": 0}}
    unwritten = {"metadata": {"name": "new"}, "spec": {"selector": {"matchLabels": {"app": "web"}}}}
    assert blocking_pdb(dep, [other]) is None
    assert blocking_pdb(dep, [other, unwritten]) == "new"
