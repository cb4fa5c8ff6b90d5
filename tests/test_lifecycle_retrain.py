"""The retrain path: a drifted model opens a detector_drift incident, retrain-detector runs through the planner, the
state machine and the journal, promotes a better challenger, keeps the current model against a worse one, and rolls
back a promoted model that turns out worse. Idempotent per plan id."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from aiops.detect.lifecycle import ModelLifecycle
from aiops.detect.store import ModelStore
from aiops.detect.tuning import DetectorParams
from aiops.domain import signals as sig
from aiops.domain.observations import Observations, Series
from aiops.domain.plans import ExecutionState, Mode
from aiops.remediate.actions import RetrainAction
from aiops.remediate.journal import MemoryJournal
from aiops.remediate.planner import PlanPolicy
from aiops.remediate.playbooks import load_playbooks
from aiops.remediate.runner import PlaybookRunner
from aiops.serve.drift_check import DETECTOR_KIND, DriftCheck
from aiops.serve.pipeline import IncidentPipeline
from aiops.settings import LifecycleSettings, LoopSettings

NS, MODEL = "shop", "shop"
T0, STEP, HOUR = 1.7e9, 60.0, 3600.0
LEVELS = {sig.CPU: (0.3, 0.03), sig.MEMORY: (2e8, 5e6), sig.REQUEST_RATE: (20.0, 2.0), sig.LATENCY_P99: (0.12, 0.01)}
WORKLOADS = ("cart", "catalog", "frontend")
NOISE = np.random.default_rng(11).normal(size=(len(WORKLOADS), len(LEVELS), 4000))
STOCK = Path(__file__).resolve().parent.parent / "playbooks"
RETRAIN_PARAMS = {"history_seconds": 2 * HOUR, "holdout_seconds": 0.5 * HOUR, "min_gain": 0.02,
                  "drift_threshold": 0.3}


class Clock:
    def __init__(self, now: float) -> None:
        self.t = now

    def now(self) -> float:
        return self.t


class RegimeCollector:
    """Three noisy workloads; ``shifted(ts, call)`` says which points have CPU and latency 8 noise-sigmas higher.
    ``call`` counts collect calls, so a test can change the data between the retrain and its check."""

    def __init__(self, shifted) -> None:
        self.shifted = shifted
        self.calls = 0

    def collect(self, namespace: str, start: float, end: float) -> Observations:
        ts = np.arange(math.ceil((start - T0) / STEP), math.floor((end - T0) / STEP) + 1) * STEP + T0
        index = ((ts - T0) / STEP).astype(int)
        moved = self.shifted(ts, self.calls)
        self.calls += 1
        out = []
        for w, workload in enumerate(WORKLOADS):
            for s, (name, (level, noise)) in enumerate(LEVELS.items()):
                values = level + NOISE[w, s, index] * noise
                if name in (sig.CPU, sig.LATENCY_P99):
                    values = values + np.where(moved, 8 * noise, 0.0)
                out.append(Series(name, {"namespace": namespace, "workload": workload}, ts, values))
        return Observations(namespace, start, end, signals=tuple(out))


def _setup(tmp_path: Path, collector: RegimeCollector, now: float, mode: Mode = Mode.ACT):
    """A registry holding v1 (fitted on the first two hours), and the planner/runner/journal around it."""
    store = ModelStore(tmp_path / "models")
    first = collector.collect(NS, T0, T0 + 2 * HOUR)
    store.save(MODEL, DetectorParams().build().fit(first.signals, T0, T0 + 2 * HOUR),
               {"params": DetectorParams().as_dict()})
    collector.calls = 0
    clock = Clock(now)
    books = load_playbooks(STOCK)
    books["retrain-detector"] = books["retrain-detector"].model_copy(update={"params": RETRAIN_PARAMS})
    journal = MemoryJournal(clock)
    lifecycle = ModelLifecycle(store, collector, clock)
    runner = PlaybookRunner(None, journal, None, books, clock,  # type: ignore[arg-type]
                            actions={"retrain": RetrainAction(None, clock, lifecycle)})  # type: ignore[arg-type]
    pipeline = IncidentPipeline(collector=collector, diagnoser=None, playbooks=books,  # type: ignore[arg-type]
                                policy=PlanPolicy(mode=mode, namespaces=(NS,)), runner=runner, history=journal,
                                clock=clock, window=LoopSettings())
    check = DriftCheck(pipeline, store, LifecycleSettings(drift_window_seconds=HOUR), (NS,))
    return store, journal, check, runner


def _states(journal: MemoryJournal, plan_id: str) -> list[str]:
    return [r["state"] for r in journal.history(plan_id)]


def test_no_drift_no_incident(tmp_path):
    store, journal, check, _ = _setup(tmp_path, RegimeCollector(lambda ts, call: np.zeros(ts.size, bool)),
                                      T0 + 5 * HOUR)
    [result] = check.run()
    assert result.version == 1 and not result.drifted and result.score < 0.3
    assert result.result is None and journal.records() == []
    assert store.versions(MODEL) == [1]


def test_drift_opens_incident_and_a_better_challenger_is_promoted_once(tmp_path):
    collector = RegimeCollector(lambda ts, call: ts >= T0 + 3 * HOUR)
    store, journal, check, runner = _setup(tmp_path, collector, T0 + 6 * HOUR)
    [result] = check.run()
    assert result.drifted and result.score >= 0.3 and result.version == 1
    outcome = result.result
    assert outcome.diagnosis.chosen.fault.value == "detector_drift"
    plan = outcome.plan
    assert plan.playbook == "retrain-detector" and plan.action == "retrain"
    assert (plan.target.kind, plan.target.namespace, plan.target.name) == (DETECTOR_KIND, NS, MODEL)
    assert outcome.execution.state is ExecutionState.SUCCEEDED, outcome.execution.history
    assert _states(journal, plan.id) == ["executing", "verifying", "succeeded"]
    assert store.versions(MODEL) == [1, 2] and store.current_version(MODEL) == 2
    record = store.record(MODEL, 2)
    assert record.extra["plan_id"] == plan.id and record.extra["parent_version"] == 1
    verdict = record.extra["verdict"]
    assert verdict["better"] and verdict["challenger"]["score"] > verdict["champion"]["score"]
    assert record.trained_end == pytest.approx(T0 + 5.5 * HOUR, abs=STEP)  # the held-back half hour is not in it
    # The same plan again (a restarted agent, a repeated check): no second version, the journal says so.
    # (A plan that acted and ended is not run again: its journal is the answer.)
    ended = journal.history(plan.id)
    again = runner.run(plan, {}, None)
    assert store.versions(MODEL) == [1, 2] and again.state is ExecutionState.SUCCEEDED
    assert journal.history(plan.id) == ended
    # The next check sees v2, which fits the new normal: no new incident.
    [later] = check.run()
    assert later.version == 2 and not later.drifted


def test_a_worse_challenger_is_kept_but_not_promoted(tmp_path):
    # The shift came and went: the training part of the retrain window is the odd one out, the held-back part is
    # the old normal again, where the current model does better.
    collector = RegimeCollector(lambda ts, call: (ts >= T0 + 4 * HOUR) & (ts < T0 + 5.5 * HOUR))
    store, journal, check, _ = _setup(tmp_path, collector, T0 + 6 * HOUR)
    plan_result = check.act(*_incident(check, store))
    execution = plan_result.execution
    assert execution.state is ExecutionState.FAILED
    assert "not better" in execution.history[-1][2]
    assert store.versions(MODEL) == [1, 2] and store.current_version(MODEL) == 1
    assert not store.record(MODEL, 2).extra["verdict"]["better"]


def test_a_promoted_model_that_does_worse_on_newer_data_is_rolled_back(tmp_path):
    # The retrain sees the shifted regime; by the time the promoted model is checked the data is back to the old
    # normal (the shift was a transient), where the promoted model does worse: undo = registry rollback to v1.
    collector = RegimeCollector(lambda ts, call: (ts >= T0 + 3 * HOUR) if call == 0 else np.zeros(ts.size, bool))
    store, journal, check, runner = _setup(tmp_path, collector, T0 + 6 * HOUR)
    result = check.act(*_incident(check, store))
    execution = result.execution
    assert execution.state is ExecutionState.ROLLED_BACK, execution.history
    assert _states(journal, result.plan.id)[:3] == ["executing", "verifying", "rolled_back"]
    assert store.versions(MODEL) == [1, 2] and store.current_version(MODEL) == 1
    assert any("rollback shop from v2 to v1" in c.description and c.applied for c in execution.changes)
    # The same plan again (the next check sees v1 drifted, same incident, same plan id): nothing is re-promoted.
    ended = journal.history(result.plan.id)
    again = runner.run(result.plan, {}, None)
    assert again.state is ExecutionState.ROLLED_BACK and journal.history(result.plan.id) == ended
    assert store.versions(MODEL) == [1, 2] and store.current_version(MODEL) == 1


def test_dry_run_compares_but_saves_nothing(tmp_path):
    collector = RegimeCollector(lambda ts, call: ts >= T0 + 3 * HOUR)
    store, journal, check, _ = _setup(tmp_path, collector, T0 + 6 * HOUR, mode=Mode.DRY_RUN)
    [result] = check.run()
    assert result.result.execution.state is ExecutionState.SKIPPED
    assert "would promote" in result.result.execution.history[-1][2]
    assert store.versions(MODEL) == [1]


def test_out_of_scope_namespace_is_blocked_by_the_planner(tmp_path):
    collector = RegimeCollector(lambda ts, call: ts >= T0 + 3 * HOUR)
    store, journal, check, _ = _setup(tmp_path, collector, T0 + 6 * HOUR)
    check.pipeline.policy = PlanPolicy(mode=Mode.ACT, namespaces=("elsewhere",))
    [result] = check.run()
    assert result.drifted and result.result.decision.reason == "out_of_scope"
    assert store.versions(MODEL) == [1]


def test_retrain_without_a_registry_fails_cleanly(tmp_path):
    collector = RegimeCollector(lambda ts, call: ts >= T0 + 3 * HOUR)
    store, journal, check, runner = _setup(tmp_path, collector, T0 + 6 * HOUR)
    runner.actions["retrain"] = RetrainAction(None, check.pipeline.clock)  # type: ignore[arg-type]
    [result] = check.run()
    assert result.result.execution.state is ExecutionState.FAILED
    assert "model registry" in result.result.execution.history[-1][2]


def _incident(check: DriftCheck, store: ModelStore):
    from aiops.serve.drift_check import drift_incident

    now = check.pipeline.clock.now()
    incident = drift_incident(NS, MODEL, store.current_version(MODEL), 0.9, 0.3, "", now - HOUR, now)
    return incident, Observations(NS, now - HOUR, now)


def test_a_failing_collector_is_reported_per_model_and_does_not_stop_the_check(tmp_path):
    collector = RegimeCollector(lambda ts, call: np.zeros(ts.size, bool))
    store, journal, check, _ = _setup(tmp_path, collector, T0 + 5 * HOUR)

    def broken(namespace, start, end):
        raise ConnectionError("prometheus unreachable")

    collector.collect = broken  # type: ignore[method-assign]
    [result] = check.run()
    assert not result.drifted and "prometheus unreachable" in result.error and journal.records() == []


def test_lifecycle_settings_validate_and_name_bad_keys(tmp_path):
    from aiops.domain.errors import InputError
    from aiops.settings import load_settings

    good = tmp_path / "good.yaml"
    good.write_text("lifecycle:\n  drift_threshold: 0.4\n  models: {shop: shop-lof}\n  detect_with: registry\n")
    settings = load_settings(good)
    assert settings.lifecycle.drift_threshold == 0.4 and settings.lifecycle.model_name("shop") == "shop-lof"
    assert settings.lifecycle.model_name("other") == "other" and settings.lifecycle.drift_interval_seconds == 3600
    assert LifecycleSettings().drift_threshold == 0.3
    bad = tmp_path / "bad.yaml"
    bad.write_text("lifecycle:\n  drift_threshold: 1.5\n  detect_with: magic\n")
    with pytest.raises(InputError) as info:
        load_settings(bad)
    assert info.value.where == f"{bad}:2"  # the line of the first bad key
    assert "lifecycle.drift_threshold" in info.value.reason and "lifecycle.detect_with" in info.value.reason
