"""The PyRCA synthetic case (``pyrca/`` of the benchmark data, see ``bench.datasets``) as aiops case folders, diagnosed by the same code as
``aiops diagnose --case``; Recall@1/3/5 printed beside PyRCA's published table (BENCHMARKS.md section 3.3).

    python -m bench.pyrca_case [--data DIR] [--out DIR] [--cases 10] [--baseline-rows 200] [--recent-rows 40]

Mapping (documented choices):
- every node ``Xi`` is a workload ``xi`` with one gauge, ``http_request_duration_seconds{quantile="0.99"}`` (the
  latency signal), value = the node's value shifted so that the whole table is positive (z-scores do not change);
- the DAG's edge parent -> child becomes the call child -> parent: a node *depends on* its causal parents, so a
  change travels from callee to caller, the way latency does (a caller slowed by its callee is the victim);
- the table is one long normal phase then one abnormal phase. Case ``j`` takes ``baseline-rows`` normal rows
  (slice ``j``) followed by ``recent-rows`` abnormal rows (slice ``j``) on a 15 s grid, so the recent window the
  diagnosis compares with the baseline is exactly the abnormal part;
- truth: the root causes of the meta file (X2, X18). Recall@k = |top-k of the ranking ∩ roots| / min(k, |roots|),
  averaged over cases (with two roots, Recall@1 asks for either one first).

The ranking scored is the diagnosis' ``ranking`` (the statistical ranker's, over every workload).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from aiops.collect.casefolder import read_case
from aiops.settings import Settings
from bench import datasets
from bench.rca import build_diagnostician
from bench.report import write_json

DATA = datasets.path("pyrca")
NAMESPACE = "pyrca"
STEP = 15.0
T0 = 1_800_000_000.0
KS = (1, 3, 5)
# BENCHMARKS.md section 3.3: PyRCA README, simulated data, mean Recall@1/3/5.
PUBLISHED = {
    "epsilon-Diagnosis": (0.06, 0.16, 0.16), "RCD": (0.28, 0.29, 0.30), "Local-RCD": (0.44, 0.70, 0.70),
    "Random Walk": (0.07, 0.20, 0.24), "Random Walk (PC)": (0.06, 0.17, 0.21),
    "Bayesian Inference": (0.15, 0.35, 0.43), "Bayesian Inference (PC)": (0.11, 0.30, 0.40),
    "Hypothesis-testing": (1.00, 1.00, 1.00), "Hypothesis-testing (PC)": (0.95, 1.00, 1.00),
    "Hypothesis-testing (ADJ)": (0.95, 1.00, 1.00), "Hypothesis-testing (ADJ-PC)": (0.77, 0.92, 0.92),
}


def load(data: Path) -> tuple[list[str], np.ndarray, np.ndarray, dict]:
    """(node names, normal rows, abnormal rows, meta) of ``synthetic0``."""
    meta = json.loads((data / "synthetic0_meta.json").read_text(encoding="utf-8"))
    with (data / "synthetic0_data.csv").open(encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        nodes = header[2:]
        normal, abnormal = [], []
        for row in reader:
            (normal if row[1] == "normal" else abnormal).append([float(x) for x in row[2:]])
    return nodes, np.array(normal), np.array(abnormal), meta


def write_cases(out: Path, count: int = 10, baseline_rows: int = 200, recent_rows: int = 40,
                data: Path = DATA) -> list[Path]:
    """Write ``count`` case folders under ``out`` (see the module docstring for the mapping)."""
    nodes, normal, abnormal, meta = load(data)
    offset = 0.1 - min(normal.min(), abnormal.min())
    calls = [[e["to"].lower(), e["from"].lower()] for e in meta["edges_parent_to_child"]]
    roots = [r.lower() for r in meta["root_causes"]]
    folders = []
    for j in range(count):
        base = normal[(j * baseline_rows) % len(normal):][:baseline_rows]
        bad = abnormal[(j * recent_rows) % len(abnormal):][:recent_rows]
        rows = np.vstack([base, bad]) + offset
        stamps = T0 + STEP * np.arange(len(rows))
        metrics = [{"metric": {"__name__": "http_request_duration_seconds", "namespace": NAMESPACE,
                               "workload": node.lower(), "pod": f"{node.lower()}-0", "quantile": "0.99"},
                    "values": [[float(t), repr(float(v))] for t, v in zip(stamps, rows[:, i])]}
                   for i, node in enumerate(nodes)]
        folder = out / f"pyrca-synthetic0-{j:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
        (folder / "topology.json").write_text(json.dumps({"calls": calls}), encoding="utf-8")
        (folder / "truth.json").write_text(json.dumps({"workload": roots[0], "fault": "unknown",
                                                       "playbook": "escalate", "roots": roots}), encoding="utf-8")
        folders.append(folder)
    return folders


def recall_at(ranked: list[str], roots: list[str], k: int) -> float:
    """|top-k ∩ roots| / min(k, |roots|)."""
    return len(set(ranked[:k]) & set(roots)) / min(k, len(roots))


def evaluate(folders: list[Path], settings: Settings | None = None) -> dict:
    """Diagnose each folder; mean Recall@k over them, the rankings and the latency."""
    settings = settings or Settings()
    diagnostician = build_diagnostician(settings)
    per_case, seconds = [], []
    for folder in folders:
        started = time.perf_counter()
        case = read_case(folder, STEP)
        report = diagnostician.run(case.observations, case.alerts)
        seconds.append(time.perf_counter() - started)
        ranked = [w for w, _ in report.diagnosis.ranking]
        roots = case.truth["roots"]
        per_case.append({"case": folder.name, "top5": ranked[:5], "chosen": report.diagnosis.chosen.target.name,
                         **{f"recall@{k}": recall_at(ranked, roots, k) for k in KS}})
    return {"cases": len(per_case), **{f"recall@{k}": round(float(np.mean([c[f"recall@{k}"] for c in per_case])), 3)
                                       for k in KS},
            "latency_p50_s": round(float(np.median(seconds)), 3), "per_case": per_case}


def render(result: dict) -> str:
    lines = [f"{'method':<30}{'Recall@1':>10}{'Recall@3':>10}{'Recall@5':>10}",
             f"{'aiops stats ranking (this)':<30}" + "".join(f"{result[f'recall@{k}']:>10.2f}" for k in KS)]
    lines += [f"{name:<30}" + "".join(f"{v:>10.2f}" for v in vals) for name, vals in PUBLISHED.items()]
    lines.append(f"({result['cases']} windows of synthetic0; PyRCA's rows are means over its own simulated cases; "
                 f"latency p50 {result['latency_p50_s']}s)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pyrca_case", description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, help="where to write the case folders (default: a temporary folder)")
    parser.add_argument("--cases", type=int, default=10)
    parser.add_argument("--baseline-rows", type=int, default=200)
    parser.add_argument("--recent-rows", type=int, default=40)
    parser.add_argument("--json", type=Path, help="write the result as JSON here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="pyrca-cases-") as tmp:
        out = args.out or Path(tmp)
        result = evaluate(write_cases(out, args.cases, args.baseline_rows, args.recent_rows, args.data))
    print(render(result))
    for case in result["per_case"]:
        print(f"  {case['case']}: top5 {case['top5']}")
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
