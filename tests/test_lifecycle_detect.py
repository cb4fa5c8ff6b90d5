"""Detection with the registry's current model (``lifecycle.detect_with: registry``): the trained model scores the
workloads it knows, new workloads still get a window-fitted detector, promotions take effect, broken files fall
back."""

from __future__ import annotations

import numpy as np

from aiops.detect.store import ModelStore
from aiops.detect.tuning import DetectorParams
from aiops.domain.observations import Observations, Series
from aiops.serve.model_cache import CurrentModels
from aiops.serve.pipeline import IncidentPipeline
from aiops.settings import LifecycleSettings, LoopSettings
from tests.test_lifecycle_retrain import HOUR, NS, T0, RegimeCollector

NOW = T0 + 6 * HOUR


def _pipeline(tmp_path, collector) -> tuple[IncidentPipeline, ModelStore]:
    store = ModelStore(tmp_path)
    first = collector.collect(NS, T0, T0 + 2 * HOUR)
    store.save(NS, DetectorParams().build().fit(first.signals, T0, T0 + 2 * HOUR))
    pipeline = IncidentPipeline(collector=collector, diagnoser=None, playbooks={}, policy=None,  # type: ignore
                                runner=None, history=None, clock=None,  # type: ignore[arg-type]
                                window=LoopSettings(baseline_seconds=HOUR, recent_seconds=600, step_seconds=60))
    return pipeline, store


def _with_new_workload(obs: Observations) -> Observations:
    ts = obs.signals[0].timestamps
    values = np.where(ts > obs.end - 600, 5.0, 1.0) + np.random.default_rng(0).normal(0, 0.05, ts.size)
    extra = Series("cpu", {"namespace": NS, "workload": "newsvc"}, ts, values)
    return Observations(NS, obs.start, obs.end, signals=obs.signals + (extra,))


def test_registry_model_scores_known_workloads_and_the_window_covers_new_ones(tmp_path):
    # Everything has sat in the shifted regime for hours: the window's baseline calls it normal, the model
    # trained on the old regime does not.
    collector = RegimeCollector(lambda ts, call: ts >= T0 + 3 * HOUR)
    pipeline, store = _pipeline(tmp_path, collector)
    obs = _with_new_workload(collector.collect(NS, NOW - HOUR - 600, NOW))
    by_window = {a.target.name for a in pipeline.detect(obs)}
    assert by_window == {"newsvc"}
    pipeline.models = CurrentModels(store, LifecycleSettings())
    by_model = {a.target.name for a in pipeline.detect(obs)}
    assert by_model == {"cart", "catalog", "frontend", "newsvc"}


def test_current_models_follow_promotions_and_fall_back_on_broken_files(tmp_path, caplog):
    collector = RegimeCollector(lambda ts, call: np.zeros(ts.size, bool))
    _, store = _pipeline(tmp_path, collector)
    models = CurrentModels(store, LifecycleSettings(models={"other": NS}))
    first = models("other")
    assert first is not None and models("other") is first  # cached while the version stays current
    assert models(NS) is first and models("unknown-namespace") is None
    data = collector.collect(NS, T0, T0 + HOUR)
    store.save(NS, DetectorParams(window=2).build().fit(data.signals, T0, T0 + HOUR))
    assert models(NS) is not first and models(NS).window == 2
    store.rollback(NS)
    pkl = tmp_path / NS / "v0001.pkl"
    pkl.write_bytes(b"corrupt")
    models = CurrentModels(store, LifecycleSettings())
    assert models(NS) is None
    assert str(pkl) in caplog.text and "checksum" in caplog.text
