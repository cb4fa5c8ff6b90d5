"""IncidentTracker: one incident per workload, duplicates, updates, resolution, ignored alerts, anomalies."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from aiops.collect.alertmanager import parse_webhook
from aiops.correlate.incidents import IncidentTracker, incident_id
from aiops.correlate.owner import owner_of
from aiops.domain.workloads import workload_of_pod as workload_from_pod
from aiops.domain.alerts import Alert
from aiops.domain.incident import Anomaly, IncidentStatus
from aiops.domain.target import Target

FIXTURES = Path("/work/shared/fixtures/alertmanager")


class FakeClock:
    def __init__(self, t: float = 1_800_000_000.0) -> None:
        self.t = t

    def now(self) -> float:
        return self.t


def fixture_alerts(name: str) -> list[Alert]:
    return parse_webhook(json.loads((FIXTURES / f"alertmanager_{name}.json").read_text()))


def alert(fp: str, status: str = "firing", starts: float = 100.0, **labels: str) -> Alert:
    labels = {"alertname": f"A{fp}", **labels}
    return Alert(fingerprint=fp, status=status, labels=labels, starts_at=starts)


@pytest.fixture
def tracker() -> IncidentTracker:
    return IncidentTracker(FakeClock())


def test_first_alert_opens_and_redelivery_is_duplicate(tracker):
    [a] = fixture_alerts("HighErrorRate_firing")
    first = tracker.ingest(a)
    again = tracker.ingest(a)
    assert first.outcome == "opened"
    assert first.incident.target == Target.deployment("shop", "checkout")
    assert first.incident.id.startswith("inc-")
    assert again.outcome == "duplicate"
    assert again.incident.id == first.incident.id
    assert len(tracker.open_incidents()) == 1


def test_incident_id_is_stable_across_trackers(tracker):
    [a] = fixture_alerts("HighErrorRate_firing")
    other = IncidentTracker(FakeClock(1_900_000_000.0))
    assert tracker.ingest(a).incident.id == other.ingest(a).incident.id
    assert incident_id("shop", "checkout", a.starts_at) == tracker.ingest(a).incident.id


def test_grouped_payload_makes_one_incident_with_three_alerts(tracker):
    updates = [tracker.ingest(a) for a in fixture_alerts("grouped_by_namespace_firing")]
    assert [u.outcome for u in updates] == ["opened", "updated", "updated"]
    assert len({u.incident.id for u in updates}) == 1
    [incident] = tracker.open_incidents()
    assert sorted(a.name for a in incident.alerts) == ["FaultFlagRaised", "HighErrorRate", "HighLatency"]


def test_mixed_payload_removes_resolved_alerts_and_keeps_the_firing_one(tracker):
    for a in fixture_alerts("grouped_by_namespace_firing"):
        tracker.ingest(a)
    updates = [tracker.ingest(a) for a in fixture_alerts("grouped_mixed_firing_and_resolved")]
    assert [u.outcome for u in updates] == ["updated", "duplicate", "updated"]
    [incident] = tracker.open_incidents()
    assert [a.name for a in incident.alerts] == ["HighErrorRate"]
    # The last one resolving closes the incident.
    [last] = [tracker.ingest(a) for a in fixture_alerts("grouped_by_namespace_last")]
    assert last.outcome == "resolved"
    assert last.incident.status is IncidentStatus.RESOLVED
    assert last.incident.id == updates[0].incident.id
    assert tracker.open_incidents() == []
    assert tracker.get(last.incident.id).status is IncidentStatus.RESOLVED


def test_repeated_resolved_notification_is_duplicate_and_unknown_is_ignored(tracker):
    [firing] = fixture_alerts("HighLatency_firing")
    [resolved] = fixture_alerts("HighLatency_resolved")
    assert tracker.ingest(resolved).outcome == "ignored"  # nothing open yet
    tracker.ingest(firing)
    assert tracker.ingest(resolved).outcome == "resolved"
    again = tracker.ingest(resolved)
    assert again.outcome == "duplicate"


def test_refiring_after_resolution_opens_a_new_incident(tracker):
    first = tracker.ingest(alert("f1", starts=100.0, namespace="shop", deployment="cart"))
    tracker.ingest(alert("f1", status="resolved", starts=100.0, namespace="shop", deployment="cart"))
    second = tracker.ingest(alert("f1", starts=500.0, namespace="shop", deployment="cart"))
    assert second.outcome == "opened"
    assert second.incident.id != first.incident.id


def test_workloads_are_kept_apart(tracker):
    a = tracker.ingest(alert("f1", namespace="shop", deployment="cart"))
    b = tracker.ingest(alert("f1", namespace="shop", deployment="frontend"))
    c = tracker.ingest(alert("f1", namespace="other", deployment="cart"))
    assert [u.outcome for u in (a, b, c)] == ["opened", "opened", "opened"]
    assert len({u.incident.id for u in (a, b, c)}) == 3


@pytest.mark.parametrize("labels, why", [
    ({"deployment": "cart"}, "namespace"),
    ({"namespace": "shop"}, "workload"),
])
def test_alert_without_namespace_or_workload_is_ignored_with_reason(tracker, labels, why):
    update = tracker.ingest(alert("f1", **labels))
    assert update.outcome == "ignored"
    assert why in update.extra["reason"]
    assert update.incident.id == ""
    assert tracker.open_incidents() == []


def test_namespace_outside_allow_list_is_ignored():
    tracker = IncidentTracker(FakeClock(), namespaces=("shop",))
    update = tracker.ingest(alert("f1", namespace="kube-system", deployment="coredns"))
    assert update.outcome == "ignored"
    assert "allow-list" in update.extra["reason"]
    assert tracker.ingest(alert("f2", namespace="shop", deployment="cart")).outcome == "opened"


@pytest.mark.parametrize("labels, expected", [
    ({"namespace": "shop", "workload": "w", "deployment": "d"}, "w"),
    ({"namespace": "shop", "app": "a", "service": "s"}, "a"),
    ({"namespace": "shop", "service": "s"}, "s"),
    ({"namespace": "shop", "pod": "cart-7d9f8b6c5d-x2k4p"}, "cart"),
    ({"namespace": "shop", "pod": "node-agent-x2k4p"}, "node-agent"),
    ({"namespace": "shop", "pod": "my-redis"}, "my-redis"),
])
def test_owner_from_labels(labels, expected):
    assert owner_of(labels).workload == expected


def test_pod_alert_joins_the_deployment_incident(tracker):
    a = tracker.ingest(alert("f1", namespace="shop", deployment="cart"))
    b = tracker.ingest(alert("f2", namespace="shop", pod="cart-5f6b7c8d9f-x7k2p"))
    assert b.outcome == "updated"
    assert b.incident.id == a.incident.id
    assert workload_from_pod("cart-5f6b7c8d9f-x7k2p") == "cart"


def anomaly(workload: str, signal: str, start: float = 50.0) -> Anomaly:
    return Anomaly(Target.deployment("shop", workload), signal, score=3.0, threshold=1.0, start=start,
                   detector="lof")


def test_anomalies_group_per_workload_and_deduplicate(tracker):
    first = tracker.add_anomalies([anomaly("cart", "memory"), anomaly("cart", "restarts"), anomaly("web", "cpu")])
    assert sorted((u.incident.target.name, u.outcome) for u in first) == [("cart", "opened"), ("web", "opened")]
    cart = next(u for u in first if u.incident.target.name == "cart")
    assert len(cart.incident.anomalies) == 2
    second = tracker.add_anomalies([anomaly("cart", "memory")])
    assert [u.outcome for u in second] == ["duplicate"]
    third = tracker.add_anomalies([anomaly("cart", "latency_p99")])
    assert [u.outcome for u in third] == ["updated"]
    assert third[0].extra["signals"] == ["latency_p99"]
    # An alert on the same workload joins the anomaly-opened incident.
    assert tracker.ingest(alert("f1", namespace="shop", deployment="cart")).incident.id == cart.incident.id


def test_quiet_anomaly_incident_resolves_and_resolved_ones_are_forgotten():
    clock = FakeClock()
    tracker = IncidentTracker(clock, quiet_seconds=60, resolved_ttl_seconds=120)
    [opened] = tracker.add_anomalies([anomaly("cart", "memory")])
    clock.t += 30
    assert tracker.expire() == []
    clock.t += 31
    [closed] = tracker.expire()
    assert closed.outcome == "resolved" and closed.incident.id == opened.incident.id
    assert tracker.open_incidents() == []
    assert tracker.get(opened.incident.id) is not None
    clock.t += 121
    tracker.expire()
    assert tracker.get(opened.incident.id) is None


def test_resolve_by_hand(tracker):
    opened = tracker.ingest(alert("f1", namespace="shop", deployment="cart"))
    closed = tracker.resolve(opened.incident.id, "remediated")
    assert closed.outcome == "resolved" and tracker.open_incidents() == []
    assert tracker.resolve(opened.incident.id) is None


def test_concurrent_ingest_opens_exactly_one_incident(tracker):
    outcomes: list[str] = []
    lock = threading.Lock()

    def deliver(n: int) -> None:
        update = tracker.ingest(alert(f"f{n % 5}", namespace="shop", deployment="cart"))
        with lock:
            outcomes.append(update.outcome)

    threads = [threading.Thread(target=deliver, args=(n,)) for n in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("opened") == 1
    assert outcomes.count("updated") == 4
    assert outcomes.count("duplicate") == 35
