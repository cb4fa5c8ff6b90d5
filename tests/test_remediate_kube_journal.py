"""The execution journal in the Kubernetes API (ConfigMaps), on the real kube-apiserver and on the simulator: the
same answers as the other journals, shared between clients, a write that does not land raises, retention; and
the ConfigMap calls it makes, answered the same way by both backends."""

from __future__ import annotations

import json
import threading

import pytest
import requests
import yaml

from aiops.cli import main
from aiops.commands import os_user
from aiops.clients.kube import KubeError
from aiops.remediate.kube_journal import JOURNAL_LABEL, KubeJournal, configmap_name
from aiops.serve.approvers import Approvers
from aiops.serve.metrics import AgentMetrics
from aiops.serve.plans_api import PLANS_PATH, add_plan_routes
from aiops.serve.readiness import Readiness
from aiops.serve.server import AgentServer
from aiops.serve.webhook import build_app
from tests.test_kube_contract import api  # noqa: F401
from tests.test_remediate_sqlite_journal import assert_budget_contract, assert_journal_contract, fill


def test_the_kube_journal_answers_like_the_others(api, ns):
    assert_journal_contract(KubeJournal(api, ns))


def test_the_kube_journal_counts_only_changes_to_the_cluster_against_the_budgets(api, ns):
    assert_budget_contract(KubeJournal(api, ns))


def test_records_are_shared_by_every_client_of_the_namespace(kube, api, ns):
    fill(KubeJournal(api, ns))
    other = kube.client()  # another replica, or `aiops history`
    try:
        reader = KubeJournal(other, ns)
        assert len(reader.records()) == 7
        assert [r["state"] for r in reader.history("p-3")] == ["executing", "rolled_back"]
        assert reader.history("nope") == []
        reader.record("p-2", "awaiting_approval", "approved by alice", {"ts": 20.0, "approved_by": "alice"})
    finally:
        other.close()
    assert KubeJournal(api, ns).history("p-2")[-1]["data"]["approved_by"] == "alice"
    configmaps = api.list_configmaps(ns, f"{JOURNAL_LABEL}=true")
    assert sorted(cm["metadata"]["name"] for cm in configmaps) == sorted(configmap_name(p) for p in
                                                                         ("p-1", "p-2", "p-3", "p-4"))


def test_concurrent_writers_lose_no_record(api, ns):
    """Eight writers append to one plan at once (the first ones race to create its ConfigMap): all 80 land."""
    journal = KubeJournal(api, ns)

    def write(n: int) -> None:
        for i in range(10):
            journal.record("p-race", "executing", f"{n}-{i}", {"ts": float(i)})

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    notes = [r["note"] for r in journal.history("p-race")]
    assert sorted(notes) == sorted(f"{n}-{i}" for n in range(8) for i in range(10))
    for n in range(8):  # each writer's own records stay in the order it wrote them
        assert [x for x in notes if x.startswith(f"{n}-")] == [f"{n}-{i}" for i in range(10)]


def test_a_write_that_cannot_land_raises(api, ns):
    missing = KubeJournal(api, "no-such-namespace-" + ns[-6:])
    with pytest.raises(KubeError) as info:
        missing.record("p-1", "executing", "go", {"ts": 1.0})
    assert info.value.status == 404
    journal = KubeJournal(api, ns)
    journal.record("p-1", "executing", "go", {"ts": 1.0})
    # A value the API cannot store (over the 1 MiB object limit) is refused, and the journal says so.
    with pytest.raises(KubeError) as info:
        journal.record("p-1", "verifying", "x" * (1024 * 1024 + 10), {"ts": 2.0})
    assert info.value.status in (413, 422)
    assert [r["state"] for r in journal.history("p-1")] == ["executing"]


def test_retention_deletes_only_plans_that_ended_long_ago(api, ns):
    journal = KubeJournal(api, ns, retention_days=1)
    fill(journal)
    journal.record("p-3", "rolled_back", "undone", {"ts": 17.0, "undone": True})
    now = 1e10  # far in the future: every record is older than a day
    assert sorted(journal.prune(now)) == ["p-3", "p-4"]
    assert [r["plan_id"] for r in journal.latest()] == ["p-1", "p-2"], "unfinished plans are kept however old"
    assert journal.prune(now) == []
    assert KubeJournal(api, ns, retention_days=1).prune() == [], "nothing ended a day ago by the real clock"


# --- the ConfigMap calls, answered alike by the real apiserver and the simulator ---------------------------------

def test_configmap_create_append_list_delete(api, ns):
    body = {"metadata": {"name": "cm-a", "labels": {"k": "v"}}, "data": {"001": "one"}}
    created = api.create_configmap(ns, body)
    assert created["data"] == {"001": "one"} and created["metadata"]["namespace"] == ns
    with pytest.raises(KubeError) as info:
        api.create_configmap(ns, body)
    assert info.value.status == 409 and info.value.reason == "AlreadyExists"
    patched = api.patch_configmap(ns, "cm-a", [{"op": "add", "path": "/data/002", "value": json.dumps({"x": 1})}])
    assert patched["data"] == {"001": "one", "002": '{"x": 1}'}
    assert int(patched["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])
    api.create_configmap(ns, {"metadata": {"name": "cm-b"}, "data": {"x": "y"}})
    assert [cm["metadata"]["name"] for cm in api.list_configmaps(ns, "k=v")] == ["cm-a"]
    assert api.get_configmap(ns, "cm-a")["data"]["002"] == '{"x": 1}'
    api.delete_configmap(ns, "cm-a")
    for call in (lambda: api.get_configmap(ns, "cm-a"), lambda: api.delete_configmap(ns, "cm-a"),
                 lambda: api.patch_configmap(ns, "cm-a", [{"op": "add", "path": "/data/003", "value": "z"}])):
        with pytest.raises(KubeError) as info:
            call()
        assert info.value.status == 404


def test_configmap_bad_keys_and_values_are_refused(api, ns):
    api.create_configmap(ns, {"metadata": {"name": "cm"}, "data": {"a": "1"}})
    with pytest.raises(KubeError) as info:
        api.patch_configmap(ns, "cm", [{"op": "add", "path": "/data/bad key", "value": "1"}])
    assert info.value.status == 422 and "valid config key" in str(info.value)
    with pytest.raises(KubeError) as info:
        # Raw, because the client's own models refuse a non-string value before sending it.
        api.request("POST", "/api/v1/namespaces/{namespace}/configmaps", {"namespace": ns},
                    {"metadata": {"name": "cm-2"}, "data": {"a": 1}})
    assert info.value.status == 400
    assert api.get_configmap(ns, "cm")["data"] == {"a": "1"}


# --- the CLI and the plans HTTP API on the shared journal --------------------------------------------------------

def test_cli_history_and_approve_on_the_kubernetes_journal(kube, api, ns, tmp_path, capsys):
    journal = KubeJournal(api, ns)
    journal.record("p-wait", "awaiting_approval", "needs a person",
                   {"ts": 5.0, "trigger": "await_approval", "playbook": "scale-up", "mode": "act",
                    "target": {"kind": "Deployment", "namespace": ns, "name": "cart"}})
    (tmp_path / "token").write_text(getattr(kube, "token", "") or "")
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "kubernetes": {"host": kube.url, "token_file": str(tmp_path / "token"), "verify_ssl": False},
        "journal": {"backend": "kubernetes", "namespace": ns}, "state_dir": str(tmp_path / "no-state")}))
    assert main(["history", "--config", str(config), "--format", "json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["plan"], row["state"], row["playbook"]) == ("p-wait", "awaiting_approval", "scale-up")
    assert main(["approve", "p-wait", "--config", str(config)]) == 0
    assert journal.history("p-wait")[-1]["data"]["approved_by"] == os_user(), "the agents see the approval"
    assert main(["approve", "p-unknown", "--config", str(config)]) == 2
    assert not (tmp_path / "no-state").exists(), "no SQLite file is made on the side"


def test_the_plans_http_api_serves_the_kubernetes_journal(api, ns):
    journal = KubeJournal(api, ns)
    journal.record("p-wait", "awaiting_approval", "needs a person", {"ts": 5.0, "trigger": "await_approval"})
    approved: list[str] = []
    app = build_app(receiver=None, metrics=AgentMetrics(), readiness=Readiness({}), token="t", max_body_bytes=4096)
    dave = "dave-approver-token-0123456789"
    add_plan_routes(app, journal, type("C", (), {"now": lambda self: 1.7e9})(), approved.append,
                    approvers=Approvers((("dave", dave.encode()),)), webhook_token="t")
    server = AgentServer(app, "127.0.0.1", 0).start()
    try:
        auth = {"Authorization": f"Bearer {dave}"}
        listed = requests.get(f"{server.url}{PLANS_PATH}", headers=auth, timeout=5).json()["plans"]
        assert [(p["plan"], p["state"]) for p in listed] == [("p-wait", "awaiting_approval")]
        ok = requests.post(f"{server.url}{PLANS_PATH}/p-wait/approve", headers=auth, json={"approver": "dave"},
                           timeout=5)
        assert ok.status_code == 200 and approved == ["p-wait"]
        assert journal.history("p-wait")[-1]["data"]["approved_by"] == "dave"
    finally:
        server.stop()


def _fill_out_of_order(journal) -> None:
    """Plans whose first appearance is not the order of their latest records: p-a started first and ended last;
    p-d and p-e were last touched at the same time (written e, then d)."""
    for plan, state, ts in (("p-a", "executing", 10.0), ("p-b", "awaiting_approval", 20.0), ("p-a", "succeeded", 30.0),
                            ("p-c", "skipped", 25.0), ("p-e", "blocked", 40.0), ("p-d", "blocked", 40.0)):
        journal.record(plan, state, state, {"ts": ts, "playbook": "scale-up", "mode": "act",
                                            "target": {"kind": "Deployment", "namespace": "shop", "name": "cart"}})


def test_history_lists_plans_newest_last_in_the_same_order_from_both_journals(kube, api, ns, tmp_path, capsys):
    from aiops.remediate.sqlite_journal import SqliteJournal

    sqlite_config = tmp_path / "sqlite.yaml"
    sqlite_config.write_text(yaml.safe_dump({"state_dir": str(tmp_path / "state")}))
    _fill_out_of_order(SqliteJournal(tmp_path / "state" / "journal.sqlite3"))
    _fill_out_of_order(KubeJournal(api, ns))
    (tmp_path / "token").write_text(getattr(kube, "token", "") or "")
    kube_config = tmp_path / "kube.yaml"
    kube_config.write_text(yaml.safe_dump({
        "kubernetes": {"host": kube.url, "token_file": str(tmp_path / "token"), "verify_ssl": False},
        "journal": {"backend": "kubernetes", "namespace": ns}}))
    newest_last = ["p-b", "p-c", "p-a", "p-d", "p-e"]
    for config in (sqlite_config, kube_config):
        assert main(["history", "--config", str(config), "--format", "json"]) == 0
        rows = json.loads(capsys.readouterr().out)
        assert [r["plan"] for r in rows] == newest_last, config.name
        assert [r["ts"] for r in rows] == sorted(r["ts"] for r in rows)
        assert main(["history", "--config", str(config)]) == 0
        text = capsys.readouterr().out.splitlines()
        assert [line.split()[2] for line in text] == newest_last, text
        assert main(["history", "--config", str(config), "--limit", "2", "--format", "json"]) == 0
        assert [r["plan"] for r in json.loads(capsys.readouterr().out)] == ["p-d", "p-e"], "the newest are kept"
