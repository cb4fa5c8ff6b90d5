"""The agent's own Prometheus metrics, on a private registry so tests and several agents never share counters."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# Actions take from a fraction of a second (a patch) to minutes (waiting for a rollout); the loop similar.
_ACTION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_LOOP_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
# Confidence is in [0, 1]; tenths are what a person reads on a dashboard, 0.5 is the default acting threshold.
_CONFIDENCE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


class AgentMetrics:
    """Counters, gauges and histograms the agent exposes on ``/metrics``. Each attribute is a prometheus_client
    metric; call ``.labels(...)`` / ``.inc()`` / ``.observe()`` on it directly."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self.webhook_requests = Counter("aiops_webhook_requests", "Alertmanager webhook requests by outcome.",
                                        ["outcome"], registry=r)
        self.webhook_forward_failures = Counter("aiops_webhook_forward_failures",
                                                "Webhook requests a follower could not forward to the leader "
                                                "(it took the alerts itself).", registry=r)
        self.streaming_series = Gauge("aiops_streaming_series",
                                      "Series the streaming detector keeps a model of (loop.streaming).", registry=r)
        self.streaming_skipped = Gauge("aiops_streaming_skipped",
                                       "Series of watched signals left unwatched in the last cycle: "
                                       "loop.streaming.max_series reached.", registry=r)
        self.alerts_received = Counter("aiops_alerts_received", "Alerts received by status (firing, resolved).",
                                       ["status"], registry=r)
        self.alerts_deduplicated = Counter("aiops_alerts_deduplicated",
                                           "Alert or anomaly deliveries that were duplicates of known ones.",
                                           registry=r)
        self.incidents_open = Gauge("aiops_incidents_open", "Incidents open right now.", registry=r)
        self.detections = Counter("aiops_detections", "Anomalies reported by the detectors.", registry=r)
        self.diagnoses = Counter("aiops_diagnoses", "Diagnoses made, by chosen fault.", ["fault"], registry=r)
        self.plans = Counter("aiops_plans", "Plans that reached a state.", ["state"], registry=r)
        self.plans_owed = Gauge("aiops_plans_owed", "Plans that started acting and are not done: executing, "
                                "verifying, or an undo still to do (resumed by the poll), at the last poll.",
                                registry=r)
        self.plans_owed_oldest = Gauge("aiops_plans_owed_oldest_seconds", "Seconds since the oldest owed plan "
                                       "started acting (0 when none): a plan the agent keeps trying and cannot "
                                       "finish (apiserver or Prometheus down, target busy) needs a person.",
                                       registry=r)
        self.plans_blocked = Counter("aiops_plans_blocked", "Plans the guards blocked, by reason.", ["reason"],
                                     registry=r)
        self.action_seconds = Histogram("aiops_action_seconds", "Time spent applying one action.",
                                        buckets=_ACTION_BUCKETS, registry=r)
        self.loop_seconds = Histogram("aiops_loop_seconds", "Time one scheduled loop run took.",
                                      buckets=_LOOP_BUCKETS, registry=r)
        self.worker_dropped = Counter("aiops_worker_dropped", "Incident updates dropped because the queue was full.",
                                      registry=r)
        self.handler_errors = Counter("aiops_handler_errors", "Incident handler runs that raised.", registry=r)
        self.leader = Gauge("aiops_leader", "1 while this agent may plan and act (it holds the leader Lease, or "
                            "leader election is off), else 0.", registry=r)
        self.leader_transitions = Counter("aiops_leader_transitions", "Times this agent started or stopped leading.",
                                          registry=r)
        self.leader_lost = Counter("aiops_leader_lost", "Times this agent stopped leading, by reason (stolen, "
                                   "renew_failed, released).", ["reason"], registry=r)
        self.incidents_held = Gauge("aiops_incidents_held", "Incidents a follower holds until it leads.",
                                    registry=r)
        self.writes_fenced = Counter("aiops_writes_fenced", "Cluster writes refused because this agent was not "
                                     "the leader at that moment.", registry=r)
        self.model_drift = Gauge("aiops_model_drift", "Latest drift score of each registered detector model "
                                 "(0-1), from the scheduled drift check.", ["model"], registry=r)
        self.diagnosis_confidence = Histogram(
            "aiops_diagnosis_confidence", "Confidence per diagnosis: each analyzer's best hypothesis (analyzer = "
            "stats, rules, glm) and the ensemble's chosen one (analyzer = ensemble).", ["analyzer"],
            buckets=_CONFIDENCE_BUCKETS, registry=r)
        self.verifications = Counter("aiops_verifications", "Verification outcomes after an action (recovered, "
                                     "unchanged, worse).", ["outcome"], registry=r)
        self.loop_runs = Counter("aiops_loop_runs", "Scheduled loop runs by outcome (ok, error).", ["outcome"],
                                 registry=r)
        self.detector_drift = Gauge("aiops_detector_drift_score", "Drift score in [0, 1] of each workload's recent "
                                    "features from its baseline, from the last loop run.",
                                    ["namespace", "workload"], registry=r)
        self.detector_drifted = Gauge("aiops_detector_drifted_workloads", "Workloads whose drift score passed "
                                      "the threshold in the last loop run.", registry=r)
        self.model_info = Gauge("aiops_model_info", "The models in use (always 1): model = detector, calibration "
                                "or glm; version says which.", ["model", "version"], registry=r)
        self.dependency_up = Gauge("aiops_dependency_up", "1 when the last readiness check of a dependency passed "
                                   "(prometheus, kubernetes, journal), else 0.", ["dependency"], registry=r)
        self.ready = Gauge("aiops_ready", "1 when every readiness check passed at the last check, else 0.",
                           registry=r)
        self.journal_write_failures = Counter("aiops_journal_write_failures", "Execution journal writes that "
                                              "failed (the plan stopped before its side effect).", registry=r)
        self.journal_writable = Gauge("aiops_journal_writable", "1 while the execution journal accepts writes; 0 "
                                      "after a failed write, until a write or a probe succeeds.", registry=r)
        self.incidents_deferred = Gauge("aiops_incidents_deferred", "Incidents held back while the journal is "
                                        "unwritable; handled again once it recovers.", registry=r)
        self.baseline = Gauge("aiops_baseline_seconds", "Seconds of metric history before the recent window, per "
                              "namespace, at the last loop run (at most loop.baseline_seconds).", ["namespace"],
                              registry=r)
        self.baseline_required = Gauge("aiops_baseline_required_seconds", "Seconds of baseline a namespace needs "
                                       "before the agent acts on its statistics (loop.min_baseline_seconds).",
                                       registry=r)
        self.learning = Gauge("aiops_learning", "1 while a namespace has less baseline than required: its detector "
                              "findings open no incident and its alerts are not acted on; else 0.", ["namespace"],
                              registry=r)
        self.journal_writable.set(1)

    def record_readiness(self, ready: bool, checks: dict[str, str]) -> None:
        """Mirror a readiness result (``{name: "ok" | reason}``) into ``aiops_ready`` and ``aiops_dependency_up``."""
        self.ready.set(1 if ready else 0)
        for name, outcome in checks.items():
            self.dependency_up.labels(dependency=name).set(1 if outcome == "ok" else 0)

    def series_names(self) -> set[str]:
        """Every series name ``/metrics`` can show (``_total`` of counters, ``_bucket``/``_sum``/``_count`` of
        histograms), whether or not a labelled series has been touched yet: what dashboards may query."""
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",),
                    "summary": ("", "_sum", "_count"), "info": ("_info",)}
        names: set[str] = set()
        for family in self.registry.collect():
            names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
        return names

    def render(self) -> tuple[bytes, str]:
        """The text exposition of every metric, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
