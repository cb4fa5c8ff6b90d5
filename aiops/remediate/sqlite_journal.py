"""The default execution journal: one SQLite file, safe to share between the agent and the CLI.

Why SQLite: each ``record`` is one committed transaction (``synchronous=FULL``), so a crash can lose at most the
transition being written, never an earlier one; readers in other processes (``aiops history``, ``aiops approve``)
see every committed record at once (WAL mode); and the planner's questions (cooldowns, rate limits, what is in
flight) are indexed queries instead of a scan of the whole history.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from aiops.domain.errors import InputError
from aiops.domain.protocols import Clock
from aiops.domain.target import Target
from aiops.remediate.journal import ACTING_STATES, JournalReads, action_starts

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    ts       REAL NOT NULL,
    plan_id  TEXT NOT NULL,
    state    TEXT NOT NULL,
    note     TEXT NOT NULL,
    playbook TEXT,
    target   TEXT,
    trigger  TEXT,
    data     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS records_plan ON records (plan_id, seq);
CREATE INDEX IF NOT EXISTS records_acting ON records (state, ts);
"""


def _target_key(target: dict | None) -> str | None:
    if not isinstance(target, dict):
        return None
    return f"{target.get('kind')}/{target.get('namespace')}/{target.get('name')}"


class SqliteJournal(JournalReads):
    """An ``ExecutionStore`` in a SQLite file (created on first use). A file that is not a journal is an
    ``InputError`` naming it."""

    def __init__(self, path: str | Path, clock: Clock | None = None) -> None:
        self.path = Path(path)
        self._clock = clock
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(SCHEMA)
        except (sqlite3.DatabaseError, OSError) as exc:
            raise InputError(str(self.path), f"cannot open the execution journal: {exc}") from None

    def close(self) -> None:
        """Close the file (the journal is unusable afterwards)."""
        with self._lock:
            self._db.close()

    def record(self, plan_id: str, state: str, note: str, data: dict[str, Any]) -> None:
        """Append one transition, committed to disk before returning (raises if it cannot be)."""
        ts = float(data["ts"]) if "ts" in data else (self._clock.now() if self._clock else time.time())
        row = (ts, plan_id, state, note, data.get("playbook"), _target_key(data.get("target")),
               data.get("trigger") or None, json.dumps(data, sort_keys=True, default=str))
        with self._lock:
            self._db.execute("INSERT INTO records (ts, plan_id, state, note, playbook, target, trigger, data) "
                             "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row)

    def _select(self, where: str = "", args: tuple = (), suffix: str = "ORDER BY seq") -> list[dict[str, Any]]:
        sql = f"SELECT ts, plan_id, state, note, data FROM records {where} {suffix}"
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [{"ts": ts, "plan_id": pid, "state": state, "note": note, "data": json.loads(data)}
                for ts, pid, state, note, data in rows]

    # --- reads (indexed versions of JournalReads) ---
    def records(self) -> list[dict[str, Any]]:
        """Every record, oldest first."""
        return self._select()

    def history(self, plan_id: str) -> list[dict[str, Any]]:
        return self._select("WHERE plan_id = ?", (plan_id,))

    def latest(self) -> list[dict[str, Any]]:
        """The last record of each plan, in the order plans first appeared."""
        return self._select("WHERE seq IN (SELECT MAX(seq) FROM records GROUP BY plan_id)", (),
                            "ORDER BY (SELECT MIN(seq) FROM records r WHERE r.plan_id = records.plan_id)")

    def acted(self, target: Target, playbook: str) -> float | None:
        states = ",".join("?" * len(ACTING_STATES))
        with self._lock:
            (last,) = self._db.execute(
                f"SELECT MAX(ts) FROM records WHERE state IN ({states}) AND trigger IS NOT NULL "
                "AND playbook = ? AND target = ?",
                (*sorted(ACTING_STATES), playbook, _target_key(target.as_dict()))).fetchone()
        return last

    def acted_since(self, since: float) -> list[dict[str, Any]]:
        # The index finds the starts; which of them changed the cluster is decided by the one rule in journal.py.
        states = ",".join("?" * len(ACTING_STATES))
        return action_starts(self._select(f"WHERE state IN ({states}) AND trigger IS NOT NULL AND ts >= ?",
                                          (*sorted(ACTING_STATES), since)))
