"""A faithful, vectorised re-implementation of the Numenta Anomaly Benchmark (NAB v1.1) scorer.

It follows ``nab/sweeper.py`` (per-row sweep scores, probation, the scaled sigmoid, scoring at a threshold),
``nab/optimizer.py`` (one global threshold per profile over the pooled rows of every file) and
``nab/runner.py`` (normalisation by the null and the perfect detector). The rules and constants are written out in
``shared/data/BENCHMARKS.md`` section 1.4. Differences from NAB are deliberate and only in edge cases NAB crashes on
(a threshold below every score: we use the last row; a width-1 window followed by a FP: NAB divides by zero, we score
that FP as far away, -1).

The threshold search is exact: it evaluates the score at every distinct anomaly score, exactly like NAB's
``calcScoreByThreshold``, but with sorting and cumulative sums instead of a Python loop.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from aiops.domain.errors import InputError

PROBATION_PERCENT = 0.15
PROBATION_MAX_ROWS = 0.15 * 5000  # NAB caps probation at 750 rows (a float, compared with row indices)
SIGMOID_SLOPE = 5.0
START_THRESHOLD = 1.1  # NAB's sweep starts above every legal score: nothing detected
PROFILE_NAMES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")
TIE_DECIMALS = 9  # scores equal to 1e-9 count as tied, so summation order cannot change which threshold wins


@dataclass(frozen=True)
class Profile:
    """One NAB cost matrix (``config/profiles.json``); ``tnWeight`` is unused by NAB and so omitted."""

    name: str
    tp_weight: float
    fp_weight: float
    fn_weight: float


@dataclass(frozen=True)
class ProfileScore:
    """The corpus score of one detector under one profile at one threshold.

    ``tp``/``fp``/``fn``/``tn`` count non-probationary *rows*, as NAB's score files do.
    """

    profile: str
    threshold: float
    raw: float
    normalized: float
    null_raw: float
    perfect_raw: float
    tp: int
    fp: int
    fn: int
    tn: int
    file_raw: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        """A JSON-ready dict (per-file scores included)."""
        return {
            "threshold": self.threshold, "raw": self.raw, "normalized": self.normalized,
            "null_raw": self.null_raw, "perfect_raw": self.perfect_raw,
            "tp": self.tp, "fp": self.fp, "fn": self.fn, "tn": self.tn, "file_raw": dict(self.file_raw),
        }


@dataclass(frozen=True)
class ScoreReport:
    """NAB scores of one detector's results, one :class:`ProfileScore` per profile."""

    profiles: dict[str, ProfileScore]
    n_files: int
    n_rows: int
    n_windows: int

    def normalized(self) -> dict[str, float]:
        """``{profile: normalised NAB score}``."""
        return {name: p.normalized for name, p in self.profiles.items()}

    def as_dict(self) -> dict:
        """A JSON-ready dict."""
        return {
            "n_files": self.n_files, "n_rows": self.n_rows, "n_windows": self.n_windows,
            "profiles": {name: p.as_dict() for name, p in self.profiles.items()},
        }


# ----------------------------------------------------------------------------------------------------------- loading
def corpus_data_dir(data_dir: Path | str) -> Path:
    """The folder holding ``<category>/<name>.csv``: ``data_dir/data`` for a NAB root, else ``data_dir`` itself."""
    root = Path(data_dir)
    return root / "data" if (root / "data").is_dir() else root


def load_corpus(data_dir: Path | str) -> dict[str, pd.DataFrame]:
    """Read every ``<category>/<name>.csv`` of a NAB corpus (``data_dir`` = NAB root or its ``data/`` folder).

    Returns ``{relpath: DataFrame(timestamp: datetime64, value: float)}`` with relpaths like
    ``realKnownCause/nyc_taxi.csv``, sorted by relpath.
    """
    folder = corpus_data_dir(data_dir)
    if not folder.is_dir():
        raise InputError(str(folder), "NAB data folder not found")
    corpus: dict[str, pd.DataFrame] = {}
    for path in sorted(folder.glob("*/*.csv")):
        frame = pd.read_csv(path)
        if list(frame.columns[:2]) != ["timestamp", "value"]:
            raise InputError(str(path), f"expected header 'timestamp,value', got {list(frame.columns)}")
        frame = frame[["timestamp", "value"]].copy()
        frame["timestamp"] = pd.to_datetime(frame["timestamp"])
        frame["value"] = frame["value"].astype(float)
        corpus[path.relative_to(folder).as_posix()] = frame
    if not corpus:
        raise InputError(str(folder), "no <category>/<name>.csv files")
    return corpus


def load_windows(path: Path | str) -> dict[str, list[tuple[pd.Timestamp, pd.Timestamp]]]:
    """Read ``labels/combined_windows.json``: ``{relpath: [(start, end), ...]}`` with both ends inclusive."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(str(path), f"cannot read windows: {exc}") from exc
    windows: dict[str, list[tuple[pd.Timestamp, pd.Timestamp]]] = {}
    for relpath, limits in raw.items():
        try:
            windows[relpath] = [(pd.Timestamp(start), pd.Timestamp(end)) for start, end in limits]
        except (TypeError, ValueError) as exc:
            raise InputError(f"{path}: {relpath}", f"bad window limits: {exc}") from exc
    return windows


def load_profiles(path: Path | str) -> dict[str, Profile]:
    """Read ``config/profiles.json`` into ``{name: Profile}``."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
        return {
            name: Profile(name, float(body["CostMatrix"]["tpWeight"]), float(body["CostMatrix"]["fpWeight"]),
                          float(body["CostMatrix"]["fnWeight"]))
            for name, body in raw.items()
        }
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(str(path), f"cannot read profiles: {exc}") from exc


def load_thresholds(path: Path | str, detector: str) -> dict[str, float]:
    """The published thresholds of one detector from ``config/thresholds.json``: ``{profile: threshold}``."""
    path = Path(path)
    raw = json.loads(path.read_text())
    if detector not in raw:
        raise InputError(str(path), f"no thresholds for detector {detector!r}")
    return {profile: float(body["threshold"]) for profile, body in raw[detector].items()}


# ---------------------------------------------------------------------------------------------------- row sweep scores
def scaled_sigmoid(position: np.ndarray) -> np.ndarray:
    """NAB's ``scaledSigmoid``: ``2*sigmoid(-5p) - 1``, and -1 beyond 3 window widths past a window."""
    position = np.asarray(position, dtype=float)
    with np.errstate(over="ignore"):
        value = 2.0 / (1.0 + np.exp(SIGMOID_SLOPE * position)) - 1.0
    return np.where(position > 3.0, -1.0, value)


MAX_TP = float(scaled_sigmoid(np.array(-1.0)))


def probation_length(n_rows: int) -> float:
    """NAB's probationary length: 15% of the file, at most 750 rows; rows with index below it are not scored."""
    return min(math.floor(PROBATION_PERCENT * n_rows), PROBATION_MAX_ROWS)


def _time_keys(values) -> np.ndarray:
    """Timestamps as comparable int64 keys: integers stay as they are, anything else goes through pandas."""
    array = np.asarray(values)
    if array.dtype.kind in "iu":
        return array.astype(np.int64)
    return pd.to_datetime(array).values.astype("datetime64[ns]").view(np.int64)


@dataclass(frozen=True)
class _FileRows:
    """One file's profile-independent sweep inputs, for its non-probationary rows only."""

    scores: np.ndarray       # anomaly score per scored row
    unweighted: np.ndarray   # scaledSigmoid(position) per scored row
    window: np.ndarray       # index of the file's window the row is in, -1 outside every window
    n_windows: int           # windows in the labels for this file
    n_scored_windows: int    # windows that own at least one scored row (only these can be missed)


def _file_rows(relpath: str, timestamps, scores, limits: Sequence[tuple]) -> _FileRows:
    """Position of every row relative to the windows, as ``Sweeper.calcSweepScore`` computes it."""
    keys = _time_keys(timestamps)
    scores = np.asarray(scores, dtype=float)
    n = len(keys)
    if len(scores) != n:
        raise InputError(relpath, f"{n} timestamps but {len(scores)} anomaly scores")
    if n and (not np.all(np.isfinite(scores)) or scores.min() < 0.0 or scores.max() > 1.0):
        raise InputError(relpath, "anomaly scores must be finite and in [0, 1]")
    window = np.full(n, -1, dtype=np.int64)
    rights: list[int] = []
    widths: list[float] = []
    previous_right = -1
    for k, (start, end) in enumerate(limits):
        start_key, end_key = _time_keys([start])[0], _time_keys([end])[0]
        # NAB locates a window by exact timestamp equality (timestamps.index), first occurrence.
        left_hits, right_hits = np.flatnonzero(keys == start_key), np.flatnonzero(keys == end_key)
        if not len(left_hits) or not len(right_hits):
            raise InputError(relpath, f"window {k} [{start}, {end}] does not start and end on a row's timestamp")
        left, right = int(left_hits[0]), int(right_hits[0])
        if left <= previous_right or right < left:
            raise InputError(relpath, f"window {k} [{start}, {end}] overlaps the previous one or is reversed")
        window[left:right + 1] = k
        rights.append(right)
        widths.append(float(right - left + 1))
        previous_right = right
    index = np.arange(n)
    unweighted = np.empty(n, dtype=float)
    inside = window >= 0
    if inside.any():
        right_of = np.asarray(rights)[window[inside]]
        width_of = np.asarray(widths)[window[inside]]
        unweighted[inside] = scaled_sigmoid(-(right_of - index[inside] + 1) / width_of)
    outside = ~inside
    # The most recent window that ended before the row; none yet means "far from any window" (-1).
    prev = np.searchsorted(np.asarray(rights, dtype=np.int64), index[outside], side="left") - 1
    unweighted_out = np.full(prev.shape, -1.0)
    has_prev = prev >= 0
    if has_prev.any():
        prev_right = np.asarray(rights)[prev[has_prev]]
        prev_width = np.asarray(widths)[prev[has_prev]]
        with np.errstate(divide="ignore"):  # a width-1 window: NAB divides by zero; treat as far away
            position = np.abs(prev_right - index[outside][has_prev]) / (prev_width - 1.0)
        unweighted_out[has_prev] = scaled_sigmoid(np.where(np.isfinite(position), position, np.inf))
    unweighted[outside] = unweighted_out
    scored = index >= probation_length(n)
    scored_windows = np.unique(window[scored & inside])
    return _FileRows(scores[scored], unweighted[scored], window[scored], len(limits), len(scored_windows))


class Corpus:
    """The pooled, profile-independent sweep inputs of a detector's results over a set of files.

    Build it once per detector output; :meth:`score_at` and :meth:`optimize` are then cheap for every profile.
    """

    def __init__(self, results: Mapping[str, tuple], windows: Mapping[str, Sequence[tuple]]) -> None:
        self.files: list[str] = sorted(results)
        missing = [f for f in self.files if f not in windows]
        if missing:
            raise InputError(missing[0], "file has no entry in the windows file")
        rows = [_file_rows(f, *results[f], windows[f]) for f in self.files]
        self.scores = np.concatenate([r.scores for r in rows]) if rows else np.empty(0)
        self.unweighted = np.concatenate([r.unweighted for r in rows]) if rows else np.empty(0)
        self.file_index = np.concatenate([np.full(len(r.scores), i) for i, r in enumerate(rows)]).astype(np.int64) \
            if rows else np.empty(0, dtype=np.int64)
        # Global window ids: unique across files, so NAB's per-window "earliest detection" works on pooled rows.
        offsets = np.cumsum([0] + [r.n_windows for r in rows])
        self.window = np.concatenate(
            [np.where(r.window >= 0, r.window + offsets[i], -1) for i, r in enumerate(rows)]
        ).astype(np.int64) if rows else np.empty(0, dtype=np.int64)
        self.window_file = np.repeat(np.arange(len(rows)), [r.n_windows for r in rows]).astype(np.int64)
        self.n_windows = int(offsets[-1])
        self.n_scored_windows = int(sum(r.n_scored_windows for r in rows))
        self.scored_window_ids = np.unique(self.window[self.window >= 0])
        self.inside = self.window >= 0

    def sweep_values(self, profile: Profile) -> np.ndarray:
        """NAB's per-row weighted sweep score (the ``S(t)_<profile>`` column) of every scored row."""
        return np.where(self.inside, self.unweighted * profile.tp_weight / MAX_TP,
                        self.unweighted * profile.fp_weight)

    def null_raw(self, profile: Profile) -> float:
        """The raw score of a detector that never fires: every scored window is missed."""
        return -profile.fn_weight * self.n_scored_windows

    def perfect_raw(self, profile: Profile) -> float:
        """NAB's perfect score: ``A_TP`` for every window in the labels of these files."""
        return profile.tp_weight * self.n_windows

    def normalize(self, raw: float, profile: Profile) -> float:
        """``100 * (raw - null) / (perfect - null)``."""
        null, perfect = self.null_raw(profile), self.perfect_raw(profile)
        return 100.0 * (raw - null) / (perfect - null) if perfect != null else 0.0

    def score_at(self, profile: Profile, threshold: float) -> ProfileScore:
        """Score every file at one threshold (a row is a detection when ``score >= threshold``)."""
        values = self.sweep_values(profile)
        detected = self.scores >= threshold
        n_files = len(self.files)
        fp_rows = detected & ~self.inside
        file_raw = np.bincount(self.file_index[fp_rows], weights=values[fp_rows], minlength=n_files).astype(float)
        # Each scored window adds its best (earliest) detection, or -A_FN when nothing in it fired.
        best = np.full(self.n_windows, -np.inf)
        tp_rows = detected & self.inside
        np.maximum.at(best, self.window[tp_rows], values[tp_rows])
        ids = self.scored_window_ids
        window_score = np.maximum(-profile.fn_weight, best[ids])
        file_raw += np.bincount(self.window_file[ids], weights=window_score, minlength=n_files)
        raw = float(file_raw.sum())
        tp, fp = int(tp_rows.sum()), int(fp_rows.sum())
        fn = int(self.inside.sum()) - tp
        tn = len(self.scores) - tp - fp - fn
        return ProfileScore(profile.name, float(threshold), raw, self.normalize(raw, profile),
                            self.null_raw(profile), self.perfect_raw(profile), tp, fp, fn, tn,
                            {f: float(s) for f, s in zip(self.files, file_raw)})

    def sweep(self, profile: Profile) -> tuple[np.ndarray, np.ndarray]:
        """NAB's ``calcScoreByThreshold`` over the pooled rows: ``(thresholds, scores)``, thresholds descending.

        The first pair is ``(1.1, -A_FN * #scored windows)``; then one pair per distinct anomaly score, with every
        row whose score is at least that threshold detected.
        """
        values = self.sweep_values(profile)
        order = np.argsort(-self.scores, kind="stable")
        sorted_scores = self.scores[order]
        delta = np.where(self.inside, 0.0, values)[order]
        # A window's contribution is the running max of its detected rows' values, starting at -A_FN; each row
        # adds the amount by which it raises that max.
        in_window = np.flatnonzero(self.inside[order])
        if len(in_window):
            ids = self.window[order][in_window]
            frame = pd.DataFrame({"w": ids, "v": np.maximum(values[order][in_window], -profile.fn_weight)})
            running = frame.groupby("w", sort=False)["v"].cummax().to_numpy()
            before = frame.assign(r=running).groupby("w", sort=False)["r"].shift(1).fillna(-profile.fn_weight)
            delta[in_window] = running - before.to_numpy()
        base = self.null_raw(profile)
        totals = base + np.cumsum(delta)
        last_of_group = np.flatnonzero(np.r_[sorted_scores[1:] != sorted_scores[:-1], True]) \
            if len(sorted_scores) else np.empty(0, dtype=np.int64)
        thresholds = np.r_[START_THRESHOLD, sorted_scores[last_of_group]]
        scores = np.r_[base, totals[last_of_group]]
        return thresholds, scores

    def optimize(self, profile: Profile) -> float:
        """The threshold with the highest pooled score; on a tie the higher threshold wins, as in NAB."""
        thresholds, scores = self.sweep(profile)
        return float(thresholds[int(np.argmax(np.round(scores, TIE_DECIMALS)))])


def score_results(results: Mapping[str, tuple], windows: Mapping[str, Sequence[tuple]],
                  profiles: Mapping[str, Profile], thresholds: Mapping[str, float] | None = None) -> ScoreReport:
    """Score a detector's per-row outputs with NAB's rules.

    ``results``: ``{relpath: (timestamps, anomaly_scores)}``; ``windows``: from :func:`load_windows` (only the
    files in ``results`` are used, and the null/perfect normalisation counts only their windows); ``profiles``:
    from :func:`load_profiles`; ``thresholds``: ``{profile: threshold}`` to score at (e.g. the published ones), or
    None to find NAB's optimal global threshold per profile.
    """
    corpus = Corpus(results, windows)
    scored: dict[str, ProfileScore] = {}
    for name, profile in profiles.items():
        if thresholds is None:
            threshold = corpus.optimize(profile)
        elif name in thresholds:
            threshold = thresholds[name]
        else:
            raise InputError("thresholds", f"no threshold for profile {name!r}")
        scored[name] = corpus.score_at(profile, threshold)
    return ScoreReport(scored, len(corpus.files), len(corpus.scores), corpus.n_windows)


def published_scores(results_dir: Path | str, detector: str, files: Sequence[str],
                     windows: Mapping[str, Sequence[tuple]], profiles: Mapping[str, Profile]) -> dict:
    """A published detector's NAB scores on a subset of files, from its ``<det>_<profile>_scores.csv`` rows.

    Sums the per-file raw scores of ``files`` and normalises with those files' windows (null = -A_FN per window,
    perfect = A_TP per window). Returns ``{"normalized": {profile: score}, "raw": {...}, "files_found": n,
    "files_missing": [...]}``; a detector whose score files miss some of ``files`` is reported, not dropped.
    """
    n_windows = sum(len(windows.get(f, ())) for f in files)
    out: dict = {"normalized": {}, "raw": {}, "files_found": 0, "files_missing": []}
    for name, profile in profiles.items():
        path = Path(results_dir) / detector / f"{detector}_{name}_scores.csv"
        table = pd.read_csv(path)
        table = table[table["File"].isin(files)]
        raw = float(table["Score"].astype(float).sum())
        null, perfect = -profile.fn_weight * n_windows, profile.tp_weight * n_windows
        out["raw"][name] = raw
        out["normalized"][name] = 100.0 * (raw - null) / (perfect - null) if perfect != null else 0.0
        out["files_found"] = int(table["File"].nunique())
        out["files_missing"] = sorted(set(files) - set(table["File"]))
    return out


def published_detectors(results_dir: Path | str) -> list[str]:
    """Names of the detectors that have per-file score tables under ``results_dir``."""
    root = Path(results_dir)
    return sorted(p.name for p in root.iterdir()
                  if p.is_dir() and all((p / f"{p.name}_{name}_scores.csv").is_file() for name in PROFILE_NAMES))
