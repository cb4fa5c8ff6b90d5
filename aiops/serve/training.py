"""Training the workload detectors from a config: load data, tune, fit, evaluate on held-back data, save a version
and promote it per policy. ``aiops train`` is a thin wrapper; from Python::

    from aiops.serve.training import Trainer, load_train_config
    report = Trainer(load_train_config("train.yaml")).run()
    print(report.render())

Time split of the data's span ``[start, end]`` (fractions from ``split``): ``[start, train_end]`` trains the tuning
trials, ``[train_end, val_end]`` scores them; the chosen parameters are then fitted on ``[start, val_end]`` (the
model's recorded training window) and, like the defaults and the current registry version, evaluated on the
never-seen ``[val_end, end]``. The criterion is ``aiops.detect.tuning``'s: labelled incidents when any fall in the
span being scored, stability with injected shifts otherwise.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from aiops.detect.store import ModelRecord, ModelStore
from aiops.detect.tuning import Criterion, DetectorParams, Evaluation, SearchSpace, TuningResult, tune
from aiops.detect.workload import WorkloadDetector, WorkloadKey
from aiops.domain.errors import InputError
from aiops.domain.observations import Series
from aiops.serve.train_config import TrainConfig


@dataclass
class TrainingData:
    """Derived workload signals, labelled incidents per workload, the time span, and where they came from."""

    signals: list[Series]
    labels: dict[WorkloadKey, list[tuple[float, float]]]
    start: float
    end: float
    source: str


@dataclass
class TrainReport:
    """What ``Trainer.run`` did: the saved version, whether it is current, and the evaluation behind it."""

    name: str
    record: ModelRecord
    promoted: bool
    decision: str
    params: DetectorParams
    windows: dict[str, list[float]]
    workloads: list[str]
    test: Evaluation | None
    default_test: Evaluation | None
    current_test: Evaluation | None
    current_version: int | None
    tuning: TuningResult | None
    seconds: dict[str, float] = field(default_factory=dict)
    source: str = ""

    @property
    def tuning_gain(self) -> float | None:
        """Test-span score of the tuned parameters minus that of the defaults (``None`` without a test span)."""
        if self.test is None or self.default_test is None:
            return None
        return round(self.test.score - self.default_test.score, 6)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.record.version, "promoted": self.promoted,
                "decision": self.decision, "params": self.params.as_dict(), "windows": self.windows,
                "workloads": self.workloads, "source": self.source,
                "evaluation": {"test": _dict(self.test), "default_test": _dict(self.default_test),
                               "current_test": _dict(self.current_test), "current_version": self.current_version,
                               "tuning_gain": self.tuning_gain},
                "tuning": self.tuning.as_dict() if self.tuning else None, "seconds": self.seconds,
                "path": self.record.path}

    def render(self) -> str:
        """The report for people."""
        lines = [f"trained {self.name} v{self.record.version} on {len(self.workloads)} workload(s) from "
                 f"{self.source}",
                 f"  training window {_span(self.windows['train'])}; held back {_span(self.windows['test'])}",
                 f"  parameters {self.params.as_dict()}"]
        if self.tuning is not None:
            t = self.tuning
            lines.append(f"  tuning: {len(t.trials)} trial(s){' (stopped early)' if t.stopped_early else ''}, "
                         f"validation {t.best.evaluation.criterion} score {t.best.evaluation.score:.3f} "
                         f"(defaults {t.default.evaluation.score:.3f}) in {t.seconds:.1f}s")
        for label, ev in (("this version", self.test), ("defaults", self.default_test),
                          (f"current v{self.current_version}", self.current_test)):
            if ev is not None:
                lines.append(f"  held-back {ev.criterion} score, {label}: {ev.score:.3f} (precision "
                             f"{ev.precision:.2f}, recall {ev.recall:.2f}, {ev.false_alarms} false alarm(s))")
        lines.append(f"  {self.decision}")
        return "\n".join(lines)


class Trainer:
    """Runs one ``TrainConfig``. ``prometheus`` may inject a client (tests); ``now`` fixes the clock."""

    def __init__(self, config: TrainConfig, *, prometheus: Any = None, now: float | None = None) -> None:
        self.config = config
        self.prometheus = prometheus
        self.now = now

    def load(self) -> TrainingData:
        """The data the config names, filtered to its workloads, with its labelled incidents."""
        cfg = self.config
        if cfg.source.cases:
            data = self._from_cases()
        else:
            data = self._from_prometheus()
        if cfg.workloads:
            present = {s.workload for s in data.signals}
            missing = [w for w in cfg.workloads if w not in present]
            if missing:
                raise InputError(f"{cfg.origin}: workloads", f"no data for {', '.join(missing)} in {data.source} "
                                                             f"(has: {', '.join(sorted(present)) or 'none'})")
            data.signals = [s for s in data.signals if s.workload in cfg.workloads]
        for label in cfg.incidents:
            namespace = label.namespace or next((s.namespace for s in data.signals if s.workload == label.workload),
                                                "")
            data.labels.setdefault((namespace, label.workload), []).append((label.start, label.end))
        return data

    def run(self) -> TrainReport:
        """Load, tune, fit, evaluate, save and promote per policy."""
        cfg = self.config
        started = time.perf_counter()
        data = self.load()
        load_seconds = time.perf_counter() - started
        span = data.end - data.start
        train_end = data.start + span * (1 - cfg.split.validation - cfg.split.test)
        val_end = data.start + span * (1 - cfg.split.test)
        default = DetectorParams(**cfg.detector.model_dump())
        criterion = Criterion(shift=cfg.tuning.shift, copies=cfg.tuning.copies)
        tuning = None
        params = default
        started = time.perf_counter()
        if cfg.tuning.enabled:
            space = SearchSpace(window=tuple(cfg.tuning.window), n_neighbors=tuple(cfg.tuning.n_neighbors),
                                contamination=tuple(cfg.tuning.contamination), max_trials=cfg.tuning.max_trials,
                                patience=cfg.tuning.patience, min_delta=cfg.tuning.min_delta, seed=cfg.tuning.seed)
            tuning = tune(data.signals, (data.start, train_end), (train_end, val_end), data.labels, space, default,
                          criterion)
            params = tuning.best.params
        tune_seconds = time.perf_counter() - started
        started = time.perf_counter()
        model = params.build().fit(data.signals, data.start, val_end)
        fit_seconds = time.perf_counter() - started
        if not model.fitted_workloads:
            raise InputError(cfg.origin, f"no workload in {data.source} has enough points in the training window "
                                         f"to fit a detector (need {model.min_baseline_points})")
        test = default_test = current_test = None
        store = ModelStore(cfg.models_dir)
        current, current_version = self._current(store)
        if cfg.split.test > 0:
            test = criterion.evaluate(model, data.signals, val_end, data.end, data.labels)
            baseline = model if params == default else default.build(drift=False).fit(data.signals, data.start,
                                                                                     val_end)
            default_test = criterion.evaluate(baseline, data.signals, val_end, data.end, data.labels)
            if current is not None:
                current_test = criterion.evaluate(current, data.signals, val_end, data.end, data.labels)
        promote, decision = self._decide(test, current_test, current_version)
        windows = {"train": [data.start, val_end], "tuning_train": [data.start, train_end],
                   "validation": [train_end, val_end], "test": [val_end, data.end]}
        metrics = {"test": _dict(test), "default_test": _dict(default_test), "current_test": _dict(current_test),
                   "validation": tuning.best.evaluation.as_dict() if tuning else None}
        record = store.save(cfg.name, model, {
            "params": params.as_dict(), "metrics": metrics, "criterion": test.criterion if test else None,
            "windows": windows, "source": data.source, "config": cfg.origin,
            "tuning": {k: v for k, v in tuning.as_dict().items() if k != "trials"} if tuning else None},
            promote=promote)
        return TrainReport(cfg.name, record, promote, decision, params, windows,
                           [f"{ns}/{w}" for ns, w in model.fitted_workloads], test, default_test, current_test,
                           current_version, tuning, {"load": round(load_seconds, 3), "tune": round(tune_seconds, 3),
                                                     "fit": round(fit_seconds, 3)}, data.source)

    def _current(self, store: ModelStore) -> tuple[WorkloadDetector | None, int | None]:
        """The registry's current version of this model, if any (a corrupt file is an ``InputError`` naming it)."""
        if not store.versions(self.config.name) or not store.current_version(self.config.name):
            return None, None
        model, record = store.load(self.config.name, expected_class=WorkloadDetector)
        return model, record.version  # type: ignore[return-value]

    def _decide(self, test: Evaluation | None, current: Evaluation | None, version: int | None) -> tuple[bool, str]:
        policy, gain = self.config.promote, self.config.min_gain
        if policy == "never":
            return False, "saved without promoting (promote: never)"
        if policy == "always" or version is None:
            return True, "promoted" + (" (first version)" if version is None else " (promote: always)")
        if test is None or current is None:
            return True, f"promoted over v{version} (no held-back span to compare on: split.test is 0)"
        if test.score >= current.score + gain:
            return True, f"promoted over v{version}: held-back score {test.score:.3f} >= {current.score:.3f}" + \
                (f" + {gain}" if gain else "")
        return False, f"kept v{version}: held-back score {test.score:.3f} < {current.score:.3f}" + \
            (f" + {gain}" if gain else "") + "; the new version is saved, not promoted"

    def _from_cases(self) -> TrainingData:
        from aiops.collect.casefolder import read_case

        merged: dict[tuple, list[Series]] = {}
        labels: dict[WorkloadKey, list[tuple[float, float]]] = {}
        spans: list[tuple[float, float, str]] = []
        for folder in self.config.source.cases:
            case = read_case(folder, self.config.step_seconds)
            obs = case.observations
            for start, end, other in spans:
                if obs.start <= end and obs.end >= start:
                    raise InputError(str(folder), f"overlaps {other} in time: cases must be disjoint windows")
            spans.append((obs.start, obs.end, str(folder)))
            for s in obs.signals:
                merged.setdefault((s.name, tuple(sorted(s.labels.items()))), []).append(s)
            truth = case.truth or {}
            if truth.get("workload") and truth.get("onset") is not None:
                labels.setdefault((obs.namespace, str(truth["workload"])), []).append(
                    (float(truth["onset"]), obs.end))
        signals = [_concat(parts) for parts in merged.values()]
        names = ", ".join(str(c) for c in self.config.source.cases)
        return TrainingData(signals, labels, min(s[0] for s in spans), max(s[1] for s in spans), f"case(s) {names}")

    def _from_prometheus(self) -> TrainingData:
        from aiops.clients.prometheus import PrometheusClient, PrometheusError
        from aiops.collect.prometheus import PrometheusCollector

        src = self.config.source.prometheus
        assert src is not None
        end = src.end if src.end is not None else (self.now if self.now is not None else time.time())
        client = self.prometheus or PrometheusClient(src.url, src.timeout_seconds)
        try:
            obs = PrometheusCollector(client, self.config.step_seconds).collect(src.namespace, end - src.since, end)
        except PrometheusError as exc:
            raise InputError(f"{self.config.origin}: source.prometheus.url", str(exc)) from None
        if not obs.signals:
            raise InputError(f"{self.config.origin}: source.prometheus",
                             f"no workload series for namespace {src.namespace!r} at {src.url}")
        return TrainingData(list(obs.signals), {}, obs.start, obs.end,
                            f"{src.url} namespace {src.namespace}")


def _concat(parts: Sequence[Series]) -> Series:
    if len(parts) == 1:
        return parts[0]
    ordered = sorted(parts, key=lambda s: float(s.timestamps[0]) if len(s.timestamps) else 0.0)
    return Series(ordered[0].name, dict(ordered[0].labels), np.concatenate([s.timestamps for s in ordered]),
                  np.concatenate([s.values for s in ordered]))


def _dict(evaluation: Evaluation | None) -> dict | None:
    return evaluation.as_dict() if evaluation is not None else None


def _span(window: Sequence[float]) -> str:
    from datetime import datetime, timezone

    a, b = (datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%d %H:%M") for t in window)
    return f"{a} .. {b} UTC"
