"""The scenario generator: plans cover every fault, and recorded cases are valid folders whose data shows the fault."""

from __future__ import annotations

import numpy as np
import pytest

from aiops.collect.casefolder import read_case
from aiops.domain import signals as sig
from aiops.sim.casegen import FAULT_KINDS, plan_case, run_case
from bench.casegen import record

SEED = 11


def small_plan(kind: str):
    """The first plan of ``kind`` with at most 5 workloads (fast to simulate), topology known."""
    for index in range(200):
        spec = plan_case(SEED, index, kind)
        if len(spec.models) <= 5 and spec.topology_known:
            return spec
    raise AssertionError(f"no small plan for {kind}")


def test_plans_cycle_through_every_fault_and_are_reproducible():
    specs = [plan_case(3, i) for i in range(2 * len(FAULT_KINDS))]
    assert [s.fault for s in specs[:len(FAULT_KINDS)]] == list(FAULT_KINDS)
    assert plan_case(3, 5) == plan_case(3, 5)
    assert plan_case(3, 5) != plan_case(4, 5)
    for spec in specs:
        names = [m.name for m in spec.models]
        assert 4 <= len(names) <= 15 and len(set(names)) == len(names)
        callers = {a for a, _ in spec.calls}
        callees = {b for _, b in spec.calls}
        assert callers | callees <= set(names)
        if spec.fault == "traffic_surge":
            assert spec.workload not in callees  # a surge enters at an entry workload
        if spec.fault == "dependency_latency":
            assert spec.workload in callees      # a slow dependency has callers
        assert all(d.workload != spec.workload for d in spec.distractors)


def test_truth_follows_the_fault_table():
    assert plan_case(1, 0, "memory_leak").truth["playbook"] == "restart-workload"
    assert plan_case(1, 0, "dependency_latency").truth["playbook"] == "escalate"
    assert plan_case(1, 0, "none").truth == {"workload": "", "fault": "unknown", "playbook": "escalate"}
    crash = [plan_case(1, i, "crash_loop") for i in range(12)]
    assert {c.truth["playbook"] for c in crash if c.params["after_rollout"]} == {"rollback-deploy"}
    assert {c.truth["playbook"] for c in crash if not c.params["after_rollout"]} == {"escalate"}


def _recent_ratio(case, workload: str, signal: str) -> float:
    s = next(s for s in case.observations.signals if s.name == signal and s.labels["workload"] == workload)
    onset = case.truth["onset"]
    before = np.nanmedian(s.values[s.timestamps < onset - 60])
    after = np.nanmax(s.values[s.timestamps > onset + 60])
    return after / max(before, 1e-9)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    root = tmp_path_factory.mktemp("cases")
    out = {}
    for kind in FAULT_KINDS:
        case = run_case(small_plan(kind))
        try:
            out[kind] = read_case(record(case, root / kind))
        finally:
            case.runtime.stop()
    return out


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_recorded_case_is_a_valid_folder_with_its_truth(recorded, kind):
    case = recorded[kind]
    spec = small_plan(kind)
    assert case.truth["fault"] == ("unknown" if kind == "none" else kind)
    assert case.truth["workload"] == spec.workload
    assert case.truth["playbook"] == spec.truth["playbook"]
    obs = case.observations
    assert obs.namespace == spec.namespace
    assert 3500 <= obs.end - obs.start <= 3600
    assert set(obs.workloads) == {m.name for m in spec.models}
    assert obs.topology.calls == spec.calls
    assert obs.logs
    assert obs.events or kind == "none"  # a no-fault case with only a cron spike has no events
    assert all(line.workload in obs.workloads for line in obs.logs)


def test_each_fault_shows_its_signature(recorded):
    def lines(kind, text):
        c = recorded[kind]
        return [l for l in c.observations.logs if l.workload == c.truth["workload"] and text in l.line]

    def events(kind, reason):
        c = recorded[kind]
        return [e for e in c.observations.events if e.workload == c.truth["workload"] and e.reason == reason]

    assert _recent_ratio(recorded["memory_leak"], recorded["memory_leak"].truth["workload"], sig.MEMORY) > 1.2
    assert events("crash_loop", "BackOff")
    assert _recent_ratio(recorded["cpu_saturation"], recorded["cpu_saturation"].truth["workload"], sig.CPU) > 2
    assert _recent_ratio(recorded["traffic_surge"], recorded["traffic_surge"].truth["workload"],
                         sig.REQUEST_RATE) > 2
    assert events("bad_deploy", "ScalingReplicaSet") and lines("bad_deploy", "ERROR")
    bad_pods = {l.pod for l in lines("bad_replica_set", small_plan("bad_replica_set").params["line"])}
    all_pods = {l.pod for l in recorded["bad_replica_set"].observations.logs
                if l.workload == recorded["bad_replica_set"].truth["workload"]}
    assert len(bad_pods) == 1 and len(all_pods) >= 2
    slow = recorded["dependency_latency"]
    assert _recent_ratio(slow, slow.truth["workload"], sig.LATENCY_P99) > 2
    caller = next(a for a, b in slow.observations.topology.calls if b == slow.truth["workload"])
    assert _recent_ratio(slow, caller, sig.LATENCY_P99) > 1.5


def test_alerts_fire_for_visible_faults_and_name_the_namespace(recorded):
    crash = recorded["crash_loop"]
    assert crash.alerts, "a crash loop should raise an alert"
    assert all(a.labels["namespace"] == crash.observations.namespace for a in crash.alerts)
    assert recorded["none"].alert_payload is None or all(
        a.labels["alertname"] != "KubePodCrashLooping" for a in recorded["none"].alerts)
