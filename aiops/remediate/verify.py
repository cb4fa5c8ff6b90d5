"""Verification: after an action, poll the playbook's signals and call the outcome recovered, worse or unchanged."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal, Mapping, Sequence

from aiops.domain.plans import ActionPlan
from aiops.domain.playbook import VerifySpec
from aiops.domain.protocols import Clock, SignalProbe

Outcome = Literal["recovered", "worse", "unchanged"]


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """The verdict and every reading it was based on (``readings`` of (ts, {signal: value}))."""

    outcome: Outcome
    readings: list[tuple[float, dict[str, float]]] = field(default_factory=list)
    note: str = ""

    def as_dict(self) -> dict:
        """JSON-ready form, stored in ``Execution.verification`` and the journal."""
        return {"outcome": self.outcome, "note": self.note,
                "readings": [{"ts": ts, "values": values} for ts, values in self.readings]}


class Verifier:
    """Polls a ``SignalProbe`` every ``spec.interval_seconds`` until ``spec.window_seconds`` have passed.

    ``sleep`` is injected: the agent passes ``time.sleep``, the demo a function that advances simulated time.
    A reading above ``worse_ratio`` x the pre-action level ends verification at once (so the undo comes quickly);
    otherwise the last reading of the window decides: recovered when every signal is at or below
    ``recovered_ratio`` x its pre-action level (or at or below its baseline, when one is given), else unchanged.
    """

    def __init__(self, probe: SignalProbe, sleep: Callable[[float], None], clock: Clock) -> None:
        self._probe = probe
        self._sleep = sleep
        self._clock = clock

    def verify(self, plan: ActionPlan, spec: VerifySpec, before: Mapping[str, float],
               baseline: Mapping[str, float] | None = None) -> VerifyResult:
        """Watch ``plan.target`` after its action; ``before`` holds the signal levels that triggered the plan."""
        signals = [s for s in spec.signals if s in before]
        if not signals:
            return VerifyResult("unchanged", [], "no pre-action level for any verify signal: cannot judge")
        readings: list[tuple[float, dict[str, float]]] = []
        start = self._clock.now()
        while True:
            self._sleep(spec.interval_seconds)
            now = self._clock.now()
            values = dict(self._probe.read(plan.target.namespace, plan.target.name, signals))
            readings.append((now, values))
            worse = _worse(values, before, spec.worse_ratio)
            if worse:
                return VerifyResult("worse", readings, "; ".join(worse))
            if now - start >= spec.window_seconds - 1e-9:
                break
        last = readings[-1][1]
        pending = _not_recovered(last, signals, before, baseline or {}, spec.recovered_ratio)
        if pending:
            return VerifyResult("unchanged", readings, "not recovered: " + "; ".join(pending))
        return VerifyResult("recovered", readings, "every verify signal back under its recovery level")

    def sample(self, plan: ActionPlan, signals: Sequence[str], interval: float) -> tuple[float, dict[str, float]]:
        """Wait ``interval`` seconds, then read ``signals`` of ``plan.target``: one (time, values) reading."""
        self._sleep(interval)
        return self._clock.now(), dict(self._probe.read(plan.target.namespace, plan.target.name, list(signals)))


def _worse(values: Mapping[str, float], before: Mapping[str, float], ratio: float) -> list[str]:
    # A zero pre-action level has no meaningful multiple; such signals only count towards recovery.
    return [f"{name} {value:.4g} > {ratio:g} x {before[name]:.4g}" for name, value in values.items()
            if name in before and before[name] > 0 and value > ratio * before[name]]


def _not_recovered(values: Mapping[str, float], signals: list[str], before: Mapping[str, float],
                   baseline: Mapping[str, float], ratio: float) -> list[str]:
    out = []
    for name in signals:
        if name not in values:
            out.append(f"{name} not readable")
            continue
        value = values[name]
        if value <= ratio * before[name] or (name in baseline and value <= baseline[name]):
            continue
        out.append(f"{name} {value:.4g} > {ratio:g} x {before[name]:.4g}")
    return out
