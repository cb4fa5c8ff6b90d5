"""The agent: every part wired from ``Settings``, the webhook server and the scheduled loop around one pipeline."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable

from aiops.clients.kube import KubeClient, api_client_from_settings
from aiops.clients.llm import llm_from_settings
from aiops.clients.prometheus import PrometheusClient
from aiops.collect.kube import KubeCollector
from aiops.collect.observations import ObservationCollector
from aiops.collect.prometheus import PrometheusCollector
from aiops.correlate.incidents import IncidentTracker
from aiops.diagnose.calibration import CALIBRATION_FILE, Calibration
from aiops.diagnose.ensemble import Diagnoser
from aiops.diagnose.glm import GlmAnalyzer
from aiops.diagnose.ranking import StatisticalRanker
from aiops.diagnose.rules import RuleEngine, RuleSet
from aiops.domain.errors import InputError
from aiops.domain.incident import Incident
from aiops.domain.observations import Topology
from aiops.domain.protocols import Clock
from aiops.remediate.journal import JsonlJournal, MemoryJournal
from aiops.remediate.planner import PlanPolicy
from aiops.remediate.playbooks import load_playbooks
from aiops.remediate.runner import PlaybookRunner
from aiops.remediate.verify import Verifier
from aiops.serve.metrics import AgentMetrics
from aiops.serve.pipeline import IncidentPipeline, PipelineResult
from aiops.serve.priority import Triage
from aiops.serve.probe import CollectorProbe
from aiops.serve.readiness import Readiness
from aiops.serve.scheduler import LoopScheduler
from aiops.serve.server import AgentServer
from aiops.serve.webhook import build_app
from aiops.serve.worker import IncidentWorker, QueueingReceiver
from aiops.settings import Settings

log = logging.getLogger(__name__)


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
    journal: MemoryJournal
    metrics: AgentMetrics


@dataclass
class Knowledge:
    """The allow-listed playbooks, the rules, and the diagnoser built on them."""

    playbooks: dict
    rule_engine: RuleEngine
    diagnoser: Diagnoser


def load_knowledge(settings: Settings) -> Knowledge:
    """Load playbooks and rules (bad files are ``InputError``) and build the diagnoser."""
    playbooks = load_playbooks(settings.playbooks_dir)
    rules = RuleSet.load(settings.rules_dir, params=settings.rule_params)
    unknown = rules.validate(list(playbooks))
    if unknown:
        raise InputError(str(settings.rules_dir), "; ".join(unknown))
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
                topology: Topology | None = None, journal: MemoryJournal | None = None) -> Parts:
    """Load the knowledge and wire the pipeline (clients default to the ones the settings describe)."""
    clock = clock or WallClock()
    knowledge = load_knowledge(settings)
    playbooks = knowledge.playbooks
    if kube is None:
        kube = KubeClient(api_client_from_settings(settings.kubernetes))
    if prometheus is None and settings.prometheus.url:
        prometheus = PrometheusClient(settings.prometheus.url, settings.prometheus.timeout_seconds)
    metrics_collector = PrometheusCollector(prometheus, step=settings.loop.step_seconds) if prometheus else None
    collector = ObservationCollector(metrics_collector, KubeCollector(kube), topology)
    if journal is None:
        # Dry-run decisions are journaled too: the audit trail shows what would have been done.
        journal = JsonlJournal(settings.state_dir / "journal.jsonl", clock)
    probe_source = metrics_collector or collector
    verifier = Verifier(CollectorProbe(probe_source, clock), sleep, clock)
    runner = PlaybookRunner(kube, journal, verifier, playbooks, clock)
    pipeline = IncidentPipeline(collector=collector, diagnoser=knowledge.diagnoser, playbooks=playbooks,
                                policy=PlanPolicy.from_settings(settings), runner=runner, history=journal,
                                clock=clock, window=settings.loop)
    return Parts(settings, clock, kube, prometheus, pipeline, journal, AgentMetrics())


class Agent:
    """``aiops serve``: the webhook receiver and the scheduled collect/detect loop, feeding one incident worker."""

    def __init__(self, parts: Parts) -> None:
        self.parts = parts
        settings = parts.settings
        self.metrics = parts.metrics
        self.tracker = IncidentTracker(parts.clock, namespaces=tuple(settings.kubernetes.namespaces))
        self.worker = IncidentWorker(self.handle, metrics=self.metrics, triage=Triage(parts.pipeline.playbooks))
        # A restore watch lasts minutes: it runs on its own thread, so the queue keeps moving meanwhile.
        parts.pipeline.runner.restore_watch = _in_background
        self.receiver = QueueingReceiver(self.tracker, self.worker, self.metrics)
        self.results: list[PipelineResult] = []
        self.readiness = Readiness({"prometheus": self._check_prometheus, "kubernetes": self._check_kubernetes})
        token = None
        if settings.webhook.token_file:
            try:
                token = settings.webhook.token_file.read_text().strip()
            except OSError as exc:
                raise InputError("webhook.token_file", f"cannot read {settings.webhook.token_file}: {exc}") from None
            if not token:
                raise InputError("webhook.token_file", f"{settings.webhook.token_file} is empty")
        app = build_app(self.receiver, self.metrics, self.readiness, token, settings.webhook.max_body_bytes)
        self.server = AgentServer(app, settings.webhook.host, settings.webhook.port)
        self.scheduler = LoopScheduler(self.run_cycle, settings.loop.interval_seconds, self.metrics)

    def handle(self, incident: Incident) -> PipelineResult:
        """The worker's job: one incident through the pipeline, counted in the agent's metrics."""
        result = self.parts.pipeline.handle(incident)
        self.metrics.diagnoses.labels(fault=result.diagnosis.chosen.fault.value).inc()
        if result.execution is not None:
            self.metrics.plans.labels(state=result.execution.state.value).inc()
        else:
            self.metrics.plans_blocked.labels(reason=result.decision.reason).inc()
        self.results.append(result)
        del self.results[:-100]
        return result

    def run_cycle(self) -> None:
        """One scheduled pass: collect and detect every namespace in scope, and open incidents for anomalies."""
        pipeline = self.parts.pipeline
        for namespace in self.parts.settings.kubernetes.namespaces:
            observations = pipeline.observe(namespace)
            anomalies = pipeline.detect(observations)
            if anomalies:
                log.info("%d anomalies in %s", len(anomalies), namespace)
            self.receiver.receive_anomalies(anomalies)

    def start(self) -> "Agent":
        self.worker.start()
        self.server.start()
        if self.parts.settings.kubernetes.namespaces:
            self.scheduler.start()
        else:
            log.warning("kubernetes.namespaces is empty: the scheduled loop is off; only webhooks are handled")
        log.info("aiops serving on %s (mode %s)", self.server.url, self.parts.settings.mode.value)
        return self

    def stop(self) -> None:
        self.scheduler.shutdown()
        self.server.stop()
        self.worker.stop()
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
