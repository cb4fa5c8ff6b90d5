"""Undo never overrules a person (issue #13, defect 2), for every action that has an undo, on the simulator's HTTP
Kubernetes API through the real ``KubeClient``.

Each case applies an action for real, then someone acts during the verify window (a hotfix image, replicas set by
hand, a selector edited, a pod relabelled). The undo must then raise ``Superseded`` naming what differs and write
nothing; with nobody acting it undoes as before; a change that never landed needs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import pytest

from aiops.clients.kube import KubeClient
from aiops.domain.plans import ActionPlan, Mode, plan_id
from aiops.domain.target import Target
from aiops.remediate.actions import ACTIONS, PLAN_ANNOTATION, Superseded
from aiops.remediate.actions.base import UNDONE_ANNOTATION
from aiops.remediate.actions.isolate import ISOLATED_LABEL
from aiops.sim.clock import SimClock
from aiops.sim.cluster import SimCluster
from aiops.sim.kubeapi import KubeApiServer

NS = "shop"
GROUP = {"model-group": "llm"}
HOTFIX = "registry.local/cart:2.1-hotfix"


@pytest.fixture
def sim():
    clock = SimClock(1.7e9)
    cluster = SimCluster(clock)
    cluster.add_deployment(NS, "cart", replicas=2, image="registry.local/cart:1.0")
    cluster.add_deployment(NS, "llm", replicas=4, pod_labels=GROUP)
    cluster.add_deployment(NS, "llm-small", replicas=1, pod_labels=GROUP)
    server = KubeApiServer(cluster).start()
    kube = KubeClient.for_host(server.url)
    yield cluster, clock, kube
    kube.close()
    server.stop()


def make_plan(action: str, target: str, params: dict, incident: str = "inc-1") -> ActionPlan:
    t = Target.deployment(NS, target)
    return ActionPlan(plan_id(incident, action, t), incident, action, action, t, params, Mode.ACT)


def settle(cluster: SimCluster, clock: SimClock, seconds: float = 30.0) -> None:
    for _ in range(int(seconds // 5)):
        clock.advance(5)
        cluster.tick()


def set_image(kube: KubeClient, image: str) -> None:
    containers = kube.get_deployment(NS, "cart")["spec"]["template"]["spec"]["containers"]
    containers[0]["image"] = image
    kube.patch_deployment(NS, "cart", {"spec": {"template": {"spec": {"containers": containers}}}})


def image_of(kube: KubeClient) -> str:
    return kube.get_deployment(NS, "cart")["spec"]["template"]["spec"]["containers"][0]["image"]


def cart_pod(kube: KubeClient) -> str:
    return sorted(p["metadata"]["name"] for p in kube.list_pods(NS, "app=cart"))[0]


@dataclass
class Case:
    """One action with an undo: how to get there, what a person does meanwhile, what the undo must report."""

    name: str
    action: str
    target: str
    params: Callable[[KubeClient], dict]
    prepare: Callable[[KubeClient, SimCluster, SimClock], None]
    person: Callable[[KubeClient, dict], None]   # (kube, params) -> acts during the verify window
    state: Callable[[KubeClient, dict], object]  # what the plan changes, as a person would read it
    detail: str                                  # in the Superseded message


def no_prep(kube, cluster, clock) -> None:
    return None


def bad_deploy(kube, cluster, clock) -> None:
    set_image(kube, "registry.local/cart:2.0-bad")
    settle(cluster, clock)


def canary(kube, cluster, clock) -> None:
    set_image(kube, "registry.local/cart:2.0-bad")  # not settled: two ReplicaSets with pods


def svc_selector(name: str):
    return lambda kube, params: kube.get_service(NS, name)["spec"]["selector"]


def degrade_state(kube, params) -> tuple:
    return (kube.get_service(NS, "llm")["spec"]["selector"], kube.get_deployment(NS, "llm-small")["spec"]["replicas"])


FALLBACK = {"strategy": "fallback", "fallback": "llm-small", "fraction": 0.3, "selector": GROUP,
            "max_fallback_replicas": 4}

CASES = [
    Case("scale", "scale", "cart", lambda kube: {"factor": 2, "step_min": 1, "max_replicas": 10}, no_prep,
         lambda kube, p: kube.patch_scale(NS, "cart", 8),
         lambda kube, p: kube.get_deployment(NS, "cart")["spec"]["replicas"], "replicas are 8, the plan set 4"),
    Case("rollback", "rollback", "cart", lambda kube: {}, bad_deploy, lambda kube, p: set_image(kube, HOTFIX),
         lambda kube, p: image_of(kube), f"images are {HOTFIX}, the plan set registry.local/cart:1.0"),
    Case("shift_traffic", "shift_traffic", "cart", lambda kube: {"label": "pod-template-hash", "value": None},
         canary, lambda kube, p: kube.patch_service(NS, "cart", {"spec": {"selector": {"pod-template-hash": None,
                                                                                          "track": "stable"}}}),
         svc_selector("cart"), "the selector is app=cart,track=stable, the plan set app=cart,pod-template-hash="),
    Case("isolate", "isolate", "cart", lambda kube: {"label": "app", "pod": cart_pod(kube)}, no_prep,
         lambda kube, p: kube.patch_pod(NS, p["pod"], {"metadata": {"labels": {"app": "cart-debug"}}}),
         lambda kube, p: kube.get_pod(NS, p["pod"])["metadata"]["labels"],
         "pod label app is 'cart-debug', the plan removed it"),
    Case("degrade: fallback resized", "degrade", "llm", lambda kube: FALLBACK, no_prep,
         lambda kube, p: kube.patch_scale(NS, "llm-small", 3), degrade_state,
         "fallback llm-small is no longer as plan"),
    Case("degrade: routing changed", "degrade", "llm", lambda kube: FALLBACK, no_prep,
         lambda kube, p: kube.patch_service(NS, "llm", {"spec": {"selector": {"tier": "gold"}}}),
         degrade_state, "the selector is model-group=llm,tier=gold, the plan set model-group=llm"),
    Case("degrade: scale", "degrade", "llm", lambda kube: {"strategy": "scale", "factor": 2, "max_replicas": 6},
         no_prep, lambda kube, p: kube.patch_scale(NS, "llm", 5),
         lambda kube, p: kube.get_deployment(NS, "llm")["spec"]["replicas"], "replicas are 5, the plan set 6"),
]
IDS = [c.name for c in CASES]


def versions(kube: KubeClient) -> dict[str, str]:
    """Every object's resourceVersion: equal before and after means nothing was written."""
    listed = {"deployment": kube.list_deployments(NS), "service": kube.list_services(NS), "pod": kube.list_pods(NS)}
    return {f"{kind}/{o['metadata']['name']}": o["metadata"]["resourceVersion"]
            for kind, objects in listed.items() for o in objects}


def undo_events(kube: KubeClient, plan: ActionPlan) -> list[dict]:
    return [e for e in kube.list_events(NS) if e["metadata"]["name"].endswith(f"aiops-{plan.id}-undo")]


def start(case: Case, sim) -> tuple:
    cluster, clock, kube = sim
    case.prepare(kube, cluster, clock)
    params = case.params(kube)
    plan = make_plan(case.action, case.target, params)
    action = ACTIONS[case.action](kube, clock)
    return kube, action, plan, params


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_undo_reverts_a_change_that_is_still_the_plans_own(case, sim):
    kube, action, plan, params = start(case, sim)
    original = case.state(kube, params)
    change = action.apply(plan, dry_run=False)
    assert change.applied and case.state(kube, params) != original

    undo = action.undo(plan, change, dry_run=False)

    assert undo.applied and case.state(kube, params) == original
    assert action.undo(plan, change, dry_run=False).already_done, "a second undo finds nothing to do"


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_undo_of_a_change_a_person_changed_since_is_superseded_and_writes_nothing(case, sim):
    kube, action, plan, params = start(case, sim)
    change = action.apply(plan, dry_run=False)
    case.person(kube, params)
    theirs, written = case.state(kube, params), versions(kube)

    with pytest.raises(Superseded) as info:
        action.undo(plan, change, dry_run=False)

    assert case.detail in info.value.detail and plan.id in info.value.detail
    assert case.state(kube, params) == theirs and versions(kube) == written
    assert undo_events(kube, plan) == []


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_undo_after_a_crash_before_the_patch_landed_needs_nothing_or_is_superseded(case, sim):
    """The runner journals the intended change before the patch; after a crash in between, the undo gets that
    change although nothing was written: untouched it is a no-op, touched by a person it is theirs."""
    kube, action, plan, params = start(case, sim)
    intended = action.apply(plan, dry_run=True)
    untouched = versions(kube)

    assert action.undo(plan, intended, dry_run=False).already_done
    assert versions(kube) == untouched

    case.person(kube, params)
    theirs, written = case.state(kube, params), versions(kube)
    with pytest.raises(Superseded, match="does not carry this plan's annotation"):
        action.undo(plan, intended, dry_run=False)
    assert case.state(kube, params) == theirs and versions(kube) == written


def test_undo_after_another_plan_wrote_the_same_value_is_superseded(sim):
    """Replicas still 4, but another plan scaled since (at its bound: same count, its own annotation): the 4 is no
    longer ours to take back."""
    _, clock, kube = sim
    ours = make_plan("scale", "cart", {"factor": 2, "step_min": 1, "max_replicas": 4})
    change = ACTIONS["scale"](kube, clock).apply(ours, dry_run=False)
    other = make_plan("scale", "cart", {"factor": 2, "step_min": 1, "max_replicas": 4}, incident="inc-2")
    ACTIONS["scale"](kube, clock).apply(other, dry_run=False)
    assert kube.get_deployment(NS, "cart")["metadata"]["annotations"][PLAN_ANNOTATION] == other.id

    with pytest.raises(Superseded, match=f"plan {other.id} has written it since"):
        ACTIONS["scale"](kube, clock).undo(ours, change, dry_run=False)
    assert kube.get_deployment(NS, "cart")["spec"]["replicas"] == 4


def test_a_conflict_retry_of_an_undo_checks_ownership_again_on_the_fresh_read(sim):
    """A person scales to 8 between the undo's read and its write: the guarded patch fails, and the retry's fresh
    read must find the object no longer ours instead of scaling 8 back to 2."""
    _, clock, kube = sim
    plan = make_plan("scale", "cart", {"factor": 2, "step_min": 1, "max_replicas": 10})
    change = ACTIONS["scale"](kube, clock).apply(plan, dry_run=False)

    class PersonRacing:
        def __init__(self):
            self.raced = False

        def __getattr__(self, name):
            return getattr(kube, name)

        def get_deployment(self, ns, name):
            dep = kube.get_deployment(ns, name)
            if not self.raced:
                self.raced = True
                kube.patch_scale(NS, "cart", 8)
            return dep

    with pytest.raises(Superseded, match="replicas are 8, the plan set 4"):
        ACTIONS["scale"](PersonRacing(), clock).undo(plan, change, dry_run=False)
    assert kube.get_deployment(NS, "cart")["spec"]["replicas"] == 8


def test_a_change_made_again_after_the_plans_own_undo_is_left_alone(sim):
    """The undo landed but was not journaled (a crash), a person then scaled again: a resumed undo must not act."""
    _, clock, kube = sim
    action = ACTIONS["scale"](kube, clock)
    plan = make_plan("scale", "cart", {"factor": 2, "step_min": 1, "max_replicas": 10})
    change = action.apply(plan, dry_run=False)
    action.undo(plan, change, dry_run=False)
    assert kube.get_deployment(NS, "cart")["metadata"]["annotations"][UNDONE_ANNOTATION] == plan.id
    kube.patch_scale(NS, "cart", 4)  # the very count the plan once set

    with pytest.raises(Superseded, match="already undid its change"):
        action.undo(plan, change, dry_run=False)
    assert kube.get_deployment(NS, "cart")["spec"]["replicas"] == 4


def test_an_isolated_pod_a_person_took_over_keeps_their_labels(sim):
    """The person removed the isolation marker to keep the pod out for good: no undo puts it back in service."""
    _, clock, kube = sim
    action = ACTIONS["isolate"](kube, clock)
    pod = cart_pod(kube)
    plan = make_plan("isolate", "cart", {"label": "app", "pod": pod})
    change = action.apply(plan, dry_run=False)
    kube.patch_pod(NS, pod, {"metadata": {"labels": {ISOLATED_LABEL: None, "debug": "keep"}}})

    with pytest.raises(Superseded, match=f"pod label {ISOLATED_LABEL} is None, the plan set 'true'"):
        action.undo(plan, change, dry_run=False)
    assert "app" not in kube.get_pod(NS, pod)["metadata"]["labels"]


def test_a_rollout_restart_by_a_person_after_a_rollback_is_named_in_the_refusal(sim):
    """Same images, but a person restarted the rollout (a template annotation): still not the plan's template."""
    cluster, clock, kube = sim
    bad_deploy(kube, cluster, clock)
    action = ACTIONS["rollback"](kube, clock)
    plan = make_plan("rollback", "cart", {})
    change = action.apply(plan, dry_run=False)
    kube.patch_deployment(NS, "cart", {"spec": {"template": {"metadata": {"annotations": {
        "kubectl.kubernetes.io/restartedAt": "2026-12-02T11:00:00Z"}}}}})

    with pytest.raises(Superseded, match=r"the pod template differs from the one the plan set \(at "
                                         r"metadata\.annotations\.kubectl\.kubernetes\.io/restartedAt\)"):
        action.undo(plan, change, dry_run=False)
    assert image_of(kube) == "registry.local/cart:1.0"
