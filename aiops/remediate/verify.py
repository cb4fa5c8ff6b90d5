"""Verification: after an action, poll the playbook's signals and call the outcome recovered, worse or unchanged.

An action is judged on what it did, not on the moments while it is still happening: readings count only once the
rollout the action started has completed plus a settle time, and one reading decides nothing (see ``VerifySpec``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Literal, Mapping, Protocol, Sequence

from aiops.domain.plans import ActionPlan
from aiops.domain.playbook import VerifySpec
from aiops.domain.protocols import Clock, SignalProbe
from aiops.remediate.rollout import DeploymentReader, rollout_pending

log = logging.getLogger(__name__)

Outcome = Literal["recovered", "worse", "unchanged"]
_EPS = 1e-9


class RolloutUnreadable(Exception):
    """The target's rollout could not be read until the rollout timeout: no verdict (not even "unchanged") can be
    given, so the caller keeps the change to be verified again (``runner`` leaves the plan ``verifying``)."""


class PeakProbe(Protocol):
    """A probe that can also say how high each signal went in a past window (``CollectorProbe`` can)."""

    def peak(self, namespace: str, workload: str, signals: Sequence[str], start: float,
             end: float) -> dict[str, float]: ...


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """The verdict and every reading it was based on (``readings`` of (ts, {signal: value})).

    ``judged_from`` is when readings started to count (the rollout done and settled; None: never), ``reference``
    the level above which a signal counted as worse.
    """

    outcome: Outcome
    readings: list[tuple[float, dict[str, float]]] = field(default_factory=list)
    note: str = ""
    judged_from: float | None = None
    reference: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        """JSON-ready form, stored in ``Execution.verification`` and the journal."""
        start = self.judged_from
        return {"outcome": self.outcome, "note": self.note, "judged_from": start, "reference": self.reference,
                "readings": [{"ts": ts, "values": values, "judged": start is not None and ts >= start - _EPS}
                             for ts, values in self.readings]}


class Verifier:
    """Polls a ``SignalProbe`` every ``spec.interval_seconds`` and judges the readings as ``VerifySpec`` says.

    ``sleep`` is injected: the agent passes ``time.sleep``, the demo a function that advances simulated time.
    ``deployments`` reads the target Deployment to see its rollout complete; without it (or for a target that is
    not a Deployment) only the settle time is waited.
    """

    def __init__(self, probe: SignalProbe, sleep: Callable[[float], None], clock: Clock,
                 deployments: DeploymentReader | None = None) -> None:
        self._probe = probe
        self._sleep = sleep
        self._clock = clock
        self._deployments = deployments

    def verify(self, plan: ActionPlan, spec: VerifySpec, before: Mapping[str, float],
               baseline: Mapping[str, float] | None = None) -> VerifyResult:
        """Watch ``plan.target`` after its action; ``before`` holds the signal levels that triggered the plan and
        ``baseline`` the upper edges of their normal bands."""
        signals = [s for s in spec.signals if s in before]
        if not signals:
            return VerifyResult("unchanged", [], "no pre-action level for any verify signal: cannot judge")
        baseline = dict(baseline or {})
        start = self._clock.now()
        reference = self._worse_reference(plan, spec, signals, before, baseline, start)
        readings: list[tuple[float, dict[str, float]]] = []
        # No rollout to wait for (or already complete): readings count once the settle time has passed.
        waiting, unreadable = self._rollout_pending(plan) if spec.wait_for_rollout else (None, None)
        judged_from = start + spec.settle_seconds if waiting is None else None
        worse_run = recovered_run = 0
        pending = "no reading yet"
        overtime = ""  # the run under way when the window ended, followed to its verdict
        while True:
            self._sleep(spec.interval_seconds)
            now = self._clock.now()
            if judged_from is None:
                waiting, unreadable = self._rollout_pending(plan)
                if waiting is None:
                    judged_from = now + spec.settle_seconds
                elif now - start >= spec.rollout_timeout_seconds - _EPS:
                    if unreadable is not None:
                        # An apiserver that does not answer says nothing about the rollout: no verdict at all.
                        raise RolloutUnreadable(waiting) from unreadable
                    readings.append((now, self._read(plan, signals)))
                    return VerifyResult("unchanged", readings, f"the rollout did not complete within "
                                        f"{spec.rollout_timeout_seconds:g}s ({waiting}): cannot judge the action",
                                        None, reference)
            values = self._read(plan, signals)
            readings.append((now, values))
            if judged_from is None or now < judged_from - _EPS:
                continue
            worse = _worse(values, reference, spec.worse_ratio)
            pending_now = _not_recovered(values, signals, before, baseline, spec.recovered_ratio)
            worse_run = worse_run + 1 if worse else 0
            recovered_run = 0 if pending_now else recovered_run + 1
            pending = "; ".join(pending_now)
            if worse_run >= spec.worse_samples:
                return VerifyResult("worse", readings, f"{'; '.join(worse)} ({worse_run} readings in a row)",
                                    judged_from, reference)
            if recovered_run >= spec.recovered_samples:
                return VerifyResult("recovered", readings, f"every verify signal back under its recovery level "
                                    f"({recovered_run} readings in a row)", judged_from, reference)
            if now - judged_from >= spec.window_seconds - _EPS:
                # Real readings drift later than the interval, so a window may hold fewer than it nominally fits: a
                # run under way when it ends gets its remaining readings (bounded by the run's length).
                overtime = overtime or ("worse" if worse_run else "recovered" if recovered_run else "none")
                if not (worse_run if overtime == "worse" else recovered_run if overtime == "recovered" else 0):
                    break
        note = f"not recovered: {pending}" if pending else (
            f"back under the recovery level for only {recovered_run} of {spec.recovered_samples} readings in a row")
        return VerifyResult("unchanged", readings, note, judged_from, reference)

    def sample(self, plan: ActionPlan, signals: Sequence[str], interval: float) -> tuple[float, dict[str, float]]:
        """Wait ``interval`` seconds, then read ``signals`` of ``plan.target``: one (time, values) reading."""
        self._sleep(interval)
        return self._clock.now(), self._read(plan, signals)

    def _read(self, plan: ActionPlan, signals: Sequence[str]) -> dict[str, float]:
        return dict(self._probe.read(plan.target.namespace, plan.target.name, list(signals)))

    def _rollout_pending(self, plan: ActionPlan) -> tuple[str | None, Exception | None]:
        """What the target's rollout still waits for (None when done or when there is no rollout to watch), and
        the error when the Deployment could not be read (then the rollout is taken as not done)."""
        if self._deployments is None or plan.target.kind != "Deployment":
            return None, None
        try:
            return rollout_pending(self._deployments.get_deployment(plan.target.namespace, plan.target.name)), None
        except Exception as exc:  # noqa: BLE001 - unknown is not done: wait (up to the rollout timeout)
            return f"cannot read {plan.target}: {exc}", exc

    def _worse_reference(self, plan: ActionPlan, spec: VerifySpec, signals: list[str],
                         before: Mapping[str, float], baseline: Mapping[str, float], start: float) -> dict[str, float]:
        """Each signal's worst known level: its pre-action level, the top of its normal band, and its peak in the
        ``worse_lookback_seconds`` before the action.

        Why the highest: ``before`` is a short mean taken when the plan was decided, possibly while the fault was
        still unfolding (a rate over a trailing window lags the pods by that window), so the fault's real level
        may not show in it yet; a reading above it then looks worse although the action is right. Worse is the
        judgement that makes the agent write again (the undo), so it is measured against the most pessimistic
        level; recovery (and ``restore.py``'s health checks) stay measured against ``before`` and the normal band,
        the demanding bar, since calling a service recovered ends the watching.
        """
        reference = {s: max(float(before[s]), float(baseline.get(s, 0.0))) for s in signals}
        peak_of = getattr(self._probe, "peak", None)
        if spec.worse_lookback_seconds <= 0 or peak_of is None:
            return reference
        try:
            peaks = peak_of(plan.target.namespace, plan.target.name, signals, start - spec.worse_lookback_seconds,
                            start)
        except Exception:  # noqa: BLE001 - the peak only raises the bar; without it the pre-action level stands
            log.warning("cannot read the pre-action peak of %s; judging worse against the pre-action level",
                        plan.target, exc_info=True)
            return reference
        for name, value in peaks.items():
            if name in reference and value == value:  # not NaN
                reference[name] = max(reference[name], float(value))
        return reference


def _worse(values: Mapping[str, float], reference: Mapping[str, float], ratio: float) -> list[str]:
    # A zero reference has no meaningful multiple; such signals only count towards recovery.
    return [f"{name} {value:.4g} > {ratio:g} x {reference[name]:.4g}" for name, value in values.items()
            if name in reference and reference[name] > 0 and value > ratio * reference[name]]


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
