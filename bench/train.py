"""Model lifecycle numbers: training time and tuning gain on NAB, drift detection delay on shifted series.

    python -m bench.train --data ../shared/data/nab --out bench/out/train.json [--files N] [--trials N] [--seed S]

**Tuning on NAB.** Every file is one workload with one signal. Its rows are split in time: the first half trains,
the next quarter scores the tuning trials (``aiops.detect.tuning.tune``, the same search ``aiops train`` runs), the
last quarter is held back. On it, the tuned parameters and the defaults (both refitted on the first three
quarters) are scored with the same criterion: NAB's labelled windows when one falls in the held-back quarter
(event F1: a run of alarms starting inside a window catches it, any other run is a false alarm), stability with
injected shifts otherwise. Reported: mean held-back score of defaults and tuned, per criterion; files better /
worse / equal; tuning and fit seconds.

**Drift delay.** A series gets a level shift of ``k`` standard deviations at a known point; every ``every`` points
the drift monitor of a detector fitted on the start of the series scores the last ``window`` points (as the
agent's scheduled check does). Delay = points from the shift to the first check at or above 0.3; false alarms =
checks at or above 0.3 before the shift. Two sources: AR(1) noise (phi 0.5, stationary: a clean false-alarm rate)
and the NAB files' rows before their first labelled window (real, not stationary).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from aiops.detect.tuning import Criterion, DetectorParams, SearchSpace, tune
from aiops.domain.observations import Series
from bench import datasets
from bench.nab_scoring import corpus_data_dir, load_corpus, load_windows
from bench.report import write_json

NAMESPACE = "nab"
THRESHOLD = 0.3


def unix_seconds(stamps: pd.Series) -> np.ndarray:
    """Naive NAB timestamps as unix seconds (read as UTC, like ``pd.Timestamp.timestamp``), whatever the unit."""
    return ((stamps - pd.Timestamp("1970-01-01")) / pd.Timedelta(seconds=1)).to_numpy(dtype=float)


def as_series(relpath: str, frame: pd.DataFrame) -> tuple[Series, tuple[str, str]]:
    """One NAB file as a workload signal (timestamps in unix seconds)."""
    workload = re.sub(r"[^A-Za-z0-9_.-]", "_", relpath.removesuffix(".csv"))
    ts = unix_seconds(frame["timestamp"])
    return Series("value", {"namespace": NAMESPACE, "workload": workload}, ts,
                  frame["value"].to_numpy(dtype=float)), (NAMESPACE, workload)


def tune_file(relpath: str, frame: pd.DataFrame, windows: list, space: SearchSpace) -> dict:
    """Tune on one file and compare tuned with defaults on its held-back last quarter."""
    series, key = as_series(relpath, frame)
    ts = series.timestamps
    n = len(ts)
    train_end, val_end = ts[n // 2], ts[(3 * n) // 4]
    labels = {key: [(w[0].timestamp(), w[1].timestamp()) for w in windows]}
    criterion = Criterion()
    started = time.perf_counter()
    result = tune([series], (ts[0], train_end), (train_end, val_end), labels, space, DetectorParams(), criterion)
    tune_seconds = time.perf_counter() - started
    out = {"file": relpath, "rows": n, "trials": len(result.trials), "stopped_early": result.stopped_early,
           "tune_seconds": round(tune_seconds, 3), "params": result.best.params.as_dict(),
           "validation": {"tuned": result.best.evaluation.score, "default": result.default.evaluation.score}}
    scores = {}
    for name, params in (("tuned", result.best.params), ("default", DetectorParams())):
        started = time.perf_counter()
        model = params.build().fit([series], ts[0], val_end)
        fit_seconds = time.perf_counter() - started
        evaluation = criterion.evaluate(model, [series], val_end, ts[-1], labels)
        scores[name] = evaluation.as_dict()
        out[f"{name}_fit_seconds"] = round(fit_seconds, 3)
    out["test"] = scores
    out["criterion"] = scores["tuned"]["criterion"]
    return out


def drift_delays(values: np.ndarray, shift_at: int, size: float, window: int, every: int, fit_rows: int) -> dict:
    """Delay (points) and false alarms of the scheduled drift check for one shifted series."""
    x = values.astype(float).copy()
    sd = float(np.std(x[:fit_rows])) or 1.0
    x[shift_at:] += size * sd
    ts = np.arange(len(x)) * 60.0
    series = [Series("value", {"namespace": NAMESPACE, "workload": "w"}, ts, x)]
    model = DetectorParams().build().fit(series, ts[0], ts[fit_rows - 1])
    false, delay = 0, None
    for end in range(fit_rows + window, len(x), every):
        report = model.drift(series, ts[end - window], ts[end]).get((NAMESPACE, "w"))
        if report is None:
            continue
        if end < shift_at:
            false += report.score >= THRESHOLD
        elif report.score >= THRESHOLD:
            delay = end - shift_at
            break
    checks_before = max(0, (shift_at - fit_rows - window) // every)
    return {"delay": delay, "false_alarms": int(false), "checks_before": checks_before}


def summarize_drift(rows: list[dict]) -> dict:
    delays = [r["delay"] for r in rows if r["delay"] is not None]
    checks = sum(r["checks_before"] for r in rows)
    return {"series": len(rows), "detected": len(delays), "median_delay": float(np.median(delays)) if delays else None,
            "p90_delay": float(np.percentile(delays, 90)) if delays else None,
            "false_alarm_rate": round(sum(r["false_alarms"] for r in rows) / checks, 4) if checks else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=datasets.path("nab"),
                        help="NAB root (data/ and labels/); default: see bench.datasets")
    parser.add_argument("--out", type=Path, default=Path("bench/out/train.json"))
    parser.add_argument("--files", type=int, default=0, help="only the first N files (0: all)")
    parser.add_argument("--trials", type=int, default=27)
    parser.add_argument("--patience", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0, help="order of the search after the defaults")
    parser.add_argument("--drift-window", type=int, default=120)
    parser.add_argument("--drift-every", type=int, default=10)
    args = parser.parse_args(argv)

    corpus = load_corpus(args.data)
    windows = load_windows(Path(args.data) / "labels" / "combined_windows.json")
    files = sorted(corpus)[:args.files] if args.files else sorted(corpus)
    space = SearchSpace(window=(2, 4, 8), n_neighbors=(10, 20, 40), contamination=(0.005, 0.01, 0.05),
                        max_trials=args.trials, patience=args.patience, seed=args.seed)
    per_file = []
    started = time.perf_counter()
    for relpath in files:
        row = tune_file(relpath, corpus[relpath], windows.get(relpath, []), space)
        per_file.append(row)
        print(f"{relpath:<60} {row['criterion']:<9} default {row['test']['default']['score']:.3f} "
              f"tuned {row['test']['tuned']['score']:.3f}  {row['trials']} trials {row['tune_seconds']:.1f}s",
              flush=True)
    tuning_total = time.perf_counter() - started
    summary = {}
    for criterion in ("labels", "stability"):
        rows = [r for r in per_file if r["criterion"] == criterion]
        if not rows:
            continue
        tuned = np.array([r["test"]["tuned"]["score"] for r in rows])
        default = np.array([r["test"]["default"]["score"] for r in rows])
        summary[criterion] = {"files": len(rows), "default_mean": round(float(default.mean()), 4),
                              "tuned_mean": round(float(tuned.mean()), 4),
                              "gain": round(float((tuned - default).mean()), 4),
                              "better": int((tuned > default + 1e-9).sum()), "worse": int((tuned < default - 1e-9).sum()),
                              "equal": int((np.abs(tuned - default) <= 1e-9).sum())}
    timing = {"files": len(per_file), "rows": int(sum(r["rows"] for r in per_file)),
              "tuning_seconds_total": round(tuning_total, 1),
              "tuning_seconds_median_file": round(float(np.median([r["tune_seconds"] for r in per_file])), 3),
              "trials_mean": round(float(np.mean([r["trials"] for r in per_file])), 1),
              "fit_seconds_median_file": round(float(np.median([r["tuned_fit_seconds"] for r in per_file])), 3),
              "fit_seconds_max_file": round(float(max(r["tuned_fit_seconds"] for r in per_file)), 3)}

    drift: dict = {}
    rng = np.random.default_rng(0)
    for size in (1.0, 2.0, 3.0):
        synthetic = []
        for _ in range(20):
            noise = rng.normal(size=1200)
            ar = np.empty_like(noise)
            ar[0] = noise[0]
            for i in range(1, len(noise)):
                ar[i] = 0.5 * ar[i - 1] + noise[i]
            synthetic.append(drift_delays(ar, 800, size, args.drift_window, args.drift_every, 400))
        real = []
        for relpath in files:
            frame = corpus[relpath]
            first = windows.get(relpath)
            limit = int((frame["timestamp"] < first[0][0]).sum()) if first else len(frame)
            if limit < 900:
                continue
            values = frame["value"].to_numpy(dtype=float)[:limit]
            real.append(drift_delays(values, int(limit * 0.7), size, args.drift_window, args.drift_every,
                                     int(limit * 0.35)))
        drift[f"{size:g}sd"] = {"ar1": summarize_drift(synthetic), "nab_prefix": summarize_drift(real)}
    report = {"tuning": summary, "timing": timing, "drift": drift,
              "drift_settings": {"window": args.drift_window, "every": args.drift_every, "threshold": THRESHOLD},
              "space": {"window": space.window, "n_neighbors": space.n_neighbors,
                        "contamination": space.contamination, "max_trials": space.max_trials,
                        "patience": space.patience, "seed": space.seed},
              "data": str(corpus_data_dir(args.data)), "per_file": per_file}
    print(json.dumps({k: report[k] for k in ("tuning", "timing", "drift")}, indent=2))
    write_json(args.out, report)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
