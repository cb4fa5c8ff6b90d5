"""The NAB scorer reproduces NAB's published numbers, NAB's own algorithm, and hand-computed cases; the runner works."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench import nab as nab_runner
from tests.support.benchdata import data_dir, require
from bench.nab_scoring import (
    Corpus, Profile, load_corpus, load_profiles, load_thresholds, load_windows, score_results,
)

NAB_DIR = data_dir("nab")
STANDARD = Profile("standard", 1.0, 0.11, 1.0)
LOW_FN = Profile("reward_low_FN_rate", 1.0, 0.11, 2.0)
PROFILES = {"standard": STANDARD, "reward_low_FP_rate": Profile("reward_low_FP_rate", 1.0, 0.22, 1.0),
            "reward_low_FN_rate": LOW_FN}


@pytest.fixture(scope="module")
def nab() -> dict:
    """The NAB copy (``tests.support.benchdata``): skipped in a clone without it, a failure under CI."""
    require("nab", "data")
    return {
        "windows": load_windows(NAB_DIR / "labels" / "combined_windows.json"),
        "profiles": load_profiles(NAB_DIR / "config" / "profiles.json"),
        "corpus": load_corpus(NAB_DIR),
    }


def _published_rows(detector: str, files) -> dict:
    results = {}
    for relpath in files:
        category, name = relpath.split("/")
        frame = pd.read_csv(NAB_DIR / "results" / detector / category / f"{detector}_{name}")
        results[relpath] = (frame["timestamp"].to_numpy(), frame["anomaly_score"].to_numpy())
    return results


def _expected_from_score_tables(detector: str, files, n_windows: int) -> tuple[dict, dict]:
    """Sum the published per-file raw scores of the files present; normalise with their window count."""
    normalized, per_file = {}, {}
    for profile, weights in PROFILES.items():
        table = pd.read_csv(NAB_DIR / "results" / detector / f"{detector}_{profile}_scores.csv")
        table = table[table["File"].isin(files)]
        assert len(table) == len(files)
        raw = table["Score"].astype(float).sum()
        null, perfect = -weights.fn_weight * n_windows, weights.tp_weight * n_windows
        normalized[profile] = 100 * (raw - null) / (perfect - null)
        per_file[profile] = dict(zip(table["File"], table["Score"].astype(float)))
    return normalized, per_file


@pytest.mark.parametrize("detector", ["numenta", "windowedGaussian"])
def test_reproduces_published_scores_at_published_thresholds(nab, detector):
    files = sorted(nab["corpus"])
    n_windows = sum(len(nab["windows"][f]) for f in files)
    assert n_windows == 69 and len(files) == 41
    expected, per_file = _expected_from_score_tables(detector, files, n_windows)
    thresholds = load_thresholds(NAB_DIR / "config" / "thresholds.json", detector)
    report = score_results(_published_rows(detector, files), nab["windows"], nab["profiles"], thresholds)
    assert report.n_windows == 69
    for profile in PROFILES:
        got = report.profiles[profile]
        assert got.normalized == pytest.approx(expected[profile], abs=0.01)
        assert got.null_raw == -PROFILES[profile].fn_weight * 69
        assert got.perfect_raw == 69.0
        for relpath in files:
            assert got.file_raw[relpath] == pytest.approx(per_file[profile][relpath], abs=1e-6), relpath


def test_optimiser_is_never_worse_than_published_threshold(nab):
    files = sorted(nab["corpus"])
    results = _published_rows("numenta", files)
    thresholds = load_thresholds(NAB_DIR / "config" / "thresholds.json", "numenta")
    optimised = score_results(results, nab["windows"], nab["profiles"])
    at_published = score_results(results, nab["windows"], nab["profiles"], thresholds)
    for profile in PROFILES:
        assert optimised.profiles[profile].raw >= at_published.profiles[profile].raw - 1e-9
    # The optimum NAB's numenta threshold region reaches on this subset (68.58 standard, as at its own threshold).
    assert optimised.profiles["standard"].normalized == pytest.approx(68.578, abs=0.01)


# ------------------------------------------------------------------------------------ NAB's own algorithm, ported
def _nab_sweep_reference(files: dict, profile: Profile) -> list[tuple[float, float]]:
    """A line-by-line port of NAB's Sweeper.calcSweepScore + calcScoreByThreshold (nab/sweeper.py), pooled."""
    def scaled(p):
        return -1.0 if p > 3.0 else 2 / (1 + math.exp(5 * p)) - 1.0
    max_tp = scaled(-1.0)
    rows = []
    for name, (timestamps, scores, limits) in files.items():
        timestamps, limits = list(timestamps), list(limits)
        probation = min(math.floor(0.15 * len(timestamps)), 0.15 * 5000)
        cur = cur_name = cur_width = cur_right = prev_width = prev_right = None
        for i, (t, s) in enumerate(zip(timestamps, scores)):
            if limits and t == limits[0][0]:
                cur = limits.pop(0)
                cur_name = f"{name}|{cur[0]}"
                cur_right = timestamps.index(cur[1])
                cur_width = float(cur_right - timestamps.index(cur[0]) + 1)
            if cur is not None:
                value = scaled(-(cur_right - i + 1) / cur_width) * profile.tp_weight / max_tp
            else:
                u = -1.0 if prev_right is None else scaled(abs(prev_right - i) / float(prev_width - 1))
                value = u * profile.fp_weight
            rows.append((s, value, cur_name if i >= probation else "probationary"))
            if cur is not None and t == cur[1]:
                prev_right, prev_width, cur, cur_name = i, cur_width, None, None
    scorable = sorted([r for r in rows if r[2] != "probationary"], key=lambda r: r[0], reverse=True)
    parts = {"fp": 0.0}
    for r in scorable:
        if r[2] is not None:
            parts[r[2]] = -profile.fn_weight
    out, threshold = [], 1.1
    for s, value, window in scorable:
        if s != threshold:
            out.append((threshold, sum(parts.values())))
            threshold = s
        if window is None:
            parts["fp"] += value
        else:
            parts[window] = max(parts[window], value)
    out.append((threshold, sum(parts.values())))
    return out


def _random_files(seed: int) -> dict:
    rng = random.Random(seed)
    files = {}
    for k in range(4):
        n = rng.randint(60, 300)
        scores = [round(rng.random() ** 3, 2) for _ in range(n)]  # coarse values: many ties
        limits, cursor = [], int(0.15 * n) + rng.randint(-8, 5)
        while cursor < n - 12 and len(limits) < 3:
            width = rng.randint(2, 12)  # NAB divides by zero after a width-1 window
            limits.append((cursor, cursor + width - 1))
            cursor += width + rng.randint(1, 40)
        files[f"cat/f{k}.csv"] = (list(range(n)), scores, limits)
    return files


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
@pytest.mark.parametrize("profile", [STANDARD, LOW_FN])
def test_sweep_and_optimum_match_a_port_of_nab(seed, profile):
    files = _random_files(seed)
    corpus = Corpus({n: (np.array(t), np.array(s)) for n, (t, s, _) in files.items()},
                    {n: w for n, (_, _, w) in files.items()})
    thresholds, scores = corpus.sweep(profile)
    reference = _nab_sweep_reference(files, profile)
    assert np.allclose(thresholds, [t for t, _ in reference])
    assert np.allclose(scores, [s for _, s in reference], atol=1e-9)
    # NAB's optimiser: stable sort by score, so the highest threshold wins a tie.
    best = sorted(reference, key=lambda r: round(r[1], 9), reverse=True)[0]
    assert corpus.optimize(profile) == pytest.approx(best[0])
    # Scoring at any emitted threshold gives the emitted pooled score.
    for threshold, score in reference[:: max(1, len(reference) // 7)]:
        assert corpus.score_at(profile, threshold).raw == pytest.approx(score, abs=1e-9)


# ---------------------------------------------------------------------------------------------- hand-computed cases
def _one_window_raw(detect_at: list[int], profile: Profile = STANDARD, threshold: float = 0.5):
    """100 integer-stamped rows (probation = 15 rows), one window [40, 49] (width 10)."""
    scores = np.zeros(100)
    scores[detect_at] = 1.0
    report = score_results({"c/f.csv": (np.arange(100), scores)}, {"c/f.csv": [(40, 49)]},
                           {profile.name: profile}, {profile.name: threshold})
    return report.profiles[profile.name]


def test_detection_at_left_edge_scores_a_tp():
    got = _one_window_raw([40])
    assert got.raw == pytest.approx(1.0, abs=1e-12)
    assert got.normalized == pytest.approx(100.0)
    assert (got.tp, got.fp, got.fn, got.tn) == (1, 0, 9, 75)


def test_only_the_earliest_detection_in_a_window_counts():
    assert _one_window_raw([40, 42, 47]).raw == pytest.approx(1.0, abs=1e-12)
    # Right edge: position -1/10 -> (2*sigmoid(0.5) - 1) / (2*sigmoid(5) - 1) = tanh(0.25) / tanh(2.5).
    assert _one_window_raw([49]).raw == pytest.approx(math.tanh(0.25) / math.tanh(2.5), abs=1e-12)
    assert _one_window_raw([45, 49]).raw == pytest.approx(math.tanh(1.25) / math.tanh(2.5), abs=1e-12)


def test_false_positives_after_a_window_are_scaled_by_distance():
    # 6 rows past the right edge of a width-10 window: position 6/9, u = 2*sigmoid(-10/3) - 1 = -tanh(5/3).
    assert _one_window_raw([55]).raw == pytest.approx(-1.0 - 0.11 * math.tanh(5 / 3), abs=1e-12)
    # Right after the window the penalty is small; more than 3 widths after it is the full -A_FP.
    assert _one_window_raw([50]).raw == pytest.approx(-1.0 - 0.11 * math.tanh(5 / 18), abs=1e-12)
    assert _one_window_raw([90]).raw == pytest.approx(-1.0 - 0.11, abs=1e-12)
    # Before any window: full -A_FP.
    assert _one_window_raw([20]).raw == pytest.approx(-1.0 - 0.11, abs=1e-12)


def test_probation_rows_are_ignored():
    assert _one_window_raw([0, 5, 14]).raw == pytest.approx(-1.0, abs=1e-12)
    assert _one_window_raw([15]).raw == pytest.approx(-1.11, abs=1e-12)
    got = _one_window_raw([])
    assert (got.tp, got.fp, got.fn, got.tn, got.normalized) == (0, 0, 10, 75, 0.0)


def test_low_fn_profile_doubles_the_miss_penalty():
    assert _one_window_raw([], LOW_FN).raw == pytest.approx(-2.0)
    assert _one_window_raw([], LOW_FN).normalized == pytest.approx(0.0)
    assert _one_window_raw([40], LOW_FN).normalized == pytest.approx(100.0)


def test_fp_after_a_one_row_window_is_far_not_a_crash():
    scores = np.zeros(100)
    scores[[40, 41]] = 1.0
    report = score_results({"c/f.csv": (np.arange(100), scores)}, {"c/f.csv": [(40, 40)]},
                           {"standard": STANDARD}, {"standard": 0.5})
    assert report.profiles["standard"].raw == pytest.approx(1.0 - 0.11)


def test_threshold_is_inclusive():
    scores = np.zeros(100)
    scores[40] = 0.7
    report = score_results({"c/f.csv": (np.arange(100), scores)}, {"c/f.csv": [(40, 49)]},
                           {"standard": STANDARD}, {"standard": 0.7})
    assert report.profiles["standard"].raw == pytest.approx(1.0)
    optimised = score_results({"c/f.csv": (np.arange(100), scores)}, {"c/f.csv": [(40, 49)]}, {"standard": STANDARD})
    assert optimised.profiles["standard"].threshold == 0.7


# ------------------------------------------------------------------------------------------ the detector and runner
def test_windowed_gaussian_reproduces_nab_outputs_and_is_causal(nab):
    frame = nab["corpus"]["realKnownCause/nyc_taxi.csv"]  # 10,320 rows: grows to 6,400, then slides by 100
    published = pd.read_csv(NAB_DIR / "results" / "windowedGaussian" / "realKnownCause"
                            / "windowedGaussian_nyc_taxi.csv")["anomaly_score"].to_numpy()
    values = frame["value"].to_numpy()
    scores = nab_runner.WindowedGaussianDetector().score_series(frame["timestamp"].to_numpy(), values)
    assert np.allclose(scores, published, atol=1e-6)
    changed = values.copy()
    changed[8000:] *= 3.0
    rescored = nab_runner.WindowedGaussianDetector().score_series(frame["timestamp"].to_numpy(), changed)
    assert np.array_equal(rescored[:8000], scores[:8000]) and not np.array_equal(rescored[8000:], scores[8000:])


def _write_tiny_nab(root: Path) -> None:
    stamps = pd.date_range("2020-01-01", periods=400, freq="5min")
    rng = np.random.default_rng(0)
    windows = {}
    for k in range(2):
        values = 10 + rng.normal(0, 1, 400)
        values[300] = 60.0  # an obvious spike inside the window
        folder = root / "data" / f"cat{k}"
        folder.mkdir(parents=True)
        pd.DataFrame({"timestamp": stamps.strftime("%Y-%m-%d %H:%M:%S"), "value": values}).to_csv(
            folder / "series.csv", index=False)
        windows[f"cat{k}/series.csv"] = [[f"{stamps[290]}.000000", f"{stamps[310]}.000000"]]
    (root / "labels").mkdir()
    (root / "labels" / "combined_windows.json").write_text(json.dumps(windows))
    (root / "config").mkdir()
    # NAB's own profiles file format, written here so the tiny corpus needs nothing beside the repository.
    (root / "config" / "profiles.json").write_text(json.dumps({
        p.name: {"CostMatrix": {"tpWeight": p.tp_weight, "fnWeight": p.fn_weight, "fpWeight": p.fp_weight,
                                "tnWeight": 1.0}} for p in PROFILES.values()}))
    published = root / "results" / "fakedet"
    published.mkdir(parents=True)
    for profile in PROFILES:  # a published detector that caught one of the two windows at its left edge
        pd.DataFrame({"Detector": "fakedet", "Profile": profile, "File": ["cat0/series.csv", "cat1/series.csv"],
                      "Threshold": 0.5, "Score": [1.0, -PROFILES[profile].fn_weight]}).to_csv(
            published / f"fakedet_{profile}_scores.csv", index=False)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_runner_writes_nab_layout_scores_and_comparison(tmp_path, capsys, workers):
    _write_tiny_nab(tmp_path / "nab")
    out = tmp_path / "out"
    assert nab_runner.main(["--data", str(tmp_path / "nab"), "--out", str(out), "--detector", "windowed_gaussian",
                            "--workers", workers]) == 0
    frame = pd.read_csv(out / "cat0" / "windowed_gaussian_series.csv")
    assert list(frame.columns) == ["timestamp", "value", "anomaly_score"] and len(frame) == 400
    assert frame["anomaly_score"].between(0, 1).all() and frame["anomaly_score"][300] == frame["anomaly_score"][60:].max()
    body = json.loads((out / "scores.json").read_text())
    assert body["n_files"] == 2 and body["n_windows"] == 2 and body["n_points"] == 800
    assert body["scores"]["profiles"]["standard"]["normalized"] > 50  # both spikes caught early in their windows
    assert body["published_on_same_files"]["fakedet"]["normalized"]["standard"] == pytest.approx(50.0)
    assert body["published_on_same_files"]["fakedet"]["normalized"]["reward_low_FN_rate"] == pytest.approx(50.0)
    assert body["ms_per_1000_points"] > 0
    printed = capsys.readouterr().out
    assert "fakedet" in printed and "windowed_gaussian (this run)" in printed and "per 1,000 points" in printed


def test_runner_rejects_unknown_detector(tmp_path, capsys):
    _write_tiny_nab(tmp_path / "nab")
    assert nab_runner.main(["--data", str(tmp_path / "nab"), "--out", str(tmp_path / "o"), "--detector", "nope"]) == 2
    assert "unknown detector" in capsys.readouterr().err
