"""Approval mode end to end: a plan waits in ``awaiting_approval``, is approved through the CLI or the HTTP API,
passes the guards again, and only then acts."""

from __future__ import annotations

import json

import pytest
import requests
import yaml

from aiops.cli import main
from aiops.domain.errors import InputError
from aiops.domain.plans import ExecutionState, Mode
from aiops.remediate.facts import KILL_SWITCH_ANNOTATION
from aiops.remediate.planner import PlanPolicy
from aiops.remediate.runner import approve
from aiops.remediate.sqlite_journal import SqliteJournal
from aiops.serve.metrics import AgentMetrics
from aiops.serve.plans_api import PLANS_PATH, add_plan_routes
from aiops.serve.readiness import Readiness
from aiops.serve.server import AgentServer
from aiops.serve.webhook import build_app
from tests.test_remediate_runner import BEFORE, ScriptedProbe, make_plan, replicas, runner, sim  # noqa: F401

TOKEN = "approve-token"


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
    assert journal.history(plan.id)[-1]["data"]["approved_by"] == "carol"
    assert main(["history", "--config", str(config), "--plan", plan.id]) == 0
    assert "approved by carol" in capsys.readouterr().out
    assert main(["approve", "p-unknown", "--config", str(config)]) == 2
    assert "p-unknown" in capsys.readouterr().err


def test_cli_never_creates_a_journal_where_there_is_none(tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"state_dir": "elsewhere"}))
    assert main(["history", "--config", str(config)]) == 2
    assert "no execution journal" in capsys.readouterr().err
    assert not (tmp_path / "elsewhere").exists()


def serve_plans(journal, token, approved):
    app = build_app(receiver=None, metrics=AgentMetrics(), readiness=Readiness({}), token=token,
                    max_body_bytes=4096)
    add_plan_routes(app, journal, token, type("C", (), {"now": lambda self: 1.7e9})(), approved.append)
    return AgentServer(app, "127.0.0.1", 0).start()


def test_http_approval_needs_the_token_and_calls_back(sim, journal):
    plan = make_plan()
    runner(sim, ScriptedProbe({}), journal).hold_for_approval(plan, BEFORE, None, "needs a person")
    approved: list[str] = []
    server = serve_plans(journal, TOKEN, approved)
    try:
        url = f"{server.url}{PLANS_PATH}"
        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert requests.post(f"{url}/{plan.id}/approve", timeout=5).status_code == 401
        assert requests.get(url, timeout=5).status_code == 401
        listed = requests.get(url, headers=auth, timeout=5).json()["plans"]
        assert [(p["plan"], p["state"]) for p in listed] == [(plan.id, "awaiting_approval")]
        bad = requests.post(f"{url}/{plan.id}/approve", headers=auth, json={"approver": "x y; rm"}, timeout=5)
        assert bad.status_code == 422 and approved == []
        ok = requests.post(f"{url}/{plan.id}/approve", headers=auth, json={"approver": "dave"}, timeout=5)
        assert ok.status_code == 200 and ok.json()["approved_by"] == "dave" and approved == [plan.id]
        assert requests.post(f"{url}/p-nope/approve", headers=auth, timeout=5).status_code == 404
        journal.record("p-done", "succeeded", "ok", {"ts": 1.0})
        assert requests.post(f"{url}/p-done/approve", headers=auth, timeout=5).status_code == 409
    finally:
        server.stop()


def test_http_approval_is_refused_when_no_token_is_configured(sim, journal):
    plan = make_plan()
    runner(sim, ScriptedProbe({}), journal).hold_for_approval(plan, BEFORE, None, "needs a person")
    approved: list[str] = []
    server = serve_plans(journal, None, approved)
    try:
        response = requests.post(f"{server.url}{PLANS_PATH}/{plan.id}/approve", timeout=5)
        assert response.status_code == 403 and "token" in response.json()["error"] and approved == []
    finally:
        server.stop()


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
