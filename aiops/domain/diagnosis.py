"""Hypotheses about the root cause, the evidence behind them, and the chosen one."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from aiops.domain.incident import Incident
from aiops.domain.observations import SourceGap
from aiops.domain.target import Target


class Fault(str, enum.Enum):
    """The fault vocabulary (docs/case-folder.md). Every analyzer speaks only these."""

    MEMORY_LEAK = "memory_leak"
    CRASH_LOOP = "crash_loop"
    CPU_SATURATION = "cpu_saturation"
    TRAFFIC_SURGE = "traffic_surge"
    BAD_DEPLOY = "bad_deploy"
    BAD_REPLICA_SET = "bad_replica_set"
    DEPENDENCY_LATENCY = "dependency_latency"
    DETECTOR_DRIFT = "detector_drift"
    UNKNOWN = "unknown"
    # Model serving (``rules/model-serving.yaml``): an inference server past its capacity, and a pod whose process
    # or GPU memory grows while its peers' does not.
    MODEL_OVERLOAD = "model_overload"
    MEMORY_GROWTH = "memory_growth"


@dataclass(frozen=True, slots=True)
class Evidence:
    """One fact an analyzer relied on, in words a person can check.

    ``kind`` is one of ``anomaly``, ``log``, ``event``, ``alert``, ``rollout``, ``rule``, ``ranking``.
    """

    kind: str
    summary: str
    workload: str = ""
    ts: float | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "summary": self.summary}
        if self.workload:
            out["workload"] = self.workload
        if self.ts is not None:
            out["ts"] = self.ts
        if self.data:
            out["data"] = self.data
        return out


@dataclass(frozen=True, slots=True)
class Hypothesis:
    """One analyzer's claim: ``target`` suffers ``fault``, fixed by ``playbook``, with ``confidence`` in [0, 1].

    A hypothesis with ``missing`` is one the analyzer could not check: it holds unless the evidence of those
    uncollected sources (``aiops.domain.observations.SOURCES``) says otherwise. It is never chosen; the ensemble
    reports it as not ruled out, and it keeps the chosen hypothesis from acting.
    """

    target: Target
    fault: Fault
    playbook: str
    confidence: float
    source: str
    evidence: tuple[Evidence, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)
    missing: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """The decision for an incident: every hypothesis, the workload ranking, and the chosen hypothesis.

    ``not_collected`` is the evidence nobody looked at; ``not_ruled_out`` the alternatives to ``chosen`` that
    needed it (hypotheses with ``missing``), most confident first.
    """

    incident: Incident
    hypotheses: tuple[Hypothesis, ...]
    chosen: Hypothesis
    ranking: tuple[tuple[str, float], ...] = ()
    analyzers: dict[str, Any] = field(default_factory=dict)
    not_collected: tuple[SourceGap, ...] = ()
    not_ruled_out: tuple[Hypothesis, ...] = ()

    @property
    def confidence(self) -> float:
        return self.chosen.confidence
