"""bench/faults.py: its smoke run holds every invariant and writes the JSON the docs quote, and its judge catches a
wrong agent (a change left unverified, a change made twice). Not a timing test."""

from __future__ import annotations

import json

from aiops.remediate.actions.base import PLAN_ANNOTATION, UNDONE_ANNOTATION
from aiops.remediate.runner import PlaybookRunner
from bench import faults
from bench.fault_plans import Trial, judge, run_plan
from bench.fault_world import ANSWER_LOST, Write, World

ROW_FIELDS = {"fault", "trials", "incidents", "changes_per_incident", "refused", "unfinished", "unverified",
              "alerts_sent", "alerts_lost", "double_actions", "time_to_final_median_s",
              "time_to_final_median_s_by_outcome", "detail", "violations", "points"}


def test_the_smoke_run_holds_every_invariant_and_writes_the_json(tmp_path, capsys):
    out = tmp_path / "faults.json"

    assert faults.main(["--smoke", "--out", str(out)]) == 0, capsys.readouterr().err

    body = json.loads(out.read_text())
    assert body["ok"] is True and set(body["broken"].values()) == {0}
    assert [r["fault"] for r in body["rows"]] == list(faults.ROWS)
    for row in body["rows"]:
        assert ROW_FIELDS <= set(row), row["fault"]
        assert row["trials"] >= 1 and row["violations"] == []
        assert row["unfinished"] == row["unverified"] == row["double_actions"] == row["alerts_lost"] == 0
    rows = {r["fault"]: r for r in body["rows"]}
    for fault in ("crash", "journal_full", "api_hang", "leader_flap", "resends"):
        assert rows[fault]["changes_per_incident"]["max"] == 1, fault
    assert rows["queue_full"]["detail"]["answered_503"] > 0, "the flood must have filled the queue"
    assert rows["queue_full"]["alerts_sent"] > 0 and rows["resends"]["detail"]["resent_while_plan_ran"] > 0
    assert "| crash |" in capsys.readouterr().out


def test_the_judge_catches_a_change_left_unverified(tmp_path, monkeypatch):
    """The runner before the fix ended a plan whose patch landed but whose answer was lost ``failed``."""
    def old_behaviour(self, exe, action, exc):
        exe.error(note=f"apply failed: {exc}", data={"error": repr(exc)})
    monkeypatch.setattr(PlaybookRunner, "_landed_anyway", old_behaviour)
    world = World(tmp_path)
    try:
        under_test = world.agent("recovered")
        world.tap.hang(1, ANSWER_LOST, only="patch")
        plan = world.plan("inc-judge")
        run_plan(under_test, plan)
        trial = judge(world, [plan.id], Trial("api_hang", "old runner"))
    finally:
        world.close()
    assert trial.unverified == 1 and trial.changes == [1]
    assert any(v.startswith("change never verified") for v in trial.violations), trial.violations


def test_a_second_change_under_one_plans_annotation_is_a_double_action():
    spec = {"replicas": 2, "template": {"metadata": {"annotations": {"restartedAt": "t1"}}}}
    again = {"replicas": 2, "template": {"metadata": {"annotations": {"restartedAt": "t2"}}}}
    mine = {PLAN_ANNOTATION: "p-1"}
    assert Write("patch", "Deployment", "shop", "cart", True, spec, again, {}, mine).role("p-1") == "apply"
    assert Write("patch", "Deployment", "shop", "cart", True, spec, again, mine, mine).role("p-1") == "again"
    assert Write("patch", "Deployment", "shop", "cart", True, again, spec, mine,
                 {**mine, UNDONE_ANNOTATION: "p-1"}).role("p-1") == "undo"
    assert Write("patch", "Deployment", "shop", "cart", True, spec, spec, {}, mine).role("p-1") is None
    assert Write("patch", "Deployment", "shop", "cart", False, spec, again, {}, mine).role("p-1") is None
