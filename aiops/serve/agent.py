"""The agent: every part wired from ``Settings``, the webhook server and the scheduled loop around one pipeline."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable

from aiops.clients.alertmanager import AlertmanagerClient
from aiops.clients.kube import KubeClient
from aiops.clients.llm import llm_from_settings
from aiops.clients.prometheus import PrometheusClient
from aiops.collect.kube import KubeCollector
from aiops.collect.observations import ObservationCollector
from aiops.collect.prometheus import PrometheusCollector
from aiops.correlate.incidents import IncidentTracker
from aiops.detect.lifecycle import ModelLifecycle
from aiops.detect.store import ModelStore
from aiops.detect.streaming_bank import StreamingBank
from aiops.diagnose.calibration import CALIBRATION_FILE, Calibration
from aiops.diagnose.ensemble import Diagnoser
from aiops.diagnose.glm import GlmAnalyzer
from aiops.diagnose.ranking import StatisticalRanker
from aiops.diagnose.rules import RuleEngine
from aiops.domain.errors import InputError
from aiops.domain.incident import Incident, IncidentStatus
from aiops.domain.observations import Topology
from aiops.domain.plans import Blocked, Execution, ExecutionState
from aiops.domain.protocols import Clock
from aiops.remediate.audit import TransitionEvents
from aiops.remediate.facts import ClusterFacts
from aiops.remediate.journal import MemoryJournal, is_unfinished
from aiops.remediate.kube_journal import KubeJournal
from aiops.remediate.gate import NOT_LEADER, TRANSIENT_REASONS, Refusal, WriteGate
from aiops.remediate.planner import PlanPolicy
from aiops.remediate.actions import RetrainAction
from aiops.remediate.runner import PlaybookRunner
from aiops.remediate.silences import PlanSilencer
from aiops.remediate.sqlite_journal import SqliteJournal
from aiops.remediate.verify import Verifier
from aiops.serve.fence import leader_check
from aiops.serve.leader import LeaseElector
from aiops.serve.leadership import LeadershipGate
from aiops.serve.drift_check import DriftCheck
from aiops.serve.accounting import (count_attempts, count_diagnosis, count_drift, count_resumed, model_versions,
                                   set_model_info)
from aiops.serve.journal_guard import JournalGuard
from aiops.serve.knowledge import load_playbooks_and_rules
from aiops.serve.learning import BaselineLearning
from aiops.serve.metrics import AgentMetrics
from aiops.serve.model_cache import CurrentModels
from aiops.serve.pipeline import IncidentPipeline, PipelineResult, ends_incident
from aiops.serve.approvers import load_approvers, read_webhook_token
from aiops.serve.peers import peer_directory
from aiops.serve.plans_api import add_plan_routes
from aiops.serve.priority import Triage
from aiops.serve.probe import CollectorProbe
from aiops.serve.readiness import Readiness
from aiops.serve.retry import DeferredIncidents, DependencyBreaker, is_dependency_failure
from aiops.serve.scheduler import LoopScheduler
from aiops.serve.server import AgentServer
from aiops.serve.webhook import build_app
from aiops.serve.worker import IncidentWorker, QueueingReceiver
from aiops.settings import Settings

log = logging.getLogger(__name__)

# The states of a plan that changed (or began to change) the cluster and is not done with it.
OWED_STATES = frozenset({"executing", "verifying", "rolled_back", "restored"})


class WallClock:
    """``Clock`` on the system time."""

    def now(self) -> float:
        return time.time()


@dataclass
class Parts:
    """The agent's building blocks, made once from the settings (the demo and tests reuse them)."""

    settings: Settings
    clock: Clock
    kube: KubeClient
    prometheus: PrometheusClient | None
    pipeline: IncidentPipeline
    journal: MemoryJournal | SqliteJournal | KubeJournal
    metrics: AgentMetrics
    election: LeaseElector | None = None  # set when leader_election.enabled


@dataclass
class Knowledge:
    """The allow-listed playbooks, the rules, and the diagnoser built on them."""

    playbooks: dict
    rule_engine: RuleEngine
    diagnoser: Diagnoser


def load_knowledge(settings: Settings) -> Knowledge:
    """Load playbooks and rules (bad files are ``InputError``) and build the diagnoser."""
    playbooks, rules = load_playbooks_and_rules(settings)
    engine = RuleEngine(rules)
    analyzers: list = [StatisticalRanker(), engine]
    backend = llm_from_settings(settings.glm)  # None unless glm.backend is configured
    if backend is not None:
        analyzers.append(GlmAnalyzer(backend))
    # A missing calibration file is the identity; a corrupt one is an InputError naming it.
    calibration = Calibration.load(settings.models_dir / CALIBRATION_FILE)
    diagnoser = Diagnoser(analyzers, min_confidence=settings.policy.min_confidence, calibration=calibration)
    return Knowledge(playbooks, engine, diagnoser)


def build_parts(settings: Settings, *, kube: KubeClient | None = None, prometheus: PrometheusClient | None = None,
                clock: Clock | None = None, sleep: Callable[[float], None] = time.sleep,
                topology: Topology | None = None,
                journal: MemoryJournal | SqliteJournal | KubeJournal | None = None) -> Parts:
    """Load the knowledge and wire the pipeline (clients default to the ones the settings describe)."""
    clock = clock or WallClock()
    knowledge = load_knowledge(settings)
    playbooks = knowledge.playbooks
    if kube is None:
        kube = KubeClient.from_settings(settings.kubernetes)
    if prometheus is None and settings.prometheus.url:
        prometheus = PrometheusClient(settings.prometheus.url, settings.prometheus.timeout_seconds)
    metrics_collector = PrometheusCollector(prometheus, step=settings.loop.step_seconds) if prometheus else None
    # Logs are read with sinceSeconds counted from now: the loop's clock, or the read misses the window's start.
    collector = ObservationCollector(metrics_collector, KubeCollector(kube, clock=clock.now), topology)
    if journal is None:
        # Dry-run decisions are journaled too: the audit trail shows what would have been done.
        journal = open_journal(settings, kube, clock)
    probe_source = metrics_collector or collector
    # Verification reads the target Deployment (never writes it) to judge only once the action's rollout is done.
    verifier = Verifier(CollectorProbe(probe_source, clock), sleep, clock, deployments=kube)
    observers: list = [TransitionEvents(kube, clock)]
    if settings.alertmanager.url:
        observers.append(PlanSilencer(AlertmanagerClient(settings.alertmanager.url,
                                                         settings.alertmanager.timeout_seconds),
                                      clock, settings.alertmanager.silence_max_seconds))
    policy = PlanPolicy.from_settings(settings)
    facts = ClusterFacts(kube)
    agent_metrics = AgentMetrics()
    election = lease_elector(settings, kube)
    runner = PlaybookRunner(kube, journal, verifier, playbooks, clock, observers=observers,
                            gate=write_gate(policy, journal, clock, kube, election, agent_metrics))
    # retrain-detector refits models in the registry on the metrics it collects.
    lifecycle = ModelLifecycle(ModelStore(settings.models_dir), probe_source, clock)
    runner.actions["retrain"] = RetrainAction(runner.kube, clock, lifecycle)
    # Without Prometheus there are no statistics to learn: no namespace waits for a baseline it can never have.
    window = settings.loop if prometheus else settings.loop.model_copy(update={"min_baseline_seconds": 0.0})
    pipeline = IncidentPipeline(collector=collector, diagnoser=knowledge.diagnoser, playbooks=playbooks,
                                policy=policy, runner=runner, history=journal, clock=clock, window=window,
                                facts=facts, second_playbook=settings.policy.second_playbook)
    if settings.lifecycle.detect_with == "registry":
        pipeline.models = CurrentModels(ModelStore(settings.models_dir), settings.lifecycle)
    return Parts(settings, clock, kube, prometheus, pipeline, journal, agent_metrics, election)


def lease_elector(settings: Settings, kube: KubeClient) -> LeaseElector | None:
    """The Lease elector the ``leader_election`` settings describe, or None when election is off."""
    le = settings.leader_election
    if not le.enabled:
        return None
    return LeaseElector(kube, le.namespace, le.lease_name, le.identity, lease_duration=le.lease_duration_seconds,
                        renew_deadline=le.renew_deadline_seconds, retry_period=le.retry_period_seconds,
                        advertise_url=le.advertise_url)


def write_gate(policy: PlanPolicy, journal, clock: Clock, kube: KubeClient, election: LeaseElector | None,
               metrics: AgentMetrics) -> WriteGate:
    """The one gate every cluster write of the runner passes (``aiops.remediate.gate``): the agent's current
    policy, the cluster read fresh through the plain client, the journal, and, with election on, the Lease at
    the moment of the write (writes refused for it count in ``aiops_writes_fenced_total``)."""
    def count(refusal: Refusal) -> None:
        if refusal.reason == NOT_LEADER:
            metrics.writes_fenced.inc()
    return WriteGate(journal, clock, policy, cluster=kube, leader=leader_check(election), on_refused=count)


def journal_path(settings: Settings):
    """Where the agent keeps its execution journal (``aiops history`` and ``aiops approve`` read it too)."""
    return settings.state_dir / "journal.sqlite3"


def open_journal(settings: Settings, kube: KubeClient, clock: Clock | None = None) -> SqliteJournal | KubeJournal:
    """The journal ``journal.backend`` names: the SQLite file in ``state_dir``, or ConfigMaps every replica shares.
    Journal writes go through the plain client, not the leader fence: a leader losing the Lease mid-plan must
    still be able to record what happened."""
    if settings.journal.backend == "kubernetes":
        return KubeJournal.from_settings(kube, settings, clock)
    return SqliteJournal(journal_path(settings), clock)


class Agent:
    """``aiops serve``: the webhook receiver and the scheduled collect/detect loop, feeding one incident worker."""

    def __init__(self, parts: Parts, on_elected: Callable[[], None] | None = None) -> None:
        """``on_elected`` runs (in its own thread) each time this agent becomes the one that acts: at start
        without leader election, on winning the Lease with it. By default it resumes the executions the journal
        shows unfinished (a crash, or the previous leader dying mid-plan)."""
        self.parts = parts
        settings = parts.settings
        if (refusal := settings.refusal_to_serve()) is not None:  # closed by default: before anything starts
            raise InputError("config", refusal)
        if (warning := settings.open_intake_warning()) is not None:
            log.warning("%s", warning)
        self.metrics = parts.metrics
        self.tracker = IncidentTracker(parts.clock, namespaces=tuple(settings.kubernetes.namespaces),
                                       alert_idle_seconds=settings.webhook.alert_idle_seconds)
        self.worker = IncidentWorker(self.handle, metrics=self.metrics, triage=Triage(parts.pipeline.playbooks))
        # A restore watch lasts minutes: it runs on its own thread, so the queue keeps moving meanwhile.
        parts.pipeline.runner.restore_watch = lambda watch: _in_background(lambda: self._plan_ended(watch()))
        self.leadership = LeadershipGate(parts.election, self.tracker, self.worker.submit, self.metrics,
                                         on_elected if on_elected is not None else self.resume_unfinished)
        self.receiver = QueueingReceiver(self.tracker, self.worker, self.metrics)
        # Kept between cycles (only the loop feeds it, from its own thread): what makes it a streaming detector.
        self.streaming = StreamingBank.from_settings(settings.loop.streaming) \
            if settings.loop.streaming.enabled else None
        self.results: list[PipelineResult] = []
        # Every journal write goes through the guard: a failed write stops the plan, shows on /readyz and metrics.
        self.journal_guard = JournalGuard(parts.pipeline.runner.store, self.metrics)
        parts.pipeline.runner.store = self.journal_guard
        self.journal_guard.on_recover(self._dependency_back)
        # A plan whose journal write failed after its patch waits in ``executing``: verify (and undo) it now.
        self.journal_guard.on_recover(self._resume_in_background)
        self.deferred = DeferredIncidents(on_give_up=self._given_up)
        self.breaker = DependencyBreaker()
        self._was_ready: bool | None = None
        self.readiness = Readiness({"prometheus": self._check_prometheus, "kubernetes": self._check_kubernetes,
                                    "journal": self.journal_guard.check}, on_result=self._on_readiness)
        set_model_info(self.metrics, model_versions(parts.pipeline.diagnoser.calibration, settings.glm))
        self.readiness.add_info("leader_election", self.leadership.status)
        self.learning = BaselineLearning(parts.pipeline.window.required_baseline_seconds, self.tracker,
                                         self.worker.submit, self.metrics)
        self.readiness.add_info("baseline", self.learning.status)
        token = read_webhook_token(settings.webhook.token_file)
        app = build_app(self.receiver, self.metrics, self.readiness, token, settings.webhook.max_body_bytes,
                        leader_url=self.leadership.leader_url if parts.election is not None else None,
                        identity=settings.leader_election.identity, peers=peer_directory(settings, parts.kube))
        # Approvers have their own tokens (never the webhook's): read now, so a bad file stops the start.
        approvers = load_approvers(settings.approvals.token_file, webhook_token=token)
        if isinstance(parts.journal, (SqliteJournal, KubeJournal)):
            add_plan_routes(app, parts.journal, parts.clock, self._approved, approvers=approvers, webhook_token=token)
        self.server = AgentServer(app, settings.webhook.host, settings.webhook.port)
        self.scheduler = LoopScheduler(self.run_cycle, settings.loop.interval_seconds, self.metrics)
        # Plans approved through the CLI (which writes the journal directly) are picked up by this poll.
        # The same poll finishes plans a refusal left for later (not the leader, target busy, cluster unreadable).
        self.approvals = LoopScheduler(self.resume_pending, settings.loop.approval_poll_seconds,
                                       run_immediately=False)
        self.drift_check = DriftCheck(parts.pipeline, ModelStore(settings.models_dir), settings.lifecycle,
                                      tuple(settings.kubernetes.namespaces), self.metrics.model_drift)
        self.drift_scheduler = LoopScheduler(self.run_drift_check, settings.lifecycle.drift_interval_seconds,
                                             run_immediately=False)

    def handle(self, incident: Incident) -> PipelineResult | None:
        """The worker's job: one incident through the pipeline, counted in the agent's metrics. A follower only
        holds it (None) until it leads. An incident whose handling raised (a dependency down, the journal
        unwritable) is kept and tried again later; while a dependency is known to be down, new ones are kept
        without trying (None)."""
        if not self.leadership.admit(incident):
            # Held until this agent leads (the take-over hands it to the worker); a retry it was claimed for is
            # over, or it would stay claimed, never tried again and counted as deferred for good.
            self.deferred.done(incident.id)
            self.metrics.incidents_deferred.set(len(self.deferred))
            return None
        held = self.breaker.holding()
        if held is not None:
            self.deferred.defer(incident.id, held)
            self.metrics.incidents_deferred.set(len(self.deferred))
            log.info("incident held back while a dependency is down: %s", held, extra={"incident": incident.id})
            return None
        try:
            result = self.parts.pipeline.handle(incident)
        except Exception as exc:
            if is_dependency_failure(exc):
                self.breaker.trip(f"{type(exc).__name__}: {exc}")
            self._defer(incident, exc)
            raise
        self.learning.hold(incident, result.decision)  # refused while its namespace learns: handled once learned
        refused = self._refused_for_now(result)
        if refused is not None:
            # Not now, rather than no (leadership flapped at the start, another plan holds the target, the cluster
            # could not be read): tried again with back-off, since Alertmanager's re-sends are only duplicates.
            self.deferred.defer(incident.id, refused)
            log.info("plan refused for now (%s); the incident will be tried again", refused,
                     extra={"incident": incident.id})
        else:
            self.deferred.done(incident.id)
        self._plan_ended(result.execution)
        if self.breaker.reset():
            self.retry_deferred(force=True)
        self.metrics.incidents_deferred.set(len(self.deferred))
        self._account(result)
        return result

    def _refused_for_now(self, result: PipelineResult) -> str | None:
        """The reason when the result is a refusal that may pass later (``gate.TRANSIENT_REASONS``), else None."""
        if isinstance(result.decision, Blocked):
            reason = result.decision.reason
        elif result.execution is not None and result.execution.state is ExecutionState.BLOCKED:
            last = self.parts.pipeline.runner.store.history(result.execution.plan_id)[-1:]
            reason = last[0]["data"].get("reason") if last else None
        else:
            return None
        return reason if reason in TRANSIENT_REASONS else None

    def _plan_ended(self, exe: Execution | None) -> None:
        """A plan that recovered the service closes its incident (one still to take its mitigation back: once it
        has); what is left of the fixed trouble is then a duplicate (``IncidentTracker.resolve``)."""
        if not ends_incident(exe, self.parts.pipeline.playbooks):
            return
        if self.tracker.resolve(exe.plan.incident_id, f"plan {exe.plan_id} {exe.state.value}") is not None:
            log.info("incident resolved: plan %s ended %s", exe.plan_id, exe.state.value,
                     extra={"incident": exe.plan.incident_id, "plan": exe.plan_id})
            self.metrics.incidents_open.set(self.tracker.open_count)

    def _account(self, result: PipelineResult) -> None:
        """Count one pipeline result in the metrics and keep it in ``results`` (the last 100)."""
        self.metrics.diagnoses.labels(fault=result.diagnosis.chosen.fault.value).inc()
        count_diagnosis(self.metrics, result.diagnosis)
        count_attempts(self.metrics, result)
        self.results.append(result)
        del self.results[:-100]

    def run_cycle(self) -> None:
        """One scheduled pass: collect and detect every namespace in scope, and open incidents for anomalies.
        Followers skip it (the leader watches; a new leader's first pass catches up)."""
        if not self.leadership.is_leader:
            return
        pipeline = self.parts.pipeline
        drift: dict = {}
        skipped = 0
        already_open = [i.target for i in self.tracker.open_incidents()] if self.streaming is not None else []
        for namespace in self.parts.settings.kubernetes.namespaces:
            observations = pipeline.observe(namespace)
            learning = self.learning.record(pipeline.baseline(observations)).learning
            anomalies, namespace_drift = ([], {}) if learning else pipeline.detect_and_drift(observations)
            if self.streaming is not None:
                found = self.streaming.update(observations.signals)
                skipped += self.streaming.skipped
                anomalies += self.streaming.corroborated(found, [a.target for a in anomalies] + already_open)
            if learning:  # the streaming detector learned from the samples; nothing is opened on so little data
                anomalies = []
            drift.update(namespace_drift)
            self.receiver.receive_anomalies(anomalies)
        count_drift(self.metrics, drift)
        if self.streaming is not None:
            self.metrics.streaming_series.set(len(self.streaming))
            self.metrics.streaming_skipped.set(skipped)
            if skipped:
                log.warning("streaming detector full: %d series not watched (loop.streaming.max_series = %d)",
                            skipped, self.streaming.max_series)
        self.retry_deferred()

    def retry_deferred(self, force: bool = False) -> int:
        """Queue again the failed incidents whose back-off has passed (all of them when ``force``); returns how
        many were queued. Closed or forgotten incidents are dropped."""
        queued = 0
        for incident_id in self.deferred.claim_due(force):
            incident = self.tracker.get(incident_id)
            if incident is None or incident.status is not IncidentStatus.OPEN:
                self.deferred.done(incident_id)
                continue
            log.info("retrying incident after an earlier failure", extra={"incident": incident_id})
            if self.worker.submit(incident):
                queued += 1
            else:
                self.deferred.defer(incident_id, "the worker queue refused the retry")
        self.metrics.incidents_deferred.set(len(self.deferred))
        return queued

    def _defer(self, incident: Incident, exc: Exception) -> None:
        kept = self.deferred.defer(incident.id, f"{type(exc).__name__}: {exc}")
        self.metrics.incidents_deferred.set(len(self.deferred))
        if kept:
            log.warning("incident handling failed (%s: %s); it will be tried again", type(exc).__name__, exc,
                        extra={"incident": incident.id})

    def _given_up(self, incident_id: str, reason: str) -> None:
        # Forget it, or its alerts would stay duplicates forever: Alertmanager's next re-send is new work.
        if self.tracker.forget(incident_id):
            log.warning("incident forgotten after giving up (%s); a re-sent alert opens it again", reason,
                        extra={"incident": incident_id})
        self.metrics.incidents_open.set(self.tracker.open_count)

    def _on_readiness(self, ready: bool, checks: dict[str, str]) -> None:
        self.metrics.record_readiness(ready, checks)
        came_back = ready and self._was_ready is not True  # the first check counts: nothing said ready before
        self._was_ready = ready
        if came_back:
            self._dependency_back()
        elif ready and len(self.deferred):
            self.retry_deferred()

    def _dependency_back(self) -> None:
        """Readiness turned green or the journal took a write again: stop holding back and retry at once."""
        self.breaker.reset()
        self.retry_deferred(force=True)

    def resume_unfinished(self) -> list:
        """Finish what a previous run of the agent left half-done (journaled, not yet final)."""
        done = self.parts.pipeline.runner.resume_unfinished()
        count_resumed(self.metrics, done)
        return done

    def resume_approved(self) -> list:
        """Act on plans whose approval came in, end expired requests (only the leader acts)."""
        if not self.leadership.is_leader:
            return []
        done = self.parts.pipeline.runner.resume_approved()
        count_resumed(self.metrics, done)
        return done

    def resume_pending(self) -> list:
        """The poll: everything the journal shows unfinished that no thread of this agent is running (approved
        plans, expired requests, plans a transient refusal left for later); only the leader acts."""
        if not self.leadership.is_leader:
            return []
        done = self.resume_unfinished()
        self._count_owed()
        return done

    def _count_owed(self) -> None:
        """Show what the agent still owes the cluster (``aiops_plans_owed``, and since when): a plan refused for now
        is retried at every poll without end, so how long one has waited is what tells a person to look."""
        store = self.parts.pipeline.runner.store
        try:
            owed = [r["plan_id"] for r in store.latest() if r["state"] in OWED_STATES and is_unfinished(r)]
            started = [t for t in (store.started_at(p) for p in owed) if t is not None]
        except Exception:  # noqa: BLE001 - the journal guard already reports an unreadable journal
            return
        self.metrics.plans_owed.set(len(owed))
        self.metrics.plans_owed_oldest.set(max(0.0, self.parts.clock.now() - min(started)) if started else 0.0)

    def _approved(self, plan_id: str) -> None:
        # Act at once, off the HTTP handler's thread (acting includes the verify window).
        threading.Thread(target=self.resume_approved, name="aiops-approved", daemon=True).start()

    def _resume_in_background(self) -> None:
        # Off the thread that noticed the recovery (it may be acting for another plan itself).
        threading.Thread(target=self.resume_pending, name="aiops-resume", daemon=True).start()

    def run_drift_check(self) -> list:
        """One scheduled drift check of every namespace's model; retrain plans it started join ``results``."""
        checks = self.drift_check.run()
        for check in checks:
            if check.result is not None:
                self._account(check.result)
        return checks

    def start(self) -> "Agent":
        self.worker.start()
        self.approvals.start()
        self.server.start()
        self.leadership.start()  # webhooks arriving before the first election round are held, not lost
        if self.parts.settings.kubernetes.namespaces:
            self.scheduler.start()
            if self.parts.settings.lifecycle.drift_check:
                self.drift_scheduler.start()
        else:
            log.warning("kubernetes.namespaces is empty: the scheduled loop is off; only webhooks are handled")
        log.info("aiops serving on %s (mode %s)", self.server.url, self.parts.settings.mode.value)
        return self

    def stop(self) -> None:
        self.approvals.shutdown()
        self.scheduler.shutdown()
        self.drift_scheduler.shutdown()
        self.server.stop()
        self.worker.stop()
        self.leadership.stop()  # after the worker: release the Lease only once nothing acts any more
        self.readiness.close()

    def _check_prometheus(self) -> str | None:
        prom = self.parts.prometheus
        if prom is None:
            return None
        return None if prom.ready() else f"unreachable at {prom.url}"

    def _check_kubernetes(self) -> str | None:
        try:
            self.parts.kube.version()
        except Exception as exc:  # noqa: BLE001 - any failure means not ready; the reason is shown on /readyz
            return f"unreachable: {exc}"
        return None


def _in_background(watch: Callable[[], object]) -> None:
    """Run a plan's restore watch on a daemon thread (its journal records every check)."""
    threading.Thread(target=watch, name="aiops-restore-watch", daemon=True).start()
