"""Throughput of the collect/detect path: derive, fit, score and drift for N workloads, and log lines parsed per second.

    python -m bench.throughput [--workloads 100,1000,10000] [--out FILE.json] [--pods 2] [--sample 10000]

For each N, a fresh child process (so peak RSS is that run's own) builds synthetic raw Prometheus series for N
workloads x 7 signals with the real exporters' metric names and labels (cAdvisor, kube-state-metrics, an HTTP
client library), scraped every 15 s over a rolling 1-hour window (plus the rate lookback), and times what one agent
cycle does with them: ``derive_signals`` (raw -> 7 signals on the 15 s grid), ``WorkloadDetector.fit`` on the first
50 minutes (LOF + drift reference per workload), ``detect`` and ``drift`` on the last 10 minutes, and the streaming
detectors of the watched signals (``loop.streaming``) fed the 4 samples a 60 s loop brings (the first cycle, which
feeds them the whole window, is reported apart). One workload in a
hundred leaks memory in the last 10 minutes, so detection has something to find (``found`` / ``planted``).

Above ``--sample`` workloads, derive runs on all N (it is one vectorised pass) but fit/detect/drift run on the first
``--sample`` workloads and are scaled linearly to N (they are per-workload loops); the JSON marks such numbers
``extrapolated``. Log parsing uses ``aiops.detect.logtemplates.LogTemplateMiner`` on synthetic service log lines.
Collect's HTTP time (Prometheus queries) is not included: it depends on the Prometheus server, not on aiops.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from aiops.collect.signals import derive_signals
from aiops.detect.streaming_bank import StreamingBank
from aiops.detect.workload import WorkloadDetector
from aiops.domain import signals as sig
from aiops.domain.observations import Series
from aiops.settings import StreamingLoopSettings
from bench.report import write_json

STEP = 15.0
WINDOW = 3600.0
RECENT = 600.0
NEW_PER_CYCLE = 4  # samples per series between two cycles of a 60 s loop
LOOKBACK = 120.0  # raw samples before the window, so the first grid points have a full rate window
START = 1_800_000_000.0
CYCLE_SECONDS = 30.0
LEAK_EVERY = 100  # one workload in LEAK_EVERY leaks memory in the recent window


# --- synthetic data ---
def synthetic_raw(workloads: int, pods: int = 2, seed: int = 0) -> list[Series]:
    """Raw series of ``workloads`` Deployments with ``pods`` pods each over ``[START - LOOKBACK, START + WINDOW]``."""
    rng = np.random.default_rng(seed)
    base_ts = np.arange(START - LOOKBACK, START + WINDOW + STEP / 2, STEP)
    recent_from = START + WINDOW - RECENT
    out: list[Series] = []
    for w in range(workloads):
        name = f"svc{w:05d}"
        ns = "bench"
        scale = 0.5 + rng.random()  # workloads differ in size
        leak = w % LEAK_EVERY == LEAK_EVERY // 2
        for p in range(pods):
            pod = f"{name}-5f7d9c8b6-x{p:02d}k9"
            ts = base_ts + rng.uniform(0.0, STEP)  # scrapes are not aligned with the evaluation grid
            n = ts.size

            def counter(rate: float, noise: float) -> np.ndarray:
                return np.cumsum(np.clip(rate + noise * rng.standard_normal(n), 0.0, None) * STEP)

            memory = 2e8 * scale + 4e6 * rng.standard_normal(n)
            if leak:
                memory = memory + np.clip(ts - recent_from, 0.0, None) / STEP * 6e6
            cont = {"namespace": ns, "pod": pod, "container": "app"}
            out += [
                Series(sig.RAW_CPU, cont, ts, counter(0.2 * scale, 0.02)),
                Series(sig.RAW_MEMORY, cont, ts, memory),
                Series(sig.RAW_RESTARTS, cont, ts, np.zeros(n)),
                Series(sig.RAW_REQUESTS, {"namespace": ns, "pod": pod, "code": "200"}, ts, counter(10 * scale, 1.0)),
                Series(sig.RAW_REQUESTS, {"namespace": ns, "pod": pod, "code": "500"}, ts, counter(0.05, 0.02)),
                Series(sig.RAW_DURATION, {"namespace": ns, "pod": pod, "quantile": "0.99"}, ts,
                       0.12 + 0.01 * rng.standard_normal(n)),
            ]
        ts = base_ts + rng.uniform(0.0, STEP)
        dep = {"namespace": ns, "deployment": name}
        out += [Series(sig.RAW_AVAILABLE, dep, ts, np.full(ts.size, float(pods))),
                Series(sig.RAW_SPEC_REPLICAS, dep, ts, np.full(ts.size, float(pods)))]
    return out


def synthetic_log_lines(count: int, seed: int = 0) -> list[str]:
    """Service-style log lines from a few dozen templates with numbers, ids, addresses and durations in them."""
    rng = np.random.default_rng(seed)
    shapes = [
        "GET /api/v1/cart/{id} 200 {ms}ms",
        "POST /api/v1/orders 201 {ms}ms user={user}",
        "connection to {ip}:{port} established in {ms}ms",
        "cache miss for key session:{hex} after {n} lookups",
        "ERROR failed to reach payment service at http://payments:{port}/charge: timeout after {ms}ms",
        "WARN retrying request {hex} attempt {n} of 5",
        "order {id} shipped to warehouse {n} with {n} items",
        "user {user} logged in from {ip}",
        "GC pause {ms}ms heap {n}MB of {n}MB",
        "processed batch {id} of {n} records in {ms}ms",
        "ERROR database query timeout after {ms}ms on table orders_{n}",
        "health check ok in {ms}ms",
    ]
    lines = []
    for i in range(count):
        shape = shapes[int(rng.integers(len(shapes)))]
        lines.append(shape.format(
            id=int(rng.integers(1, 10**7)), ms=int(rng.integers(1, 5000)), user=f"u{int(rng.integers(10**5))}",
            ip=f"10.{rng.integers(256)}.{rng.integers(256)}.{rng.integers(256)}", port=int(rng.integers(1024, 65535)),
            hex=f"{int(rng.integers(2**48)):012x}", n=int(rng.integers(1, 1000))))
    return lines


# --- measurements ---
def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def measure_workloads(workloads: int, pods: int, sample: int) -> dict:
    """One cycle's timings for ``workloads`` workloads (run in a fresh process for a meaningful peak RSS)."""
    rss_start = peak_rss_mb()
    t0 = time.perf_counter()
    raw = synthetic_raw(workloads, pods)
    t_gen = time.perf_counter() - t0
    end, split = START + WINDOW, START + WINDOW - RECENT
    t0 = time.perf_counter()
    signals = derive_signals(raw, START, end, STEP)
    t_derive = time.perf_counter() - t0
    del raw
    scored = min(workloads, sample)
    keep = {f"svc{w:05d}" for w in range(scored)}
    part = [s for s in signals if s.workload in keep] if scored < workloads else list(signals)
    factor = workloads / scored

    detector = WorkloadDetector()
    t0 = time.perf_counter()
    detector.fit(part, START, split)
    t_fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    anomalies = detector.detect(part, split, end)
    t_detect = time.perf_counter() - t0
    t0 = time.perf_counter()
    drift = detector.drift(part, split, end)
    t_drift = time.perf_counter() - t0

    # The streaming detector kept between cycles: the first cycle feeds each watched series its whole window, a
    # later one only the samples since (a 60 s loop at a 15 s step: 4)
    watch = StreamingLoopSettings()
    bank = StreamingBank.from_settings(watch)
    t0 = time.perf_counter()
    bank.update(part)
    t_stream_first = time.perf_counter() - t0
    later = [Series(s.name, s.labels, s.timestamps + NEW_PER_CYCLE * STEP, s.values) for s in part
             if s.name in watch.signals]
    t0 = time.perf_counter()
    bank.update(later)
    t_stream = time.perf_counter() - t0

    series_scored = sum(1 for s in part if s.workload in keep)
    planted = {f"svc{w:05d}" for w in range(scored) if w % LEAK_EVERY == LEAK_EVERY // 2}
    found = {a.target.name for a in anomalies}
    cycle = t_derive + (t_fit + t_detect + t_drift + t_stream) * factor
    return {
        "workloads": workloads, "pods_per_workload": pods, "raw_series": workloads * pods * 6 + workloads * 2,
        "signal_series": len(signals), "grid_points": int(WINDOW / STEP) + 1,
        "measured_workloads": scored, "extrapolated": scored < workloads,
        "generate_seconds": round(t_gen, 3), "derive_seconds": round(t_derive, 3),
        "fit_seconds": round(t_fit * factor, 3), "detect_seconds": round(t_detect * factor, 3),
        "drift_seconds": round(t_drift * factor, 3), "streaming_seconds": round(t_stream * factor, 3),
        "streaming_first_cycle_seconds": round(t_stream_first * factor, 3), "streams": len(bank),
        "cycle_seconds": round(cycle, 3),
        "cycle_budget_seconds": CYCLE_SECONDS,
        "series_scored_per_second": round(series_scored / t_detect, 1) if t_detect > 0 else None,
        "series_fitted_per_second": round(series_scored / t_fit, 1) if t_fit > 0 else None,
        "planted_leaks": len(planted), "leaks_found": len(planted & found),
        "other_workloads_flagged": len(found - planted),
        "drifted_leaks": sum(1 for k, r in drift.items() if r.drifted and k[1] in planted),
        "drifted_other_workloads": sum(1 for k, r in drift.items() if r.drifted and k[1] not in planted),
        "peak_rss_mb": round(peak_rss_mb(), 1), "rss_before_mb": round(rss_start, 1),
    }


def measure_logs(count: int) -> dict:
    """Lines per second through ``LogTemplateMiner.add`` (skipped with a note when the module is missing)."""
    try:
        from aiops.detect.logtemplates import LogTemplateMiner  # lazy: optional module
    except ImportError as exc:
        return {"skipped": f"aiops.detect.logtemplates unavailable: {exc}"}
    lines = synthetic_log_lines(count)
    miner = LogTemplateMiner()
    t0 = time.perf_counter()
    for line in lines:
        miner.add(line)
    elapsed = time.perf_counter() - t0
    return {"lines": count, "seconds": round(elapsed, 3), "lines_per_second": round(count / elapsed, 1),
            "templates": len(miner.templates())}


def _child(workloads: int, pods: int, sample: int) -> dict:
    """Runs ``measure_workloads`` in a new interpreter and returns its JSON."""
    cmd = [sys.executable, "-m", "bench.throughput", "--child", str(workloads), "--pods", str(pods),
           "--sample", str(sample)]
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=root, check=False)
    if done.returncode != 0:
        return {"workloads": workloads, "error": done.stderr.strip().splitlines()[-1:] or ["exit " + str(done.returncode)]}
    return json.loads(done.stdout)


def table(rows: Sequence[dict], logs: dict) -> str:
    """The printed summary."""
    head = ("workloads", "derive s", "fit s", "detect s", "drift s", "streaming s (first cycle)", "cycle s",
            "scored/s", "peak RSS MB", "leaks", "false+", "note")
    lines = [" | ".join(head)]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['workloads']} | error: {r['error']}")
            continue
        note = f"fit/detect/drift on {r['measured_workloads']}, scaled" if r["extrapolated"] else ""
        lines.append(" | ".join(str(v) for v in (
            r["workloads"], r["derive_seconds"], r["fit_seconds"], r["detect_seconds"], r["drift_seconds"],
            f"{r['streaming_seconds']} ({r['streaming_first_cycle_seconds']})",
            r["cycle_seconds"], r["series_scored_per_second"], r["peak_rss_mb"],
            f"{r['leaks_found']}/{r['planted_leaks']}", r["other_workloads_flagged"], note)))
    if "skipped" in logs:
        lines.append(f"log parsing: skipped ({logs['skipped']})")
    else:
        lines.append(f"log parsing: {logs['lines_per_second']:.0f} lines/s ({logs['lines']} lines, "
                     f"{logs['templates']} templates)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m bench.throughput", description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", default="100,1000,10000", help="comma-separated workload counts")
    parser.add_argument("--pods", type=int, default=2, help="pods per workload")
    parser.add_argument("--sample", type=int, default=10000,
                        help="above this many workloads, fit/detect/drift a sample and scale linearly")
    parser.add_argument("--log-lines", type=int, default=50_000)
    parser.add_argument("--out", type=Path, default=None, help="write every number as JSON here")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(measure_workloads(args.child, args.pods, args.sample)))
        return 0
    try:
        counts = [int(c) for c in args.workloads.split(",") if c.strip()]
    except ValueError:
        parser.error(f"--workloads must be comma-separated integers, got {args.workloads!r}")
    rows = []
    for n in counts:
        rows.append(_child(n, args.pods, args.sample))
        print(f"measured {n} workloads", file=sys.stderr, flush=True)
    logs = measure_logs(args.log_lines)
    result = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
              "step_seconds": STEP, "window_seconds": WINDOW, "recent_seconds": RECENT,
              "workloads": rows, "log_parsing": logs}
    print(table(rows, logs))
    if args.out:
        write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
