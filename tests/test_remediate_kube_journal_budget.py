"""The ConfigMap journal within its budgets (issue #13, defect 15): one LIST answers a whole decision's questions,
and a plan's ConfigMap stays under the API's 1 MiB limit however long its restore watch runs, and still resumes."""

from __future__ import annotations

from pathlib import Path

import pytest

from aiops.clients.kube import KubeClient
from aiops.domain.plans import ActionPlan, ExecutionState, Mode, plan_id
from aiops.domain.target import Target
from aiops.remediate.kube_journal import FOLDED_CHECKS, KEEP_RESTORE_CHECKS, RESTORE_CHECK, KubeJournal, configmap_name
from aiops.remediate.planner import plan
from aiops.remediate.playbooks import load_playbooks
from aiops.remediate.runner import PlaybookRunner
from aiops.remediate.verify import Verifier
from aiops.settings import parse_settings
from aiops.sim.clock import SimClock
from aiops.sim.cluster import SimCluster
from aiops.sim.configmaps import MAX_BYTES
from aiops.sim.kubeapi import KubeApiServer
from tests.test_kube_contract import api  # noqa: F401
from tests.test_remediate_planner import ACT, NOW, SETTLED, diagnosis, started
from tests.test_remediate_restore import BEFORE, CALM, NS, RECOVERED, TARGET
from tests.test_remediate_runner import sim_sleep

JOURNAL_NS = "aiops-journal"
PLAYBOOKS = load_playbooks(Path(__file__).resolve().parent.parent / "playbooks")


class CountingKube:
    """A ``KubeClient`` that counts the calls made through it, by name."""

    def __init__(self, kube: KubeClient) -> None:
        self._kube = kube
        self.calls: dict[str, int] = {}

    def __getattr__(self, name: str):
        real = getattr(self._kube, name)

        def call(*args, **kwargs):
            self.calls[name] = self.calls.get(name, 0) + 1
            return real(*args, **kwargs)
        return call


class Ticks:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def sim():
    clock = SimClock(1.7e9)
    cluster = SimCluster(clock)
    cluster.add_deployment(NS, "llm", replicas=2, pod_labels={"model-group": "llm"})
    cluster.add_deployment(NS, "llm-small", replicas=1, pod_labels={"model-group": "llm"})
    cluster.add_namespace(JOURNAL_NS)
    server = KubeApiServer(cluster).start()
    kube = KubeClient.for_host(server.url)
    yield cluster, clock, kube
    kube.close()
    server.stop()


def test_a_decision_lists_the_journal_once(sim):
    """The planner asks the journal four questions (cooldown, rate limit, concurrency, blast radius): one LIST."""
    _, _, kube = sim
    counting, ticks = CountingKube(kube), Ticks()
    journal = KubeJournal(counting, JOURNAL_NS, monotonic=ticks)
    started(journal, 1, names=["a"])
    counting.calls.clear()
    ticks.now += 60.0  # the next decision, a minute later: what was listed before is stale

    result = plan(diagnosis(), PLAYBOOKS, ACT, journal, NOW, SETTLED)

    assert isinstance(result, ActionPlan)
    assert counting.calls == {"list_configmaps": 1}


def test_own_writes_show_at_once_and_another_replicas_after_the_cache_age(sim):
    _, _, kube = sim
    ticks = Ticks()
    counting = CountingKube(kube)
    leader = KubeJournal(counting, JOURNAL_NS, read_cache_seconds=1.0, monotonic=ticks)
    other = KubeJournal(kube, JOURNAL_NS)  # another replica (an old leader finishing a record)
    leader.record("p-1", "executing", "go", {"ts": 1.0, "trigger": "start"})
    assert [r["plan_id"] for r in leader.latest()] == ["p-1"]

    leader.record("p-2", "executing", "go", {"ts": 2.0, "trigger": "start"})
    leader.record("p-1", "verifying", "applied", {"ts": 3.0})
    other.record("p-3", "executing", "go", {"ts": 4.0, "trigger": "start"})
    # Its own writes are in the snapshot at once, without a LIST; the other replica's are not yet.
    assert [(r["plan_id"], r["state"]) for r in leader.latest()] == [("p-1", "verifying"), ("p-2", "executing")]
    assert leader.in_flight() == ["p-1", "p-2"] and counting.calls["list_configmaps"] == 1

    ticks.now += 1.0  # the snapshot's age reaches read_cache_seconds: the next question lists again
    assert [r["plan_id"] for r in leader.latest()] == ["p-1", "p-2", "p-3"]
    assert counting.calls["list_configmaps"] == 2
    assert [r["state"] for r in leader.records()] == ["executing", "executing", "verifying", "executing"]


def test_without_a_cache_every_question_lists(sim):
    _, _, kube = sim
    counting = CountingKube(kube)
    journal = KubeJournal(counting, JOURNAL_NS, read_cache_seconds=0, retention_days=0)
    journal.record("p-1", "executing", "go", {"ts": 1.0, "trigger": "start"})
    journal.latest()
    journal.latest()
    assert counting.calls["list_configmaps"] == 2


def test_the_settings_reach_the_journal(sim):
    _, _, kube = sim
    settings = parse_settings({"journal": {"backend": "kubernetes", "namespace": JOURNAL_NS,
                                           "read_cache_seconds": 0.25, "compact_bytes": 100_000}})
    journal = KubeJournal.from_settings(kube, settings)
    assert (journal.namespace, journal.read_cache_seconds, journal.compact_bytes) == (JOURNAL_NS, 0.25, 100_000)


class AgentDied(BaseException):
    """The process ending in the middle of the watch (nothing in the agent catches it)."""


class FailingThenDeadProbe:
    """Verification reads recovered; then every restore check fails with Prometheus' long error text (what a
    monitoring outage during a watch looks like); after ``checks`` of them the agent dies."""

    def __init__(self, checks: int) -> None:
        self.checks = checks
        self.calls = 0
        self.failed = 0  # reads that served a failure

    def read(self, namespace, workload, signals):
        self.calls += 1
        if self.calls <= 4:
            return {s: v for s, v in RECOVERED.items() if s in signals}
        if self.calls > 4 + self.checks:
            raise AgentDied()
        self.failed += 1
        raise RuntimeError("query failed: 503 Service Unavailable: " + "upstream connect error or disconnect/reset "
                           "before headers; " * 40)


def test_a_long_restore_watch_stays_under_the_configmap_limit_and_still_resumes(sim):
    """500 failing restore checks (~2 KiB each, more than 1 MiB in all) then the agent dies; the plan's ConfigMap
    never nears the limit (the API would refuse the next record: the watch could not go on), and another replica
    resumes the watch from the journal and restores the original routing."""
    cluster, clock, kube = sim
    book = PLAYBOOKS["degrade-model"]
    long_watch = book.model_copy(update={"restore": book.restore.model_copy(update={"max_checks": 2000})})
    playbooks = {**PLAYBOOKS, book.name: long_watch}
    checks = 500
    probe = FailingThenDeadProbe(checks)
    first = PlaybookRunner(kube, KubeJournal(kube, JOURNAL_NS),
                           Verifier(probe, sim_sleep(cluster, clock), clock), playbooks, clock)
    action_plan = ActionPlan(plan_id("inc-long", book.name, TARGET), "inc-long", book.name, book.action, TARGET,
                             dict(book.params), Mode.ACT)
    with pytest.raises(AgentDied):
        first.run(action_plan, BEFORE)

    cm = kube.get_configmap(JOURNAL_NS, configmap_name(action_plan.id))
    size = sum(len(k) + len(v.encode()) for k, v in cm["data"].items())
    assert size < 2 * 262_144 < MAX_BYTES
    replica = KubeJournal(kube, JOURNAL_NS)
    history = replica.history(action_plan.id)
    folded = [r["data"][FOLDED_CHECKS] for r in history if FOLDED_CHECKS in r["data"]]
    assert len(folded) == 1 and folded[0]["healthy"] == 0
    kept = [r["data"][RESTORE_CHECK] for r in history if RESTORE_CHECK in r["data"]]
    # Every check is accounted for: the failing ones the probe served, and those that read what the first reads
    # (meant for the verification, which may take fewer since it waits for the rollout) returned.
    assert probe.failed <= folded[0]["count"] + len(kept) <= probe.failed + 4
    assert sum(RESTORE_CHECK in r["data"] for r in history) >= KEEP_RESTORE_CHECKS
    assert replica.unfinished() == [action_plan.id] and replica.plan_of(action_plan.id) == action_plan.as_dict()
    assert kube.get_service(NS, "llm")["spec"]["selector"] == {"model-group": "llm"}  # the mitigation holds

    restarted = PlaybookRunner(kube, replica, Verifier(_Calm(), sim_sleep(cluster, clock), clock), playbooks, clock)
    (exe,) = restarted.resume_unfinished()
    assert exe.state is ExecutionState.RESTORED
    assert kube.get_service(NS, "llm")["spec"]["selector"] == {"app": "llm"}
    assert replica.unfinished() == []


class _Calm:
    def read(self, namespace, workload, signals):
        return {s: v for s, v in CALM.items() if s in signals}


def restore_check(journal: KubeJournal, plan: str, n: int, note: str = "") -> None:
    journal.record(plan, "succeeded", f"restore check {n}: not healthy{note}",
                   {"ts": float(n), RESTORE_CHECK: {"n": n, "values": {}, "healthy": n % 3 == 0, "run": 0},
                    "restore_pending": True})


def test_folding_keeps_order_state_and_what_a_resume_reads(api, ns):
    """On both backends: the fold is one JSON patch (resourceVersion test, removes, a replace) the API accepts."""
    journal = KubeJournal(api, ns, compact_bytes=16_384)
    journal.record("p-f", "executing", "go", {"ts": 0.5, "trigger": "start", "plan": {"id": "p-f"},
                                              "before": {"error_ratio": 0.3}})
    journal.record("p-f", "succeeded", "recovered", {"ts": 0.6, "trigger": "recovered", "restore_pending": True})
    for n in range(1, 61):
        restore_check(journal, "p-f", n, ": " + "x" * 400)
    history = journal.history("p-f")
    assert [r["state"] for r in history[:2]] == ["executing", "succeeded"] and history[0]["data"]["before"]
    summary = [r for r in history if FOLDED_CHECKS in r["data"]]
    kept = [r["data"][RESTORE_CHECK]["n"] for r in history if RESTORE_CHECK in r["data"]]
    assert len(summary) == 1 and kept == list(range(61 - len(kept), 61)) and len(kept) >= KEEP_RESTORE_CHECKS
    assert summary[0]["data"][FOLDED_CHECKS]["count"] == 60 - len(kept)
    assert summary[0]["data"][FOLDED_CHECKS]["healthy"] == sum(n % 3 == 0 for n in range(1, 61 - len(kept)))
    assert summary[0]["state"] == "succeeded" and summary[0]["data"]["restore_pending"] is True
    assert history[-1]["data"][RESTORE_CHECK]["n"] == 60 and journal.unfinished() == ["p-f"]
    # A second fold takes the first summary in: still one summary, counts added up.
    assert journal.fold_restore_checks("p-f", keep=5) > 0
    history = journal.history("p-f")
    (again,) = [r["data"][FOLDED_CHECKS] for r in history if FOLDED_CHECKS in r["data"]]
    assert again["count"] == 55 and [r["data"][RESTORE_CHECK]["n"] for r in history if RESTORE_CHECK in r["data"]] \
        == [56, 57, 58, 59, 60]
