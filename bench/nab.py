"""Run a streaming detector over the NAB corpus, score it with NAB's rules, and compare with published detectors.

    python -m bench.nab --data DIR --out OUT [--detector NAME]

Writes ``OUT/<category>/<detector>_<file>.csv`` (``timestamp,value,anomaly_score``, NAB's results layout),
``OUT/scores.json`` (everything printed, plus per-file raw scores), and prints the detector's normalised NAB scores
(optimal global threshold per profile) beside the published detectors' scores on the same files.

A detector is any object with ``score_series(timestamps, values) -> np.ndarray`` of scores in [0, 1], where each
score uses only the past. One detector instance is created per file (each file is an independent stream), always
with the same configuration.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import pandas as pd
from scipy.special import erfc  # scipy is installed with pyod

from aiops.domain.errors import InputError
from bench import datasets
from bench.nab_scoring import (
    PROFILE_NAMES, ScoreReport, load_corpus, load_profiles, load_windows, published_detectors, published_scores,
    score_results,
)
from bench.report import write_json


class SeriesDetector(Protocol):
    """What the runner needs from a detector: online scores in [0, 1] for a whole series."""

    def score_series(self, timestamps: np.ndarray, values: np.ndarray) -> np.ndarray:
        """One score per point; each uses only the points before it (and itself)."""


class WindowedGaussianDetector:
    """NAB's ``windowedGaussian`` baseline: how far a value sits in the tail of the recent values' Gaussian.

    The score of point i is ``1 - Q(|x_i - mean| / std)`` (Q = the normal tail probability) with mean and std of
    the window as it stood before point i. The window grows to ``window_size`` points, then slides forward by
    ``step_size`` points at a time, exactly as NAB's detector does (6400 and 100 there). Vectorised but causal.
    """

    def __init__(self, window_size: int = 6400, step_size: int = 100) -> None:
        self.window_size = window_size
        self.step_size = step_size

    def score_series(self, timestamps: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Scores in [0, 1]; the first point scores 0 (no history yet)."""
        x = np.asarray(values, dtype=float)
        n = len(x)
        scores = np.zeros(n)
        if n < 2:
            return scores
        big_w, step = self.window_size, self.step_size
        i = np.arange(1, n)
        # After i points the window is x[lo:hi]: all of them while filling, then the last full window that a
        # complete step produced.
        hi = np.where(i <= big_w, i, big_w + step * ((i - big_w) // step))
        series = pd.Series(x)
        growing_mean = series.expanding().mean().to_numpy()
        growing_std = series.expanding().std(ddof=0).to_numpy()
        full_mean = series.rolling(big_w).mean().to_numpy()
        full_std = series.rolling(big_w).std(ddof=0).to_numpy()
        last = hi - 1
        mean = np.where(hi < big_w, growing_mean[last], full_mean[last])
        std = np.where(hi < big_w, growing_std[last], full_std[last])
        std = np.where(std <= 1e-12 * np.maximum(1.0, np.abs(mean)), 1e-6, std)  # NAB: std 0 -> 1e-6
        z = np.abs(x[1:] - mean) / std
        scores[1:] = 1.0 - 0.5 * erfc(z / np.sqrt(2.0))
        return np.clip(scores, 0.0, 1.0)


def _aiops_detector() -> SeriesDetector:
    from aiops.detect.streaming import StreamingDetector  # lazy: the runner works before that module exists

    return StreamingDetector()


def aiops_available() -> bool:
    """True when the project's streaming detector (``aiops.detect.streaming``) can be imported."""
    try:
        return importlib.util.find_spec("aiops.detect.streaming") is not None
    except ModuleNotFoundError:
        return False


DETECTORS: dict[str, Callable[[], SeriesDetector]] = {
    "aiops": _aiops_detector,
    "windowed_gaussian": WindowedGaussianDetector,
}


def default_detector() -> str:
    """``aiops`` when its module exists, else the windowed-Gaussian baseline."""
    return "aiops" if aiops_available() else "windowed_gaussian"


def _score_file(name: str, timestamps: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, float]:
    """Score one series with a fresh detector; module-level so worker processes can run it."""
    detector = DETECTORS[name]()
    started = time.perf_counter()
    scores = np.asarray(detector.score_series(timestamps, values), dtype=float)
    return scores, time.perf_counter() - started


def run_detector(name: str, corpus: dict[str, pd.DataFrame], out_dir: Path,
                 workers: int = 1) -> tuple[dict, dict[str, float]]:
    """Score every file with a fresh detector, write NAB-layout result CSVs, return (results, seconds per file).

    ``workers`` > 1 scores files in parallel processes; the seconds are each file's own scoring time either way.
    """
    relpaths = list(corpus)
    series = [(corpus[r]["timestamp"].to_numpy(), corpus[r]["value"].to_numpy(dtype=float)) for r in relpaths]
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            outputs = list(pool.map(_score_file, [name] * len(series), *zip(*series)))
    else:
        outputs = [_score_file(name, timestamps, values) for timestamps, values in series]
    results: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    seconds: dict[str, float] = {}
    for relpath, (timestamps, values), (scores, spent) in zip(relpaths, series, outputs):
        if scores.shape != values.shape or not np.all(np.isfinite(scores)) \
                or (len(scores) and (scores.min() < 0.0 or scores.max() > 1.0)):
            raise InputError(f"detector {name} on {relpath}", "must return one finite score in [0, 1] per point")
        frame = corpus[relpath]
        category, filename = relpath.split("/", 1)
        target = out_dir / category / f"{name}_{filename}"
        target.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({
            "timestamp": frame["timestamp"].dt.strftime("%Y-%m-%d %H:%M:%S"),
            "value": frame["value"], "anomaly_score": scores,
        }).to_csv(target, index=False)
        results[relpath] = (timestamps, scores)
        seconds[relpath] = spent
    return results, seconds


def format_table(name: str, report: ScoreReport, published: dict[str, dict]) -> str:
    """The comparison table, best standard score first."""
    rows = [(name + " (this run)", report.normalized(), "")]
    for det, body in published.items():
        note = f"covers {body['files_found']}/{report.n_files} files" if body["files_missing"] else ""
        rows.append((det, body["normalized"], note))
    rows.sort(key=lambda r: -r[1]["standard"])
    lines = [f"NAB scores on these {report.n_files} files ({report.n_windows} windows). This run: one threshold per "
             "profile optimised on these files; published: their thresholds from the full corpus.",
             f"{'detector':28s} {'standard':>9s} {'low_FP':>9s} {'low_FN':>9s}  note"]
    for det, scores, note in rows:
        lines.append(f"{det:28s} {scores['standard']:9.2f} {scores['reward_low_FP_rate']:9.2f} "
                     f"{scores['reward_low_FN_rate']:9.2f}  {note}".rstrip())
    return "\n".join(lines)


def run(data: Path, out: Path, detector: str, workers: int = 1) -> dict:
    """Run, score, compare; writes the CSVs and ``scores.json`` under ``out`` and returns the JSON body."""
    if detector not in DETECTORS:
        raise InputError("--detector", f"unknown detector {detector!r}; known: {', '.join(sorted(DETECTORS))}")
    if detector == "aiops" and not aiops_available():
        raise InputError("--detector", "aiops.detect.streaming is not importable yet; try windowed_gaussian")
    windows = load_windows(data / "labels" / "combined_windows.json")
    profiles = load_profiles(data / "config" / "profiles.json")
    corpus = load_corpus(data)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    results, seconds = run_detector(detector, corpus, out, workers)
    wall = time.perf_counter() - started
    report = score_results(results, windows, profiles)
    n_points = sum(len(frame) for frame in corpus.values())
    files = list(corpus)
    published: dict[str, dict] = {}
    results_dir = data / "results"
    if results_dir.is_dir():
        for det in published_detectors(results_dir):
            published[det] = published_scores(results_dir, det, files, windows, profiles)
    table = format_table(detector, report, published)
    body = {
        "detector": detector,
        "data": str(data),
        "n_files": report.n_files,
        "n_points": n_points,
        "n_windows": report.n_windows,
        "workers": workers,
        "wall_seconds": wall,
        "detector_seconds": sum(seconds.values()),
        "ms_per_1000_points": 1000.0 * 1000.0 * sum(seconds.values()) / max(n_points, 1),
        "scores": report.as_dict(),
        "published_on_same_files": published,
        "file_seconds": seconds,
        "table": table,
    }
    write_json(out / "scores.json", body)
    return body


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="python -m bench.nab", description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=datasets.path("nab"),
                        help="NAB root (data/, labels/, config/, results/); default: see bench.datasets")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--detector", default=None, help=f"one of {', '.join(sorted(DETECTORS))} "
                                                         f"(default: aiops when importable)")
    parser.add_argument("--workers", type=int, default=1, help="score files in this many processes (default 1)")
    args = parser.parse_args(argv)
    try:
        body = run(args.data, args.out, args.detector or default_detector(), max(1, args.workers))
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"NAB: {body['n_files']} files, {body['n_points']} points, {body['n_windows']} windows; "
          f"detector {body['detector']}: {body['ms_per_1000_points']:.1f} ms per 1,000 points "
          f"({body['detector_seconds']:.1f} s scoring, {body['wall_seconds']:.1f} s wall with {body['workers']} workers)")
    for profile in PROFILE_NAMES:
        scored = body["scores"]["profiles"].get(profile)
        if scored:
            print(f"  {profile:20s} threshold {scored['threshold']:.15g}  raw {scored['raw']:9.4f}  "
                  f"NAB {scored['normalized']:6.2f}")
    print(body["table"])
    print(f"wrote {args.out / 'scores.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
