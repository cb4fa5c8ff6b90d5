"""How far a workload signal moved: robust z-scores of the recent window against the baseline part of the window.

Both the statistical ranker and the rule engine read these numbers, so a rule saying ``above_baseline_z: 3`` and
the ranking talk about the same z. Baseline = samples before the split, centred on the median and scaled by the
MAD (1.4826 * MAD estimates a standard deviation for normal noise). A flat synthetic or idle baseline has MAD 0,
so the scale has a floor: a per-signal absolute noise level and a fraction of the baseline level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from aiops.domain import signals as sig
from aiops.domain.incident import Incident
from aiops.domain.observations import Observations, Series

# Changes smaller than these are noise for a workload signal, whatever the baseline MAD says.
ABSOLUTE_FLOOR: dict[str, float] = {
    sig.CPU: 0.02,                 # cores
    sig.MEMORY: 8 * 1024 * 1024,   # bytes
    sig.RESTARTS: 0.002,           # restarts/s (~one restart in 8 min)
    sig.AVAILABLE_RATIO: 0.02,
    sig.REQUEST_RATE: 0.5,         # req/s
    sig.ERROR_RATIO: 0.005,
    sig.LATENCY_P99: 0.005,        # seconds
}
RELATIVE_FLOOR = 0.05  # 5 % of the baseline level
END_POINTS = 12  # three minutes on a 15 s grid: longer than a crash loop's back-off, shorter than an incident
DEFAULT_RECENT_FRACTION = 1 / 3
MIN_BASELINE_POINTS = 4


@dataclass(frozen=True, slots=True)
class SignalShift:
    """One signal of one workload, recent window against baseline.

    ``peak_z``/``trough_z`` are the extremes of the 3-point rolling-median z in the recent window (a single
    spike does not count); ``onset`` is the first recent time from which |z| stayed above ``threshold`` for
    ``persist`` points (or to the end), ``None`` if it never did. ``rise_z`` is the least-squares rise in scale units (the
    trend) from the first onset to the end, or over the whole recent window when nothing crossed. Ratios compare smoothed recent extremes with the baseline median.
    """

    workload: str
    signal: str
    center: float
    scale: float
    peak_z: float
    trough_z: float
    onset_up: float | None
    onset_down: float | None
    rise_z: float
    peak_ratio: float
    trough_ratio: float
    last_value: float
    # Extremes of the z over the last ``END_POINTS`` points: whether the move is still on at the end of the window
    # (a cron job's CPU spike that ended minutes ago is not what is wrong now).
    end_peak_z: float = math.inf
    end_trough_z: float = -math.inf

    def still_on(self, direction: int, threshold: float) -> bool:
        """True when the signal is still ``threshold`` away from baseline in ``direction`` near the end."""
        return self.end_peak_z >= threshold if direction > 0 else self.end_trough_z <= -threshold

    def onset(self, direction: int) -> float | None:
        """Change point upward (``+1``) or downward (``-1``)."""
        return self.onset_up if direction > 0 else self.onset_down

    def as_dict(self) -> dict:
        def r(x: float | None) -> float | None:
            return None if x is None or not math.isfinite(x) else round(float(x), 4)
        return {"signal": self.signal, "baseline": r(self.center), "scale": r(self.scale), "peak_z": r(self.peak_z),
                "trough_z": r(self.trough_z), "rise_z": r(self.rise_z), "peak_ratio": r(self.peak_ratio),
                "trough_ratio": r(self.trough_ratio), "onset_up": self.onset_up, "onset_down": self.onset_down}


def split_time(incident: Incident | None, observations: Observations,
               recent_fraction: float = DEFAULT_RECENT_FRACTION) -> float:
    """Where the baseline ends: the earlier of the incident's first sign and the start of the recent fraction.

    The incident's first sign (earliest anomaly start or firing alert start) is used only inside the window, and
    never so early that the baseline would be shorter than half the window's recent fraction.
    """
    span = max(observations.end - observations.start, 0.0)
    split = observations.end - span * recent_fraction
    if incident is not None:
        marks = [a.start for a in incident.anomalies] + [a.starts_at for a in incident.alerts if a.firing]
        earliest = observations.start + span * recent_fraction / 2
        marks = [m for m in marks if earliest <= m < split]
        if marks:
            split = min(marks)
    return split


def _rolling_median3(values: np.ndarray) -> np.ndarray:
    if len(values) < 3:
        return values.copy()
    padded = np.concatenate([values[:1], values, values[-1:]])
    stacked = np.stack([padded[:-2], padded[1:-1], padded[2:]])
    return np.median(stacked, axis=0)


def _onset(ts: np.ndarray, above: np.ndarray, persist: int) -> float | None:
    """First time from which ``above`` holds for ``persist`` points in a row (or, with 2+ points, to the end)."""
    run = 0
    last = len(above) - 1
    for i, flag in enumerate(above):
        run = run + 1 if flag else 0
        if run >= persist or (run >= 2 and i == last):
            return float(ts[i - run + 1])
    return None


def measure(series: Series, split: float, threshold: float = 3.0, persist: int = 3) -> SignalShift | None:
    """The shift of one series at ``split``; ``None`` when there is too little baseline or recent data."""
    ts = np.asarray(series.timestamps, dtype=float)
    vals = np.asarray(series.values, dtype=float)
    ok = np.isfinite(vals)
    ts, vals = ts[ok], vals[ok]
    base = vals[ts < split]
    recent_mask = ts >= split
    if len(base) < MIN_BASELINE_POINTS or not recent_mask.any():
        return None
    center = float(np.median(base))
    mad = float(np.median(np.abs(base - center))) * 1.4826
    floor = max(ABSOLUTE_FLOOR.get(series.name, 1e-9), RELATIVE_FLOOR * abs(center))
    scale = max(mad, floor)
    smooth = _rolling_median3(vals)
    z = (smooth - center) / scale
    rz, rts, rvals = z[recent_mask], ts[recent_mask], smooth[recent_mask]
    onset_up, onset_down = _onset(rts, rz >= threshold, persist), _onset(rts, rz <= -threshold, persist)
    # The trend is fitted from the change point on when there is one: a short climb at the end of a long flat
    # recent window is still a climb, and fitting the whole window would dilute it.
    since = min((t for t in (onset_up, onset_down) if t is not None), default=rts[0] if len(rts) else 0.0)
    trend_ts, trend_vals = rts[rts >= since], vals[recent_mask][rts >= since]
    if len(trend_ts) < 3:
        trend_ts, trend_vals = rts, vals[recent_mask]
    rise = 0.0
    if len(trend_ts) >= 3 and trend_ts[-1] > trend_ts[0]:
        slope = float(np.polyfit(trend_ts - trend_ts[0], trend_vals, 1)[0])
        rise = slope * float(trend_ts[-1] - trend_ts[0]) / scale
    denom = center if abs(center) > 1e-12 else float("nan")
    return SignalShift(
        workload=series.workload, signal=series.name, center=center, scale=scale,
        peak_z=float(rz.max()), trough_z=float(rz.min()),
        onset_up=onset_up, onset_down=onset_down,
        rise_z=rise, peak_ratio=float(rvals.max()) / denom, trough_ratio=float(rvals.min()) / denom,
        last_value=float(vals[-1]), end_peak_z=float(rz[-END_POINTS:].max()),
        end_trough_z=float(rz[-END_POINTS:].min()))


def signal_index(observations: Observations) -> dict[tuple[str, str], Series]:
    """The derived workload signals by (workload, signal name); the first series wins if one repeats."""
    index: dict[tuple[str, str], Series] = {}
    for s in observations.signals:
        if s.workload and s.name in sig.ALL_SIGNALS:
            index.setdefault((s.workload, s.name), s)
    return index


def measure_all(observations: Observations, split: float, threshold: float = 3.0,
                persist: int = 3) -> dict[tuple[str, str], SignalShift]:
    """``measure`` for every workload signal in the observations."""
    out: dict[tuple[str, str], SignalShift] = {}
    for key, series in signal_index(observations).items():
        shift = measure(series, split, threshold, persist)
        if shift is not None:
            out[key] = shift
    return out
