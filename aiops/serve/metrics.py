"""The agent's own Prometheus metrics, on a private registry so tests and several agents never share counters."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# Actions take from a fraction of a second (a patch) to minutes (waiting for a rollout); the loop similar.
_ACTION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_LOOP_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class AgentMetrics:
    """Counters, gauges and histograms the agent exposes on ``/metrics``. Each attribute is a prometheus_client
    metric; call ``.labels(...)`` / ``.inc()`` / ``.observe()`` on it directly."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self.webhook_requests = Counter("aiops_webhook_requests", "Alertmanager webhook requests by outcome.",
                                        ["outcome"], registry=r)
        self.alerts_received = Counter("aiops_alerts_received", "Alerts received by status (firing, resolved).",
                                       ["status"], registry=r)
        self.alerts_deduplicated = Counter("aiops_alerts_deduplicated",
                                           "Alert or anomaly deliveries that were duplicates of known ones.",
                                           registry=r)
        self.incidents_open = Gauge("aiops_incidents_open", "Incidents open right now.", registry=r)
        self.detections = Counter("aiops_detections", "Anomalies reported by the detectors.", registry=r)
        self.diagnoses = Counter("aiops_diagnoses", "Diagnoses made, by chosen fault.", ["fault"], registry=r)
        self.plans = Counter("aiops_plans", "Plans that reached a state.", ["state"], registry=r)
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
        self.incidents_deferred = Gauge("aiops_incidents_deferred", "Incidents a follower holds until it leads.",
                                        registry=r)
        self.writes_fenced = Counter("aiops_writes_fenced", "Cluster writes refused because this agent was not "
                                     "the leader at that moment.", registry=r)
        self.detector_drift = Gauge("aiops_detector_drift", "Latest drift score of each detector model (0-1).",
                                    ["model"], registry=r)

    def render(self) -> tuple[bytes, str]:
        """The text exposition of every metric, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
