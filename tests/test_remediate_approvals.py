"""Approval mode end to end: a plan waits in ``awaiting_approval``, is approved through the CLI or the HTTP API,
passes the guards again, and only then acts."""

from __future__ import annotations

import json
import os
import pwd

import pytest
import requests
import yaml

from aiops.cli import main
from aiops.commands import os_user
from aiops.domain.errors import InputError
from aiops.domain.plans import ExecutionState, Mode
from aiops.remediate.facts import KILL_SWITCH_ANNOTATION
from aiops.remediate.planner import PlanPolicy
from aiops.remediate.runner import approve
from aiops.remediate.sqlite_journal import SqliteJournal
from aiops.serve.approvers import Approvers, load_approvers
from aiops.serve.metrics import AgentMetrics
from aiops.serve.plans_api import PLANS_PATH, add_plan_routes
from aiops.serve.readiness import Readiness
from aiops.serve.server import AgentServer
from aiops.serve.webhook import build_app
from tests.test_remediate_runner import BEFORE, ScriptedProbe, make_plan, replicas, runner, sim  # noqa: F401

TOKEN = "alertmanager-webhook-token"  # the webhook's: may list plans, never approve
DAVE = "dave-approver-token-0123456789"
ERIN = "erin-approver-token-9876543210"
APPROVERS = Approvers((("dave", DAVE.encode()), ("erin", ERIN.encode())))


@pytest.fixture
def journal(tmp_path):
    return SqliteJournal(tmp_path / "state" / "journal.sqlite3")


def test_an_approval_plan_waits_then_acts_once_approved(sim, journal):
    plan = make_plan()
    run = runner(sim, ScriptedProbe({"latency_p99": 0.2}), journal)
    held = run.hold_for_approval(plan, BEFORE, None, "needs a person")
    assert held.state is ExecutionState.AWAITING_APPROVAL
    assert run.hold_for_approval(plan, BEFORE, None, "again").state is ExecutionState.AWAITING_APPROVAL
    assert len(journal.history(plan.id)) == 1, "a repeated alert does not queue the plan twice"
    assert run.resume_approved() == [] and replicas(sim[2]) == 2, "nothing happens before the approval"

    approve(journal, plan.id, "alice", 1.7e9)
    approve(journal, plan.id, "bob", 1.7e9)  # a second approval is not recorded again
    done = run.resume_approved()
    assert [e.state for e in done] == [ExecutionState.SUCCEEDED] and replicas(sim[2]) == 4
    states = [(r["state"], r["note"]) for r in journal.history(plan.id)]
    assert states[1] == ("awaiting_approval", "approved by alice") and len(states) == 5
    assert "approved by alice" in states[2][1]
    assert run.resume_approved() == [], "acted once"


def test_an_approved_plan_still_passes_the_guards_again(sim, journal):
    plan = make_plan()
    run = runner(sim, ScriptedProbe({"latency_p99": 0.2}), journal,
                 policy=PlanPolicy(mode=Mode.ACT, namespaces=("shop",)))
    run.hold_for_approval(plan, BEFORE, None, "needs a person")
    sim[2]._call(sim[2]._core.patch_namespace, "shop", {"metadata": {"annotations": {KILL_SWITCH_ANNOTATION: "true"}}})
    approve(journal, plan.id, "alice", 1.7e9)
    (exe,) = run.resume_approved()
    assert exe.state is ExecutionState.BLOCKED and "kill_switch" in exe.history[-1][2]
    assert "annotation aiops.io/kill-switch on namespace shop" in exe.history[-1][2]
    assert replicas(sim[2]) == 2


def test_approving_unknown_or_finished_plans_is_refused_with_the_reason(journal):
    with pytest.raises(InputError, match="no such plan"):
        approve(journal, "p-nope", "alice", 1.0)
    journal.record("p-done", "succeeded", "ok", {"ts": 1.0})
    with pytest.raises(InputError, match="succeeded, not awaiting_approval"):
        approve(journal, "p-done", "alice", 1.0)


def test_cli_history_and_approve(sim, journal, tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"state_dir": "state"}))
    plan = make_plan()
    runner(sim, ScriptedProbe({"latency_p99": 0.2}), journal).hold_for_approval(plan, BEFORE, None, "needs a person")

    assert main(["history", "--config", str(config), "--format", "json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["plan"], row["state"], row["playbook"]) == (plan.id, "awaiting_approval", "scale-up")
    assert main(["approve", plan.id, "--config", str(config), "--approver", "carol"]) == 0
    assert "approved" in capsys.readouterr().out
    # A typed name is recorded with the OS user who typed it (the name alone proves nothing).
    carol = "carol" if os_user() == "carol" else f"carol (os user {os_user()})"
    assert journal.history(plan.id)[-1]["data"]["approved_by"] == carol
    assert main(["history", "--config", str(config), "--plan", plan.id]) == 0
    assert f"approved by {carol}" in capsys.readouterr().out
    assert main(["approve", "p-unknown", "--config", str(config)]) == 2
    assert "p-unknown" in capsys.readouterr().err


def test_cli_never_creates_a_journal_where_there_is_none(tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"state_dir": "elsewhere"}))
    assert main(["history", "--config", str(config)]) == 2
    assert "no execution journal" in capsys.readouterr().err
    assert not (tmp_path / "elsewhere").exists()


def serve_plans(journal, approved, approvers=APPROVERS, webhook_token=TOKEN):
    app = build_app(receiver=None, metrics=AgentMetrics(), readiness=Readiness({}), token=webhook_token,
                    max_body_bytes=4096)
    add_plan_routes(app, journal, type("C", (), {"now": lambda self: 1.7e9})(), approved.append,
                    approvers=approvers, webhook_token=webhook_token)
    return AgentServer(app, "127.0.0.1", 0).start()


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def test_http_approval_needs_an_approver_token_and_calls_back(sim, journal):
    plan = make_plan()
    runner(sim, ScriptedProbe({}), journal).hold_for_approval(plan, BEFORE, None, "needs a person")
    approved: list[str] = []
    server = serve_plans(journal, approved)
    try:
        url = f"{server.url}{PLANS_PATH}"
        assert requests.post(f"{url}/{plan.id}/approve", timeout=5).status_code == 401
        assert requests.post(f"{url}/{plan.id}/approve", headers=bearer("guess"), timeout=5).status_code == 401
        assert requests.get(url, timeout=5).status_code == 401
        listed = requests.get(url, headers=bearer(DAVE), timeout=5).json()["plans"]
        assert [(p["plan"], p["state"]) for p in listed] == [(plan.id, "awaiting_approval")]
        bad = requests.post(f"{url}/{plan.id}/approve", headers=bearer(DAVE), json={"approver": "x y; rm"}, timeout=5)
        assert bad.status_code == 422 and approved == []
        deep = requests.post(f"{url}/{plan.id}/approve", headers=bearer(DAVE), data="[" * 1900 + "]" * 1900,
                             timeout=5)
        assert deep.status_code == 400 and "nested too deeply" in deep.json()["error"] and approved == []
        ok = requests.post(f"{url}/{plan.id}/approve", headers=bearer(DAVE), json={"approver": "dave"}, timeout=5)
        assert ok.status_code == 200 and ok.json()["approved_by"] == "dave" and approved == [plan.id]
        assert journal.history(plan.id)[-1]["data"]["approved_by"] == "dave"
        assert requests.post(f"{url}/p-nope/approve", headers=bearer(DAVE), timeout=5).status_code == 404
        journal.record("p-done", "succeeded", "ok", {"ts": 1.0})
        assert requests.post(f"{url}/p-done/approve", headers=bearer(DAVE), timeout=5).status_code == 409
    finally:
        server.stop()


def test_the_webhook_token_may_list_plans_but_never_approve(sim, journal):
    plan = make_plan()
    runner(sim, ScriptedProbe({}), journal).hold_for_approval(plan, BEFORE, None, "needs a person")
    approved: list[str] = []
    server = serve_plans(journal, approved)
    try:
        url = f"{server.url}{PLANS_PATH}"
        assert requests.get(url, headers=bearer(TOKEN), timeout=5).status_code == 200
        refused = requests.post(f"{url}/{plan.id}/approve", headers=bearer(TOKEN), json={"approver": "dave"},
                                timeout=5)
        assert refused.status_code == 403 and "webhook's token cannot approve" in refused.json()["error"]
        assert approved == [] and journal.history(plan.id)[-1]["data"].get("approved_by") is None
    finally:
        server.stop()


def test_the_journal_records_whose_token_approved_not_the_name_sent(sim, journal):
    plan = make_plan()
    runner(sim, ScriptedProbe({}), journal).hold_for_approval(plan, BEFORE, None, "needs a person")
    approved: list[str] = []
    server = serve_plans(journal, approved)
    try:
        url = f"{server.url}{PLANS_PATH}/{plan.id}/approve"
        impostor = requests.post(url, headers=bearer(ERIN), json={"approver": "dave"}, timeout=5)
        assert impostor.status_code == 403 and "erin's" in impostor.json()["error"] and approved == []
        ok = requests.post(url, headers=bearer(ERIN), timeout=5)  # no body: the token says who
        assert ok.status_code == 200 and ok.json()["approved_by"] == "erin"
        assert journal.history(plan.id)[-1]["note"] == "approved by erin"
    finally:
        server.stop()


@pytest.mark.parametrize("webhook_token", [TOKEN, None], ids=["webhook-token-only", "no-credential"])
def test_http_approval_is_refused_when_no_approver_is_configured(sim, journal, webhook_token):
    plan = make_plan()
    runner(sim, ScriptedProbe({}), journal).hold_for_approval(plan, BEFORE, None, "needs a person")
    approved: list[str] = []
    server = serve_plans(journal, approved, approvers=Approvers(), webhook_token=webhook_token)
    try:
        url = f"{server.url}{PLANS_PATH}"
        auth = bearer(webhook_token) if webhook_token else {}
        response = requests.post(f"{url}/{plan.id}/approve", headers=auth, timeout=5)
        assert response.status_code == 403 and "approvals.token_file" in response.json()["error"] and approved == []
        listing = requests.get(url, headers=auth, timeout=5)
        # The webhook's token may still list; with no credential configured at all, nobody may.
        assert listing.status_code == (200 if webhook_token else 403)
    finally:
        server.stop()


def test_approver_tokens_are_read_from_their_own_file(tmp_path):
    path = tmp_path / "approvers.yaml"
    path.write_text(f"dave: {DAVE}\nerin: '{ERIN}'\n")
    approvers = load_approvers(path, webhook_token=TOKEN)
    assert approvers.identify(f"Bearer {ERIN}") == "erin" and approvers.identify(f"bearer {DAVE} ") == "dave"
    assert approvers.identify(f"Bearer {TOKEN}") is None and approvers.identify(DAVE) is None
    assert load_approvers(None).configured is False


@pytest.mark.parametrize("text, reason", [
    (f"{DAVE}\n", "must be a mapping"),                       # a bare token names nobody
    ("", "is empty"),                                         # a Secret key mounted without content
    ("{}\n", "names no approver"),
    ("dave: short\n", "token of dave is shorter than 16"),
    ("dave: 12345678901234567890\n", "token of dave must be a string"),
    (f"'x y': {DAVE}\n", "approver name 'x y'"),
    (f"dave: {DAVE}\nerin: {DAVE}\n", "erin and dave share a token"),
    (f"dave: {DAVE}\nerin: {TOKEN}\n", "token of erin is the webhook's"),
])
def test_a_bad_approvers_file_is_refused_naming_the_file_line_and_approver_never_the_token(tmp_path, text, reason):
    path = tmp_path / "approvers.yaml"
    path.write_text(text)
    with pytest.raises(InputError, match=reason) as info:
        load_approvers(path, webhook_token=TOKEN)
    assert str(path) in str(info.value)
    assert DAVE not in str(info.value) and TOKEN not in str(info.value)
    if "erin" in reason:
        assert f"{path}:2" in str(info.value)


def test_the_cli_records_the_os_user_not_what_the_environment_claims(sim, journal, tmp_path, monkeypatch):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"state_dir": "state"}))
    plan = make_plan()
    runner(sim, ScriptedProbe({}), journal).hold_for_approval(plan, BEFORE, None, "needs a person")
    for var in ("USER", "LOGNAME", "LNAME", "USERNAME"):
        monkeypatch.setenv(var, "mallory")
    assert main(["approve", plan.id, "--config", str(config)]) == 0
    assert journal.history(plan.id)[-1]["data"]["approved_by"] == pwd.getpwuid(os.getuid()).pw_name


def test_refusals_are_audited_as_events_except_out_of_scope_ones(sim, journal):
    from aiops.domain.plans import Blocked
    from aiops.remediate.audit import TransitionEvents

    cluster, clock, kube = sim
    run = runner(sim, ScriptedProbe({}), journal)
    run.observers.append(TransitionEvents(kube, clock))
    cooling = make_plan()
    run.record_blocked(Blocked("cooldown", "acted 10s ago", cooling))
    run.record_blocked(Blocked("cooldown", "again", cooling))  # once per plan
    assert [r["state"] for r in journal.history(cooling.id)] == ["blocked"]
    events = [e for e in kube.list_events("shop") if e["reason"] == "AiopsPlan"]
    assert len(events) == 1 and cooling.id in events[0]["message"] and "blocked" in events[0]["message"]

    outside = make_plan(playbook="restart-workload", action="restart")
    run.record_blocked(Blocked("out_of_scope", "namespace not allowed", outside))
    assert [r["state"] for r in journal.history(outside.id)] == ["blocked"], "journaled for the audit trail"
    assert len([e for e in kube.list_events("shop") if e["reason"] == "AiopsPlan"]) == 1, "but no Event written"
