"""Root-cause analysis benchmark over case folders with a ``truth.json``.

    python -m bench.rca --cases DIR [--analyzers stats,rules] [--out FILE.json] [--config FILE]

Runs the code ``aiops diagnose --case`` runs (``OfflineDiagnostician`` built like ``aiops.commands.diagnose``), in
process, on every case folder under DIR (any folder holding ``metrics.json`` and ``truth.json``), and scores:

- AC@k (k = 1, 3, 5) for the workload: the share of fault cases whose true workload is among the first k of the
  predicted list (the chosen workload first, then the ranking); Avg@5 = mean of AC@1..AC@5 (RCAEval's measure).
  Cases whose truth has no workload (no-fault cases) do not count here.
- fault accuracy: predicted fault == true fault (``unknown`` for no-fault cases);
- playbook accuracy: the right playbook, and for an acting playbook also the right target (``escalate`` acts on
  nothing, so its target does not matter);
- wrong-action rate: the share of cases where an acting playbook (anything but ``escalate``) was chosen and it is
  not exactly the true action: the truth is ``escalate``, or the target or the playbook differs;
- per-fault breakdown of all of these, and diagnosis latency per case (read + diagnose), p50 and p95.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from aiops.collect.casefolder import METRICS, TRUTH, read_case
from aiops.diagnose.ensemble import Diagnoser
from aiops.domain.errors import InputError
from aiops.serve.agent import load_knowledge
from aiops.serve.offline import OfflineDiagnostician
from aiops.settings import Settings, load_settings
from bench.report import write_json

ESCALATE = "escalate"
KS = (1, 3, 5)


@dataclass(frozen=True)
class CaseResult:
    """One case: its truth and what the diagnosis said."""

    case: str
    truth: dict
    ranked: tuple[str, ...]          # predicted workloads, best first (the chosen one leads)
    fault: str
    playbook: str
    target: str                       # the chosen playbook's target workload
    seconds: float
    confidence: float = 0.0
    error: str = ""


def acts(playbook: str) -> bool:
    """True for playbooks that change the cluster."""
    return bool(playbook) and playbook != ESCALATE


def right_action(r: CaseResult) -> bool:
    """The true playbook, on the true workload when it acts."""
    want = r.truth.get("playbook", ESCALATE)
    return r.playbook == want and (not acts(want) or r.target == r.truth.get("workload"))


def wrong_action(r: CaseResult) -> bool:
    """An acting playbook that is not the true action (truth escalate, other target or other playbook)."""
    return acts(r.playbook) and not right_action(r)


def hit_at(r: CaseResult, k: int) -> bool:
    return r.truth.get("workload", "") in r.ranked[:k]


def _rate(flags: Iterable[bool]) -> float | None:
    flags = list(flags)
    return round(sum(flags) / len(flags), 4) if flags else None


def score(results: Sequence[CaseResult]) -> dict:
    """The metrics of the module docstring over ``results`` (overall and per true fault)."""
    def block(rs: Sequence[CaseResult]) -> dict:
        located = [r for r in rs if r.truth.get("workload")]
        out: dict = {"cases": len(rs), "located_cases": len(located)}
        for k in KS:
            out[f"AC@{k}"] = _rate(hit_at(r, k) for r in located)
        avg = [np.mean([hit_at(r, k) for k in range(1, 6)]) for r in located]
        out["Avg@5"] = round(float(np.mean(avg)), 4) if avg else None
        out["fault_accuracy"] = _rate(r.fault == r.truth.get("fault") for r in rs)
        out["playbook_accuracy"] = _rate(right_action(r) for r in rs)
        out["wrong_action_rate"] = _rate(wrong_action(r) for r in rs)
        out["errors"] = sum(bool(r.error) for r in rs)
        return out

    overall = block(results)
    seconds = [r.seconds for r in results]
    overall["latency_p50_s"] = round(float(np.percentile(seconds, 50)), 4) if seconds else None
    overall["latency_p95_s"] = round(float(np.percentile(seconds, 95)), 4) if seconds else None
    overall["latency_max_s"] = round(float(max(seconds)), 4) if seconds else None
    faults = sorted({r.truth.get("fault", "") for r in results})
    overall["per_fault"] = {f: block([r for r in results if r.truth.get("fault", "") == f]) for f in faults}
    return overall


def case_folders(root: str | Path) -> list[Path]:
    """Every folder under ``root`` (itself included) holding both ``metrics.json`` and ``truth.json``, sorted."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(str(root), "not a folder of case folders")
    return sorted(p.parent for p in root.rglob(METRICS) if (p.parent / TRUTH).is_file())


def build_diagnostician(settings: Settings, analyzers: Sequence[str] | None = None) -> OfflineDiagnostician:
    """What ``aiops diagnose`` builds, optionally with only the named analyzers (``InputError`` for unknown ones)."""
    knowledge = load_knowledge(settings)
    diagnoser = knowledge.diagnoser
    if analyzers:
        known = {a.name: a for a in diagnoser.analyzers}
        unknown = [a for a in analyzers if a not in known]
        if unknown:
            raise InputError("--analyzers", f"unknown {', '.join(unknown)}; choose from {', '.join(sorted(known))}")
        diagnoser = Diagnoser([known[a] for a in analyzers], min_confidence=diagnoser.min_confidence,
                              weights=diagnoser.weights)
    return OfflineDiagnostician(diagnoser, knowledge.playbooks, settings.loop.recent_seconds, knowledge.rule_engine)


def run_case(diagnostician: OfflineDiagnostician, folder: Path, step: float) -> CaseResult:
    """Diagnose one case folder (timing read + diagnose, as ``aiops diagnose --case`` does)."""
    started = time.perf_counter()
    case = read_case(folder, step)
    report = diagnostician.run(case.observations, case.alerts)
    seconds = time.perf_counter() - started
    chosen = report.diagnosis.chosen
    ranked = [chosen.target.name] + [w for w, _ in report.diagnosis.ranking if w != chosen.target.name]
    if chosen.fault.value == "unknown" and chosen.playbook == ESCALATE and report.diagnosis.ranking:
        ranked = [w for w, _ in report.diagnosis.ranking]  # escalating names no workload: the ranking stands
    return CaseResult(case=folder.name, truth=case.truth or {}, ranked=tuple(ranked), fault=chosen.fault.value,
                      playbook=chosen.playbook, target=chosen.target.name, seconds=seconds,
                      confidence=round(chosen.confidence, 4))


def run(cases: Path, analyzers: Sequence[str] | None = None, settings: Settings | None = None) -> tuple[dict, list]:
    """Diagnose every case under ``cases``; returns (metrics, per-case results)."""
    settings = settings or Settings()
    diagnostician = build_diagnostician(settings, analyzers)
    results = []
    for folder in case_folders(cases):
        try:
            results.append(run_case(diagnostician, folder, settings.loop.step_seconds))
        except InputError as exc:
            results.append(CaseResult(folder.name, {}, (), "", "", "", 0.0, error=str(exc)))
    return score(results), results


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.3f}" if isinstance(x, float) else str(x)


def render(metrics: dict) -> str:
    """A plain-text table: overall, then one row per true fault."""
    cols = ("cases", "AC@1", "AC@3", "AC@5", "Avg@5", "fault_accuracy", "playbook_accuracy", "wrong_action_rate")
    heads = ("n", "AC@1", "AC@3", "AC@5", "Avg@5", "fault", "playbook", "wrong")
    lines = [f"{'':<20}" + "".join(f"{h:>9}" for h in heads)]
    rows = [("ALL", metrics)] + sorted(metrics["per_fault"].items())
    for name, row in rows:
        lines.append(f"{name:<20}" + "".join(f"{_fmt(row.get(c)):>9}" for c in cols))
    lines.append(f"latency per case: p50 {_fmt(metrics['latency_p50_s'])}s, p95 {_fmt(metrics['latency_p95_s'])}s, "
                 f"max {_fmt(metrics['latency_max_s'])}s; errors {metrics['errors']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.rca", description=__doc__.splitlines()[0])
    parser.add_argument("--cases", required=True, type=Path)
    parser.add_argument("--analyzers", default="", help="comma-separated subset, e.g. stats or stats,rules")
    parser.add_argument("--out", type=Path, help="write metrics and per-case results as JSON here")
    parser.add_argument("--config", type=Path, help="aiops config file (rules/playbooks dirs, loop settings)")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config) if args.config else Settings()
        analyzers = [a.strip() for a in args.analyzers.split(",") if a.strip()] or None
        metrics, results = run(args.cases, analyzers, settings)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    metrics["analyzers"] = analyzers or "all"
    print(render(metrics))
    if args.out:
        write_json(args.out, {"metrics": metrics, "cases": [asdict(r) for r in results]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
