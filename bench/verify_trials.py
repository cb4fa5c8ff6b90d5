"""Does verification judge a right rollback fairly? N bad_deploy trials with the first loop cycle at a random time.

    python -m bench.verify_trials [--trials 10] [--seed 0] [--min-offset 15] [--max-offset 45] [--out FILE.json]

The demo injects each fault right after a loop cycle, which hides how verification behaves when the agent first
looks at a fault that is still unfolding. Here each trial runs the bad_deploy scenario on the in-process simulator
(its real rollout pacing, the real agent parts through the official clients, in simulated time), injects the fault,
and runs the first collect/detect/diagnose/act cycle a seeded random 15-45 s later, then one every 60 s until a
plan acts (or 45 simulated minutes pass). It reports how the acting plan ended (succeeded: verified recovery;
rolled_back: judged worse and undone; failed: unchanged), the seconds from the fault to verified recovery (median,
p90) and the seconds the verification itself took. Only public parts that every version of the agent has are used
(``SimRuntime``, ``build_parts``, the pipeline), so the same script measures the code before and after a change:
run it with ``PYTHONPATH`` pointing at either tree.
"""

from __future__ import annotations

import argparse
import logging
import math
import random
import statistics
import time
from collections import Counter
from pathlib import Path

from bench.report import quiet_logs, write_json

SCENARIO = "bad_deploy"
BASELINE_SECONDS = 3600.0
RECENT_SECONDS = 600.0
CYCLE_SECONDS = 60.0
GIVE_UP_AFTER = 45 * 60.0


def one_trial(seed: int, offset: float) -> dict:
    """One bad_deploy trial whose first loop cycle runs ``offset`` simulated seconds after the fault."""
    from aiops.clients.kube import KubeClient
    from aiops.clients.prometheus import PrometheusClient
    from aiops.correlate.incidents import IncidentTracker
    from aiops.domain.plans import ActionPlan, Mode
    from aiops.remediate.journal import MemoryJournal
    from aiops.serve.agent import build_parts
    from aiops.settings import KubernetesSettings, LoopSettings, PolicySettings, Settings
    from aiops.sim.runtime import SimRuntime

    with SimRuntime(SCENARIO, seed=seed) as sim:
        ns = sim.scenario.namespace
        sim.prefill(BASELINE_SECONDS + RECENT_SECONDS)
        settings = Settings(mode=Mode.ACT, kubernetes=KubernetesSettings(host=sim.kube_url, namespaces=(ns,)),
                            loop=LoopSettings(baseline_seconds=BASELINE_SECONDS, recent_seconds=RECENT_SECONDS,
                                              step_seconds=sim.step, interval_seconds=CYCLE_SECONDS),
                            policy=PolicySettings())
        kube = KubeClient.for_host(sim.kube_url)
        try:
            parts = build_parts(settings, kube=kube, prometheus=PrometheusClient(sim.prom_url), clock=sim.clock,
                                sleep=sim.advance, topology=sim.scenario.topology, journal=MemoryJournal(sim.clock))
            pipeline = parts.pipeline
            sim.inject()
            fault_at = sim.clock.now()
            # The part of the offset below one simulation step moves the clock alone (the step grid shifts with
            # it); the whole steps run the cluster and the workloads.
            whole = math.floor(offset / sim.step) * sim.step
            sim.clock.advance(offset - whole)
            sim.advance(whole)
            tracker = IncidentTracker(sim.clock, namespaces=(ns,))
            first = True
            while sim.clock.now() - fault_at < GIVE_UP_AFTER:
                if not first:
                    sim.advance(CYCLE_SECONDS)
                first = False
                observations = pipeline.observe(ns)
                anomalies = pipeline.detect(observations)
                if not anomalies:
                    continue
                updates = tracker.add_anomalies(anomalies)
                worst = max(anomalies, key=lambda a: a.severity)
                incident = next(u for u in updates if u.incident.target == worst.target).incident
                result = pipeline.handle(incident, observations)
                # With a second playbook tried (escalate after a failed first one), the acting plan is the first.
                for attempt in (result.first, result):
                    decision = attempt.decision if attempt is not None else None
                    if not isinstance(decision, ActionPlan) or attempt.execution is None:
                        continue
                    book = pipeline.playbooks.get(decision.playbook)
                    if book is not None and book.acts:
                        return _summary(seed, offset, fault_at, decision.playbook, attempt.execution)
                # Notified a person, or blocked: keep watching, as the agent's loop does.
            return {"seed": seed, "offset": round(offset, 1), "playbook": None, "state": "no_action"}
        finally:
            kube.close()


def _summary(seed: int, offset: float, fault_at: float, playbook: str, execution) -> dict:
    history = execution.history
    acted = next((ts for ts, state, _ in history if state == "executing"), None)
    verifying = next((ts for ts, state, _ in history if state == "verifying"), None)
    ended = next((ts for ts, state, _ in history if state in ("succeeded", "rolled_back", "failed")), None)
    out = {"seed": seed, "offset": round(offset, 1), "playbook": playbook, "state": execution.state.value,
           "note": next((note for _, state, note in history if state == execution.state.value), ""),
           "fault_to_action": _rel(acted, fault_at),
           "verify_seconds": _rel(ended, verifying),
           "undone": any(note.startswith("undone") for _, _, note in history)}
    if execution.state.value == "succeeded":
        out["fault_to_recovery"] = _rel(ended, fault_at)
    return out


def _rel(ts: float | None, origin: float | None) -> float | None:
    return None if ts is None or origin is None else round(ts - origin, 1)


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))], 1)


def summarise(trials: list[dict]) -> dict:
    """Counts by final state and the median/p90 of the times over the trials they apply to."""
    recovery = [t["fault_to_recovery"] for t in trials if t.get("fault_to_recovery") is not None]
    verify = [t["verify_seconds"] for t in trials if t.get("verify_seconds") is not None]
    return {"trials": len(trials), "states": dict(Counter(t["state"] for t in trials)),
            "recovered": sum(t["state"] == "succeeded" for t in trials),
            "rolled_back": sum(t["state"] == "rolled_back" for t in trials),
            "undone": sum(bool(t.get("undone")) for t in trials),
            "fault_to_recovery_median": round(statistics.median(recovery), 1) if recovery else None,
            "fault_to_recovery_p90": _quantile(recovery, 0.9),
            "verify_seconds_median": round(statistics.median(verify), 1) if verify else None,
            "verify_seconds_p90": _quantile(verify, 0.9)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0, help="seeds the offsets and each trial's simulator")
    parser.add_argument("--min-offset", type=float, default=15.0, help="earliest first cycle after the fault (s)")
    parser.add_argument("--max-offset", type=float, default=45.0, help="latest first cycle after the fault (s)")
    parser.add_argument("--label", default="", help="a name for this run in the JSON (e.g. before / after)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.trials < 1 or not 0 < args.min_offset <= args.max_offset:
        parser.error("need --trials >= 1 and 0 < --min-offset <= --max-offset")
    rng = random.Random(args.seed)
    trials = []
    started = time.monotonic()
    for i in range(args.trials):
        offset = rng.uniform(args.min_offset, args.max_offset)
        with quiet_logs(logging.ERROR):
            trial = one_trial(args.seed * 1000 + i, offset)
        trials.append(trial)
        print(f"trial {i:2d}: first cycle +{trial['offset']:5.1f}s  {trial['state']:<11} "
              f"recovery {trial.get('fault_to_recovery')}s  verify {trial.get('verify_seconds')}s  "
              f"{trial.get('note', '')[:90]}", flush=True)
    result = {"scenario": SCENARIO, "label": args.label, "seed": args.seed,
              "offsets": [args.min_offset, args.max_offset], "summary": summarise(trials), "trials": trials,
              "wall_seconds": round(time.monotonic() - started, 1)}
    print(result["summary"])
    if args.out:
        write_json(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
