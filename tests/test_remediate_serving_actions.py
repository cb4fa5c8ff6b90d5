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
