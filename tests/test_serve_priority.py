"""The incident queue: priority 0-9 from severity and playbook, order within a priority, dependencies."""

from __future__ import annotations

import threading

import pytest

from aiops.domain.alerts import Alert
from aiops.domain.incident import Anomaly, Incident
from aiops.domain.playbook import Playbook
from aiops.domain.target import Target
from aiops.serve.priority import Triage, WorkTag, check_acyclic, combine
from aiops.serve.worker import IncidentWorker
from tests.support.polling import wait_for

BOOKS = {"rollback-deploy": Playbook(name="rollback-deploy", action="rollback"),
         "isolate-pod": Playbook(name="isolate-pod", action="isolate", priority=0),
         "escalate": Playbook(name="escalate", action="escalate")}


def alert(severity: str | None, playbook: str | None = None, workload: str = "cart") -> Alert:
    labels = {"alertname": "X", "namespace": "shop", "deployment": workload}
    if severity:
        labels["severity"] = severity
    if playbook:
        labels["aiops_playbook"] = playbook
    return Alert(labels=labels, annotations={}, status="firing", starts_at=0.0, ends_at=None, fingerprint="f")


def incident(n: int, *alerts: Alert, workload: str = "cart", anomalies=()) -> Incident:
    return Incident(id=f"inc-{n}", target=Target.deployment("shop", workload), opened=0.0, alerts=alerts,
                    anomalies=tuple(anomalies))


def test_priority_comes_from_severity_and_playbook():
    triage = Triage(BOOKS)
    assert triage(incident(1, alert("critical", "rollback-deploy"))) == WorkTag(0, "rollback", ("shop", "cart"))
    assert triage(incident(2, alert("warning", "escalate"))).priority == 4           # (4 + 5) // 2
    assert triage(incident(3, alert("warning", "isolate-pod"))).priority == 2        # the playbook's own 0
    assert triage(incident(4, alert("info"), alert("critical"))).priority == 2       # most urgent alert: (0 + 5) // 2
    assert triage(incident(5)).priority == 5                                          # nothing known
    drift = Anomaly(Target.deployment("shop", "cart"), "drift", 3.0, 1.0, 0.0, detector="drift")
    assert triage(incident(6, anomalies=[drift])).kind == "retrain"
    assert combine(9, 9) == 9 and combine(-3, 0) == 0


def _recording_worker(**kwargs):
    order: list[str] = []
    gate, started = threading.Event(), threading.Event()

    def handle(inc: Incident) -> None:
        if inc.id == "gate":
            started.set()
            gate.wait(5)
        order.append(inc.id)

    worker = IncidentWorker(handle, **kwargs)
    return worker, order, gate, started


def test_a_storm_is_handled_most_urgent_first_and_in_arrival_order_within_a_priority():
    worker, order, gate, started = _recording_worker(triage=Triage(BOOKS))
    worker.start()
    worker.submit(Incident(id="gate", target=Target.deployment("shop", "gate"), opened=0.0), WorkTag(0))
    assert started.wait(5)  # the one thread is busy: everything below queues up
    worker.submit(incident(1, alert("info", "escalate")))
    worker.submit(incident(2, alert("warning")))
    worker.submit(incident(3, alert("critical", "rollback-deploy")))
    worker.submit(incident(4, alert("warning")))
    worker.submit(incident(5, alert("critical", "rollback-deploy")))
    gate.set()
    assert worker.drain(5)
    worker.stop(5)
    assert order == ["gate", "inc-3", "inc-5", "inc-2", "inc-4", "inc-1"]


def test_a_retrain_waits_for_a_rollback_of_the_same_workload_but_not_of_another():
    release = threading.Event()
    order: list[str] = []
    running: set[str] = set()
    lock = threading.Lock()

    def handle(inc: Incident) -> None:
        with lock:
            running.add(inc.id)
        if inc.id == "rollback-cart":
            release.wait(5)
        with lock:
            order.append(inc.id)
            running.discard(inc.id)

    worker = IncidentWorker(handle, threads=3).start()
    cart, other = ("shop", "cart"), ("shop", "payments")
    worker.submit(Incident(id="rollback-cart", target=Target.deployment(*cart), opened=0.0),
                  WorkTag(1, "rollback", cart))
    assert wait_for(lambda: "rollback-cart" in running)
    # The most urgent item queued, yet it must wait: its workload is being rolled back.
    worker.submit(Incident(id="retrain-cart", target=Target.deployment(*cart), opened=0.0),
                  WorkTag(0, "retrain", cart))
    worker.submit(Incident(id="retrain-other", target=Target.deployment(*other), opened=0.0),
                  WorkTag(7, "retrain", other))
    assert wait_for(lambda: "retrain-other" in order)
    assert "retrain-cart" not in order and "retrain-cart" not in running
    release.set()
    assert worker.drain(5)
    worker.stop(5)
    assert order.index("rollback-cart") < order.index("retrain-cart")


def test_a_dependency_cycle_is_refused():
    with pytest.raises(ValueError, match="cycle"):
        check_acyclic({"a": ("b",), "b": ("a",)})
    with pytest.raises(ValueError, match="cycle"):
        IncidentWorker(lambda inc: None, dependencies={"retrain": ("retrain",)})
