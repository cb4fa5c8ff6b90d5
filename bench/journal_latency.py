"""What a journal write and the planner's reads cost: SQLite file against ConfigMaps in the Kubernetes API.

    python -m bench.journal_latency [--backend real|sim] [--plans 50] [--records 6] [--out FILE.json]

Writes ``--plans`` plans of ``--records`` transitions each (a plan's life: executing, verifying, facts, final), then
times ``record`` (one append), ``history`` (one plan), ``latest`` and ``acted_since`` (every plan: what the guards
ask before each plan) on each journal. ``real`` starts kube-apiserver v1.20 (needs ``make kube``).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from aiops.remediate.kube_journal import KubeJournal
from aiops.remediate.sqlite_journal import SqliteJournal
from bench.report import write_json

STATES = ("executing", "executing", "verifying", "verifying", "succeeded", "succeeded")


def _ms(samples: list[float]) -> dict:
    return {"n": len(samples), "median_ms": round(1000 * statistics.median(samples), 2),
            "max_ms": round(1000 * max(samples), 2)}


def measure(journal, plans: int, records: int) -> dict:
    """Time every write while filling the journal, then 20 of each read."""
    writes = []
    target = {"kind": "Deployment", "namespace": "shop", "name": "cart"}
    for p in range(plans):
        for r in range(records):
            data = {"ts": time.time(), "trigger": "start" if r == 0 else "next", "playbook": "scale-up",
                    "target": target, **({"plan": {"id": f"p-{p}"}} if r == 0 else {})}
            start = time.perf_counter()
            journal.record(f"p-{p:04d}", STATES[r % len(STATES)], "bench", data)
            writes.append(time.perf_counter() - start)
    reads: dict[str, list[float]] = {"history": [], "latest": [], "acted_since": []}
    for i in range(20):
        for name, call in (("history", lambda: journal.history(f"p-{i % plans:04d}")), ("latest", journal.latest),
                           ("acted_since", lambda: journal.acted_since(0.0))):
            start = time.perf_counter()
            call()
            reads[name].append(time.perf_counter() - start)
    return {"record": _ms(writes), **{k: _ms(v) for k, v in reads.items()}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("real", "sim"), default="real")
    parser.add_argument("--plans", type=int, default=50)
    parser.add_argument("--records", type=int, default=6)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    from tests.support import kubestack  # the test harness starts either backend behind one interface

    result = {"backend": args.backend, "plans": args.plans, "records_per_plan": args.records}
    with tempfile.TemporaryDirectory() as tmp:
        result["sqlite"] = measure(SqliteJournal(Path(tmp) / "journal.sqlite3"), args.plans, args.records)
    print(f"sqlite      {result['sqlite']}")
    stack = kubestack.start_kube() if args.backend == "real" else kubestack.SimKube()
    try:
        namespace = f"bench-{uuid.uuid4().hex[:6]}"
        stack.create_namespace(namespace)
        client = stack.client()
        result["kubernetes"] = measure(KubeJournal(client, namespace, retention_days=0), args.plans, args.records)
        client.close()
        print(f"kubernetes  {result['kubernetes']}")
    finally:
        stack.stop()
    if args.out:
        write_json(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
