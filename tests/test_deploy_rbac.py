"""The deploy/ manifests applied to the real kube-apiserver v1.20 in RBAC mode, then the agent run with the
ServiceAccount's own token (a real one, minted by the controller-manager's token controller).

With the act overlay the agent can run every playbook of the ConfigMap it was given, through the real
``PlaybookRunner`` and ``KubeClient``, and undo what can be undone; it can hold its Lease. retrain-detector needs no
cluster permission at all (it works on the model registry). The agent is refused reading secrets, deleting
namespaces, changing pods in any other way than isolate-pod's label patch, and everything in a namespace outside its
scope. The Helm chart's dry-run install can read but not change anything.
"""

from __future__ import annotations

import base64
import copy
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pytest
import requests
import yaml
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient

from aiops.clients.kube import KubeClient, KubeError, api_client_from_settings
from aiops.collect.kube import KubeCollector
from aiops.domain.plans import ActionPlan, ExecutionState, Mode, plan_id
from aiops.domain.target import Target
from aiops.detect.lifecycle import ModelLifecycle
from aiops.detect.store import ModelStore
from aiops.detect.tuning import DetectorParams
from aiops.remediate.actions import ACTIONS, PLAN_ANNOTATION, RetrainAction
from aiops.remediate.actions.isolate import ISOLATED_LABEL
from aiops.remediate.audit import TransitionEvents
from aiops.remediate.facts import ClusterFacts
from aiops.remediate.journal import MemoryJournal
from aiops.remediate.kube_journal import KubeJournal
from aiops.remediate.playbooks import load_playbooks
from aiops.remediate.runner import PlaybookRunner
from aiops.remediate.verify import Verifier
from aiops.serve.agent import open_journal
from aiops.serve.drift_check import DETECTOR_KIND
from aiops.serve.peers import PeerDirectory, service_endpoints
from aiops.settings import Settings, parse_settings
from aiops.sim.clock import SimClock
from tests.support import kubestack, render
from tests.support.polling import wait_until
from tests.support.realstack import free_port
from tests.test_lifecycle_retrain import HOUR, RETRAIN_PARAMS, T0, RegimeCollector

pytestmark = pytest.mark.kube

AGENT_NS, SCOPE_NS, SA = "aiops-system", "shop", "aiops"
JOURNAL_NS = "aiops-journal"  # created by the install itself
DEADLINE = 45.0
STOCK_PLAYBOOKS = sorted(p.stem for p in (render.KUSTOMIZE / "base" / "playbooks").glob("*.yaml"))
# The playbooks whose action works on cluster objects (retrain works on the model registry: its own test below).
CLUSTER_PLAYBOOKS = sorted(name for name, pb in load_playbooks(render.KUSTOMIZE / "base" / "playbooks").items()
                           if pb.action != "retrain")
# Readings far below these count as "recovered" for every stock playbook's verify signals.
BEFORE = {"memory": 1e9, "restarts": 5.0, "latency_p99": 2.0, "error_ratio": 0.5, "cpu": 2.0,
          "inference_latency_p99": 2.0, "requests_waiting": 50.0, "gpu_util": 95.0, "gpu_memory": 7e10,
          "process_memory": 4e10}


def for_v1_20(obj: dict) -> dict:
    """The test apiserver is v1.20, which serves PodDisruptionBudget only as policy/v1beta1 (the manifests use
    policy/v1, which clusters >= 1.21 serve and >= 1.25 require). Nothing else needs translating."""
    if obj["kind"] == "PodDisruptionBudget" and obj["apiVersion"] == "policy/v1":
        obj = copy.deepcopy(obj)
        obj["apiVersion"] = "policy/v1beta1"
    return obj


def apply(stack: kubestack.KubeStack, objects: list[dict]) -> None:
    """Create every object as the cluster admin would (``kubectl apply`` of a fresh install)."""
    with stack._api() as api:
        dyn = DynamicClient(api)
        for obj in map(for_v1_20, objects):
            resource = dyn.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
            namespace = obj["metadata"].get("namespace") if resource.namespaced else None
            resource.create(body=obj, namespace=namespace)


def service_account_token(stack: kubestack.KubeStack, namespace: str, name: str) -> str:
    """The token of the ServiceAccount's token Secret, once the token controller has made it."""
    with stack._api() as api:
        core = k8s.CoreV1Api(api)
        secret_name = wait_until(lambda: (core.read_namespaced_service_account(name, namespace).secrets or
                                          [None])[0], DEADLINE, f"token secret of {namespace}/{name}").name
        secret = core.read_namespaced_secret(secret_name, namespace)
        return base64.b64decode(secret.data["token"]).decode()


@dataclass
class Install:
    """An applied install: the agent's settings as deployed (pointed at the test apiserver with the SA token),
    and the playbooks from its ConfigMap."""

    settings: Settings
    playbooks: dict


def installed_settings(stack, objects, token: str, tmp: Path) -> Settings:
    """The config from the rendered ConfigMap, with in-cluster access swapped for the apiserver URL and the token."""
    agent = next(o for o in objects if o["kind"] == "Deployment")["metadata"]["name"]
    # kustomize appends a content hash to the name, Helm does not
    cm = next(o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith(f"{agent}-config"))
    raw = yaml.safe_load(cm["data"]["config.yaml"])
    (tmp / "token").write_text(token)
    raw["kubernetes"].update({"in_cluster": False, "host": stack.url, "token_file": str(tmp / "token"),
                              "verify_ssl": False})
    return parse_settings(raw, where="deployed config.yaml")


@pytest.fixture(scope="module")
def rbac_stack():
    """A control plane of this module's own, with RBAC on (the session's shared one allows everything)."""
    if not kubestack.available():
        pytest.fail(f"kube-apiserver v1.20.2 is not built in {kubestack.bin_dir()}: run `make kube`", pytrace=False)
    if not render.available():
        pytest.fail(f"helm/kubectl are not cached in {render.tools_dir()}: run `make kube`", pytrace=False)
    stack = kubestack.start_kube(authorization_mode="RBAC")
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def act_install(rbac_stack, tmp_path_factory) -> Install:
    """The kustomize act overlay, applied as documented: namespaces and the webhook token Secret first."""
    objects = render.kustomize(render.KUSTOMIZE / "overlays" / "act")
    for ns in (AGENT_NS, SCOPE_NS):
        rbac_stack.create_namespace(ns)
    with rbac_stack._api() as api:
        k8s.CoreV1Api(api).create_namespaced_secret(AGENT_NS, {
            "metadata": {"name": "aiops-webhook-token"}, "stringData": {"token": uuid.uuid4().hex}})
    apply(rbac_stack, objects)
    tmp = tmp_path_factory.mktemp("act")
    settings = installed_settings(rbac_stack, objects, service_account_token(rbac_stack, AGENT_NS, SA), tmp)
    pb_dir = tmp / "playbooks"
    pb_dir.mkdir()
    cm = next(o for o in objects if o["metadata"]["name"].startswith("aiops-playbooks"))
    for name, text in cm["data"].items():
        (pb_dir / name).write_text(text)
    return Install(settings, load_playbooks(pb_dir))


@pytest.fixture
def agent_kube(act_install):
    """The agent's ``KubeClient``, built from its settings exactly as ``aiops serve`` builds it."""
    kube = KubeClient(api_client_from_settings(act_install.settings.kubernetes))
    yield kube
    kube.close()


def rolled_out(admin: KubeClient, ns: str, name: str) -> bool:
    dep = admin.get_deployment(ns, name)
    status = dep.get("status") or {}
    return (status.get("observedGeneration", 0) >= dep["metadata"]["generation"]
            and status.get("updatedReplicas") == status.get("availableReplicas") == dep["spec"]["replicas"]
            and status.get("replicas") == dep["spec"]["replicas"])


def app_with_two_revisions(stack, ns: str) -> Target:
    """A Deployment + Service created by the admin, rolled from image 1.0 to 2.0 (so there is a revision to roll
    back to and a ReplicaSet hash to shift to)."""
    name = f"app-{uuid.uuid4().hex[:8]}"
    stack.create_app(ns, name, replicas=2, image="registry.local/app:1.0")
    admin = stack.client()
    try:
        wait_until(lambda: rolled_out(admin, ns, name), DEADLINE, f"{ns}/{name} rolled out")
        admin.patch_deployment(ns, name, {"spec": {"template": {"spec": {"containers": [
            {"name": name, "image": "registry.local/app:2.0"}]}}}})
        wait_until(lambda: rolled_out(admin, ns, name) and len(admin.list_replicasets(ns, f"app={name}")) == 2,
                   DEADLINE, f"{ns}/{name} rolled to 2.0")
    finally:
        admin.close()
    return Target.deployment(ns, name)


def serving_app(stack, ns: str) -> tuple[Target, dict]:
    """A model server (3 replicas, with its Service) and its fallback (1 replica), both Deployments' pods carrying
    a shared ``model-group`` label; returns the server and the degrade params naming the fallback and that label."""
    name = f"llm-{uuid.uuid4().hex[:8]}"
    group = {"model-group": name}
    with stack._api() as api:
        for dep_name, replicas in ((name, 3), (f"{name}-small", 1)):
            dep, svc = kubestack.app_objects(ns, dep_name, replicas, "registry.local/llm:1.0")
            dep["spec"]["template"]["metadata"]["labels"].update(group)
            k8s.AppsV1Api(api).create_namespaced_deployment(ns, dep)
            if dep_name == name:
                k8s.CoreV1Api(api).create_namespaced_service(ns, svc)
    admin = stack.client()
    try:
        for dep_name in (name, f"{name}-small"):
            wait_until(lambda: rolled_out(admin, ns, dep_name), DEADLINE, f"{ns}/{dep_name} rolled out")
    finally:
        admin.close()
    return Target.deployment(ns, name), {"fallback": f"{name}-small", "selector": group}


def live_pod(kube: KubeClient, target: Target) -> str:
    """A running pod of ``target`` that no rollout is deleting."""
    pods = [p for p in kube.list_pods(target.namespace, f"app={target.name}")
            if not p["metadata"].get("deletionTimestamp")]
    return sorted(p["metadata"]["name"] for p in pods)[0]


def runner_for(kube: KubeClient, playbooks: dict, clock: SimClock) -> PlaybookRunner:
    """The real runner; verification reads a probe that reports recovery, on a clock the test moves."""
    class Recovered:
        def read(self, namespace, workload, signals):
            return {s: BEFORE[s] * 0.01 for s in signals if s in BEFORE}
    return PlaybookRunner(kube, MemoryJournal(), Verifier(Recovered(), clock.advance, clock), playbooks, clock)


def plan_for(playbook, target: Target, mode: Mode, params: dict | None = None) -> ActionPlan:
    incident = f"inc-{uuid.uuid4().hex[:8]}"
    return ActionPlan(id=plan_id(incident, playbook.name, target), incident_id=incident, playbook=playbook.name,
                      action=playbook.action, target=target, params={**playbook.params, **(params or {})},
                      mode=mode, reason="deploy RBAC test")


def forbidden(call) -> bool:
    """True when ``call()`` is refused by authorization (403), whichever client raised it."""
    try:
        call()
    except KubeError as exc:
        return exc.status == 403
    except ApiException as exc:
        return exc.status == 403
    return False


def sa_api(stack, token: str) -> k8s.ApiClient:
    conf = k8s.Configuration(host=stack.url)
    conf.verify_ssl = False
    conf.api_key = {"BearerToken": token}
    conf.api_key_prefix = {"BearerToken": "Bearer"}
    return k8s.ApiClient(conf)


def test_deployed_config_is_act_mode_scoped_to_the_bound_namespace(act_install):
    assert act_install.settings.mode is Mode.ACT
    assert act_install.settings.kubernetes.namespaces == (SCOPE_NS,)
    assert sorted(act_install.playbooks) == STOCK_PLAYBOOKS


def test_agent_deployment_rolls_out_with_its_service_account(rbac_stack, act_install):
    admin = rbac_stack.client()
    try:
        wait_until(lambda: rolled_out(admin, AGENT_NS, "aiops"), DEADLINE, "the agent's Deployment rolled out")
        pods = admin.list_pods(AGENT_NS, "app.kubernetes.io/name=aiops")
    finally:
        admin.close()
    assert len(pods) == 2 and all(p["spec"]["serviceAccountName"] == SA for p in pods)


@pytest.mark.parametrize("name", CLUSTER_PLAYBOOKS)
def test_agent_runs_every_enabled_playbook_with_its_service_account(rbac_stack, act_install, agent_kube, name):
    playbook = act_install.playbooks[name]
    # The params the diagnosis (or a person) supplies for the situation at hand; the permissions used are the
    # stock defaults' (shift-traffic's default picks the oldest live ReplicaSet, which needs a rollout held
    # half-way; degrade-model's default fallback is named llm-small).
    if playbook.action == "degrade":
        target, params = serving_app(rbac_stack, SCOPE_NS)
    else:
        target = app_with_two_revisions(rbac_stack, SCOPE_NS)
        params = {}
    if playbook.action == "shift_traffic":
        rs = agent_kube.list_replicasets(SCOPE_NS, f"app={target.name}")
        params = {"value": rs[0]["metadata"]["labels"]["pod-template-hash"]}
    if playbook.action == "isolate":
        params = {"pod": live_pod(agent_kube, target)}
    plan = plan_for(playbook, target, act_install.settings.mode, params)
    clock = SimClock(datetime.now(timezone.utc).timestamp())
    runner = runner_for(agent_kube, act_install.playbooks, clock)
    runner.restore_watch = False  # undone below, by hand, after looking at the change in the cluster

    execution = runner.run(plan, before=BEFORE)

    assert execution.state is ExecutionState.SUCCEEDED, execution.history
    (change,) = execution.changes
    assert change.applied
    events = [e for e in agent_kube.list_events(SCOPE_NS)
              if (e["metadata"].get("annotations") or {}).get(PLAN_ANNOTATION) == plan.id]
    assert events, "the action's audit Event was written"
    if playbook.acts:
        obj = changed_object(agent_kube, playbook.action, plan)
        assert obj["metadata"]["annotations"][PLAN_ANNOTATION] == plan.id
    assert_applied(agent_kube, playbook.action, plan)
    if playbook.undo_on_worse:
        undone = ACTIONS[playbook.action](agent_kube, clock).undo(plan, change, dry_run=False)
        assert undone.applied, undone.description
        assert_undone(agent_kube, playbook.action, plan)


def changed_object(kube: KubeClient, action: str, plan: ActionPlan) -> dict:
    """The object carrying the plan's annotation: the Service, the isolated pod, or the Deployment."""
    ns, name = plan.target.namespace, plan.target.name
    if action in ("shift_traffic", "degrade"):
        return kube.get_service(ns, name)
    if action == "isolate":
        return kube.get_pod(ns, plan.params["pod"])
    return kube.get_deployment(ns, name)


def assert_applied(kube: KubeClient, action: str, plan: ActionPlan) -> None:
    """The new actions' changes, read back from the cluster."""
    ns, name = plan.target.namespace, plan.target.name
    if action == "isolate":
        labels = kube.get_pod(ns, plan.params["pod"])["metadata"]["labels"]
        assert "app" not in labels and labels[ISOLATED_LABEL] == "true"
    if action == "degrade":
        assert kube.get_service(ns, name)["spec"]["selector"] == plan.params["selector"]
        fallback = kube.get_deployment(ns, plan.params["fallback"])
        assert fallback["spec"]["replicas"] == 2  # ~30 % of 3 + 2 pods
        assert fallback["metadata"]["annotations"][PLAN_ANNOTATION] == plan.id


def assert_undone(kube: KubeClient, action: str, plan: ActionPlan) -> None:
    ns, name = plan.target.namespace, plan.target.name
    if action == "isolate":
        labels = kube.get_pod(ns, plan.params["pod"])["metadata"]["labels"]
        assert labels["app"] == name and ISOLATED_LABEL not in labels
    if action == "degrade":
        assert kube.get_service(ns, name)["spec"]["selector"] == {"app": name}
        assert kube.get_deployment(ns, plan.params["fallback"])["spec"]["replicas"] == 1


class CallRecorder:
    """A KubeApi that records every method called on it before passing the call on."""

    def __init__(self, kube: KubeClient) -> None:
        self.kube = kube
        self.calls: list[str] = []

    def __getattr__(self, name: str):
        self.calls.append(name)
        return getattr(self.kube, name)


def test_retrain_detector_needs_no_cluster_permission(rbac_stack, act_install, tmp_path):
    """retrain-detector (from the deployed ConfigMap) works on the model registry only: run by the real runner, with
    the audit observer the agent uses, through a ServiceAccount that holds no permission at all, it retrains into a
    registry in a tmp dir and never calls the API."""
    nobody = f"nobody-{uuid.uuid4().hex[:8]}"
    with rbac_stack._api() as api:
        k8s.CoreV1Api(api).create_namespaced_service_account(AGENT_NS, {"metadata": {"name": nobody}})
    powerless = KubeClient.for_host(rbac_stack.url, service_account_token(rbac_stack, AGENT_NS, nobody),
                                    verify_ssl=False)
    try:
        assert forbidden(lambda: powerless.list_pods(SCOPE_NS))
        kube = CallRecorder(powerless)
        collector = RegimeCollector(lambda ts, call: ts >= T0 + 3 * HOUR)  # drifted from hour 3 on
        store = ModelStore(tmp_path / "models")
        first = collector.collect(SCOPE_NS, T0, T0 + 2 * HOUR)
        store.save(SCOPE_NS, DetectorParams().build().fit(first.signals, T0, T0 + 2 * HOUR),
                   {"params": DetectorParams().as_dict()})
        clock = SimClock(T0 + 6 * HOUR)
        playbook = act_install.playbooks["retrain-detector"]
        books = {playbook.name: playbook.model_copy(update={"params": RETRAIN_PARAMS})}
        runner = PlaybookRunner(kube, MemoryJournal(), Verifier(None, clock.advance, clock), books, clock,
                                actions={"retrain": RetrainAction(kube, clock, ModelLifecycle(store, collector,
                                                                                               clock))},
                                observers=[TransitionEvents(kube, clock)])
        plan = plan_for(books[playbook.name], Target(DETECTOR_KIND, SCOPE_NS, SCOPE_NS), act_install.settings.mode)

        execution = runner.run(plan, before={})

        assert execution.state is ExecutionState.SUCCEEDED, execution.history
        assert store.current_version(SCOPE_NS) == 2 and store.record(SCOPE_NS, 2).extra["plan_id"] == plan.id
        assert kube.calls == []
    finally:
        powerless.close()


def test_agent_reads_what_its_collectors_need_and_scales_through_the_subresource(rbac_stack, act_install,
                                                                                 agent_kube):
    target = app_with_two_revisions(rbac_stack, SCOPE_NS)
    now = datetime.now(timezone.utc).timestamp()
    events = KubeCollector(agent_kube, clock=lambda: now).events(SCOPE_NS, now - 600, now + 60)
    assert any(e.involved_name.startswith(target.name) for e in events)
    pod = agent_kube.list_pods(SCOPE_NS, f"app={target.name}")[0]["metadata"]["name"]
    # The fake kubelet serves no logs: the apiserver authorises the request, then fails to reach the kubelet.
    with pytest.raises(KubeError) as log_error:
        agent_kube.read_pod_log(SCOPE_NS, pod)
    assert log_error.value.status != 403
    assert agent_kube.patch_scale(SCOPE_NS, target.name, 3)["spec"]["replicas"] == 3
    assert agent_kube.version()["gitVersion"].startswith("v1.20")  # the /readyz check


def test_agent_holds_its_own_lease_and_no_other(rbac_stack, act_install):
    token = act_install.settings.kubernetes.token_file.read_text()
    with sa_api(rbac_stack, token) as api:
        leases = k8s.CoordinationV1Api(api)
        now = datetime.now(timezone.utc).replace(microsecond=123456)  # a zero fraction is re-serialised badly
        body = {"metadata": {"name": "aiops-leader"},
                "spec": {"holderIdentity": "aiops-0", "leaseDurationSeconds": 15, "acquireTime": now,
                         "renewTime": now}}
        leases.create_namespaced_lease(AGENT_NS, body)
        lease = leases.read_namespaced_lease("aiops-leader", AGENT_NS)
        lease.spec.holder_identity = "aiops-1"
        assert leases.replace_namespaced_lease("aiops-leader", AGENT_NS, lease).spec.holder_identity == "aiops-1"
        other = {"metadata": {"name": "someone-else"}, "spec": {"holderIdentity": "x", "leaseDurationSeconds": 15}}
        leases.create_namespaced_lease(AGENT_NS, other)  # create cannot be limited by name in RBAC...
        assert forbidden(lambda: leases.read_namespaced_lease("someone-else", AGENT_NS))  # ...but nothing more
        assert forbidden(lambda: leases.delete_namespaced_lease("aiops-leader", AGENT_NS))
        assert forbidden(lambda: leases.create_namespaced_lease(SCOPE_NS, {**other, "metadata": {"name": "l"}}))


def test_agent_reads_its_own_services_endpoints_to_verify_peers_and_no_others(rbac_stack, act_install, agent_kube):
    """Issue #13 defect 13: a follower forwards only to a pod among its own Service's endpoints."""
    settings = act_install.settings
    namespace, service = settings.leader_election.namespace, settings.webhook.peer_service
    read = service_endpoints(agent_kube, namespace, service)
    pairs = wait_until(lambda: [read()], 30, "the endpoints controller writes aiops's Endpoints")[0]
    peers = PeerDirectory(endpoints=read)
    for ip, port in pairs:  # the agent pods the fake kubelet runs, if it gave them addresses
        assert peers.verified_url(f"http://{ip}:{port}")
    assert peers.verified_url("http://203.0.113.9:8080") is None
    admin = rbac_stack.client()
    other = {"metadata": {"name": "not-aiops"}, "subsets": [{"addresses": [{"ip": "10.9.0.7"}],
                                                             "ports": [{"port": 8080}]}]}
    try:
        admin.request("POST", "/api/v1/namespaces/{namespace}/endpoints", {"namespace": namespace}, other)
    finally:
        admin.close()
    assert forbidden(service_endpoints(agent_kube, namespace, "not-aiops"))
    assert forbidden(service_endpoints(agent_kube, SCOPE_NS, service))


def test_agent_is_refused_secrets_namespace_deletion_and_namespaces_out_of_scope(rbac_stack, act_install,
                                                                                 agent_kube):
    outside = f"t-{uuid.uuid4().hex[:10]}"
    rbac_stack.create_namespace(outside)
    try:
        target = app_with_two_revisions(rbac_stack, outside)
        token = act_install.settings.kubernetes.token_file.read_text()
        with sa_api(rbac_stack, token) as api:
            core = k8s.CoreV1Api(api)
            for ns in (SCOPE_NS, AGENT_NS, outside):
                assert forbidden(lambda: core.list_namespaced_secret(ns)), ns
            assert forbidden(lambda: core.read_namespaced_secret("aiops-webhook-token", AGENT_NS))
            assert forbidden(lambda: core.delete_namespace(SCOPE_NS))
            assert forbidden(lambda: core.delete_namespace(outside))
            assert forbidden(lambda: core.list_pod_for_all_namespaces())
            assert forbidden(lambda: k8s.AppsV1Api(api).delete_namespaced_deployment(target.name, outside))
            # In scope the agent patches pods' labels (isolate-pod) and nothing more on pods: no delete, eviction,
            # status, replace or exec; it creates no Deployment (degrade-model only scales an existing fallback).
            scoped = app_with_two_revisions(rbac_stack, SCOPE_NS)
            pod = live_pod(agent_kube, scoped)
            eviction = {"apiVersion": "policy/v1beta1", "kind": "Eviction", "metadata": {"name": pod}}
            assert forbidden(lambda: core.delete_namespaced_pod(pod, SCOPE_NS))
            assert forbidden(lambda: core.create_namespaced_pod_eviction(pod, SCOPE_NS, eviction))
            assert forbidden(lambda: core.patch_namespaced_pod_status(pod, SCOPE_NS, {"status": {}}))
            assert forbidden(lambda: core.replace_namespaced_pod(pod, SCOPE_NS, {"metadata": {"name": pod}}))
            assert forbidden(lambda: core.create_namespaced_pod(SCOPE_NS, {"metadata": {"name": "p"}}))
            assert forbidden(lambda: core.connect_get_namespaced_pod_exec(pod, SCOPE_NS, command=["sh"]))
            assert forbidden(lambda: core.delete_namespaced_service(scoped.name, SCOPE_NS))
            new_app = kubestack.app_objects(SCOPE_NS, f"new-{scoped.name}", 1, "registry.local/app:1.0")[0]
            assert forbidden(lambda: k8s.AppsV1Api(api).create_namespaced_deployment(SCOPE_NS, new_app))
        assert forbidden(lambda: agent_kube.get_deployment(outside, target.name))
        assert forbidden(lambda: agent_kube.list_pods(outside))
        assert forbidden(lambda: agent_kube.list_events(outside))
        assert forbidden(lambda: agent_kube.patch_scale(outside, target.name, 5))
        assert forbidden(lambda: agent_kube.patch_service(outside, target.name, {"spec": {"selector": {"x": "y"}}}))
        # isolate-pod's label patch, nowhere else: not outside the scope, not on the agent's own pods.
        admin = rbac_stack.client()
        try:
            outside_pod = live_pod(admin, target)
        finally:
            admin.close()
        relabel = {"metadata": {"labels": {"app": "elsewhere"}}}
        assert forbidden(lambda: agent_kube.patch_pod(outside, outside_pod, relabel))
        assert forbidden(lambda: agent_kube.patch_pod(AGENT_NS, "aiops-anything", relabel))
        # Through the real runner too: a plan on the out-of-scope workload fails at its first read.
        restart = act_install.playbooks["restart-workload"]
        clock = SimClock(datetime.now(timezone.utc).timestamp())
        execution = runner_for(agent_kube, act_install.playbooks, clock).run(
            plan_for(restart, target, Mode.ACT), before=BEFORE)
        assert execution.state is ExecutionState.FAILED
        assert "403" in execution.history[-1][2]
        admin = rbac_stack.client()
        try:
            assert PLAN_ANNOTATION not in (admin.get_deployment(outside, target.name)["metadata"].get(
                "annotations") or {})
        finally:
            admin.close()
    finally:
        rbac_stack.delete_namespace(outside)


def test_agent_cannot_change_its_own_config_playbooks_or_rules(rbac_stack, act_install, agent_kube):
    """Issue #13 (15): the journal's Role used to reach every ConfigMap of the agent's namespace, its own config
    (scope, mode, kill switch) included. Now the ServiceAccount can neither patch, replace, delete nor even read
    them, and still journals."""
    admin = rbac_stack.client()
    try:
        own = [cm["metadata"]["name"] for cm in admin.list_configmaps(AGENT_NS)
               if cm["metadata"]["name"].startswith(("aiops-config", "aiops-playbooks", "aiops-rules"))]
    finally:
        admin.close()
    assert len(own) == 3
    for name in own:
        assert forbidden(lambda: agent_kube.patch_configmap(AGENT_NS, name, {"data": {"config.yaml": "mode: act"}}))
        assert forbidden(lambda: agent_kube.patch_configmap(
            AGENT_NS, name, [{"op": "add", "path": "/data/x", "value": "y"}]))
        assert forbidden(lambda: agent_kube.delete_configmap(AGENT_NS, name))
        assert forbidden(lambda: agent_kube.get_configmap(AGENT_NS, name))
    assert forbidden(lambda: agent_kube.create_configmap(AGENT_NS, {"metadata": {"name": "aiops-config"}, "data": {}}))
    assert forbidden(lambda: agent_kube.list_configmaps(AGENT_NS))
    journal = open_journal(act_install.settings, agent_kube)
    plan = f"p-{uuid.uuid4().hex[:16]}"
    journal.record(plan, "executing", "go", {"ts": 1.0, "trigger": "start"})
    assert [r["state"] for r in journal.history(plan)] == ["executing"]


def test_helm_dry_run_install_can_read_and_plan_but_not_change(rbac_stack, tmp_path):
    suffix = uuid.uuid4().hex[:8]
    release, agent_ns, scope_ns = f"dry-{suffix}", f"agent-{suffix}", f"scope-{suffix}"
    objects = render.helm_template(release=release, namespace=agent_ns, values={"targetNamespaces": f"{{{scope_ns}}}"})
    for ns in (agent_ns, scope_ns):
        rbac_stack.create_namespace(ns)
    try:
        apply(rbac_stack, objects)
        settings = installed_settings(rbac_stack, objects, service_account_token(rbac_stack, agent_ns, release),
                                      tmp_path)
        assert settings.mode is Mode.DRY_RUN and settings.kubernetes.namespaces == (scope_ns,)
        target = app_with_two_revisions(rbac_stack, scope_ns)
        kube = KubeClient(api_client_from_settings(settings.kubernetes))
        try:
            playbooks = load_playbooks(render.CHART / "files" / "playbooks")
            clock = SimClock(datetime.now(timezone.utc).timestamp())
            serving, degrade = serving_app(rbac_stack, scope_ns)
            situations = {"restart-workload": (target, {}), "rollback-deploy": (target, {}),
                          "scale-up": (target, {}), "isolate-pod": (target, {"pod": live_pod(kube, target)}),
                          "degrade-model": (serving, degrade)}
            for name, (on, params) in situations.items():
                execution = runner_for(kube, playbooks, clock).run(
                    plan_for(playbooks[name], on, settings.mode, params), before=BEFORE)
                assert execution.state is ExecutionState.SKIPPED, (name, execution.history)
                assert execution.changes and not execution.changes[0].applied
            assert forbidden(lambda: kube.patch_deployment(scope_ns, target.name, {"metadata": {"labels": {"a": "b"}}}))
            assert forbidden(lambda: kube.patch_scale(scope_ns, target.name, 3))
            assert forbidden(lambda: kube.patch_service(scope_ns, target.name, {"metadata": {"labels": {"a": "b"}}}))
            assert forbidden(lambda: kube.create_event(scope_ns, {"metadata": {"name": "e"}, "involvedObject": {}}))
            assert forbidden(lambda: kube.patch_pod(scope_ns, live_pod(kube, target), {"metadata": {"labels": {}}}))
        finally:
            kube.close()
    finally:
        for ns in (agent_ns, scope_ns, f"{release}-journal"):
            rbac_stack.delete_namespace(ns)


def test_aiops_serve_runs_on_the_deployed_config_with_the_service_account_token(rbac_stack, act_install, tmp_path):
    """The agent process as the Deployment runs it (``aiops serve --config``), with the paths the pod would mount
    pointed at local copies and in-cluster access at the apiserver with the ServiceAccount's token."""
    settings = act_install.settings
    raw = yaml.safe_load(yaml.safe_dump(settings.model_dump(mode="json")))
    port, webhook_token = free_port(), uuid.uuid4().hex
    (tmp_path / "webhook-token").write_text(webhook_token)
    pb = tmp_path / "playbooks"
    pb.mkdir()
    for name in act_install.playbooks:
        (pb / f"{name}.yaml").write_text((render.KUSTOMIZE / "base" / "playbooks" / f"{name}.yaml").read_text())
    raw.update({"playbooks_dir": str(pb), "rules_dir": str(render.KUSTOMIZE / "base" / "rules"),
                "models_dir": str(render.ROOT / "models"), "state_dir": str(tmp_path / "state")})
    raw["webhook"].update({"listen": f"127.0.0.1:{port}", "token_file": str(tmp_path / "webhook-token")})
    raw["prometheus"]["url"] = f"http://127.0.0.1:{free_port()}"  # nothing listens: readiness must say so
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(raw))
    process = subprocess.Popen([sys.executable, "-m", "aiops.cli", "serve", "--config", str(tmp_path / "config.yaml")],
                               cwd=render.ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: requests.get(f"{url}/healthz", timeout=2).ok, 60, "aiops serve /healthz")
        ready = requests.get(f"{url}/readyz", timeout=10)
        assert ready.status_code == 503
        assert ready.json()["checks"]["kubernetes"] == "ok"  # the ServiceAccount reaches the API
        assert ready.json()["checks"]["prometheus"] != "ok"
        payload = {"version": "4", "status": "firing", "receiver": "aiops", "groupKey": "{}:{}",
                   "alerts": [{"status": "firing", "labels": {"alertname": "X", "namespace": "elsewhere",
                                                              "deployment": "web"},
                               "annotations": {}, "startsAt": "2026-11-27T00:00:00Z", "fingerprint": "f1"}]}
        hook = f"{url}/webhook/alertmanager"
        assert requests.post(hook, json=payload, timeout=5).status_code == 401
        answer = requests.post(hook, json=payload, timeout=5, headers={"Authorization": f"Bearer {webhook_token}"})
        assert answer.status_code == 200, answer.text
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.communicate()


def test_agent_reads_the_guards_facts_with_its_service_account(rbac_stack, act_install, agent_kube):
    """What the planner reads before every plan (the Deployment, the Namespace's kill switch, the PDBs) is allowed
    in scope; the Namespace of anything else is not."""
    target = app_with_two_revisions(rbac_stack, SCOPE_NS)
    facts = ClusterFacts(agent_kube).read(target)
    assert facts.kill_switch is None
    assert agent_kube.list_pdbs(SCOPE_NS) == []
    assert forbidden(lambda: agent_kube.get_namespace(AGENT_NS))
    assert forbidden(lambda: agent_kube.get_namespace("default"))
    assert forbidden(lambda: agent_kube.list_pdbs(AGENT_NS))


def test_agent_keeps_its_journal_in_its_own_namespace_only(rbac_stack, act_install, agent_kube):
    """The shared journal the deployed config selects works with the ServiceAccount's token: append, read back,
    retention; the same calls anywhere else are refused, the agent's own namespace included."""
    journal = open_journal(act_install.settings, agent_kube)
    assert isinstance(journal, KubeJournal) and journal.namespace == JOURNAL_NS
    plan = f"p-{uuid.uuid4().hex[:16]}"
    journal.record(plan, "executing", "go", {"ts": 1.0, "trigger": "start"})
    journal.record(plan, "succeeded", "ok", {"ts": 2.0, "trigger": "recovered"})
    assert [r["state"] for r in journal.history(plan)] == ["executing", "succeeded"]
    assert plan in [r["plan_id"] for r in journal.latest()]
    assert plan in journal.prune(now=1e10)  # retention deletes ended plans
    assert journal.history(plan) == []
    for ns in (AGENT_NS, SCOPE_NS, "default"):
        elsewhere = KubeJournal(agent_kube, ns)
        assert forbidden(lambda: elsewhere.record(plan, "executing", "go", {"ts": 1.0})), ns
        assert forbidden(lambda: elsewhere.latest()), ns
