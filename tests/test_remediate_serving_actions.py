"""The degrade and isolate actions on the simulator's HTTP Kubernetes API: change once, undo once, refuse clearly."""

from __future__ import annotations

import pytest

from aiops.clients.kube import KubeClient
from aiops.domain.diagnosis import Diagnosis, Fault, Hypothesis
from aiops.domain.incident import Incident
from aiops.domain.plans import ActionPlan, Mode, plan_id
from aiops.domain.target import Target
from aiops.remediate.actions import ACTIONS, PLAN_ANNOTATION, ActionError
from aiops.remediate.actions.degrade import fallback_replicas
from aiops.remediate.journal import MemoryJournal
from aiops.remediate.planner import PlanPolicy, plan
from aiops.sim.clock import SimClock
from aiops.sim.cluster import SimCluster
from aiops.sim.kubeapi import KubeApiServer
from tests.test_remediate_restore import PLAYBOOKS

NS = "ml"
TARGET = Target.deployment(NS, "llm")
GROUP = {"model-group": "llm"}
FALLBACK = {"strategy": "fallback", "fallback": "llm-small", "fraction": 0.3, "selector": GROUP,
            "max_fallback_replicas": 4}


@pytest.fixture
def sim():
    clock = SimClock(1.7e9)
    cluster = SimCluster(clock)
    cluster.add_deployment(NS, "llm", replicas=4, pod_labels=GROUP)
    cluster.add_deployment(NS, "llm-small", replicas=1, pod_labels=GROUP)
    server = KubeApiServer(cluster).start()
    kube = KubeClient.for_host(server.url)
    yield cluster, clock, kube
    kube.close()
    server.stop()


def make_plan(action: str, params: dict) -> ActionPlan:
    return ActionPlan(plan_id("inc-1", action, TARGET), "inc-1", action, action, TARGET, params, Mode.ACT)


def test_fallback_size_gives_about_the_fraction_within_bounds():
    assert fallback_replicas(2, 0.3, 1, 4) == 1     # 1 of 3 pods
    assert fallback_replicas(4, 0.3, 1, 4) == 2     # ceil(4 * 0.3 / 0.7) = 2: 2 of 6
    assert fallback_replicas(20, 0.5, 1, 4) == 4    # bounded
    assert fallback_replicas(2, 0.1, 3, 4) == 3     # never scales the fallback down


def test_degrade_to_fallback_applies_once_and_undoes_once(sim):
    cluster, clock, kube = sim
    action = ACTIONS["degrade"](kube, clock)
    p = make_plan("degrade", FALLBACK)

    assert action.apply(p, dry_run=True).description.startswith("service llm: send ~33% of requests")
    assert kube.get_service(NS, "llm")["spec"]["selector"] == {"app": "llm"}  # dry-run changed nothing

    change = action.apply(p, dry_run=False)

    assert change.applied and change.before["fallback_replicas"] == 1 and change.after["fallback_replicas"] == 2
    service = kube.get_service(NS, "llm")
    assert service["spec"]["selector"] == GROUP and service["metadata"]["annotations"][PLAN_ANNOTATION] == p.id
    small = kube.get_deployment(NS, "llm-small")
    assert small["spec"]["replicas"] == 2 and small["metadata"]["annotations"][PLAN_ANNOTATION] == p.id
    versions = (service["metadata"]["resourceVersion"], small["metadata"]["resourceVersion"])
    assert action.is_satisfied(p) and action.apply(p, dry_run=False).already_done
    assert (kube.get_service(NS, "llm")["metadata"]["resourceVersion"],
            kube.get_deployment(NS, "llm-small")["metadata"]["resourceVersion"]) == versions

    undo = action.undo(p, change, dry_run=False)

    assert undo.applied
    assert kube.get_service(NS, "llm")["spec"]["selector"] == {"app": "llm"}
    assert kube.get_deployment(NS, "llm-small")["spec"]["replicas"] == 1
    assert action.undo(p, change, dry_run=False).already_done


class _ServiceTouchedAfterFallback:
    """The fallback's write lands, then the Service changes (a controller's annotation) before ours is written."""

    def __init__(self, kube, fail_with: Exception | None = None):
        self.kube, self.fail_with, self.touched = kube, fail_with, False

    def __getattr__(self, name):
        return getattr(self.kube, name)

    def patch_deployment(self, ns, name, patch):
        result = self.kube.patch_deployment(ns, name, patch)
        if not self.touched:
            self.touched = True
            self.kube.patch_service(NS, "llm", {"metadata": {"annotations": {"touched": "yes"}}})
        return result

    def patch_service(self, ns, name, patch):
        if self.fail_with is not None:
            raise self.fail_with
        return self.kube.patch_service(ns, name, patch)


def test_degrade_conflict_retry_journals_the_fallback_size_from_before_the_plan(sim):
    """The Service write loses a race after the fallback was already scaled 1 -> 2: the retry re-reads a fallback
    at 2, yet the change must say 1 before (else the undo would leave the fallback at 2)."""
    _, clock, kube = sim
    p = make_plan("degrade", FALLBACK)

    change = ACTIONS["degrade"](_ServiceTouchedAfterFallback(kube), clock).apply(p, dry_run=False)

    assert change.applied and (change.before["fallback_replicas"], change.after["fallback_replicas"]) == (1, 2)
    assert kube.get_deployment(NS, "llm-small")["spec"]["replicas"] == 2
    assert "~33%" in change.description and "llm-small 1 -> 2" in change.description
    ACTIONS["degrade"](kube, clock).undo(p, change, dry_run=False)
    assert kube.get_deployment(NS, "llm-small")["spec"]["replicas"] == 1


def test_degrade_resumed_after_a_crash_between_its_two_writes_knows_the_size_before(sim):
    _, clock, kube = sim
    p = make_plan("degrade", FALLBACK)
    with pytest.raises(RuntimeError):
        ACTIONS["degrade"](_ServiceTouchedAfterFallback(kube, RuntimeError("agent died")), clock).apply(
            p, dry_run=False)
    assert kube.get_deployment(NS, "llm-small")["spec"]["replicas"] == 2

    change = ACTIONS["degrade"](kube, clock).apply(p, dry_run=False)  # the restarted agent runs it again

    assert change.applied and change.before["fallback_replicas"] == 1
    assert kube.get_service(NS, "llm")["spec"]["selector"] == GROUP


def test_degrade_refuses_params_that_are_not_kubernetes_names_before_any_call(sim):
    _, clock, kube = sim
    rv = kube.get_service(NS, "llm")["metadata"]["resourceVersion"]
    bad = {"fallback": "llm-small,payments", "selector": {"model-group": "llm x"}, "service": "llm.svc"}
    for key, value in bad.items():
        with pytest.raises(ActionError, match=f"params.{key}"):
            ACTIONS["degrade"](kube, clock).apply(make_plan("degrade", {**FALLBACK, key: value}), dry_run=False)
    assert kube.get_service(NS, "llm")["metadata"]["resourceVersion"] == rv
    assert kube.get_deployment(NS, "llm-small")["spec"]["replicas"] == 1


def test_degrade_by_scaling_out_is_the_scale_action(sim):
    _, clock, kube = sim
    action = ACTIONS["degrade"](kube, clock)
    p = make_plan("degrade", {"strategy": "scale", "factor": 2, "step_min": 1, "max_replicas": 6})
    change = action.apply(p, dry_run=False)
    assert (change.before, change.after) == ({"replicas": 4}, {"replicas": 6})
    assert kube.get_service(NS, "llm")["spec"]["selector"] == {"app": "llm"}
    action.undo(p, change, dry_run=False)
    assert kube.get_deployment(NS, "llm")["spec"]["replicas"] == 4


def test_isolate_refuses_without_a_pod_or_when_the_label_does_not_route(sim):
    _, clock, kube = sim
    action = ACTIONS["isolate"](kube, clock)
    with pytest.raises(ActionError, match="needs params.pod"):
        action.apply(make_plan("isolate", {"label": "app"}), dry_run=False)
    pod = kube.list_pods(NS, "app=llm")[0]["metadata"]["name"]
    with pytest.raises(ActionError, match="does not select on 'model-group'"):
        action.apply(make_plan("isolate", {"label": "model-group", "pod": pod}), dry_run=False)
    assert "app" in kube.get_pod(NS, pod)["metadata"]["labels"]
    other = kube.list_pods(NS, "app=llm-small")[0]["metadata"]["name"]  # in the namespace, not the target's
    with pytest.raises(ActionError, match="does not belong to Deployment ml/llm"):
        action.apply(make_plan("isolate", {"label": "app", "pod": other}), dry_run=False)


def test_an_analyzer_names_the_pod_but_never_where_a_degrade_sends_traffic():
    incident = Incident("inc-1", TARGET, 0.0)
    policy = PlanPolicy(mode=Mode.ACT, namespaces=(NS,), max_replicas=3)

    def planned(playbook: str, params: dict) -> dict:
        chosen = Hypothesis(TARGET, Fault.MODEL_OVERLOAD, playbook, 0.9, "rules", params=params)
        decision = plan(Diagnosis(incident, (chosen,), chosen), PLAYBOOKS, policy, _NoHistory(), 0.0)
        return decision.params

    assert planned("isolate-pod", {"pod": "llm-abc"})["pod"] == "llm-abc"
    degrade = planned("degrade-model", {"fallback": "payments", "selector": {"app": "payments"}, "fraction": 0.9})
    assert (degrade["fallback"], degrade["selector"], degrade["fraction"]) == ("llm-small", GROUP, 0.3)
    assert degrade["max_fallback_replicas"] == 3 and degrade["max_replicas"] == 3  # the policy's bound


class _NoHistory(MemoryJournal):
    """An empty journal: nothing acted before."""
