"""Contract tests: the same checks against the real kube-apiserver v1.20 and against the simulator.

Each test runs twice (``kube`` is parametrized over ``sim`` and ``real``), in its own namespace, with a 2-replica
Deployment + Service created at the start. The stock remediation actions are applied for real through
``KubeClient``; whatever the simulator answers differently from the real apiserver is a simulator bug.
"""

from __future__ import annotations

import uuid

import pytest

from aiops.clients.kube import KubeError
from aiops.domain.plans import ActionPlan, Mode, plan_id
from aiops.domain.target import Target
from aiops.remediate.actions import ACTIONS, PLAN_ANNOTATION
from aiops.remediate.actions.base import AUDIT_REASON, write_event
from aiops.remediate.actions.restart import RESTARTED_AT
from aiops.sim.clock import WallClock
from tests.support.realstack import wait_until

APP = "web"
IMAGE_1, IMAGE_2 = "registry.local/web:1.0", "registry.local/web:2.0"
STUCK_IMAGE = "registry.local/web:2.0-unready"  # never turns Ready on either backend: the rollout stays half-way
HASH = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
DEADLINE = 45.0
CLOCK = WallClock()


@pytest.fixture
def api(kube):
    client = kube.client()
    yield client
    client.close()


@pytest.fixture
def app(kube, ns, api) -> Target:
    kube.create_app(ns, APP, replicas=2, image=IMAGE_1)
    wait_rolled_out(api, ns)
    return Target.deployment(ns, APP)


def make_plan(target: Target, action: str, params: dict | None = None) -> ActionPlan:
    incident, playbook = f"inc-{uuid.uuid4().hex[:8]}", f"{action}-contract"
    return ActionPlan(id=plan_id(incident, playbook, target), incident_id=incident, playbook=playbook,
                      action=action, target=target, params=params or {}, mode=Mode.ACT, reason="contract test")


def is_ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions") or [])


def live_pods(api, ns: str) -> list[dict]:
    """The app's pods that are not being deleted."""
    return [p for p in api.list_pods(ns, f"app={APP}") if not p["metadata"].get("deletionTimestamp")]


def rolled_out(api, ns: str) -> dict | None:
    """The Deployment when its rollout is complete (controller caught up, only new Ready pods left), else None."""
    dep = api.get_deployment(ns, APP)
    want, status = dep["spec"]["replicas"], dep.get("status") or {}
    progressing = next((c for c in status.get("conditions") or [] if c["type"] == "Progressing"), {})
    pods = live_pods(api, ns)
    done = (status.get("observedGeneration", 0) >= dep["metadata"]["generation"]
            and status.get("updatedReplicas") == status.get("replicas") == status.get("availableReplicas") == want
            and progressing.get("reason") == "NewReplicaSetAvailable"
            and len(pods) == want and all(is_ready(p) for p in pods))
    return dep if done else None


def wait_rolled_out(api, ns: str) -> dict:
    return wait_until(lambda: rolled_out(api, ns), DEADLINE, f"deployment {ns}/{APP} rolled out")


def replicasets(api, ns: str) -> list[dict]:
    return sorted(api.list_replicasets(ns, f"app={APP}"), key=lambda rs: int(rs["metadata"]["annotations"][REVISION]))


def set_image(api, ns: str, image: str) -> None:
    containers = api.get_deployment(ns, APP)["spec"]["template"]["spec"]["containers"]
    containers[0]["image"] = image
    api.patch_deployment(ns, APP, {"spec": {"template": {"spec": {"containers": containers}}}})


def error_of(call) -> KubeError:
    with pytest.raises(KubeError) as info:
        call()
    return info.value


# --- the app itself ------------------------------------------------------------------------------------------

def test_created_app_is_available_with_owned_replicaset_pods_and_service(api, ns, app):
    dep = api.get_deployment(ns, APP)
    [rs] = replicasets(api, ns)
    pods = live_pods(api, ns)

    assert dep["status"]["availableReplicas"] == 2 and dep["metadata"]["annotations"][REVISION] == "1"
    assert rs["metadata"]["ownerReferences"][0]["uid"] == dep["metadata"]["uid"]
    assert rs["metadata"]["annotations"][REVISION] == "1" and rs["spec"]["replicas"] == 2
    assert len(pods) == 2 and all(p["status"]["phase"] == "Running" for p in pods)
    assert {p["metadata"]["labels"][HASH] for p in pods} == {rs["metadata"]["labels"][HASH]}
    assert {p["metadata"]["ownerReferences"][0]["uid"] for p in pods} == {rs["metadata"]["uid"]}
    assert api.get_service(ns, APP)["spec"]["selector"] == {"app": APP}
    assert api.get_scale(ns, APP)["spec"]["replicas"] == 2
    # List items carry no kind/apiVersion (only the list does): code must not rely on them.
    assert not any("kind" in o or "apiVersion" in o for o in [rs, *pods, *api.list_services(ns)])


# --- restart ---------------------------------------------------------------------------------------------------

def test_restart_rolls_a_new_replicaset_and_replaces_every_pod(api, ns, app):
    old_pods = {p["metadata"]["name"] for p in live_pods(api, ns)}
    [old_rs] = replicasets(api, ns)
    plan = make_plan(app, "restart")

    change = ACTIONS["restart"](api, CLOCK).apply(plan, dry_run=False)

    assert change.applied and not change.already_done
    dep = wait_rolled_out(api, ns)
    assert dep["metadata"]["annotations"][PLAN_ANNOTATION] == plan.id
    assert dep["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT] == change.after["restartedAt"]
    assert dep["metadata"]["annotations"][REVISION] == "2"
    history = replicasets(api, ns)
    assert [rs["metadata"]["name"] for rs in history][0] == old_rs["metadata"]["name"] and len(history) == 2
    assert history[0]["spec"]["replicas"] == 0 and history[1]["spec"]["replicas"] == 2
    # The controller copies the Deployment's annotations (the plan id too) onto the ReplicaSet it creates.
    assert history[1]["metadata"]["annotations"][PLAN_ANNOTATION] == plan.id
    assert PLAN_ANNOTATION not in history[0]["metadata"]["annotations"]
    pods = live_pods(api, ns)
    assert not old_pods & {p["metadata"]["name"] for p in pods}
    assert {p["metadata"]["labels"][HASH] for p in pods} == {history[1]["metadata"]["labels"][HASH]}


def test_restart_applied_twice_changes_once_and_leaves_resource_version(api, ns, app):
    plan = make_plan(app, "restart")
    action = ACTIONS["restart"](api, CLOCK)
    action.apply(plan, dry_run=False)
    rv = wait_rolled_out(api, ns)["metadata"]["resourceVersion"]

    again = action.apply(plan, dry_run=False)

    assert again.already_done and not again.applied and action.is_satisfied(plan)
    assert api.get_deployment(ns, APP)["metadata"]["resourceVersion"] == rv
    assert len(replicasets(api, ns)) == 2


# --- scale -----------------------------------------------------------------------------------------------------

def test_scale_out_within_bound_then_undo_restores_replicas_and_pods(api, ns, app):
    plan = make_plan(app, "scale", {"factor": 2, "step_min": 1, "max_replicas": 3})
    action = ACTIONS["scale"](api, CLOCK)

    change = action.apply(plan, dry_run=False)

    assert change.applied and change.before == {"replicas": 2} and change.after == {"replicas": 3}
    wait_rolled_out(api, ns)
    assert len(live_pods(api, ns)) == 3 and api.get_scale(ns, APP)["spec"]["replicas"] == 3
    rv = api.get_deployment(ns, APP)["metadata"]["resourceVersion"]
    assert action.apply(plan, dry_run=False).already_done
    assert api.get_deployment(ns, APP)["metadata"]["resourceVersion"] == rv

    undo = action.undo(plan, change, dry_run=False)

    assert undo.applied
    wait_rolled_out(api, ns)
    assert len(live_pods(api, ns)) == 2 and api.get_deployment(ns, APP)["spec"]["replicas"] == 2


# --- rollback --------------------------------------------------------------------------------------------------

def test_rollback_after_an_image_change_brings_the_previous_image_back(api, ns, app):
    [first_rs] = replicasets(api, ns)
    set_image(api, ns, IMAGE_2)
    wait_rolled_out(api, ns)
    plan = make_plan(app, "rollback")
    action = ACTIONS["rollback"](api, CLOCK)

    change = action.apply(plan, dry_run=False)

    assert change.applied and change.before["images"] == [IMAGE_2] and change.after["images"] == [IMAGE_1]
    dep = wait_rolled_out(api, ns)
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE_1
    assert dep["metadata"]["annotations"][PLAN_ANNOTATION] == plan.id
    # The controller revives the first ReplicaSet (same template hash) as the newest revision.
    history = replicasets(api, ns)
    assert len(history) == 2 and history[-1]["metadata"]["name"] == first_rs["metadata"]["name"]
    assert history[-1]["metadata"]["annotations"][REVISION] == "3"
    assert {p["spec"]["containers"][0]["image"] for p in live_pods(api, ns)} == {IMAGE_1}
    assert action.apply(plan, dry_run=False).already_done

    undo = action.undo(plan, change, dry_run=False)

    assert undo.applied
    wait_rolled_out(api, ns)
    assert {p["spec"]["containers"][0]["image"] for p in live_pods(api, ns)} == {IMAGE_2}


# --- shift traffic ---------------------------------------------------------------------------------------------

def test_shift_traffic_pins_service_to_the_replicaset_serving_before_a_stuck_rollout(api, ns, app):
    [old_rs] = replicasets(api, ns)
    old_hash = old_rs["metadata"]["labels"][HASH]
    set_image(api, ns, STUCK_IMAGE)
    wait_until(lambda: len([rs for rs in replicasets(api, ns) if rs["spec"]["replicas"] > 0]) == 2, DEADLINE,
               "a second live ReplicaSet")
    plan = make_plan(app, "shift_traffic", {"label": HASH, "value": None})
    action = ACTIONS["shift_traffic"](api, CLOCK)

    change = action.apply(plan, dry_run=False)

    svc = api.get_service(ns, APP)
    assert change.applied and svc["spec"]["selector"] == {"app": APP, HASH: old_hash}
    assert svc["metadata"]["annotations"][PLAN_ANNOTATION] == plan.id
    rv = svc["metadata"]["resourceVersion"]
    assert action.apply(plan, dry_run=False).already_done
    assert api.get_service(ns, APP)["metadata"]["resourceVersion"] == rv
    assert all(p["metadata"]["labels"][HASH] == old_hash for p in live_pods(api, ns) if is_ready(p))

    assert action.undo(plan, change, dry_run=False).applied
    assert api.get_service(ns, APP)["spec"]["selector"] == {"app": APP}


# --- concurrency errors ----------------------------------------------------------------------------------------

def test_json_patch_testing_a_stale_resource_version_is_rejected_alike(api, ns, app):
    stale = api.get_deployment(ns, APP)["metadata"]["resourceVersion"]
    api.patch_deployment(ns, APP, {"metadata": {"annotations": {"touched": "yes"}}})

    err = error_of(lambda: api.patch_deployment(ns, APP, [
        {"op": "test", "path": "/metadata/resourceVersion", "value": stale},
        {"op": "replace", "path": "/spec/replicas", "value": 5}]))

    # v1.20 says no more than this about why a JSON patch did not apply.
    assert str(err) == "422 Invalid: the server rejected our request due to an error in our request"
    assert api.get_deployment(ns, APP)["spec"]["replicas"] == 2


def test_generation_follows_spec_and_annotation_changes_but_not_labels(api, ns, app):
    def generation():
        return api.get_deployment(ns, APP)["metadata"]["generation"]

    start = generation()
    api.patch_deployment(ns, APP, {"metadata": {"labels": {"team": "a"}}})
    assert generation() == start
    api.patch_deployment(ns, APP, {"metadata": {"annotations": {"note": "x"}}})
    assert generation() == start + 1
    api.patch_deployment(ns, APP, {"spec": {"minReadySeconds": 0, "replicas": 3}})
    assert generation() == start + 2
    assert wait_rolled_out(api, ns)["status"]["observedGeneration"] == start + 2


def test_merge_patch_with_a_stale_resource_version_is_a_conflict(api, ns, app):
    stale_dep = api.get_deployment(ns, APP)["metadata"]["resourceVersion"]
    stale_svc = api.get_service(ns, APP)["metadata"]["resourceVersion"]
    api.patch_deployment(ns, APP, {"metadata": {"annotations": {"touched": "yes"}}})
    api.patch_service(ns, APP, {"metadata": {"annotations": {"touched": "yes"}}})

    dep_err = error_of(lambda: api.patch_deployment(
        ns, APP, {"metadata": {"resourceVersion": stale_dep}, "spec": {"replicas": 5}}))
    svc_err = error_of(lambda: api.patch_service(
        ns, APP, {"metadata": {"resourceVersion": stale_svc}, "spec": {"selector": {"x": "y"}}}))

    assert (dep_err.status, dep_err.reason, dep_err.conflict) == (409, "Conflict", True)
    assert f'Operation cannot be fulfilled on deployments.apps "{APP}": the object has been modified' in str(dep_err)
    assert (svc_err.status, svc_err.reason) == (409, "Conflict")
    assert f'Operation cannot be fulfilled on services "{APP}"' in str(svc_err)
    assert api.get_deployment(ns, APP)["spec"]["replicas"] == 2
    assert api.get_service(ns, APP)["spec"]["selector"] == {"app": APP}


def test_missing_objects_are_404_not_found(api, ns, app):
    calls = {
        'deployments.apps "nope" not found': lambda: api.get_deployment(ns, "nope"),
        'deployments.apps "gone" not found': lambda: api.patch_deployment(ns, "gone", {"spec": {"replicas": 1}}),
        'services "nope" not found': lambda: api.get_service(ns, "nope"),
        'deployments/scale.apps "scaleless" not found': lambda: api.get_scale(ns, "scaleless"),
        'deployments.apps "unscalable" not found': lambda: api.patch_scale(ns, "unscalable", 3),
    }
    for message, call in calls.items():
        err = error_of(call)
        assert (err.status, err.reason, err.not_found) == (404, "NotFound", True), message
        assert str(err).endswith(message)


# --- events ----------------------------------------------------------------------------------------------------

def test_action_events_and_controller_events_are_listed(api, ns, app):
    plan = make_plan(app, "scale", {"factor": 2, "step_min": 1, "max_replicas": 4})
    ACTIONS["scale"](api, CLOCK).apply(plan, dry_run=False)
    wait_rolled_out(api, ns)

    def ours():
        return [e for e in api.list_events(ns) if e["reason"] == AUDIT_REASON]

    [event] = ours()
    assert event["involvedObject"]["kind"] == "Deployment" and event["involvedObject"]["name"] == APP
    assert plan.id in event["message"] and event["metadata"]["annotations"][PLAN_ANNOTATION] == plan.id
    assert event["source"]["component"] == "aiops" and event["type"] == "Normal"
    # The same step again: the deterministic name makes the apiserver answer 409 AlreadyExists, not a second Event.
    assert write_event(api, CLOCK, plan, "apply", "again", AUDIT_REASON) is False
    assert len(ours()) == 1
    scaling = wait_until(lambda: [e for e in api.list_events(ns) if e["reason"] == "ScalingReplicaSet"
                                  and "to 4" in e["message"]], DEADLINE, "ScalingReplicaSet event")
    assert scaling[0]["source"]["component"] == "deployment-controller"
    assert scaling[0]["involvedObject"]["name"] == APP


# --- isolate (model-serving policy) ----------------------------------------------------------------------------

def test_isolate_takes_a_pod_off_its_service_keeps_it_and_the_replicaset_replaces_it_then_undo_adopts_it(
        api, ns, app):
    from aiops.remediate.actions.isolate import ISOLATED_LABEL

    victim = sorted(p["metadata"]["name"] for p in live_pods(api, ns))[0]
    plan = make_plan(app, "isolate", {"label": "app", "pod": victim})
    action = ACTIONS["isolate"](api, CLOCK)

    change = action.apply(plan, dry_run=False)

    assert change.applied
    pod = api.get_pod(ns, victim)
    assert "app" not in pod["metadata"]["labels"] and pod["metadata"]["labels"][ISOLATED_LABEL] == "true"
    assert pod["metadata"]["annotations"][PLAN_ANNOTATION] == plan.id
    # The ReplicaSet lets go of it and starts a replacement; the isolated pod keeps running.
    wait_until(lambda: not api.get_pod(ns, victim)["metadata"].get("ownerReferences"), DEADLINE, "pod released")
    wait_until(lambda: len([p for p in live_pods(api, ns) if is_ready(p)]) == 2, DEADLINE, "replacement ready")
    assert victim not in {p["metadata"]["name"] for p in live_pods(api, ns)}
    assert api.get_pod(ns, victim)["metadata"]["name"] == victim
    rv = api.get_pod(ns, victim)["metadata"]["resourceVersion"]
    assert action.apply(plan, dry_run=False).already_done
    assert api.get_pod(ns, victim)["metadata"]["resourceVersion"] == rv

    undo = action.undo(plan, change, dry_run=False)

    assert undo.applied
    # Adopted again (the label is back, so the ReplicaSet owns it), and one surplus pod is removed: which one is the
    # controller's choice (the real one ranks by readiness time, which this harness writes to the second).
    assert ISOLATED_LABEL not in api.get_pod(ns, victim)["metadata"]["labels"]
    wait_until(lambda: len(live_pods(api, ns)) == 2 and all(p["metadata"].get("ownerReferences")
                                                             for p in live_pods(api, ns)),
               DEADLINE, "the pod adopted back and the surplus removed")
    assert action.undo(plan, change, dry_run=False).already_done
