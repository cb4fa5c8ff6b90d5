"""Plan params that go into a selector or a patch must be valid Kubernetes names and label values (issue #13,
defect 15): anything else is an ``ActionError`` naming the param, and nothing reaches the API."""

from __future__ import annotations

import pytest

from aiops.clients.kube import KubeClient
from aiops.domain.plans import ActionPlan, Mode, plan_id
from aiops.domain.target import Target
from aiops.remediate.actions import ACTIONS, ActionError
from aiops.remediate.actions import names
from aiops.sim.clock import SimClock
from aiops.sim.cluster import SimCluster
from aiops.sim.kubeapi import KubeApiServer

NS = "shop"
TARGET = Target.deployment(NS, "cart")


@pytest.mark.parametrize("key", ["app", "pod-template-hash", "topology.kubernetes.io/zone", "a.b/c_d.E-9", "x" * 63])
def test_valid_label_keys_pass(key):
    assert names.label_key("label", key) == key


@pytest.mark.parametrize("key", ["", "-app", "app-", "a b", "app,x", "a=b", "x" * 64, "/app", "Upper.io/app",
                                 "a/b/c", "zone/", "k8s.io/../x"])
def test_invalid_label_keys_name_the_param(key):
    with pytest.raises(ActionError, match=r"params\.label"):
        names.label_key("label", key)


@pytest.mark.parametrize("value", ["", "zone-b", "1.2_3", "7c9f6d8b4", 3, "A" * 63])
def test_valid_label_values_pass(value):
    assert names.label_value("value", value) == str(value)


@pytest.mark.parametrize("value", ["zone b", "a,b", "a=b", "-x", "x.", "x" * 64, "a/b", None, True, 1.5, ["a"]])
def test_invalid_label_values_name_the_param(value):
    with pytest.raises(ActionError, match=r"params\.value"):
        names.label_value("value", value)


def test_object_and_service_names():
    assert names.object_name("pod", "cart-7c9f6d8b4-x2x5q") == "cart-7c9f6d8b4-x2x5q"
    assert names.service_name("service", "cart") == "cart"
    for bad in ("Cart", "cart_1", "../cart", "cart?watch=1", "", "c" * 254):
        with pytest.raises(ActionError, match=r"params\.pod"):
            names.object_name("pod", bad)
    for bad in ("1cart", "cart.v1", "c" * 64):
        with pytest.raises(ActionError, match=r"params\.service"):
            names.service_name("service", bad)


def test_a_selector_names_the_key_or_the_value_at_fault():
    assert names.selector("selector", {"model-group": "llm"}) == {"model-group": "llm"}
    with pytest.raises(ActionError, match=r"params\.selector\.model-group"):
        names.selector("selector", {"model-group": "llm,app=payments"})
    with pytest.raises(ActionError, match=r"params\.selector key"):
        names.selector("selector", {"model group": "llm"})
    with pytest.raises(ActionError, match="must be a mapping"):
        names.selector("selector", "model-group=llm")


@pytest.fixture
def sim():
    clock = SimClock(1.7e9)
    cluster = SimCluster(clock)
    cluster.add_deployment(NS, "cart", replicas=2)
    server = KubeApiServer(cluster).start()
    kube = KubeClient.for_host(server.url)
    yield kube, clock
    kube.close()
    server.stop()


def make_plan(action: str, params: dict) -> ActionPlan:
    return ActionPlan(plan_id("inc-1", action, TARGET), "inc-1", action, action, TARGET, params, Mode.ACT)


@pytest.mark.parametrize("action,params,param", [
    ("shift_traffic", {"label": "zone", "value": "b,app=payments"}, "value"),
    ("shift_traffic", {"label": "zone x", "value": "b"}, "label"),
    ("shift_traffic", {"label": "zone", "value": "b", "service": "payments/../cart"}, "service"),
    ("isolate", {"label": "app", "pod": "cart-1/../../other"}, "pod"),
    ("isolate", {"label": "app~1x", "pod": None}, "label"),
])
def test_actions_refuse_a_param_that_is_not_a_kubernetes_name_and_write_nothing(sim, action, params, param):
    kube, clock = sim
    if "pod" in params and params["pod"] is None:
        params = {**params, "pod": kube.list_pods(NS)[0]["metadata"]["name"]}
    versions = {o["metadata"]["name"]: o["metadata"]["resourceVersion"]
                for o in [*kube.list_services(NS), *kube.list_pods(NS)]}

    with pytest.raises(ActionError, match=rf"params\.{param}"):
        ACTIONS[action](kube, clock).apply(make_plan(action, params), dry_run=False)

    assert versions == {o["metadata"]["name"]: o["metadata"]["resourceVersion"]
                        for o in [*kube.list_services(NS), *kube.list_pods(NS)]}
