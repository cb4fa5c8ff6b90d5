"""The actions against the simulator's real HTTP Kubernetes API, through the real ``KubeClient``."""

from __future__ import annotations

import pytest

from aiops.clients.kube import KubeClient
from aiops.domain.plans import ActionPlan, Change, Mode, plan_id
from aiops.domain.target import Target
from aiops.remediate.actions import (ACTIONS, PLAN_ANNOTATION, ActionError, EscalateAction, RestartAction,
                                     RollbackAction, ScaleAction, ShiftTrafficAction, scaled_replicas)
from aiops.remediate.actions.restart import RESTARTED_AT
from aiops.sim.clock import SimClock
from aiops.sim.cluster import SimCluster
from aiops.sim.kubeapi import KubeApiServer

NS, NAME = "shop", "cart"
TARGET = Target.deployment(NS, NAME)


@pytest.fixture
def sim():
    clock = SimClock(1.7e9)
    cluster = SimCluster(clock)
    cluster.add_deployment(NS, NAME, replicas=2, image="registry.local/cart:1.0")
    server = KubeApiServer(cluster).start()
    kube = KubeClient.for_host(server.url)
    yield cluster, clock, kube
    kube.close()
    server.stop()


def make_plan(playbook: str, action: str, params: dict | None = None, incident: str = "inc-1") -> ActionPlan:
    return ActionPlan(id=plan_id(incident, playbook, TARGET), incident_id=incident, playbook=playbook,
                      action=action, target=TARGET, params=params or {}, mode=Mode.ACT, reason="test")


def settle(cluster: SimCluster, clock: SimClock, seconds: float = 30.0) -> None:
    """Let the simulated controllers finish a rollout (sim time, no real waiting)."""
    for _ in range(int(seconds // 5)):
        clock.advance(5)
        cluster.tick()


def deploy_new_image(kube: KubeClient, cluster: SimCluster, clock: SimClock, image: str) -> None:
    dep = kube.get_deployment(NS, NAME)
    containers = dep["spec"]["template"]["spec"]["containers"]
    containers[0]["image"] = image
    kube.patch_deployment(NS, NAME, {"spec": {"template": {"spec": {"containers": containers}}}})
    settle(cluster, clock)


def audit_events(kube: KubeClient, reason: str = "AiopsAction") -> list[dict]:
    return [e for e in kube.list_events(NS) if e["reason"] == reason]


def image_of(kube: KubeClient) -> str:
    return kube.get_deployment(NS, NAME)["spec"]["template"]["spec"]["containers"][0]["image"]


def test_registry_maps_every_playbook_action_kind():
    assert set(ACTIONS) == {"restart", "scale", "shift_traffic", "rollback", "escalate", "retrain", "degrade",
                            "isolate"}
    assert ACTIONS["shift_traffic"] is ShiftTrafficAction


# --- restart ---

def test_restart_patches_template_and_annotation_together_and_rolls_a_new_replicaset(sim):
    cluster, clock, kube = sim
    plan = make_plan("restart-workload", "restart")
    action = RestartAction(kube, clock)
    rs_before = {rs["metadata"]["name"] for rs in kube.list_replicasets(NS)}
    assert not action.is_satisfied(plan)

    change = action.apply(plan, dry_run=False)

    assert change.applied and not change.already_done
    dep = kube.get_deployment(NS, NAME)
    assert dep["metadata"]["annotations"][PLAN_ANNOTATION] == plan.id
    assert dep["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT] == change.after["restartedAt"]
    settle(cluster, clock)
    rs_after = {rs["metadata"]["name"] for rs in kube.list_replicasets(NS)}
    assert rs_after - rs_before, "a rollout restart creates a new ReplicaSet"
    pods = kube.list_pods(NS, "app=cart")
    assert len(pods) == 2 and all(p["metadata"]["labels"]["pod-template-hash"] not in
                                  {n.rsplit("-", 1)[1] for n in rs_before} for p in pods)
    assert action.is_satisfied(plan)
    events = audit_events(kube)
    assert len(events) == 1 and plan.id in events[0]["message"]
    assert events[0]["involvedObject"]["name"] == NAME


def test_restart_twice_changes_once_and_leaves_resource_version(sim):
    cluster, clock, kube = sim
    plan = make_plan("restart-workload", "restart")
    action = RestartAction(kube, clock)
    action.apply(plan, dry_run=False)
    rv = kube.get_deployment(NS, NAME)["metadata"]["resourceVersion"]
    clock.advance(1)  # a second restart would carry a different timestamp, so it would be visible

    again = action.apply(plan, dry_run=False)

    assert again.already_done and not again.applied
    assert kube.get_deployment(NS, NAME)["metadata"]["resourceVersion"] == rv
    assert len(audit_events(kube)) == 1


def test_restart_racing_itself_restarts_once(sim):
    """Two runs of the same plan read the Deployment before either writes (a leadership flap, or a retry after a
    lost answer): the second write must fail its precondition and find the restart done, not restart again."""
    cluster, clock, kube = sim
    plan = make_plan("restart-workload", "restart")
    landed: list[str] = []

    class Interleaved:
        """Runs the other apply in full after this one read the object and before it writes."""

        def __init__(self, other=None):
            self.other = other

        def __getattr__(self, name):
            return getattr(kube, name)

        def patch_deployment(self, ns, name, patch):
            if self.other is not None:
                other, self.other = self.other, None
                clock.advance(1)  # a second restart would carry another stamp
                other()
            result = kube.patch_deployment(ns, name, patch)
            landed.append(result["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT])
            return result

    second = RestartAction(Interleaved(), clock)
    first = RestartAction(Interleaved(other=lambda: second.apply(plan, dry_run=False)), clock)

    change = first.apply(plan, dry_run=False)

    assert change.already_done and not change.applied, "the loser finds the winner's restart"
    assert len(landed) == 1, f"the template was restarted {len(landed)} times"
    dep = kube.get_deployment(NS, NAME)
    assert dep["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT] == landed[0]
    assert dep["metadata"]["annotations"][PLAN_ANNOTATION] == plan.id
    assert len(audit_events(kube)) == 1


def test_restart_of_a_template_without_annotations_adds_them(sim):
    cluster, clock, kube = sim
    kube.patch_deployment(NS, NAME, {"spec": {"template": {"metadata": {"annotations": None}}}})
    plan = make_plan("restart-workload", "restart")

    change = RestartAction(kube, clock).apply(plan, dry_run=False)

    template = kube.get_deployment(NS, NAME)["spec"]["template"]
    assert template["metadata"]["annotations"] == {RESTARTED_AT: change.after["restartedAt"]}
    assert template["metadata"]["labels"]["app"] == NAME, "the rest of the template metadata stays"


def test_restart_dry_run_writes_nothing(sim):
    cluster, clock, kube = sim
    plan = make_plan("restart-workload", "restart")
    rv = kube.get_deployment(NS, NAME)["metadata"]["resourceVersion"]

    change = RestartAction(kube, clock).apply(plan, dry_run=True)

    assert not change.applied and change.after["restartedAt"]
    dep = kube.get_deployment(NS, NAME)
    assert dep["metadata"]["resourceVersion"] == rv
    assert PLAN_ANNOTATION not in (dep["metadata"].get("annotations") or {})
    assert audit_events(kube) == []


def test_restart_undo_says_it_cannot(sim):
    cluster, clock, kube = sim
    plan = make_plan("restart-workload", "restart")
    action = RestartAction(kube, clock)
    change = action.apply(plan, dry_run=False)
    rv = kube.get_deployment(NS, NAME)["metadata"]["resourceVersion"]
    undo = action.undo(plan, change, dry_run=False)
    assert not undo.applied and "no undo" in undo.description
    assert kube.get_deployment(NS, NAME)["metadata"]["resourceVersion"] == rv


# --- scale ---

@pytest.mark.parametrize("current,factor,step,bound,expected", [
    (2, 2, 1, 10, 4), (1, 1.5, 1, 10, 2), (3, 1, 2, 10, 5), (6, 2, 1, 10, 10), (12, 2, 1, 10, 12)])
def test_scaled_replicas_formula(current, factor, step, bound, expected):
    assert scaled_replicas(current, factor, step, bound) == expected


def test_scale_is_bounded_and_undo_restores_replicas(sim):
    cluster, clock, kube = sim
    plan = make_plan("scale-up", "scale", {"factor": 4, "step_min": 1, "max_replicas": 5})
    action = ScaleAction(kube, clock)

    change = action.apply(plan, dry_run=False)

    assert change.applied and change.before == {"replicas": 2} and change.after == {"replicas": 5}
    dep = kube.get_deployment(NS, NAME)
    assert dep["spec"]["replicas"] == 5 and kube.get_scale(NS, NAME)["spec"]["replicas"] == 5
    assert dep["metadata"]["annotations"][PLAN_ANNOTATION] == plan.id
    settle(cluster, clock)
    assert len(kube.list_pods(NS, "app=cart")) == 5

    again = action.apply(plan, dry_run=False)
    assert again.already_done and kube.get_deployment(NS, NAME)["spec"]["replicas"] == 5

    undo = action.undo(plan, change, dry_run=False)
    assert undo.applied and kube.get_deployment(NS, NAME)["spec"]["replicas"] == 2
    assert action.undo(plan, change, dry_run=False).already_done, "a second undo finds nothing to do"
    assert len(audit_events(kube)) == 2


def test_scale_retries_when_the_object_changed_between_read_and_write(sim):
    cluster, clock, kube = sim
    plan = make_plan("scale-up", "scale", {"factor": 2, "step_min": 1, "max_replicas": 10})

    class RacingKube:
        """Someone else scales to 3 right after our first read: the guarded patch must fail and be retried."""

        def __init__(self):
            self.raced = False

        def __getattr__(self, name):
            return getattr(kube, name)

        def get_deployment(self, ns, name):
            dep = kube.get_deployment(ns, name)
            if not self.raced:
                self.raced = True
                kube.patch_scale(NS, NAME, 3)
            return dep

    change = ScaleAction(RacingKube(), clock).apply(plan, dry_run=False)

    assert change.before == {"replicas": 3} and change.after == {"replicas": 6}
    assert kube.get_deployment(NS, NAME)["spec"]["replicas"] == 6


# --- shift traffic ---

def test_shift_traffic_narrows_service_selector_to_the_old_replicaset_and_undo_removes_it(sim):
    cluster, clock, kube = sim
    old_hash = kube.list_replicasets(NS)[0]["metadata"]["labels"]["pod-template-hash"]
    # A canary: the new template's ReplicaSet gets pods, the old one keeps its pods (the rollout is held).
    dep = kube.get_deployment(NS, NAME)
    containers = dep["spec"]["template"]["spec"]["containers"]
    containers[0]["image"] = "registry.local/cart:2.0-bad"
    kube.patch_deployment(NS, NAME, {"spec": {"template": {"spec": {"containers": containers}}}})
    assert len([rs for rs in kube.list_replicasets(NS) if rs["spec"]["replicas"] > 0]) == 2
    plan = make_plan("shift-traffic", "shift_traffic", {"label": "pod-template-hash", "value": None})
    action = ShiftTrafficAction(kube, clock)
    svc_before = kube.get_service(NS, NAME)

    change = action.apply(plan, dry_run=False)

    svc = kube.get_service(NS, NAME)
    assert svc["spec"]["selector"] == {**svc_before["spec"]["selector"], "pod-template-hash": old_hash}
    assert svc["metadata"]["annotations"][PLAN_ANNOTATION] == plan.id
    assert change.before["selector"] == svc_before["spec"]["selector"]
    assert action.is_satisfied(plan) and action.apply(plan, dry_run=False).already_done

    undo = action.undo(plan, change, dry_run=False)

    assert undo.applied
    assert kube.get_service(NS, NAME)["spec"]["selector"] == svc_before["spec"]["selector"]


def test_shift_traffic_by_zone_label_and_explicit_value(sim):
    cluster, clock, kube = sim
    plan = make_plan("shift-traffic", "shift_traffic", {"label": "topology.kubernetes.io/zone", "value": "zone-b"})
    ShiftTrafficAction(kube, clock).apply(plan, dry_run=False)
    assert kube.get_service(NS, NAME)["spec"]["selector"]["topology.kubernetes.io/zone"] == "zone-b"


def test_shift_traffic_without_a_second_replicaset_refuses(sim):
    cluster, clock, kube = sim
    plan = make_plan("shift-traffic", "shift_traffic", {"label": "pod-template-hash", "value": None})
    rv = kube.get_service(NS, NAME)["metadata"]["resourceVersion"]
    with pytest.raises(ActionError, match="no healthy one"):
        ShiftTrafficAction(kube, clock).apply(plan, dry_run=False)
    assert kube.get_service(NS, NAME)["metadata"]["resourceVersion"] == rv


# --- rollback ---

def test_rollback_restores_previous_image_and_undo_rolls_forward(sim):
    cluster, clock, kube = sim
    deploy_new_image(kube, cluster, clock, "registry.local/cart:2.0-bad")
    assert image_of(kube) == "registry.local/cart:2.0-bad"
    plan = make_plan("rollback-deploy", "rollback")
    action = RollbackAction(kube, clock)

    change = action.apply(plan, dry_run=False)

    assert change.applied
    assert change.before["images"] == ["registry.local/cart:2.0-bad"]
    assert change.after["images"] == ["registry.local/cart:1.0"]
    dep = kube.get_deployment(NS, NAME)
    assert image_of(kube) == "registry.local/cart:1.0"
    assert "pod-template-hash" not in dep["spec"]["template"]["metadata"]["labels"]
    assert dep["metadata"]["annotations"][PLAN_ANNOTATION] == plan.id
    settle(cluster, clock)
    pods = kube.list_pods(NS, "app=cart")
    assert {p["spec"]["containers"][0]["image"] for p in pods} == {"registry.local/cart:1.0"}
    assert action.apply(plan, dry_run=False).already_done

    action.undo(plan, change, dry_run=False)
    assert image_of(kube) == "registry.local/cart:2.0-bad"


def test_rollback_refuses_when_the_deployment_changed_under_it(sim):
    """The JSON patch's resourceVersion test turns a concurrent edit into a retry on fresh data."""
    cluster, clock, kube = sim
    deploy_new_image(kube, cluster, clock, "registry.local/cart:2.0")
    plan = make_plan("rollback-deploy", "rollback")
    stale = kube.get_deployment(NS, NAME)
    kube.patch_deployment(NS, NAME, {"metadata": {"labels": {"touched": "yes"}}})
    from aiops.remediate.actions.base import guarded_patch
    with pytest.raises(Exception) as info:
        kube.patch_deployment(NS, NAME, guarded_patch(stale, [], plan.id))
    assert getattr(info.value, "status", None) in (409, 422)
    assert RollbackAction(kube, clock).apply(plan, dry_run=False).applied


def test_rollback_without_history_is_an_action_error(sim):
    cluster, clock, kube = sim
    with pytest.raises(ActionError, match="no previous revision"):
        RollbackAction(kube, clock).apply(make_plan("rollback-deploy", "rollback"), dry_run=False)


def test_rollback_dry_run_describes_without_writing(sim):
    cluster, clock, kube = sim
    deploy_new_image(kube, cluster, clock, "registry.local/cart:2.0-bad")
    rv = kube.get_deployment(NS, NAME)["metadata"]["resourceVersion"]
    change = RollbackAction(kube, clock).apply(make_plan("rollback-deploy", "rollback"), dry_run=True)
    assert not change.applied and change.after["images"] == ["registry.local/cart:1.0"]
    assert kube.get_deployment(NS, NAME)["metadata"]["resourceVersion"] == rv
    assert image_of(kube) == "registry.local/cart:2.0-bad"


# --- escalate ---

def test_escalate_notifies_once_and_changes_no_workload(sim):
    cluster, clock, kube = sim
    told: list[str] = []
    plan = make_plan("escalate", "escalate")
    action = EscalateAction(kube, clock, notify=lambda p: told.append(p.id))
    dep_rv = kube.get_deployment(NS, NAME)["metadata"]["resourceVersion"]

    first = action.apply(plan, dry_run=False)
    second = action.apply(plan, dry_run=False)

    assert first.applied and second.already_done and told == [plan.id]
    assert len(audit_events(kube, "AiopsEscalation")) == 1
    assert kube.get_deployment(NS, NAME)["metadata"]["resourceVersion"] == dep_rv
    assert not action.undo(plan, first, dry_run=False).applied


def test_undo_of_a_change_never_applied_is_a_no_op(sim):
    cluster, clock, kube = sim
    plan = make_plan("scale-up", "scale", {"factor": 2, "step_min": 1, "max_replicas": 10})
    never = Change(TARGET, "nothing", before={"replicas": 2}, after={"replicas": 4})
    assert ScaleAction(kube, clock).undo(plan, never, dry_run=False).already_done
