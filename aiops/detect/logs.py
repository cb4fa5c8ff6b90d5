"""Log anomalies: never-seen and surging log templates, as ``Anomaly`` objects the correlator and analyzers read."""

from __future__ import annotations

from typing import Sequence

from aiops.detect.logtemplates import template_evidence
from aiops.domain.diagnosis import Evidence
from aiops.domain.incident import Anomaly
from aiops.domain.observations import LogLine
from aiops.domain.target import Target

DETECTOR = "logtemplates"


class LogAnomalyDetector:
    """Mines the baseline and recent log lines into templates (one miner, so ids agree) and reports, per workload,
    error templates never seen in the baseline and known templates now far more frequent."""

    def __init__(self, surge_ratio: float = 5.0, surge_min_count: int = 10) -> None:
        self.surge_ratio = surge_ratio
        self.surge_min_count = surge_min_count

    def detect(self, logs: Sequence[LogLine], start: float, split: float, end: float) -> list[Anomaly]:
        """Anomalies for lines in ``[split, end]`` judged against ``[start, split)``."""
        baseline = [line for line in logs if start <= line.ts < split]
        recent = [line for line in logs if split <= line.ts <= end]
        if not recent:
            return []
        found = template_evidence(baseline, recent, baseline_span=(start, split), recent_span=(split, end),
                                  min_ratio=self.surge_ratio, min_count=self.surge_min_count)
        return [_anomaly(evidence) for evidence in found if evidence.workload]


def _anomaly(evidence: Evidence) -> Anomaly:
    data = evidence.data
    count = float(data.get("count", 1))
    ratio = float(data.get("ratio", count))
    return Anomaly(target=Target.deployment(data.get("namespace", ""), evidence.workload),
                   signal="log", score=ratio if not data.get("new") else count, threshold=1.0,
                   start=float(evidence.ts or data.get("first_seen", 0.0)),
                   contributors=((f"log:{data.get('template_id', '?')}", 1.0),), detector=DETECTOR,
                   summary=evidence.summary)
