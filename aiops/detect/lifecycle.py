"""A detector's life after training: drift of the current model, and retraining a challenger that replaces it only
when it does better on held-back recent data.

``ModelLifecycle`` is what the ``retrain`` action (``aiops.remediate.actions.retrain``) drives through the same
planner, state machine and journal as every playbook:

- ``retrain(plan)``: collect the last ``history_seconds`` of the model's namespace, fit a challenger with the
  current model's hyperparameters on all but the last ``holdout_seconds``, score both on that held-back window with
  the validation criterion (``aiops.detect.tuning``), save the challenger as a new version tagged with the plan id,
  and promote it only when it is better. A second ``retrain`` of the same plan finds the tagged version and saves
  nothing (idempotent per plan id).
- ``check(plan, change)``: after a promotion, score the promoted and the previous version on the newest window:
  ``worse`` when the promoted one does worse (the runner then undoes), ``recovered`` when its drift is back under
  the threshold, else ``unchanged``.
- ``restore(plan, change)``: the undo, a registry rollback to the version that was current before the plan.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from aiops.detect.drift import DriftReport
from aiops.detect.store import ModelRecord, ModelStore
from aiops.detect.tuning import Criterion, DetectorParams, Evaluation
from aiops.detect.workload import WorkloadDetector
from aiops.domain.errors import AiopsError
from aiops.domain.observations import Series
from aiops.domain.plans import ActionPlan, Change
from aiops.domain.protocols import Clock, Collector

PLAN_KEY = "plan_id"
DEFAULT_THRESHOLD = 0.3


class RetrainError(AiopsError):
    """The retrain cannot run: no current model, or no data to fit a challenger on."""


@dataclass(frozen=True)
class RetrainParams:
    """The ``retrain-detector`` playbook's params (validated by its schema in ``aiops.remediate.playbooks``)."""

    history_seconds: float = 6 * 3600.0
    holdout_seconds: float = 3600.0
    min_gain: float = 0.02
    drift_threshold: float = DEFAULT_THRESHOLD

    @classmethod
    def of(cls, params: Mapping[str, Any]) -> "RetrainParams":
        known = {k: float(v) for k, v in params.items() if k in cls.__dataclass_fields__ and v is not None}
        return cls(**known)


@dataclass(frozen=True)
class Verdict:
    """How two models did on one held-back window."""

    challenger: Evaluation
    champion: Evaluation
    challenger_drift: float
    champion_drift: float
    min_gain: float

    @property
    def better(self) -> bool:
        """The challenger scores higher by more than ``min_gain``, or as well with less drift."""
        gain = self.challenger.score - self.champion.score
        if gain > self.min_gain:
            return True
        return abs(gain) <= self.min_gain and self.challenger_drift < self.champion_drift - 0.05

    def as_dict(self) -> dict[str, Any]:
        return {"challenger": self.challenger.as_dict(), "champion": self.champion.as_dict(),
                "challenger_drift": self.challenger_drift, "champion_drift": self.champion_drift,
                "min_gain": self.min_gain, "better": self.better}


def max_drift(reports: Mapping[Any, DriftReport]) -> float:
    """The largest drift score over a detector's workloads (0 when none could be scored)."""
    return max((r.score for r in reports.values()), default=0.0)


def compare(challenger: WorkloadDetector, champion: WorkloadDetector, signals: Sequence[Series], start: float,
            end: float, min_gain: float, criterion: Criterion | None = None) -> Verdict:
    """Both models on ``[start, end]`` with the stability criterion, plus their drift there."""
    criterion = criterion or Criterion()
    return Verdict(challenger=criterion.evaluate(challenger, signals, start, end),
                   champion=criterion.evaluate(champion, signals, start, end),
                   challenger_drift=max_drift(challenger.drift(signals, start, end)),
                   champion_drift=max_drift(champion.drift(signals, start, end)), min_gain=min_gain)


class ModelLifecycle:
    """Retrain, check and restore the registry's models (one model per namespace; the plan's target names it)."""

    def __init__(self, store: ModelStore, collector: Collector, clock: Clock,
                 criterion: Criterion | None = None) -> None:
        self.store = store
        self.collector = collector
        self.clock = clock
        self.criterion = criterion or Criterion()

    def is_done(self, plan: ActionPlan) -> bool:
        """True when this plan already saved its challenger."""
        return self.store.find(plan.target.name, PLAN_KEY, plan.id) is not None

    def retrain(self, plan: ActionPlan, dry_run: bool) -> Change:
        """Fit, compare, save (tagged with the plan id) and promote only a better challenger; in dry-run, fit and
        compare but save nothing."""
        name = plan.target.name
        done = self.store.find(name, PLAN_KEY, plan.id)
        if done is not None:
            promoted = self.store.current_version(name) == done.version
            return Change(plan.target, f"retrain: plan {plan.id} already saved {name} v{done.version}",
                          before={"version": done.extra.get("parent_version")},
                          after={"version": done.version, "promoted": promoted}, already_done=True)
        champion, record = self._current(name)
        params = DetectorParams(**record.extra["params"]) if "params" in record.extra else \
            DetectorParams.of(champion)
        knobs = RetrainParams.of(plan.params)
        now = self.clock.now()
        start, split = now - knobs.history_seconds, now - knobs.holdout_seconds
        signals = self._signals(plan.target.namespace, start, now)
        started = time.perf_counter()
        challenger = params.build().fit(signals, start, split)
        fit_seconds = time.perf_counter() - started
        if not challenger.fitted_workloads:
            raise RetrainError(f"no workload of {plan.target.namespace} has enough points in "
                               f"[{start:.0f}, {split:.0f}] to fit a challenger")
        verdict = compare(challenger, champion, signals, split, now, knobs.min_gain, self.criterion)
        words = (f"challenger {verdict.challenger.score:.3f} (drift {verdict.challenger_drift:.2f}) vs current "
                 f"v{record.version} {verdict.champion.score:.3f} (drift {verdict.champion_drift:.2f}) on the "
                 f"held-back last {knobs.holdout_seconds:.0f}s")
        before = {"version": record.version}
        if dry_run:
            action = "promote it" if verdict.better else "keep the current model"
            return Change(plan.target, f"retrain {name}: would {action}: {words}", before=before,
                          after={"promoted": verdict.better, "verdict": verdict.as_dict()})
        saved = self.store.save(name, challenger, {
            PLAN_KEY: plan.id, "parent_version": record.version, "params": params.as_dict(),
            "metrics": {"holdout": verdict.challenger.as_dict(), "criterion": verdict.challenger.criterion},
            "verdict": verdict.as_dict(), "fit_seconds": round(fit_seconds, 3), "namespace": plan.target.namespace,
            "holdout_window": [split, now]}, promote=verdict.better)
        if verdict.better:
            text = f"retrain {name}: promoted v{saved.version} over v{record.version}: {words}"
        else:
            text = f"retrain {name}: kept v{record.version}; challenger saved as v{saved.version}, not better: {words}"
        return Change(plan.target, text, before=before,
                      after={"version": saved.version, "promoted": verdict.better, "verdict": verdict.as_dict()},
                      applied=verdict.better)

    def check(self, plan: ActionPlan, change: Change) -> tuple[str, str]:
        """(outcome, note) after the apply: ``recovered``, ``worse`` or ``unchanged`` (see the module docstring)."""
        name = plan.target.name
        if not change.after.get("promoted"):
            return "unchanged", f"challenger not better: {name} stays at v{change.before.get('version')}"
        knobs = RetrainParams.of(plan.params)
        new, old = int(change.after["version"]), change.before.get("version")
        current = self.store.current_version(name)
        if current != new:
            # A rerun of a plan whose model was rolled back (or replaced) since: never re-promote it behind a
            # person's or an undo's back.
            return "unchanged", f"v{new} is no longer current ({name} is at v{current}); not promoting it again"
        promoted, _ = self.store.load(name, version=new, expected_class=WorkloadDetector)
        now = self.clock.now()
        start = now - knobs.holdout_seconds
        signals = self._signals(plan.target.namespace, start - knobs.holdout_seconds, now)
        if old:
            previous, _ = self.store.load(name, version=int(old), expected_class=WorkloadDetector)
            verdict = compare(promoted, previous, signals, start, now, knobs.min_gain, self.criterion)
            if verdict.challenger.score < verdict.champion.score - knobs.min_gain:
                return "worse", (f"promoted v{new} scores {verdict.challenger.score:.3f} < v{old} "
                                 f"{verdict.champion.score:.3f} on the newest {knobs.holdout_seconds:.0f}s")
        drift = max_drift(promoted.drift(signals, start, now))
        if drift < knobs.drift_threshold:
            return "recovered", f"v{new} is current and its drift is {drift:.2f} < {knobs.drift_threshold:.2f}"
        return "unchanged", f"v{new} is current but its drift is still {drift:.2f}"

    def restore(self, plan: ActionPlan, change: Change, dry_run: bool) -> Change:
        """Roll the registry back to the version current before ``change`` (nothing to do when it already is)."""
        name = plan.target.name
        old = change.before.get("version")
        now_current = self.store.current_version(name)
        reverse = Change(plan.target, f"rollback {name} from v{now_current} to v{old}",
                         before={"version": now_current}, after={"version": old})
        if not old or now_current == int(old):
            return Change(plan.target, f"{name} is already at v{old}: nothing to roll back", before=reverse.before,
                          after=reverse.after, already_done=True)
        if dry_run:
            return reverse
        self.store.rollback(name, to=int(old))
        return Change(plan.target, reverse.description, before=reverse.before, after=reverse.after, applied=True)

    def _current(self, name: str) -> tuple[WorkloadDetector, ModelRecord]:
        if not self.store.versions(name):
            raise RetrainError(f"no model named {name!r} in {self.store.directory}: train one first (aiops train)")
        model, record = self.store.load(name, expected_class=WorkloadDetector)
        return model, record  # type: ignore[return-value]

    def _signals(self, namespace: str, start: float, end: float) -> Sequence[Series]:
        return self.collector.collect(namespace, start, end).signals
