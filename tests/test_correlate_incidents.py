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

FIXTURES = Path(__file__).parent / "fixtures" / "alertmanager"


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


def test_after_a_remediation_the_fixed_trouble_is_a_duplicate_and_only_new_trouble_opens_an_incident():
    clock = FakeClock()
    tracker = IncidentTracker(clock, resolved_ttl_seconds=3600)
    firing = alert("f1", starts=clock.t - 300, namespace="shop", deployment="cart")
    opened = tracker.ingest(firing)
    tracker.add_anomalies([anomaly("cart", "memory", start=clock.t - 240)])
    clock.t += 120
    closed = tracker.resolve(opened.incident.id, "plan p-1 succeeded")
    assert closed.incident.status is IncidentStatus.RESOLVED
    clock.t += 60
    # Alertmanager re-sends the alert that was firing, and the detector's window still holds the old run (even on
    # another signal): the trouble that was fixed, not new work.
    again = tracker.ingest(firing)
    assert (again.outcome, again.incident.id, again.incident.status) == ("duplicate", opened.incident.id,
                                                                       IncidentStatus.RESOLVED)
    [old] = tracker.add_anomalies([anomaly("cart", "memory", start=clock.t - 420),
                                   anomaly("cart", "latency_p99", start=clock.t - 400)])
    assert (old.outcome, old.incident.id) == ("duplicate", opened.incident.id)
    assert tracker.open_incidents() == []
    # What starts after the fix is new trouble: a new incident, holding only the new finding.
    [new] = tracker.add_anomalies([anomaly("cart", "memory", start=clock.t - 420),
                                   anomaly("cart", "restarts", start=clock.t - 30)])
    assert new.outcome == "opened" and new.incident.id != opened.incident.id
    assert [a.signal for a in new.incident.anomalies] == ["restarts"]
    other = tracker.ingest(alert("f2", starts=clock.t - 500, namespace="shop", deployment="cart"))
    assert (other.outcome, other.incident.id) == ("updated", new.incident.id)  # an alert it never held is news


def test_after_a_remediation_an_alert_that_resolved_and_fires_again_is_new_trouble_whatever_its_start_says():
    # Alertmanager's clock may lag the agent's: a re-fire after the fix can carry a start that reads as before it.
    # Once the alert was seen resolved, its next firing is the trouble coming back, never the fixed one.
    clock = FakeClock()
    tracker = IncidentTracker(clock, resolved_ttl_seconds=3600)
    opened = tracker.ingest(alert("f1", starts=clock.t - 300, namespace="shop", deployment="cart"))
    clock.t += 60
    tracker.resolve(opened.incident.id, "plan p-1 succeeded")
    clock.t += 60
    done = tracker.ingest(alert("f1", status="resolved", starts=clock.t - 420, namespace="shop", deployment="cart"))
    assert done.outcome == "duplicate" and done.incident.id == opened.incident.id
    clock.t += 300
    back = tracker.ingest(alert("f1", starts=clock.t - 400, namespace="shop", deployment="cart"))
    assert back.outcome == "opened" and back.incident.id != opened.incident.id


def test_after_a_remediation_an_alert_with_no_start_is_not_taken_for_the_fixed_trouble():
    # No startsAt (0): nothing says it began before the fix, so it is looked at again rather than ignored.
    clock = FakeClock()
    tracker = IncidentTracker(clock, resolved_ttl_seconds=3600)
    opened = tracker.ingest(alert("f1", starts=0.0, namespace="shop", deployment="cart"))
    clock.t += 60
    tracker.resolve(opened.incident.id, "plan p-1 succeeded")
    clock.t += 60
    again = tracker.ingest(alert("f1", starts=0.0, namespace="shop", deployment="cart"))
    assert again.outcome == "opened"


def test_an_incident_closed_by_its_alerts_or_by_quiet_does_not_swallow_later_deliveries():
    clock = FakeClock()
    tracker = IncidentTracker(clock, quiet_seconds=60)
    tracker.add_anomalies([anomaly("cart", "memory", start=clock.t - 30)])
    clock.t += 61
    [quiet] = tracker.expire()
    assert quiet.outcome == "resolved"
    [again] = tracker.add_anomalies([anomaly("cart", "memory", start=clock.t - 90)])
    assert again.outcome == "opened"  # only a remediation makes earlier findings old news


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


# --- issue #13 defect 5: the tracker never remembers what was not taken --------------------------------------------

def test_a_refused_opening_leaves_nothing_behind_and_the_resend_opens(tracker):
    a = alert("f1", namespace="shop", deployment="cart")
    refused = tracker.ingest(a, admit=lambda update: False)
    assert refused.outcome == "refused" and refused.extra["refused"] == "opened"
    assert tracker.open_incidents() == [] and tracker.get(refused.incident.id) is None
    taken = tracker.ingest(a, admit=lambda update: True)
    assert taken.outcome == "opened" and taken.incident.id == refused.incident.id


def test_a_refused_update_is_undone_exactly(tracker):
    first = tracker.ingest(alert("f1", namespace="shop", deployment="cart"))
    tracker.ingest(alert("f2", namespace="shop", deployment="cart"))
    tracker.ingest(alert("f2", status="resolved", namespace="shop", deployment="cart"))
    before = tracker.get(first.incident.id)
    # f2 firing again (it had resolved) and a new f3: both refused, so both must be new work on the re-send
    for fp in ("f2", "f3"):
        update = tracker.ingest(alert(fp, namespace="shop", deployment="cart"), admit=lambda u: False)
        assert update.outcome == "refused" and update.extra["refused"] == "updated"
    assert tracker.get(first.incident.id) == before
    assert tracker.ingest(alert("f2", status="resolved", namespace="shop", deployment="cart")).outcome == "duplicate"
    assert [tracker.ingest(alert(fp, namespace="shop", deployment="cart")).outcome for fp in ("f2", "f3")] == \
        ["updated", "updated"]


def test_admit_sees_every_update_and_a_duplicate_is_never_refused_work(tracker):
    seen: list[str] = []
    a = alert("f1", namespace="shop", deployment="cart")
    tracker.ingest(a, admit=lambda u: seen.append(u.outcome) or True)
    tracker.ingest(a, admit=lambda u: seen.append(u.outcome) or True)
    assert seen == ["opened", "duplicate"]


def test_refused_anomalies_are_undone_so_the_next_cycle_is_new_work(tracker):
    [refused] = tracker.add_anomalies([anomaly("cart", "memory")], admit=lambda u: False)
    assert refused.outcome == "refused" and tracker.open_incidents() == []
    [opened] = tracker.add_anomalies([anomaly("cart", "memory")], admit=lambda u: True)
    assert opened.outcome == "opened"
    [refused] = tracker.add_anomalies([anomaly("cart", "cpu")], admit=lambda u: False)
    assert refused.outcome == "refused" and refused.extra["refused"] == "updated"
    assert [a.signal for a in tracker.get(opened.incident.id).anomalies] == ["memory"]
    assert [u.outcome for u in tracker.add_anomalies([anomaly("cart", "cpu")])] == ["updated"]


def test_forget_drops_an_incident_so_its_alerts_are_new_work_again(tracker):
    a = alert("f1", namespace="shop", deployment="cart")
    opened = tracker.ingest(a)
    assert tracker.ingest(a).outcome == "duplicate"
    assert tracker.forget(opened.incident.id)
    assert tracker.get(opened.incident.id) is None and not tracker.forget(opened.incident.id)
    assert tracker.ingest(a).outcome == "opened"


def test_a_firing_alert_never_delivered_again_expires_and_a_later_firing_is_new_work():
    clock = FakeClock()
    tracker = IncidentTracker(clock, alert_idle_seconds=3600, resolved_ttl_seconds=60)
    a = alert("f1", namespace="shop", deployment="cart")
    b = alert("f2", namespace="shop", deployment="cart")
    opened = tracker.ingest(a)
    clock.t += 3000
    assert tracker.ingest(b).outcome == "updated"
    assert tracker.ingest(a).outcome == "duplicate"  # a re-send: still firing, its idle time starts again
    clock.t += 3599
    assert tracker.expire() == []
    clock.t += 1  # b was last delivered 3600 s ago, a 3600 s ago too
    [closed] = tracker.expire()
    assert closed.outcome == "resolved" and closed.incident.id == opened.incident.id
    assert closed.extra == {"reason": "alerts idle"}
    assert tracker.open_incidents() == []
    clock.t += 61
    tracker.expire()
    again = tracker.ingest(a)
    assert again.outcome == "opened"


def test_an_idle_alert_leaves_its_incident_while_the_others_keep_it_open():
    clock = FakeClock()
    tracker = IncidentTracker(clock, alert_idle_seconds=100)
    tracker.ingest(alert("f1", namespace="shop", deployment="cart"))
    clock.t += 60
    tracker.ingest(alert("f2", namespace="shop", deployment="cart"))
    clock.t += 40
    assert tracker.expire() == []
    [incident] = tracker.open_incidents()
    assert [a.fingerprint for a in incident.alerts] == ["f2"]
    assert tracker.ingest(alert("f1", namespace="shop", deployment="cart")).outcome == "updated"


def test_memory_stays_bounded_under_churn():
    from aiops.correlate.incidents import MAX_RESOLVED_FINGERPRINTS

    clock = FakeClock()
    tracker = IncidentTracker(clock, alert_idle_seconds=100, resolved_ttl_seconds=100)
    tracker.ingest(alert("keep", namespace="shop", deployment="cart"))
    for n in range(MAX_RESOLVED_FINGERPRINTS + 50):  # one long incident, many alerts that came and went
        tracker.ingest(alert(f"f{n}", namespace="shop", deployment="cart"))
        tracker.ingest(alert(f"f{n}", status="resolved", namespace="shop", deployment="cart"))
    record = next(iter(tracker._open.values()))
    assert len(record.resolved_fingerprints) == MAX_RESOLVED_FINGERPRINTS
    for n in range(200):  # many workloads whose resolved never arrives
        tracker.ingest(alert("x", namespace="shop", deployment=f"w{n}"))
    clock.t += 201
    tracker.expire()
    assert tracker.open_count == 0 and len(tracker._resolved) == 201  # closed, remembered for the TTL ...
    clock.t += 100
    tracker.expire()
    assert tracker._resolved == {}  # ... then forgotten


@pytest.mark.parametrize("labels, label", [
    ({"namespace": "Shop", "deployment": "cart"}, "namespace"),
    ({"namespace": "shop", "deployment": "cart/../x"}, "deployment"),
    ({"namespace": "shop", "workload": "Cart"}, "workload"),
    ({"namespace": "shop", "service": "a b"}, "service"),
    ({"namespace": "shop", "deployment": "cart", "pod": "p,q"}, "pod"),
    ({"namespace": "shop", "deployment": "c" * 254}, "deployment"),
])
def test_labels_that_name_kubernetes_objects_must_be_valid_names(labels, label):
    owner = owner_of(labels)
    assert not owner.found and f"label {label}=" in owner.reason


@pytest.mark.parametrize("labels", [
    {"namespace": "shop", "deployment": "cart.v2"},
    {"namespace": "shop", "app": "cart", "service": "Not Used"},
    {"namespace": "s" * 63, "workload": "w" * 253},
])
def test_valid_kubernetes_names_are_accepted(labels):
    assert owner_of(labels).found
