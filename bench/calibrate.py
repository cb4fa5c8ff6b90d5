"""Fit the ensemble's confidence calibration on a tuning case set and check it on a held-out one.

    python -m bench.calibrate --tuning DIR --heldout DIR --out models/calibration.json [--config FILE]

1. Runs ``bench.rca`` on both sets WITHOUT a calibration and with ``min_confidence`` 0, so every case shows the
   choice the ensemble would make before refusing and its raw combined confidence. A pair (raw confidence, the
   chosen workload, fault and playbook are all right) is taken from every case where some hypothesis existed.
2. Fits ``Calibration`` (isotonic regression) on the tuning pairs; reports the expected calibration error
   (10 bins) and the Brier score before/after on the HELD-OUT pairs.
3. Runs the held-out set as ``aiops diagnose`` would, with the configured ``min_confidence``, once without and
   once with the calibration, and compares playbook accuracy and wrong-action rate. The calibration file is
   written only if wrong actions do not rise and accuracy does not drop; the report (JSON) is always written
   next to it as ``<out stem>.report.json``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Sequence

from aiops.diagnose.calibration import (CALIBRATION_FILE, Calibration, brier_score,
                                        expected_calibration_error)
from aiops.domain.errors import InputError
from aiops.settings import Settings, load_settings
from bench.rca import CaseResult, right_action, run
from bench.report import write_json

NO_CANDIDATE = ("unknown", "escalate")


def chosen_right(r: CaseResult) -> bool:
    """The chosen workload (when the truth names one), fault and playbook all match the truth."""
    workload = r.truth.get("workload")
    return right_action(r) and r.fault == r.truth.get("fault") and (not workload or r.target == workload)


def pairs(results: Sequence[CaseResult]) -> tuple[list[float], list[bool]]:
    """(raw confidence, chosen_right) for every case where the ensemble had a candidate to choose."""
    xs, ys = [], []
    for r in results:
        if r.error or (r.fault, r.playbook) == NO_CANDIDATE:
            continue  # nothing was proposed: there is no confidence to calibrate
        xs.append(r.confidence)
        ys.append(chosen_right(r))
    return xs, ys


def with_models(settings: Settings, models_dir: Path, min_confidence: float | None = None) -> Settings:
    """``settings`` reading the calibration from ``models_dir`` (and optionally another ``min_confidence``)."""
    update: dict = {"models_dir": models_dir}
    if min_confidence is not None:
        update["policy"] = settings.policy.model_copy(update={"min_confidence": min_confidence})
    return settings.model_copy(update=update)


def _run(cases: Path, settings: Settings) -> tuple[dict, list[CaseResult]]:
    return run(cases, None, settings)


def _both(jobs: list[tuple[Path, Settings]]) -> list[tuple[dict, list[CaseResult]]]:
    """Run the jobs in parallel processes (each is an independent ``bench.rca`` run)."""
    with ProcessPoolExecutor(max_workers=len(jobs)) as pool:
        return list(pool.map(_run, *zip(*jobs)))


def _quality(xs: Sequence[float], ys: Sequence[bool]) -> dict:
    return {"ECE": round(expected_calibration_error(xs, ys), 4), "Brier": round(brier_score(xs, ys), 4)}


def calibrate(tuning: Path, heldout: Path, out: Path, settings: Settings) -> dict:
    """Steps 1-3 of the module docstring; returns the report (and writes ``out`` when it is safe to)."""
    with tempfile.TemporaryDirectory() as empty, tempfile.TemporaryDirectory() as fitted:
        raw = with_models(settings, Path(empty), min_confidence=0.0)
        (_, tune_results), (_, held_results) = _both([(tuning, raw), (heldout, raw)])
        tx, ty = pairs(tune_results)
        hx, hy = pairs(held_results)
        if not tx:
            raise InputError(str(tuning), "no case produced a hypothesis: nothing to calibrate on")
        calibration = Calibration.fit(tx, ty, meta={"fitted_on": str(tuning), "positives": int(sum(ty))})
        before, after = _quality(hx, hy), _quality([calibration.apply(x) for x in hx], hy)
        calibration = Calibration(calibration.xs, calibration.ys, {
            **calibration.meta, "heldout": str(heldout), "heldout_n": len(hx),
            "ECE_before": before["ECE"], "ECE_after": after["ECE"],
            "Brier_before": before["Brier"], "Brier_after": after["Brier"]})
        calibration.save(Path(fitted) / CALIBRATION_FILE)
        (plain, _), (calibrated, _) = _both([(heldout, with_models(settings, Path(empty))),
                                             (heldout, with_models(settings, Path(fitted)))])
    actions = {name: {k: m[k] for k in ("playbook_accuracy", "wrong_action_rate", "AC@1", "fault_accuracy")}
               for name, m in (("uncalibrated", plain), ("calibrated", calibrated))}
    safe = (calibrated["wrong_action_rate"] <= plain["wrong_action_rate"]
            and calibrated["playbook_accuracy"] >= plain["playbook_accuracy"])
    if safe:
        calibration.save(out)
    else:
        out.unlink(missing_ok=True)  # a stale calibration must not outlive a check it failed
    return {"tuning": str(tuning), "heldout": str(heldout), "min_confidence": settings.policy.min_confidence,
            "tuning_pairs": len(tx), "heldout_pairs": len(hx), "points": calibration.to_json()["points"],
            "heldout_calibration": {"before": before, "after": after}, "heldout_actions": actions,
            "written": str(out) if safe else None}


def render(report: dict) -> str:
    """A plain-text table of the report."""
    cal, act = report["heldout_calibration"], report["heldout_actions"]
    lines = [f"fitted on {report['tuning_pairs']} tuning pairs; held-out pairs {report['heldout_pairs']}",
             f"{'held-out':<14}{'ECE(10)':>9}{'Brier':>9}{'playbook':>10}{'wrong':>8}{'AC@1':>8}{'fault':>8}"]
    for name, key in (("uncalibrated", "before"), ("calibrated", "after")):
        a = act[name]
        lines.append(f"{name:<14}{cal[key]['ECE']:>9.4f}{cal[key]['Brier']:>9.4f}{a['playbook_accuracy']:>10.3f}"
                     f"{a['wrong_action_rate']:>8.3f}{a['AC@1'] or 0:>8.3f}{a['fault_accuracy']:>8.3f}")
    lines.append("map (raw -> calibrated): " + ", ".join(f"{x:.3f}->{y:.3f}" for x, y in report["points"]))
    lines.append(f"written: {report['written']}" if report["written"] else
                 "NOT written: calibrating would lower playbook accuracy or raise wrong actions on held-out")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.calibrate", description=__doc__.splitlines()[0])
    parser.add_argument("--tuning", required=True, type=Path)
    parser.add_argument("--heldout", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path, help="where the calibration JSON goes")
    parser.add_argument("--config", type=Path, help="aiops config file (rules/playbooks dirs, min_confidence)")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config) if args.config else Settings()
        report = calibrate(args.tuning, args.heldout, args.out, settings)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(render(report))
    write_json(args.out.with_name(args.out.stem + ".report.json"), report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
