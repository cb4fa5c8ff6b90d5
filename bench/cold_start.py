"""How much baseline does the agent need? False alarms and diagnoses against minutes of history, on the simulator.

    python -m bench.cold_start [--minutes 5,10,15,20,30,45,60] [--seeds 5] [--out FILE.json]

For each number of minutes B of history before the loop's recent window (10 min) and each seed, the in-process
simulator is given B + 10 minutes of healthy history and the real agent parts (through the official clients, in
simulated time, the loop's default 60 min baseline window) are run as a cold-started agent would run them:

* healthy: five loop cycles a minute apart; every workload a detector flags is a false alarm;
* each shop fault (memory_leak, bad_deploy, traffic_surge) injected 5 minutes before a cycle: the detector must
  flag the faulty workload, and the diagnosis of its incident must name the right workload and fault.

This is what ``loop.min_baseline_seconds`` (by default half of ``loop.baseline_seconds``) is chosen from: below it
the agent is learning and acts on nothing it detects. Results: ``docs/benchmarks.md``, "Cold start".
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from bench.report import quiet_logs, write_json

RECENT_SECONDS = 600.0
CYCLE_SECONDS = 60.0
HEALTHY_CYCLES = 5
FAULT_AGE_SECONDS = 300.0
SCENARIOS = ("memory_leak", "bad_deploy", "traffic_surge")


def _pipeline(sim):
    """The agent's pipeline on ``sim`` with the loop's default windows, and the kube client to close."""
    from aiops.clients.kube import KubeClient
    from aiops.clients.prometheus import PrometheusClient
    from aiops.remediate.journal import MemoryJournal
    from aiops.serve.agent import build_parts
    from aiops.settings import KubernetesSettings, LoopSettings, Settings

    settings = Settings(kubernetes=KubernetesSettings(host=sim.kube_url, namespaces=(sim.namespace,)),
                        loop=LoopSettings(recent_seconds=RECENT_SECONDS, step_seconds=sim.step))
    kube = KubeClient.for_host(sim.kube_url)
    parts = build_parts(settings, kube=kube, prometheus=PrometheusClient(sim.prom_url), clock=sim.clock,
                        sleep=sim.advance, topology=sim.scenario.topology, journal=MemoryJournal(sim.clock))
    return parts.pipeline, kube


def healthy_flags(seed: int, minutes: float) -> int:
    """Workloads the detectors (metrics and log templates) flag on a healthy shop, summed over five cycles: each
    one a false alarm."""
    from aiops.sim.runtime import SimRuntime

    with SimRuntime("memory_leak", seed=seed) as sim:
        sim.prefill(minutes * 60 + RECENT_SECONDS)
        pipeline, kube = _pipeline(sim)
        flagged = 0
        for _ in range(HEALTHY_CYCLES):
            sim.advance(CYCLE_SECONDS)
            flagged += len({a.target for a in pipeline.detect(pipeline.observe(sim.namespace))})
        kube.close()
        return flagged


def fault_found(scenario: str, seed: int, minutes: float) -> tuple[bool, bool]:
    """(the faulty workload was flagged, the diagnosis named the right workload and fault)."""
    from aiops.correlate.incidents import IncidentTracker
    from aiops.sim.runtime import SimRuntime

    with SimRuntime(scenario, seed=seed) as sim:
        sim.prefill(minutes * 60 + RECENT_SECONDS - FAULT_AGE_SECONDS)
        pipeline, kube = _pipeline(sim)
        sim.inject()
        sim.advance(FAULT_AGE_SECONDS)
        observations = pipeline.observe(sim.namespace)
        anomalies = pipeline.detect(observations)
        kube.close()
        want = sim.scenario.expected
        updates = IncidentTracker(sim.clock, namespaces=(sim.namespace,)).add_anomalies(anomalies)
        incident = next((u.incident for u in updates if u.incident.target.name == want.workload), None)
        if incident is None:
            return False, False
        chosen = pipeline.diagnose(incident, observations).chosen
        return True, (chosen.target.name, chosen.fault.value) == (want.workload, want.fault)


def run(minutes: list[float], seeds: int) -> list[dict]:
    rows = []
    for b in minutes:
        started = time.monotonic()
        row = {"baseline_minutes": b, "seeds": seeds,
               "healthy_flags": sum(healthy_flags(s, b) for s in range(seeds)),
               "healthy_checks": seeds * HEALTHY_CYCLES * 5}
        for scenario in SCENARIOS:
            found = [fault_found(scenario, s, b) for s in range(seeds)]
            row[scenario] = {"flagged": sum(f for f, _ in found), "diagnosed": sum(d for _, d in found)}
        row["seconds"] = round(time.monotonic() - started, 1)
        rows.append(row)
        print(render_row(row), flush=True)
    return rows


def render_row(row: dict) -> str:
    faults = "  ".join(f"{s}: flagged {row[s]['flagged']}/{row['seeds']}, diagnosed {row[s]['diagnosed']}/"
                       f"{row['seeds']}" for s in SCENARIOS)
    return (f"{row['baseline_minutes']:>4g} min  healthy workloads flagged {row['healthy_flags']}/"
            f"{row['healthy_checks']}  {faults}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", default="5,10,15,20,30,45,60")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--out")
    args = parser.parse_args()
    with quiet_logs(logging.WARNING):
        rows = run([float(m) for m in args.minutes.split(",")], args.seeds)
    if args.out:
        write_json(Path(args.out), {"rows": rows})


if __name__ == "__main__":
    main()
