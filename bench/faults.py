"""Fault injection on the agent's own wiring: does any fault make it act twice, lose an alert, or leave a change
unverified?

    python -m bench.faults [--trials N] [--seed S] [--out FILE.json] [--smoke]

Everything runs in this process on the simulator (``aiops.sim.runtime.SimRuntime``) through the real Kubernetes
client, with agents built by ``aiops.serve.agent.build_parts`` / ``Agent`` (the write gate, the SQLite journal and
its guard, the runner and its resume paths) on the simulator's clock. One fault kind per row, injected at every
step (see ``bench.fault_plans`` for rows 1-4 and ``bench.fault_intake`` for rows 5-6):

1. crash: after each journal record of a plan and right after each of its writes landed; a new agent resumes
2. journal_full: the journal refuses writes (ENOSPC) from its k-th write on, for every k; then it has room again
3. api_hang: the n-th write hangs past the request timeout, dropped or done with its answer lost; then it answers
4. leader_flap: the gate's leader check fails at its n-th call (once, or for good: a second agent takes over)
5. queue_full: a queue of a few entries, a slow handler, a flood of distinct alerts sent like Alertmanager does
6. resends: the same firing alert sent again and again during a plan, after it, and after a restart

For each row: trials, changes made to the cluster per incident (counted on the API server's write log: 1, or 0
where the plan was refused), plans left non-final or changed but never verified, undone or handed to a person (0),
alerts lost (sent minus handled, 0), double actions (0), and the median simulated seconds from a plan's first
journal record to its final one, for plans that recover (a 120 s verify window) and plans that get worse (undone
after the first reading); a resume waits one poll (10 s) or one restart (10 s). Rows 1-4 go through every step once
per ``--trials``; rows 5-6 depend on timing and run three times per ``--trials``. Exit 1 when an invariant broke,
naming it. ``--smoke`` runs a subset (every third step, the worse outcome, a small flood) in about 15 s.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.fault_intake import intake_rows
from bench.fault_plans import Trial, plan_rows
from bench.report import quiet_logs, write_json

ROWS = ("crash", "journal_full", "api_hang", "leader_flap", "queue_full", "resends")
INVARIANTS = ("left non-final", "change never verified", "alerts lost", "double action", "journal and cluster "
              "disagree", "fault not reached")


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


def summarize(row: str, trials: list[Trial]) -> dict[str, Any]:
    """One row of the table: counts over the row's trials (``changes_per_incident`` over its incidents)."""
    changes = [c for t in trials for c in t.changes]
    return {
        "fault": row,
        "trials": len(trials),
        "incidents": sum(t.incidents for t in trials),
        "changes_per_incident": {"mean": round(statistics.mean(changes), 3), "min": min(changes),
                                 "max": max(changes)} if changes else None,
        "refused": sum(t.refused for t in trials),
        "unfinished": sum(t.unfinished for t in trials),
        "unverified": sum(t.unverified for t in trials),
        "alerts_sent": sum(t.sent for t in trials),
        "alerts_lost": sum(t.lost for t in trials),
        "double_actions": sum(t.double for t in trials),
        "time_to_final_median_s": _median([s for t in trials for s in t.seconds]),
        "time_to_final_median_s_by_outcome": {o: _median([s for t in trials if t.outcome == o for s in t.seconds])
                                              for o in ("recovered", "worse")},
        "detail": {k: sum(t.detail.get(k, 0) for t in trials)
                   for k in dict.fromkeys(k for t in trials for k in t.detail)},
        "violations": [v for t in trials for v in t.violations],
        "points": [t.as_dict() for t in trials],
    }


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table (what docs/benchmarks.md shows)."""
    head = ("| fault | trials | changes per incident (mean [min-max]) | refused (0 changes) | left non-final / "
            "unverified | alerts lost (of sent) | double actions | time to final, median sim s (recovered / worse) |")
    lines = [head, "|" + "---|" * 8]
    for r in rows:
        c = r["changes_per_incident"]
        changes = f"{c['mean']:.2f} [{c['min']}-{c['max']}]" if c else "n/a (stub handler)"
        sent = f"{r['alerts_lost']} (of {r['alerts_sent']})" if r["alerts_sent"] else "n/a"
        final = " / ".join("-" if v is None else f"{v:g}" for v in r["time_to_final_median_s_by_outcome"].values())
        lines.append(f"| {r['fault']} | {r['trials']} | {changes} | {r['refused']} | "
                     f"{r['unfinished']} / {r['unverified']} | {sent} | {r['double_actions']} | {final} |")
    return "\n".join(lines)


def run(trials: int, seed: int, smoke: bool, folder: Path) -> dict[str, list[Trial]]:
    """Every row, ``trials`` times (rows 1-4 go through every step each time, with seed + i)."""
    rows: dict[str, list[Trial]] = {row: [] for row in ROWS}
    for i in range(trials):
        for row, found in plan_rows(folder / f"plans{i}", seed + i, smoke).items():
            rows[row] += found
    for row, found in intake_rows(folder / "intake", seed, trials, smoke).items():
        rows[row] += found
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1, help="repeat every row this often (default 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write the result as JSON here")
    parser.add_argument("--smoke", action="store_true", help="a quick subset (what the test runs)")
    args = parser.parse_args(argv)
    if args.trials < 1:
        parser.error("--trials must be at least 1")
    started = time.perf_counter()
    # Every row breaks something on purpose: the agent's warnings about it are expected, not news.
    with tempfile.TemporaryDirectory(prefix="aiops-faults-") as tmp, quiet_logs(logging.CRITICAL):
        found = run(args.trials, args.seed, args.smoke, Path(tmp))
    rows = [summarize(row, trials) for row, trials in found.items() if trials]
    violations = [v for r in rows for v in r["violations"]]
    body = {"command": "python -m bench.faults " + shlex.join(argv if argv is not None else sys.argv[1:]),
            "trials": args.trials, "seed": args.seed, "smoke": args.smoke,
            "wall_seconds": round(time.perf_counter() - started, 1), "rows": rows,
            "broken": {name: sum(v.startswith(name) for v in violations) for name in INVARIANTS},
            "ok": not violations}
    print(table(rows))
    print(f"\n{sum(r['trials'] for r in rows)} trials in {body['wall_seconds']:.0f} s wall")
    if args.out is not None:
        write_json(args.out, body)
    if violations:
        print(f"\nINVARIANT BROKEN ({len(violations)}):", file=sys.stderr)
        for v in violations[:30]:
            print(f"  {v}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
