"""The verifier's rules (#13 item 16): readings count only once the action's rollout completed and settled, worse
and recovered each need several readings in a row, recovery ends the window early, and worse is judged against
the worst level known before the action. Scripted probes and Deployments, on a simulated clock."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from aiops.domain.errors import InputError
from aiops.domain.observations import Observations, Series
from aiops.domain.plans import ActionPlan, Mode
from aiops.domain.playbook import VerifySpec
from aiops.domain.target import Target
from aiops.remediate.playbooks import load_playbooks
from aiops.remediate.rollout import rollout_pending
from aiops.remediate.verify import RolloutUnreadable, Verifier
from aiops.serve.probe import CollectorProbe
from aiops.sim.clock import SimClock

TARGET = Target.deployment("shop", "cart")
PLAN = ActionPlan("p-1", "inc-1", "rollback-deploy", "rollback", TARGET, {}, Mode.ACT)
BEFORE = {"error_ratio": 0.3}
GOOD, NOISE, BAD = {"error_ratio": 0.002}, {"error_ratio": 0.5}, {"error_ratio": 0.45}


class ScriptedProbe:
    """The scripted readings in turn (the last one repeats); ``peaks`` answers ``peak`` when given."""

    def __init__(self, *readings: dict[str, float]) -> None:
        self.readings = list(readings)
        self.calls = 0

    def read(self, namespace, workload, signals):
        value = self.readings[min(self.calls, len(self.readings) - 1)]
        self.calls += 1
        return {s: v for s, v in value.items() if s in signals}


class PeakProbe(ScriptedProbe):
    def __init__(self, peaks: dict[str, float], *readings: dict[str, float]) -> None:
        super().__init__(*readings)
        self.peaks = peaks
        self.windows: list[tuple[float, float]] = []

    def peak(self, namespace, workload, signals, start, end):
        self.windows.append((start, end))
        return {s: v for s, v in self.peaks.items() if s in signals}


def deployment(generation=2, observed=2, desired=2, updated=2, available=2, total=2) -> dict:
    return {"metadata": {"name": "cart", "namespace": "shop", "generation": generation},
            "spec": {"replicas": desired},
            "status": {"observedGeneration": observed, "updatedReplicas": updated, "availableReplicas": available,
                       "replicas": total}}


ROLLING = deployment(updated=1, available=2, total=3)
DONE = deployment()


class ScriptedDeployments:
    """Answers ``get_deployment`` with the scripted objects in turn (the last one repeats)."""

    def __init__(self, *objects) -> None:
        self.objects = list(objects)
        self.calls = 0

    def get_deployment(self, namespace, name):
        obj = self.objects[min(self.calls, len(self.objects) - 1)]
        self.calls += 1
        if isinstance(obj, Exception):
            raise obj
        return obj


def verify(probe, spec, deployments=None, before=BEFORE, baseline=None, plan=PLAN):
    clock = SimClock(0.0)
    return Verifier(probe, clock.advance, clock, deployments=deployments).verify(plan, spec, before, baseline)


def spec(**kwargs) -> VerifySpec:
    values = {"signals": ("error_ratio",), "window_seconds": 120, "interval_seconds": 15, "settle_seconds": 30,
              "recovered_ratio": 0.5, "worse_ratio": 1.2, "worse_lookback_seconds": 0}
    return VerifySpec(**{**values, **kwargs})


def test_readings_while_the_rollout_runs_and_settles_do_not_count():
    # The old pods fail more while they are replaced: 0.5 > 1.2 x 0.3 for as long as the rollout and the settle
    # time last. Judged only after: the rollout is seen complete at 30 s, readings count from 60 s.
    probe = ScriptedProbe(NOISE, NOISE, NOISE, GOOD)
    deployments = ScriptedDeployments(ROLLING, ROLLING, DONE)
    result = verify(probe, spec(), deployments)

    assert result.outcome == "recovered", result.note
    assert result.judged_from == 60.0
    assert [(r["ts"], r["judged"]) for r in result.as_dict()["readings"]] == [
        (15.0, False), (30.0, False), (45.0, False), (60.0, True), (75.0, True)]


def test_one_worse_reading_is_noise_but_a_persistent_worsening_is_worse():
    noisy = verify(ScriptedProbe(BAD, GOOD, BAD, BAD, GOOD, GOOD), spec(settle_seconds=0))
    assert noisy.outcome == "recovered", "never three worse readings in a row"

    worse_probe = ScriptedProbe(GOOD, BAD, BAD, BAD)
    worse = verify(worse_probe, spec(settle_seconds=0))
    assert worse.outcome == "worse" and worse_probe.calls == 4
    assert "error_ratio 0.45 > 1.2 x 0.3" in worse.note and "3 readings in a row" in worse.note


def test_recovery_ends_the_window_early_and_needs_readings_in_a_row():
    probe = ScriptedProbe(GOOD)
    result = verify(probe, spec(window_seconds=600, recovered_samples=3, settle_seconds=0))
    assert result.outcome == "recovered" and probe.calls == 3
    assert result.readings[-1][0] == 45.0, "three recovered readings, not the whole 600 s"

    flapping = verify(ScriptedProbe(GOOD, BEFORE), spec(settle_seconds=0, window_seconds=45, recovered_samples=2))
    assert flapping.outcome == "unchanged" and "not recovered: error_ratio 0.3" in flapping.note


def test_a_run_under_way_when_the_window_ends_is_followed_to_its_verdict():
    # Real readings come later than the interval (the probe takes time), so the window may end one reading short.
    late = verify(ScriptedProbe(BEFORE, BEFORE, GOOD, GOOD), spec(settle_seconds=0, window_seconds=45))
    assert late.outcome == "recovered" and late.readings[-1][0] == 60.0
    late_worse = verify(ScriptedProbe(BEFORE, BEFORE, BAD, BAD, BAD, GOOD), spec(settle_seconds=0, window_seconds=45))
    assert late_worse.outcome == "worse" and late_worse.readings[-1][0] == 75.0
    # Only the run under way at the end: a flapping service does not keep the window open.
    flapping = verify(ScriptedProbe(BEFORE, BEFORE, BAD, GOOD, BAD, GOOD), spec(settle_seconds=0, window_seconds=45))
    assert flapping.outcome == "unchanged" and flapping.readings[-1][0] == 60.0
    assert flapping.note == "back under the recovery level for only 1 of 2 readings in a row"


def test_the_window_counts_from_when_readings_start_to_count():
    # A slow rollout (done at 150 s) plus the settle time must not eat the time the signals get to come back.
    probe = ScriptedProbe(BEFORE)
    deployments = ScriptedDeployments(*([ROLLING] * 10), DONE)
    result = verify(probe, spec(window_seconds=60), deployments)
    assert result.outcome == "unchanged" and result.judged_from == 180.0
    assert result.readings[-1][0] == 240.0


def test_a_rollout_that_never_completes_leaves_the_outcome_open_for_a_person():
    probe = ScriptedProbe(BAD)
    result = verify(probe, spec(rollout_timeout_seconds=90), ScriptedDeployments(ROLLING))
    assert result.outcome == "unchanged" and result.judged_from is None
    assert "did not complete within 90s" in result.note and "1 of 2 replicas updated" in result.note
    assert not any(r["judged"] for r in result.as_dict()["readings"])


def test_an_unreadable_deployment_is_not_a_finished_rollout():
    # Nor a rollout that did not complete: with no answer there is no verdict at all (not "unchanged", which ended
    # the plan failed with its change in place), so the runner keeps the change to be verified again.
    deployments = ScriptedDeployments(RuntimeError("apiserver down"))
    with pytest.raises(RolloutUnreadable, match="cannot read Deployment shop/cart: apiserver down"):
        verify(ScriptedProbe(GOOD), spec(rollout_timeout_seconds=45), deployments)
    # Readable again before the timeout: the rollout is judged as usual.
    recovered = verify(ScriptedProbe(GOOD), spec(rollout_timeout_seconds=90),
                       ScriptedDeployments(RuntimeError("apiserver down"), DONE))
    assert recovered.outcome == "recovered", recovered.note


def test_targets_other_than_deployments_only_wait_the_settle_time():
    deployments = ScriptedDeployments(ROLLING)
    detector = ActionPlan("p-2", "inc-1", "x", "retrain", Target("Detector", "shop", "m"), {}, Mode.ACT)
    result = verify(ScriptedProbe(GOOD), spec(), deployments, plan=detector)
    assert result.outcome == "recovered" and deployments.calls == 0 and result.judged_from == 30.0


def test_worse_is_judged_against_the_worst_level_known_before_the_action():
    # Decided while the fault was unfolding: the short mean said 0.003, the rate had already climbed to 0.15 in
    # the last minutes, the normal band reaches 0.004.
    before, baseline = {"error_ratio": 0.003}, {"error_ratio": 0.004}
    probe = PeakProbe({"error_ratio": 0.15}, {"error_ratio": 0.16})
    result = verify(probe, spec(settle_seconds=0, window_seconds=45, worse_lookback_seconds=300), before=before,
                    baseline=baseline)
    assert result.reference == {"error_ratio": 0.15} and result.outcome == "unchanged"
    assert probe.windows == [(-300.0, 0.0)], "the peak is read over the lookback ending at the action"

    really = verify(PeakProbe({"error_ratio": 0.15}, {"error_ratio": 0.2}),
                    spec(settle_seconds=0, worse_lookback_seconds=300), before=before, baseline=baseline)
    assert really.outcome == "worse", "above 1.2 x the peak is worse"

    # Without a peak, the normal band still counts: back to normal is never worse.
    normal = verify(ScriptedProbe({"error_ratio": 0.0045}), spec(settle_seconds=0, window_seconds=45),
                    before=before, baseline=baseline)
    assert normal.reference == {"error_ratio": 0.004} and normal.outcome != "worse"


def test_recovery_stays_judged_against_the_pre_action_level():
    # The peak only raises the bar for worse; recovered still means under 0.5 x before or in the normal band.
    probe = PeakProbe({"error_ratio": 0.9}, {"error_ratio": 0.2})
    result = verify(probe, spec(settle_seconds=0, window_seconds=45, worse_lookback_seconds=300))
    assert result.outcome == "unchanged" and "0.2 > 0.5 x 0.3" in result.note


def test_rollout_pending_reads_generation_updated_available_and_old_replicas():
    assert rollout_pending(DONE) is None
    assert "not seen generation 3" in rollout_pending(deployment(generation=3))
    assert rollout_pending(deployment(updated=1, total=3)) == "1 of 2 replicas updated; 2 old replica(s) left"
    assert rollout_pending(deployment(available=1)) == "1 of 2 available"
    assert rollout_pending(deployment(total=3)) == "1 old replica(s) left"
    assert rollout_pending(deployment(desired=0, updated=0, available=0, total=0)) is None


def test_verify_spec_refuses_a_window_too_short_for_its_samples():
    with pytest.raises(ValidationError, match="window_seconds 30 is too short for 3 readings every "
                                              "interval_seconds 15.*at least 45"):
        VerifySpec(window_seconds=30, interval_seconds=15)
    for bad in ({"worse_samples": 0}, {"recovered_samples": 0}, {"settle_seconds": -1},
                {"rollout_timeout_seconds": 0}, {"worse_lookback_seconds": -5}):
        with pytest.raises(ValidationError, match=next(iter(bad))):
            VerifySpec(**bad)


def test_a_playbook_with_a_bad_verify_block_names_file_and_field(tmp_path):
    path = tmp_path / "a.yaml"
    path.write_text("name: a\naction: restart\nverify:\n  signals: [memory]\n  worse_samples: 9\n")
    with pytest.raises(InputError) as info:
        load_playbooks(tmp_path)
    assert info.value.where == f"{path}:3"
    assert "verify: " in info.value.reason and "too short for 9 readings" in info.value.reason


def test_a_playbook_that_rolls_nothing_does_not_wait_for_a_rollout():
    # shift-traffic changes a Service; the Deployment may stay mid-rollout on purpose (the canary routed around).
    deployments = ScriptedDeployments(ROLLING)
    result = verify(ScriptedProbe(GOOD), spec(wait_for_rollout=False), deployments)
    assert result.outcome == "recovered" and deployments.calls == 0 and result.judged_from == 30.0


def test_the_collector_probe_reads_each_signals_peak_inside_the_window_only():
    def series(name, workload, values):
        return Series(name, {"namespace": "shop", "workload": workload}, np.array([0.0, 15.0, 30.0, 45.0]),
                      np.array(values, dtype=float))

    class Collector:
        def __init__(self):
            self.asked = []

        def collect(self, namespace, start, end):
            self.asked.append((namespace, start, end))
            return Observations("shop", start, end, signals=(
                series("error_ratio", "cart", [0.9, 0.1, np.nan, 0.2]),
                series("latency_p99", "cart", [0.3, 0.4, 0.35, 0.3]),
                series("error_ratio", "frontend", [0.5, 0.5, 0.5, 0.5])))

    collector = Collector()
    peaks = CollectorProbe(collector, SimClock(45.0)).peak("shop", "cart", ["error_ratio", "restarts"], 10.0, 45.0)
    assert peaks == {"error_ratio": 0.2}, "0.9 lies before the window, NaN is no value, restarts was not collected"
    assert collector.asked == [("shop", 10.0, 45.0)]
