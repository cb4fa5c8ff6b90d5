"""The SQLite execution journal: durable, shared between processes, and answering the planner's questions."""

from __future__ import annotations

import sqlite3

import pytest

from aiops.domain.errors import InputError
from aiops.domain.plans import ActionPlan, Mode
from aiops.domain.target import Target
from aiops.remediate.journal import MemoryJournal
from aiops.remediate.machine import PlanExecution
from aiops.remediate.sqlite_journal import SqliteJournal
from aiops.sim.clock import SimClock

CART, WEB = Target.deployment("shop", "cart"), Target.deployment("shop", "web")


def fill(journal) -> None:
    journal.record("p-1", "executing", "go", {"ts": 10.0, "trigger": "start", "playbook": "scale-up",
                                              "target": CART.as_dict(), "plan": {"id": "p-1"}})
    journal.record("p-1", "executing", "silenced", {"ts": 11.0, "playbook": "scale-up", "target": CART.as_dict()})
    journal.record("p-2", "awaiting_approval", "needs a person", {"ts": 12.0, "trigger": "await_approval",
                                                                  "playbook": "restart-workload",
                                                                  "target": WEB.as_dict()})
    journal.record("p-1", "verifying", "scaled", {"ts": 13.0, "trigger": "applied"})
    journal.record("p-3", "executing", "go", {"ts": 14.0, "trigger": "start", "playbook": "restart-workload",
                                              "target": WEB.as_dict()})
    journal.record("p-3", "rolled_back", "worse", {"ts": 15.0, "trigger": "worse"})
    journal.record("p-4", "succeeded", "ok", {"ts": 16.0, "trigger": "recovered"})


@pytest.mark.parametrize("make", [lambda p: MemoryJournal(), lambda p: SqliteJournal(p / "j.sqlite3")],
                         ids=["memory", "sqlite"])
def test_both_journals_answer_the_same(tmp_path, make):
    assert_journal_contract(make(tmp_path))


def assert_journal_contract(journal) -> None:
    """What every ``ExecutionStore`` answers for the same records (the Kubernetes journal runs it too)."""
    fill(journal)
    assert [r["state"] for r in journal.history("p-1")] == ["executing", "executing", "verifying"]
    assert [(r["plan_id"], r["state"]) for r in journal.latest()] == [
        ("p-1", "verifying"), ("p-2", "awaiting_approval"), ("p-3", "rolled_back"), ("p-4", "succeeded")]
    assert journal.acted(CART, "scale-up") == 10.0, "a fact noted inside executing is not a second start"
    assert journal.acted(CART, "restart-workload") is None
    assert [r["plan_id"] for r in journal.acted_since(12.0)] == ["p-3"]
    assert journal.in_flight() == ["p-1"]
    assert journal.unfinished() == ["p-1", "p-2", "p-3"], "a rollback whose undo is not recorded is unfinished"
    journal.record("p-3", "rolled_back", "undone", {"ts": 17.0, "undone": True})
    assert journal.unfinished() == ["p-1", "p-2"]
    assert journal.plan_of("p-1") == {"id": "p-1"} and journal.plan_of("nope") is None


def _executed(journal, clock, plan_id, playbook, action, workload, end="recovered"):
    """One plan through the real state machine: started, applied, then ``end`` ("" leaves it verifying)."""
    plan = ActionPlan(plan_id, "inc-" + plan_id, playbook, action, Target.deployment("shop", workload), {}, Mode.ACT)
    exe = PlanExecution(plan, journal, clock)
    exe.start(note="go")
    exe.applied(note="done")
    if end == "worse":  # rolled back, and the undo noted inside rolled_back
        exe.worse(note="worse", undo=True)
        exe.record_fact("undone", {"undone": True})
    elif end:
        getattr(exe, end)(note=end)


def assert_budget_contract(journal) -> None:
    """Only changes to the cluster count against the change budgets, in every journal (issue #13, defect 17)."""
    clock = SimClock(100.0)
    _executed(journal, clock, "p-esc-1", "escalate", "escalate", "a")
    _executed(journal, clock, "p-esc-2", "escalate", "escalate", "b", end="")  # still "verifying"
    _executed(journal, clock, "p-undone", "scale-up", "scale", "c", end="worse")
    _executed(journal, clock, "p-running", "restart-workload", "restart", "d", end="")
    assert [r["plan_id"] for r in journal.acted_since(0.0)] == ["p-undone", "p-running"], \
        "escalations are no action, and an undo is part of its plan, not a second action"
    assert journal.in_flight() == ["p-running"], "an escalation passing through verifying holds no slot"
    assert journal.acted(Target.deployment("shop", "a"), "escalate") == 100.0, "an escalation still has a cooldown"
    # Records written before the ``acts`` flag existed.
    old = {"ts": 200.0, "trigger": "start", "target": Target.deployment("shop", "e").as_dict()}
    journal.record("p-old-escalate", "executing", "go", {**old, "playbook": "escalate"})
    journal.record("p-old-page", "executing", "go", {**old, "playbook": "page-oncall",
                                                     "plan": {"action": "escalate"}})
    journal.record("p-old-restart", "executing", "go", {**old, "playbook": "restart-workload"})
    assert [r["plan_id"] for r in journal.acted_since(150.0)] == ["p-old-restart"]
    assert journal.in_flight() == ["p-running", "p-old-restart"]


@pytest.mark.parametrize("make", [lambda p: MemoryJournal(), lambda p: SqliteJournal(p / "j.sqlite3")],
                         ids=["memory", "sqlite"])
def test_only_changes_to_the_cluster_count_against_the_budgets(tmp_path, make):
    assert_budget_contract(make(tmp_path))


def test_records_survive_reopening_and_are_seen_by_another_connection_at_once(tmp_path):
    path = tmp_path / "state" / "journal.sqlite3"
    writer = SqliteJournal(path)
    reader = SqliteJournal(path)  # e.g. `aiops history` while the agent runs
    fill(writer)
    assert len(reader.records()) == 7
    writer.close()
    assert [r["state"] for r in SqliteJournal(path).history("p-3")] == ["executing", "rolled_back"]


def test_a_file_that_is_not_a_journal_is_named(tmp_path):
    bogus = tmp_path / "journal.sqlite3"
    bogus.write_bytes(b"this is not a database, just text " * 100)
    with pytest.raises(InputError) as info:
        SqliteJournal(bogus)
    assert str(bogus) in str(info.value) and "journal" in str(info.value)


def test_a_write_that_cannot_be_committed_raises(tmp_path):
    journal = SqliteJournal(tmp_path / "j.sqlite3")
    journal.close()
    with pytest.raises(sqlite3.ProgrammingError):
        journal.record("p-1", "executing", "", {"ts": 1.0})
