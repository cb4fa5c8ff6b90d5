"""The deploy/ manifests as rendered by the real tools: Helm and kustomize agree, and what they render is what a
platform team asks for (least privilege, hardened pods, a valid agent config, working examples).

``helm`` and ``kubectl kustomize`` are the official binaries cached by ``tests/support/kube/render_tools.sh``
(``make kube``). Applying them to a real kube-apiserver in RBAC mode is ``test_deploy_rbac.py``.
"""

from __future__ import annotations

import filecmp
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from aiops.diagnose.rules import RuleSet
from aiops.domain.plans import Mode
from aiops.remediate.playbooks import load_playbooks
from aiops.settings import parse_settings
from tests.support import render

MODES = ("dry-run", "act")
EXAMPLES = render.DEPLOY / "examples"
WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection", "*"}
MODELS_DIR = "/var/lib/aiops/models"


@pytest.fixture(scope="module", autouse=True)
def _tools():
    if not render.available():
        pytest.fail(f"helm/kubectl are not cached in {render.tools_dir()}: run `make kube` / {render.TOOLS_SCRIPT}",
                    pytrace=False)


def by_kind(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[dict], kind: str, name: str) -> dict:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


@pytest.mark.parametrize("mode", MODES)
def test_helm_chart_and_kustomize_overlay_render_the_same_objects(mode):
    helm = render.same(render.helm_template(values={"mode": mode}))
    kust = render.same(render.kustomize(render.KUSTOMIZE / "overlays" / mode), hashed_configmaps=True)
    assert sorted(helm) == sorted(kust)
    for key in helm:
        assert helm[key] == kust[key], f"{key} differs between the Helm chart and the kustomize overlay"
    assert len(helm) >= 12  # SA, 2 ClusterRoles, leader Role+binding, read binding, 3 ConfigMaps, Deploy, Svc, PDB, NP


def test_base_is_the_dry_run_install():
    base = render.same(render.kustomize(render.KUSTOMIZE / "base"), hashed_configmaps=True)
    dry = render.same(render.kustomize(render.KUSTOMIZE / "overlays" / "dry-run"), hashed_configmaps=True)
    assert base == dry


def rules_of(objects: list[dict], kind: str, name: str) -> list[dict]:
    return one(objects, kind, name)["rules"]


def granted(rules: list[dict]) -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) triples a rule list allows."""
    return {(g, r, v) for rule in rules for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}


@pytest.mark.parametrize("mode", MODES)
def test_rbac_grants_exactly_what_the_playbooks_and_collectors_need(mode):
    objects = render.kustomize(render.KUSTOMIZE / "overlays" / mode)
    read = granted(rules_of(objects, "ClusterRole", "aiops-read"))
    act = granted(rules_of(objects, "ClusterRole", "aiops-act"))
    lease_rules = rules_of(objects, "Role", "aiops-leader")
    assert read == {(g, r, v) for g, r in [("apps", "deployments"), ("apps", "replicasets"), ("", "pods"),
                                           ("", "pods/log"), ("", "events"), ("", "services")]
                    for v in ("get", "list", "watch")} | {("policy", "poddisruptionbudgets", "list")}
    # isolate-pod is the one playbook patching pods; degrade-model needs nothing shift-traffic and scale-up do not;
    # retrain-detector touches no cluster object at all.
    assert act == {("apps", "deployments", "patch"), ("apps", "deployments/scale", "patch"),
                   ("", "services", "patch"), ("", "pods", "patch"), ("", "events", "create")}
    # the Lease, and the agent's own Service's Endpoints (a follower forwards only to a pod listed there)
    assert granted(lease_rules) == {("coordination.k8s.io", "leases", v) for v in ("get", "update", "create")} | {
        ("", "endpoints", "get")}
    assert all(r.get("resourceNames") == ["aiops-leader"] for r in lease_rules
               if "create" not in r["verbs"] and r["resources"] == ["leases"])
    assert [r.get("resourceNames") for r in lease_rules if r["resources"] == ["endpoints"]] == [["aiops"]]
    every_rule = [r for o in by_kind(objects, "ClusterRole") + by_kind(objects, "Role") for r in o["rules"]]
    assert not any("*" in r["apiGroups"] + r["resources"] + r["verbs"] for r in every_rule)
    assert not any("secrets" in r["resources"] for r in every_rule)
    # The journal: configmaps in a namespace of its own only (issue #13, 15: not where the agent's config is).
    journal_role = one(objects, "Role", "aiops-journal")
    assert granted(journal_role["rules"]) == {
        ("", "configmaps", v) for v in ("get", "list", "create", "patch", "delete")}
    assert journal_role["metadata"]["namespace"] == "aiops-journal"
    assert one(objects, "Namespace", "aiops-journal")
    assert {cm["metadata"]["namespace"] for cm in by_kind(objects, "ConfigMap")} == {"aiops-system"}
    assert not any("configmaps" in r["resources"] for o in by_kind(objects, "Role")
                   if o["metadata"]["namespace"] == "aiops-system" for r in o["rules"])
    # The one cluster-wide grant: `get` on the target Namespaces by name (the kill-switch annotation).
    (crb,) = by_kind(objects, "ClusterRoleBinding")
    assert crb["roleRef"]["name"] == "aiops-namespaces"
    assert crb["subjects"] == [{"kind": "ServiceAccount", "name": "aiops", "namespace": "aiops-system"}]
    assert rules_of(objects, "ClusterRole", "aiops-namespaces") == [
        {"apiGroups": [""], "resources": ["namespaces"], "resourceNames": ["shop"], "verbs": ["get"]}]
    bindings = {(b["metadata"]["namespace"], b["roleRef"]["name"]) for b in by_kind(objects, "RoleBinding")}
    expected = {("aiops-system", "aiops-leader"), ("aiops-journal", "aiops-journal"), ("shop", "aiops-read")}
    assert bindings == (expected | {("shop", "aiops-act")} if mode == "act" else expected)
    for binding in by_kind(objects, "RoleBinding"):
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "aiops", "namespace": "aiops-system"}]


def test_helm_binds_each_target_namespace_and_names_objects_after_the_release():
    objects = render.helm_template(release="ops", namespace="ops-ns",
                                   values={"mode": "act", "targetNamespaces": "{a,b}"})
    bindings = {(b["metadata"]["namespace"], b["roleRef"]["name"]) for b in by_kind(objects, "RoleBinding")}
    assert bindings == {("ops-ns", "ops-leader"), ("ops-journal", "ops-journal"), ("a", "ops-read"), ("b", "ops-read"),
                        ("a", "ops-act"), ("b", "ops-act")}
    assert rules_of(objects, "ClusterRole", "ops-namespaces")[0]["resourceNames"] == ["a", "b"]
    assert one(objects, "ClusterRoleBinding", "ops-namespaces")["subjects"][0]["namespace"] == "ops-ns"
    config = yaml.safe_load(one(objects, "ConfigMap", "ops-config")["data"]["config.yaml"])
    assert config["kubernetes"]["namespaces"] == ["a", "b"]
    assert config["leader_election"]["namespace"] == "ops-ns"
    assert config["journal"] == {"backend": "kubernetes", "namespace": "ops-journal"}
    assert one(objects, "Namespace", "ops-journal")
    assert one(objects, "Deployment", "ops")["spec"]["template"]["spec"]["serviceAccountName"] == "ops"


def test_helm_puts_the_journal_where_it_is_told_but_never_beside_the_agents_config():
    objects = render.helm_template(release="ops", namespace="ops-ns",
                                   values={"journal.namespace": "ops-plans", "journal.createNamespace": "false"})
    assert not by_kind(objects, "Namespace")
    assert one(objects, "Role", "ops-journal")["metadata"]["namespace"] == "ops-plans"
    config = yaml.safe_load(one(objects, "ConfigMap", "ops-config")["data"]["config.yaml"])
    assert config["journal"]["namespace"] == "ops-plans"
    with pytest.raises(render.RenderError, match="journal.namespace must not be the release namespace"):
        render.helm_template(release="ops", namespace="ops-ns", values={"journal.namespace": "ops-ns"})


def test_helm_refuses_an_unknown_mode():
    with pytest.raises(render.RenderError, match="mode must be dry-run or act"):
        render.helm_template(values={"mode": "yolo"})


def test_helm_config_values_merge_into_the_agent_config():
    objects = render.helm_template(values={"config.policy.max_replicas": "7"})
    config = yaml.safe_load(one(objects, "ConfigMap", "aiops-config")["data"]["config.yaml"])
    settings = parse_settings(config, where="helm config")
    assert settings.policy.max_replicas == 7 and settings.mode is Mode.DRY_RUN


def test_agent_deployment_is_highly_available_and_hardened():
    objects = render.kustomize(render.KUSTOMIZE / "overlays" / "act")
    dep = one(objects, "Deployment", "aiops")
    spec = dep["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert dep["spec"]["replicas"] == 2
    assert spec["serviceAccountName"] == "aiops"
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] != 0
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["privileged"] is False and sc["capabilities"]["drop"] == ["ALL"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert {"cpu", "memory"} <= set(container["resources"]["requests"]) <= set(container["resources"]["limits"])
    # Every path the agent writes is a volume, since the root filesystem is read-only: the model registry too
    # (retrain-detector saves versions there), seeded by an init container as hardened as the agent.
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert not mounts["/var/lib/aiops"].get("readOnly") and not mounts["/tmp"].get("readOnly")
    assert not mounts[MODELS_DIR].get("readOnly")
    (seed,) = spec["initContainers"]
    assert seed["image"] == container["image"] and seed["securityContext"] == sc
    assert {m["mountPath"]: m["name"] for m in seed["volumeMounts"]} == {MODELS_DIR: mounts[MODELS_DIR]["name"]}
    assert {"cpu", "memory"} <= set(seed["resources"]["requests"]) <= set(seed["resources"]["limits"])
    pdb = one(objects, "PodDisruptionBudget", "aiops")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]
    svc = one(objects, "Service", "aiops")
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    assert svc["spec"]["ports"][0]["targetPort"] == container["ports"][0]["name"]
    assert svc["spec"]["publishNotReadyAddresses"] is True  # webhooks still arrive while /readyz says 503
    netpol = one(objects, "NetworkPolicy", "aiops")
    assert netpol["spec"]["podSelector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]
    assert netpol["spec"]["ingress"][0]["ports"] == [{"port": container["ports"][0]["containerPort"],
                                                      "protocol": "TCP"}]


def test_each_replica_advertises_its_own_address_and_the_replicas_may_reach_each_other():
    """Alertmanager posts to the Service, so a follower gets about half the webhooks: it forwards them to the
    leader at the URL the leader advertised, which must be that pod's own address and reachable past the policy."""
    from aiops.cli import build_parser
    from aiops.settings import Settings, with_advertise_url

    objects = render.kustomize(render.KUSTOMIZE / "overlays" / "act")
    dep = one(objects, "Deployment", "aiops")
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    port = container["ports"][0]["containerPort"]
    # what the kubelet runs once it expanded $(POD_IP), parsed by the real CLI and applied to the settings
    args = build_parser().parse_args([a.replace("$(POD_IP)", "10.1.2.3") for a in container["args"]])
    assert args.command == "serve" and args.advertise_url == f"http://10.1.2.3:{port}"
    assert with_advertise_url(Settings(), args.advertise_url).leader_election.advertise_url == args.advertise_url
    spec = one(objects, "NetworkPolicy", "aiops")["spec"]
    own = dep["spec"]["selector"]["matchLabels"]
    assert any({"podSelector": {"matchLabels": own}} in rule["from"] and {"port": port, "protocol": "TCP"}
               in rule["ports"] for rule in spec["ingress"])
    assert any({"podSelector": {"matchLabels": own}} in rule.get("to", []) and {"port": port, "protocol": "TCP"}
               in rule["ports"] for rule in spec["egress"])


@pytest.mark.parametrize("mode", MODES)
def test_configmaps_hold_a_valid_config_and_loadable_playbooks_and_rules(mode, tmp_path):
    objects = render.kustomize(render.KUSTOMIZE / "overlays" / mode)
    cms = {cm["metadata"]["name"].rsplit("-", 1)[0]: cm["data"] for cm in by_kind(objects, "ConfigMap")}
    settings = parse_settings(yaml.safe_load(cms["aiops-config"]["config.yaml"]), where="config.yaml")
    assert settings.mode is Mode(mode)
    assert settings.kubernetes.in_cluster and settings.kubernetes.namespaces == ("shop",)
    # Two replicas need both: one acts at a time, and the other can resume its plans.
    assert settings.leader_election.enabled and settings.journal.backend == "kubernetes"
    # The journal lives apart from the agent's own namespace, whose ConfigMaps (this config) it cannot change.
    assert settings.leader_election.namespace == "aiops-system" and settings.journal_namespace == "aiops-journal"
    dep = one(objects, "Deployment", "aiops")
    mounts = {m["mountPath"] for m in dep["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]}
    assert {str(settings.playbooks_dir), str(settings.rules_dir), str(settings.state_dir), str(settings.models_dir),
            str(settings.webhook.token_file.parent)} <= mounts
    assert str(settings.models_dir) == MODELS_DIR
    for name, folder in (("aiops-playbooks", "playbooks"), ("aiops-rules", "rules")):
        (tmp_path / folder).mkdir()
        for file, text in cms[name].items():
            (tmp_path / folder / file).write_text(text)
    playbooks = load_playbooks(tmp_path / "playbooks")
    assert set(playbooks) == set(load_playbooks(render.ROOT / "playbooks"))
    assert RuleSet.load(tmp_path / "rules").validate(list(playbooks)) == []


@pytest.mark.parametrize("folder", ["playbooks", "rules"])
def test_deploy_copies_of_the_stock_playbooks_and_rules_are_current(folder):
    stock = sorted(p.name for p in (render.ROOT / folder).glob("*.yaml"))
    for copy in (render.KUSTOMIZE / "base" / folder, render.CHART / "files" / folder):
        assert sorted(p.name for p in copy.glob("*.yaml")) == stock, f"{copy}: run `make deploy-files`"
        match, mismatch, errors = filecmp.cmpfiles(render.ROOT / folder, copy, stock, shallow=False)
        assert mismatch == [] and errors == [], f"{copy} is stale ({mismatch + errors}): run `make deploy-files`"
    listed = yaml.safe_load((render.KUSTOMIZE / "base" / "kustomization.yaml").read_text())["configMapGenerator"]
    files = next(g["files"] for g in listed if g["name"] == f"aiops-{folder}")
    assert files == [f"{folder}/{name}" for name in stock]


def test_prometheus_rule_example_passes_promtool(tmp_path):
    rule = yaml.safe_load((EXAMPLES / "prometheusrule.yaml").read_text())
    assert rule["kind"] == "PrometheusRule"
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    proc = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_alertmanager_receiver_example_passes_amtool_and_reaches_the_service():
    path = EXAMPLES / "alertmanager-receiver.yaml"
    proc = subprocess.run(["amtool", "check-config", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    hook = next(r for r in yaml.safe_load(path.read_text())["receivers"] if r["name"] == "aiops")["webhook_configs"][0]
    assert hook["url"] == "http://aiops.aiops-system:8080/webhook/alertmanager"
    assert hook["http_config"]["authorization"]["type"] == "Bearer"
    operator = yaml.safe_load((EXAMPLES / "alertmanagerconfig.yaml").read_text())
    secret_ref = operator["spec"]["receivers"][0]["webhookConfigs"][0]["httpConfig"]["authorization"]["credentials"]
    dep = one(render.kustomize(render.KUSTOMIZE / "base"), "Deployment", "aiops")
    token_volume = next(v for v in dep["spec"]["template"]["spec"]["volumes"] if v["name"] == "webhook-token")
    assert secret_ref == {"name": token_volume["secret"]["secretName"], "key": "token"}


def test_service_monitor_example_selects_the_agent_service():
    monitor = yaml.safe_load((EXAMPLES / "servicemonitor.yaml").read_text())
    svc = one(render.kustomize(render.KUSTOMIZE / "base"), "Service", "aiops")
    labels = svc["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in monitor["spec"]["selector"]["matchLabels"].items())
    assert monitor["spec"]["endpoints"][0]["port"] in {p["name"] for p in svc["spec"]["ports"]}
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"


def test_dockerfile_runs_non_root_from_a_slim_base_with_glm_optional():
    text = (render.ROOT / "Dockerfile").read_text()
    froms = [line.split()[1] for line in text.splitlines() if line.startswith("FROM ")]
    assert froms and all("-slim" in f for f in froms)
    user = [line.split()[1] for line in text.splitlines() if line.startswith("USER ")]
    assert user and user[-1].split(":")[0] not in ("0", "root")
    assert 'ARG EXTRAS=""' in text and "${EXTRAS:+[$EXTRAS]}" in text
    for line in text.splitlines():  # every COPY from the build context names something that exists
        if line.startswith("COPY ") and "--from=" not in line:
            for source in line.split()[1:-1]:
                assert (render.ROOT / source).exists(), f"Dockerfile copies missing {source}"
    manifest_uid = one(render.kustomize(render.KUSTOMIZE / "base"), "Deployment", "aiops")[
        "spec"]["template"]["spec"]["securityContext"]["runAsUser"]
    assert user[-1].split(":")[0] == str(manifest_uid)


def _images(objects: list[dict]) -> set[str]:
    pods = [o["spec"]["template"]["spec"] for o in objects if o["kind"] in ("Deployment", "Job")]
    return {c["image"] for pod in pods for c in pod.get("initContainers", []) + pod["containers"]}


def test_every_manifest_names_the_image_the_readme_says_to_build():
    import tomllib

    version = tomllib.loads((render.ROOT / "pyproject.toml").read_text())["project"]["version"]
    image = f"aiops:{version}"
    job = list(yaml.safe_load_all((render.DEPLOY / "jobs" / "retrain-detector-job.yaml").read_text()))
    assert _images(render.kustomize(render.KUSTOMIZE / "base")) == {image}
    assert _images(render.helm_template()) == {image}
    assert _images([o for o in job if o]) == {image}
    readme = (render.DEPLOY / "README.md").read_text()
    assert f"docker build -t REGISTRY/{image} ." in readme
    assert f"kustomize edit set image aiops=REGISTRY/{image}" in readme
    # The README says what the image runs: the Dockerfile's command and the Deployment's config path agree.
    cmd = next(line for line in (render.ROOT / "Dockerfile").read_text().splitlines() if line.startswith("CMD "))
    assert '"/etc/aiops/config/config.yaml"' in cmd and "/etc/aiops/config/config.yaml" in readme


def seed_command(deployment: dict) -> list[str]:
    (seed,) = deployment["spec"]["template"]["spec"]["initContainers"]
    return seed["command"]


def test_init_container_seeds_the_registry_with_the_stock_models_and_keeps_what_is_there(tmp_path):
    """The init container's own command (from the manifest), run on a copy of the image's models/ folder."""
    command = seed_command(one(render.kustomize(render.KUSTOMIZE / "base"), "Deployment", "aiops"))
    assert command[0] == "python" and command[-2:] == ["/opt/aiops/models", MODELS_DIR]
    registry = tmp_path / "registry"
    registry.mkdir()
    run = [sys.executable, *command[1:-2], str(render.ROOT / "models"), str(registry)]

    assert subprocess.run(run, capture_output=True, text=True).returncode == 0

    stock = sorted(p.relative_to(render.ROOT / "models") for p in (render.ROOT / "models").rglob("*") if p.is_file())
    assert stock and sorted(p.relative_to(registry) for p in registry.rglob("*") if p.is_file()) == stock
    assert filecmp.cmpfiles(render.ROOT / "models", registry, [str(p) for p in stock], shallow=False)[0] == \
        [str(p) for p in stock]
    # On a PersistentVolume the next start finds the registry: what a retrain wrote (and a changed file) stays.
    (registry / "shop").mkdir()
    (registry / "shop" / "current.json").write_text('{"version": 2, "history": [1]}')
    (registry / stock[0]).write_text("kept")

    assert subprocess.run(run, capture_output=True, text=True).returncode == 0

    assert (registry / "shop" / "current.json").read_text() == '{"version": 2, "history": [1]}'
    assert (registry / stock[0]).read_text() == "kept"


def volumes_of(deployment: dict) -> dict[str, dict]:
    return {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}


def test_models_pvc_puts_the_registry_on_the_claim_the_retrain_job_writes(tmp_path):
    """Helm's models.persistentVolumeClaim and the kustomize component models-pvc give the same Deployment, whose
    registry is the claim deploy/jobs/retrain-detector-job.yaml trains into, at the path both configs name."""
    job_objects = list(yaml.safe_load_all((render.DEPLOY / "jobs" / "retrain-detector-job.yaml").read_text()))
    job = one(job_objects, "Job", "aiops-retrain-detector")["spec"]["template"]["spec"]
    claim = next(v["persistentVolumeClaim"]["claimName"] for v in job["volumes"] if "persistentVolumeClaim" in v)
    job_mount = next(m["mountPath"] for m in job["containers"][0]["volumeMounts"] if m["name"] == "models")
    train = yaml.safe_load(one(job_objects, "ConfigMap", "aiops-retrain-detector")["data"]["train.yaml"])
    assert claim == "aiops-models" and job_mount == train["models_dir"] == MODELS_DIR

    overlay = tmp_path / "with-pvc"
    overlay.mkdir()
    up = Path(os.path.relpath(render.KUSTOMIZE, overlay))  # kustomize refuses absolute paths
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump({
        "resources": [str(up / "overlays" / "act")], "components": [str(up / "components" / "models-pvc")]}))
    kust = render.same(render.kustomize(overlay), hashed_configmaps=True)
    helm = render.same(render.helm_template(values={"mode": "act", "models.persistentVolumeClaim": claim}))
    deployment = ("Deployment", "aiops-system", "aiops")
    for rendered in (kust, helm):
        volumes = rendered[deployment]["spec"]["template"]["spec"]["volumes"]
        volumes.sort(key=lambda v: v["name"])  # kustomize's patch moves the patched volume first
        assert volumes_of(rendered[deployment])["models"] == {"name": "models",
                                                              "persistentVolumeClaim": {"claimName": claim}}
    assert kust == helm
    # Without it, an emptyDir; the component changes nothing else.
    plain = render.same(render.kustomize(render.KUSTOMIZE / "overlays" / "act"), hashed_configmaps=True)
    assert volumes_of(plain[deployment])["models"] == {"name": "models", "emptyDir": {}}
    for rendered in (kust, plain):
        rendered[deployment]["spec"]["template"]["spec"]["volumes"] = {
            name: v for name, v in volumes_of(rendered[deployment]).items() if name != "models"}
    assert kust == plain


# --- issue #13 defect 13: forwarding goes to the agent's own pods only, and egress is what the agent needs ----------

@pytest.mark.parametrize("mode", MODES)
def test_followers_verify_the_leader_against_their_own_services_endpoints(mode):
    objects = render.kustomize(render.KUSTOMIZE / "overlays" / mode)
    cms = {cm["metadata"]["name"].rsplit("-", 1)[0]: cm["data"] for cm in by_kind(objects, "ConfigMap")}
    settings = parse_settings(yaml.safe_load(cms["aiops-config"]["config.yaml"]), where="config.yaml")
    service = one(objects, "Service", settings.webhook.peer_service)
    assert service["metadata"]["namespace"] == settings.leader_election.namespace
    role = one(objects, "Role", "aiops-leader")
    assert role["metadata"]["namespace"] == settings.leader_election.namespace
    assert {"apiGroups": [""], "resources": ["endpoints"], "resourceNames": [service["metadata"]["name"]],
            "verbs": ["get"]} in role["rules"]
    helm = render.helm_template(release="ops", namespace="ops-ns", values={"mode": mode})
    config = yaml.safe_load(one(helm, "ConfigMap", "ops-config")["data"]["config.yaml"])
    assert config["webhook"]["peer_service"] == "ops" and one(helm, "Service", "ops")
    assert {"apiGroups": [""], "resources": ["endpoints"], "resourceNames": ["ops"], "verbs": ["get"]} in \
        one(helm, "Role", "ops-leader")["rules"]


def test_network_policy_egress_names_every_destination():
    """Every egress rule names where it goes: nothing to any host (the old 443/6443 rule let a forged leader URL
    carry the bearer token anywhere), the API server by address, no route to the internet."""
    spec = one(render.kustomize(render.KUSTOMIZE / "overlays" / "act"), "NetworkPolicy", "aiops")["spec"]
    assert all(rule.get("to") for rule in spec["egress"]), "an egress rule without `to` allows any host"
    blocks = [peer["ipBlock"] for rule in spec["egress"] for peer in rule["to"] if "ipBlock" in peer]
    assert blocks and all(not b["cidr"].endswith("/0") for b in blocks)
    api_rule = next(r for r in spec["egress"] if any("ipBlock" in peer for peer in r["to"]))
    assert {p["port"] for p in api_rule["ports"]} == {443, 6443}
    monitoring = {p["port"] for r in spec["egress"] for peer in r["to"]
                  if peer.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name")
                  == "monitoring" for p in r["ports"]}
    assert monitoring == {9090, 9093}  # Prometheus, Alertmanager (silences)


def test_helm_refuses_a_network_policy_without_the_api_servers_address():
    with pytest.raises(render.RenderError, match="apiServerCIDRs"):
        render.helm_template(values={"networkPolicy.apiServerCIDRs": "null"})
    narrowed = render.helm_template(values={"networkPolicy.apiServerCIDRs": "{172.18.0.2/32}"})
    egress = one(narrowed, "NetworkPolicy", "aiops")["spec"]["egress"]
    assert [peer["ipBlock"]["cidr"] for r in egress for peer in r["to"] if "ipBlock" in peer] == ["172.18.0.2/32"]
