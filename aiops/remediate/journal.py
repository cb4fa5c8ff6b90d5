"""The execution journal: every state transition of every plan, written down before its side effect.

``JsonlJournal`` appends one JSON object per line and fsyncs, so a restarted agent can read where each plan was;
``MemoryJournal`` keeps the same records in a list (tests, the demo). Both answer cooldown questions (``acted``).

A record is ``{"ts", "plan_id", "state", "note", "data"}``. ``ts`` is ``data["ts"]`` when the caller passes it
(the state machine does, from its injected clock), else the journal's own clock. ``data`` may carry ``target``
(a ``Target.as_dict()``) and ``playbook``: ``acted`` matches on them; and ``acts`` (``ACTS_FLAG``), whether the plan
changes the cluster: only such plans count against the change budgets (rate limit, blast radius, concurrency).
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from aiops.domain.playbook import NOTIFY_ONLY_ACTIONS
from aiops.domain.protocols import Clock
from aiops.domain.target import Target

# The states that mean a playbook really acted (or began to): what a cooldown counts.
ACTING_STATES = frozenset({"executing"})
# A plan whose latest record is in one of these is still running (what the concurrency guard counts).
IN_FLIGHT_STATES = frozenset({"executing", "verifying"})
# ... and these (plus a rolled_back whose undo is not recorded as done) are what a restarted agent resumes.
UNFINISHED_STATES = IN_FLIGHT_STATES | {"pending", "awaiting_approval"}
# ``data`` flags of facts recorded inside a state (``PlanExecution.record_fact``).
UNDONE_FLAG = "undone"
# On a succeeded plan whose playbook restores the original state once healthy: the watch is still to finish.
RESTORE_PENDING_FLAG = "restore_pending"
APPROVED_FLAG = "approved_by"
# On every record the state machine writes: False for a notify-only plan (``ActionPlan.acts``).
ACTS_FLAG = "acts"
# Journals written before ``ACTS_FLAG`` existed name the playbook only: the stock notify-only one is this.
NOTIFY_ONLY_PLAYBOOK = "escalate"


def is_changing(record: dict[str, Any]) -> bool:
    """True when a plan's latest record says it may still write to its target: acting, verifying (an undo may
    follow), or rolled back / restored with the undo not done yet. What makes a target busy for other plans."""
    state = record["state"]
    return state in IN_FLIGHT_STATES or (state in ("rolled_back", "restored")
                                         and not record["data"].get(UNDONE_FLAG))


def is_unfinished(record: dict[str, Any]) -> bool:
    """True when a plan's latest record leaves work to do: not final, an undo not done, or a restore watch owed."""
    return record["state"] in UNFINISHED_STATES or is_changing(record) or (
        record["state"] == "succeeded" and bool(record["data"].get(RESTORE_PENDING_FLAG)))


def is_start(record: dict[str, Any]) -> bool:
    """True for the record of a plan starting (a transition into an acting state, not a fact noted there, which
    has no ``trigger``); notify-only plans start too (what an escalation's cooldown counts)."""
    return record["state"] in ACTING_STATES and bool(record["data"].get("trigger"))


def changes_cluster(record: dict[str, Any]) -> bool:
    """Whether the plan of ``record`` changes the cluster, i.e. counts against the change budgets.

    The ``acts`` flag when the record has it. A record from before the flag: the journaled plan's action when the
    record carries the plan, else the playbook's name, and only the stock ``escalate`` is taken as notify-only;
    every other old record counts. Over-counting an old record can only make a budget stricter for an hour, while
    not counting an unknown playbook could let an action past the budget.
    """
    data = record.get("data") or {}
    if ACTS_FLAG in data:
        return bool(data[ACTS_FLAG])
    plan = data.get("plan")
    if isinstance(plan, dict) and plan.get("action"):
        return plan["action"] not in NOTIFY_ONLY_ACTIONS
    return data.get("playbook") != NOTIFY_ONLY_PLAYBOOK


def action_starts(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The first start of each plan that changes the cluster, in ``records``' order: a plan is one action, however
    often it is resumed, and its undo or restore is part of it, not a second action."""
    seen: set[str] = set()
    out = []
    for r in records:
        if is_start(r) and changes_cluster(r) and r["plan_id"] not in seen:
            seen.add(r["plan_id"])
            out.append(r)
    return out


class JournalReads:
    """The questions the planner and the resume path ask of a journal, answered from ``latest()``/``records()``.

    Subclasses provide ``records()`` and ``latest()``; a store with an index (SQLite) overrides what it can answer
    faster.
    """

    def records(self) -> list[dict[str, Any]]:  # pragma: no cover - provided by subclasses
        raise NotImplementedError

    def latest(self) -> list[dict[str, Any]]:  # pragma: no cover - provided by subclasses
        raise NotImplementedError

    def history(self, plan_id: str) -> list[dict[str, Any]]:
        """The transitions of one plan, oldest first."""
        return [r for r in self.records() if r["plan_id"] == plan_id]

    def acted(self, target: Target, playbook: str) -> float | None:
        """When ``playbook`` last started acting on ``target`` (unix s), or ``None``."""
        want = target.as_dict()
        times = [r["ts"] for r in self.records() if is_start(r)
                 and r["data"].get("playbook") == playbook and r["data"].get("target") == want]
        return max(times) if times else None

    def acted_since(self, since: float) -> list[dict[str, Any]]:
        """The start of each plan that changed the cluster, at or after ``since`` (one per plan; escalations do not
        count): what the rate limit and the blast radius count."""
        return action_starts([r for r in self.records() if r["ts"] >= since])

    def in_flight(self) -> list[str]:
        """Plans changing the cluster that are acting or verifying right now (by their latest record): what the
        concurrency limit counts (an escalation passing through ``executing`` does not)."""
        return [r["plan_id"] for r in self.latest() if r["state"] in IN_FLIGHT_STATES and changes_cluster(r)]

    def changing(self, target: Target) -> list[dict[str, Any]]:
        """The latest record of every plan that may still write to ``target`` (see ``is_changing``)."""
        want = target.as_dict()
        return [r for r in self.latest() if r["data"].get("target") == want and is_changing(r)]

    def started_at(self, plan_id: str) -> float | None:
        """When ``plan_id`` first started acting (its first start record), or ``None`` when it never did."""
        return next((r["ts"] for r in self.history(plan_id) if is_start(r)), None)

    def unfinished(self) -> list[str]:
        """Plans a restarted agent must pick up: not in a final state, rolled back or restored with the undo not
        done, or succeeded with the restore watch not finished."""
        return [r["plan_id"] for r in self.latest() if is_unfinished(r)]

    def plan_of(self, plan_id: str) -> dict[str, Any] | None:
        """The plan as first journaled (``ActionPlan.as_dict()``), or ``None`` for an unknown id."""
        for r in self.history(plan_id):
            if isinstance(r["data"].get("plan"), dict):
                return r["data"]["plan"]
        return None


class MemoryJournal(JournalReads):
    """An in-memory ``ExecutionStore``."""

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock = clock
        self._records: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def record(self, plan_id: str, state: str, note: str, data: dict[str, Any]) -> None:
        """Append one transition."""
        entry = {"ts": float(data["ts"]) if "ts" in data else self._now(), "plan_id": plan_id, "state": state, "note": note,
                 "data": data}
        with self._lock:
            self._write(entry)
            self._records.append(entry)

    def _now(self) -> float:
        return self._clock.now() if self._clock is not None else time.time()

    def _write(self, entry: dict[str, Any]) -> None:
        """Persist ``entry`` before it becomes visible (nothing to persist here)."""

    def records(self) -> list[dict[str, Any]]:
        """Every record, oldest first."""
        with self._lock:
            return list(self._records)

    def latest(self) -> list[dict[str, Any]]:
        """The last record of each plan, in the order plans first appeared."""
        last: dict[str, dict[str, Any]] = {}
        for r in self.records():
            last[r["plan_id"]] = r
        return list(last.values())


class JsonlJournal(MemoryJournal):
    """A JSON-lines file journal; existing lines are read back on open (a torn last line is skipped)."""

    def __init__(self, path: str | Path, clock: Clock | None = None) -> None:
        super().__init__(clock)
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue  # a crash mid-write leaves a partial line; everything before it is still good
                if isinstance(entry, dict) and {"plan_id", "state"} <= entry.keys():
                    entry.setdefault("data", {})
                    self._records.append(entry)

    def _write(self, entry: dict[str, Any]) -> None:
        line = json.dumps(entry, sort_keys=True, default=str) + "\n"
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
