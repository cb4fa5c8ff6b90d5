"""KubeCollector and ObservationCollector against a stub KubeClient serving real apiserver object shapes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from aiops.clients.kube import KubeError
from aiops.collect.alertmanager import parse_time
from aiops.collect.kube import KubeCollector, event_workload, kube_event, parse_log_text
from aiops.collect.observations import ObservationCollector
from aiops.domain.observations import Observations, Series, SourceGap, Topology

FIXTURES = Path(__file__).parent / "fixtures" / "kube"
PODS = json.loads((FIXTURES / "pods_list.json").read_text())["items"]
EVENTS = json.loads((FIXTURES / "events_list.json").read_text())["items"]
NOW = parse_time("2026-11-27T18:30:00Z")


class StubKube:
    """The two KubeClient calls KubeCollector makes, with canned answers."""

    def __init__(self, logs: dict[str, object], events: list[dict]) -> None:
        self._logs, self._events, self.log_calls = logs, events, []

    def list_pods(self, namespace: str, selector: str | None = None) -> list[dict]:
        return PODS

    def read_pod_log(self, namespace, pod, container=None, since_seconds=None, tail_lines=None, timestamps=True):
        self.log_calls.append((namespace, pod, container, since_seconds, tail_lines, timestamps))
        answer = self._logs[pod]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def list_events(self, namespace: str) -> list[dict]:
        return self._events


def test_logs_are_parsed_filtered_and_attributed() -> None:
    kube = StubKube({
        "checkout-abc-1": "2026-11-27T18:29:20.123456789Z started\n"
                          "2026-11-27T18:29:50Z boom\n  at line 3\n"
                          "2026-11-27T18:10:00Z too old\n",
        "checkout-abc-2": KubeError(400, "BadRequest", 'container "app" is waiting to start'),
    }, [])
    lines = KubeCollector(kube, clock=lambda: NOW).logs("run5", NOW - 60, NOW, tail_lines=100)
    assert [l.line for l in lines] == ["started", "boom", "  at line 3"]
    assert lines[0].ts == pytest.approx(parse_time("2026-11-27T18:29:20.123456789Z"))
    assert lines[2].ts == lines[1].ts  # a continuation line keeps the previous time
    assert {(l.pod, l.container, l.workload, l.namespace) for l in lines} == {("checkout-abc-1", "app", "checkout",
                                                                               "run5")}
    assert kube.log_calls[0] == ("run5", "checkout-abc-1", "app", 60, 100, True)


def test_logs_ask_for_the_whole_window_back_to_its_start() -> None:
    """sinceSeconds counts from the collector's clock; a clock behind the window's end (#18: the wall clock under a
    simulated one) must not cut the window's start off, or the baseline looks empty and every template "surges"."""
    kube = StubKube({"checkout-abc-1": "", "checkout-abc-2": ""}, [])
    KubeCollector(kube, clock=lambda: NOW + 30).logs("run5", NOW - 3600, NOW)
    KubeCollector(kube, clock=lambda: NOW - 3000).logs("run5", NOW - 3600, NOW)
    assert [call[3] for call in kube.log_calls] == [3630, 3630, 3600, 3600]


def test_a_kubelet_the_apiserver_cannot_reach_only_loses_that_pods_log() -> None:
    kube = StubKube({"checkout-abc-1": KubeError(500, "InternalError", 'dial tcp: lookup node-1: no such host'),
                     "checkout-abc-2": "2026-11-27T18:29:50Z still here\n"}, [])
    lines = KubeCollector(kube, clock=lambda: NOW).logs("run5", NOW - 60, NOW)
    assert [(l.pod, l.line) for l in lines] == [("checkout-abc-2", "still here")]


def test_other_api_errors_propagate() -> None:
    kube = StubKube({"checkout-abc-1": KubeError(403, "Forbidden", "no"), "checkout-abc-2": ""}, [])
    with pytest.raises(KubeError):
        KubeCollector(kube, clock=lambda: NOW).logs("run5", NOW - 60, NOW)


def test_events_from_the_real_apiserver_shape() -> None:
    pod_event = {"metadata": {"name": "e2", "namespace": "run5", "creationTimestamp": "2026-11-27T18:29:40Z"},
                 "involvedObject": {"kind": "Pod", "name": "cart-7d4b9c8f6-x2k9p", "namespace": "run5"},
                 "reason": "BackOff", "message": "Back-off restarting", "type": "Warning", "count": 4,
                 "firstTimestamp": None, "lastTimestamp": None, "eventTime": None}
    old = dict(pod_event, lastTimestamp="2026-11-27T17:00:00Z")
    junk = {"reason": "no involved object"}
    events = KubeCollector(StubKube({}, [pod_event, *EVENTS, old, junk])).events("run5", NOW - 60, NOW)
    assert [(e.reason, e.workload, e.involved_kind) for e in events] == [
        ("AIOpsRemediation", "checkout", "Deployment"), ("BackOff", "cart", "Pod")]
    assert events[1].ts == parse_time("2026-11-27T18:29:40Z") and events[1].count == 4
    assert events[1].type == "Warning"


def test_event_helpers() -> None:
    assert event_workload({"kind": "ReplicaSet", "name": "cart-7d4b9c8f6"}) == "cart"
    assert event_workload({"kind": "Node", "name": "n1"}) == ""
    micro = {"involvedObject": {"kind": "Deployment", "name": "d"}, "eventTime": "2026-11-27T18:29:20.500000Z"}
    assert kube_event(micro).ts == parse_time("2026-11-27T18:29:20.5Z")
    assert parse_log_text("no timestamp first\n", "ns", "p", "c", "w") == []


class StubMetrics:
    def collect(self, namespace: str, start: float, end: float) -> Observations:
        s = Series("memory", {"namespace": namespace, "workload": "cart"}, np.array([start]), np.array([1.0]))
        return Observations(namespace, start, end, series=(s,), signals=(s,))


def test_observation_collector_combines_sources() -> None:
    kube = KubeCollector(StubKube({"checkout-abc-1": "2026-11-27T18:29:50Z hi\n", "checkout-abc-2": ""}, EVENTS),
                         clock=lambda: NOW)
    topo = Topology((("web", "cart"),))
    both = ObservationCollector(StubMetrics(), kube, topo).collect("run5", NOW - 60, NOW)
    assert len(both.series) == 1 and len(both.signals) == 1 and len(both.logs) == 1 and len(both.events) == 1
    assert both.topology == topo and both.workloads == ["cart", "checkout"]
    only_kube = ObservationCollector(None, kube).collect("run5", NOW - 60, NOW)
    assert only_kube.series == () and len(only_kube.logs) == 1
    only_metrics = ObservationCollector(StubMetrics(), None).collect("run5", NOW - 60, NOW)
    assert only_metrics.logs == () and only_metrics.events == () and len(only_metrics.series) == 1
    # What was not read is recorded with the reason, so its emptiness is not taken for "nothing happened".
    assert both.not_collected == () and both.sources == ("metrics", "logs", "events")
    assert only_kube.not_collected == (SourceGap("metrics", "no Prometheus configured"),)
    assert only_metrics.not_collected == (SourceGap("logs", "no Kubernetes access configured"),
                                          SourceGap("events", "no Kubernetes access configured"))
    told = ObservationCollector(StubMetrics(), None, without_kube="no --config").collect("run5", NOW - 60, NOW)
    assert {g.reason for g in told.not_collected} == {"no --config"} and not told.collected("events")


class RefusingEvents(StubKube):
    """A ServiceAccount allowed to read pods and logs but not events."""

    def list_events(self, namespace: str) -> list[dict]:
        raise KubeError(403, "Forbidden", 'events is forbidden: User "aiops" cannot list resource "events"')


def test_a_kube_read_that_fails_is_a_gap_when_asked_and_raises_otherwise() -> None:
    kube = KubeCollector(RefusingEvents({"checkout-abc-1": "2026-11-27T18:29:50Z hi\n", "checkout-abc-2": ""}, []),
                         clock=lambda: NOW)
    obs = ObservationCollector(StubMetrics(), kube, kube_failures_as_gaps=True).collect("run5", NOW - 60, NOW)
    assert len(obs.logs) == 1 and obs.collected("logs")
    assert obs.not_collected == (SourceGap("events", 'reading them failed: 403 Forbidden: events is forbidden: User '
                                                   '"aiops" cannot list resource "events"'),)
    with pytest.raises(KubeError):  # the agent's loop: a failed read fails the run, as before
        ObservationCollector(StubMetrics(), kube).collect("run5", NOW - 60, NOW)


def test_a_failure_that_is_no_kube_call_is_never_swallowed() -> None:
    class Broken(StubKube):
        def list_events(self, namespace: str) -> list[dict]:
            raise ValueError("a bug, not an API answer")

    kube = KubeCollector(Broken({"checkout-abc-1": "", "checkout-abc-2": ""}, []), clock=lambda: NOW)
    with pytest.raises(ValueError):
        ObservationCollector(StubMetrics(), kube, kube_failures_as_gaps=True).collect("run5", NOW - 60, NOW)
