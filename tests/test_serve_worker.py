"""IncidentWorker and QueueingReceiver: once per update, never concurrent per incident, survives handler errors."""

from __future__ import annotations

import threading

from aiops.correlate.incidents import IncidentTracker
from aiops.domain.alerts import Alert
from aiops.domain.incident import Anomaly, Incident
from aiops.domain.target import Target
from aiops.serve.metrics import AgentMetrics
from aiops.serve.worker import IncidentWorker, QueueingReceiver
from tests.support.polling import wait_for


def incident(n: int) -> Incident:
    return Incident(id=f"inc-{n}", target=Target.deployment("shop", f"w{n}"), opened=0.0)


def test_each_update_is_handled_once():
    seen: list[str] = []
    worker = IncidentWorker(lambda inc: seen.append(inc.id)).start()
    for n in range(20):
        assert worker.submit(incident(n % 4))
    assert worker.drain(5)
    worker.stop(5)
    assert sorted(seen) == sorted(f"inc-{n % 4}" for n in range(20))
    assert worker.handled == 20


def test_same_incident_never_runs_concurrently_but_others_do():
    lock = threading.Lock()
    running: dict[str, int] = {}
    overlap_same: list[str] = []
    max_parallel = [0]
    release = threading.Event()

    def handle(inc: Incident) -> None:
        with lock:
            running[inc.id] = running.get(inc.id, 0) + 1
            if running[inc.id] > 1:
                overlap_same.append(inc.id)
            max_parallel[0] = max(max_parallel[0], sum(running.values()))
        release.wait(5)
        with lock:
            running[inc.id] -= 1

    worker = IncidentWorker(handle, threads=4).start()
    for _ in range(3):
        worker.submit(incident(1))
        worker.submit(incident(2))
    assert wait_for(lambda: max_parallel[0] >= 2)
    release.set()
    assert worker.drain(5)
    worker.stop(5)
    assert overlap_same == []
    assert max_parallel[0] == 2  # only two distinct incidents, so at most two at a time
    assert worker.handled == 6


def test_handler_exception_is_logged_and_worker_continues(caplog):
    metrics = AgentMetrics()
    seen: list[str] = []

    def handle(inc: Incident) -> None:
        if inc.id == "inc-1":
            raise RuntimeError("diagnosis blew up")
        seen.append(inc.id)

    worker = IncidentWorker(handle, metrics=metrics).start()
    worker.submit(incident(1))
    worker.submit(incident(2))
    assert worker.drain(5)
    worker.stop(5)
    assert seen == ["inc-2"]
    assert worker.failed == 1
    assert metrics.handler_errors._value.get() == 1
    failure = next(r for r in caplog.records if r.message == "incident handler failed")
    assert failure.incident == "inc-1" and failure.exc_info is not None


def test_full_queue_refuses_and_counts():
    metrics = AgentMetrics()
    gate, entered = threading.Event(), threading.Event()

    def handle(inc: Incident) -> None:
        entered.set()
        gate.wait(5)

    worker = IncidentWorker(handle, max_queue=2, metrics=metrics).start()
    worker.submit(incident(0))
    assert entered.wait(5)  # inc-0 is in the handler, so the queue is empty again
    assert worker.submit(incident(1)) and worker.submit(incident(2))
    assert not worker.submit(incident(3))
    assert metrics.worker_dropped._value.get() == 1
    gate.set()
    assert worker.drain(5)
    worker.stop(5)
    assert worker.handled == 3


def test_drain_times_out_while_handler_is_busy():
    gate = threading.Event()
    worker = IncidentWorker(lambda inc: gate.wait(5)).start()
    worker.submit(incident(0))
    assert worker.drain(0.05) is False
    gate.set()
    assert worker.drain(5)
    worker.stop(5)


def test_receiver_queues_opened_and_updated_but_not_duplicates_or_resolved():
    metrics = AgentMetrics()
    seen: list[tuple[str, int]] = []
    worker = IncidentWorker(lambda inc: seen.append((inc.id, len(inc.alerts) + len(inc.anomalies)))).start()
    tracker = IncidentTracker(type("C", (), {"now": lambda self: 1000.0})())
    receiver = QueueingReceiver(tracker, worker, metrics)
    labels = {"namespace": "shop", "deployment": "cart"}
    a = Alert("fa", "firing", {**labels, "alertname": "A"}, starts_at=10.0)
    b = Alert("fb", "firing", {**labels, "alertname": "B"}, starts_at=11.0)
    receiver.receive([a, a, b])
    receiver.receive([Alert("fb", "resolved", {**labels, "alertname": "B"}, starts_at=11.0)])
    receiver.receive_anomalies([Anomaly(Target.deployment("shop", "cart"), "memory", 3.0, 1.0, 5.0)])
    assert worker.drain(5)
    worker.stop(5)
    [inc_id] = {i for i, _ in seen}
    assert [n for _, n in seen] == [1, 2, 2]  # opened (a), updated (+b), updated (+anomaly, b resolved)
    assert metrics.alerts_deduplicated._value.get() == 1
    assert metrics.incidents_open._value.get() == 1
    assert metrics.detections._value.get() == 1
