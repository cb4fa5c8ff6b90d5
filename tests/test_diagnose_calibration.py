"""Calibration: the isotonic fit, its JSON file, loading through the agent, and the ensemble applying it."""

from __future__ import annotations


import numpy as np
import pytest

from aiops.diagnose.calibration import (CALIBRATION_FILE, Calibration, brier_score,
                                        expected_calibration_error)
from aiops.diagnose.ensemble import Diagnoser
from aiops.diagnose.ranking import StatisticalRanker
from aiops.diagnose.rules import RuleEngine
from aiops.domain import signals as sig
from aiops.domain.diagnosis import Fault
from aiops.domain.errors import InputError
from aiops.serve.agent import load_knowledge
from aiops.settings import Settings
from tests.test_diagnose_ensemble import RULES, _chosen, _diagnose
from tests.test_diagnose_scenarios import memory_leak


def _synthetic(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Raw confidences that overstate: the true chance of being right is x**2."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, n)
    return x, rng.uniform(0, 1, n) < x ** 2


def test_fit_is_monotone_maps_into_unit_interval_and_improves_ece():
    x, y = _synthetic()
    cal = Calibration.fit(x, y, meta={"fitted_on": "synthetic"})
    grid = np.linspace(-0.5, 1.5, 201)  # beyond [0, 1] too: out_of_bounds clips
    out = np.array([cal.apply(v) for v in grid])
    assert np.all(np.diff(out) >= -1e-12)
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert cal.apply(0.5) < 0.45  # the overstated 0.5 is pulled towards 0.25
    assert cal.meta["n"] == 400 and cal.meta["fitted_on"] == "synthetic"
    fresh_x, fresh_y = _synthetic(seed=1)
    after = [cal.apply(v) for v in fresh_x]
    assert expected_calibration_error(after, fresh_y) < expected_calibration_error(fresh_x, fresh_y) / 2
    assert brier_score(after, fresh_y) < brier_score(fresh_x, fresh_y)


def test_ece_and_brier_on_known_values():
    assert expected_calibration_error([0.9, 0.9], [True, False]) == pytest.approx(0.4)
    assert expected_calibration_error([1.0, 0.0], [True, False]) == 0.0
    assert brier_score([1.0, 0.5], [True, False]) == pytest.approx(0.125)


def test_identity_when_absent(tmp_path):
    cal = Calibration.load(tmp_path / "missing.json")
    assert cal.identity and cal.apply(0.37) == 0.37


def test_round_trip(tmp_path):
    x, y = _synthetic()
    cal = Calibration.fit(x, y, meta={"ECE_before": 0.2})
    path = tmp_path / CALIBRATION_FILE
    cal.save(path)
    back = Calibration.load(path)
    assert back.meta == cal.meta
    for v in (0.0, 0.1, 0.33, 0.5, 0.77, 1.0):
        assert back.apply(v) == pytest.approx(cal.apply(v), abs=1e-5)
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("text, says", [
    ("{not json", "not a readable"),
    ('{"format": "other", "points": []}', "format"),
    ('{"format": "aiops-calibration/1", "points": [[0.1, 2.0]]}', "points[0]"),
    ('{"format": "aiops-calibration/1", "points": [[0.5, 0.6], [0.6, 0.2]]}', "points[1]"),
])
def test_corrupt_file_is_an_input_error_naming_the_file(tmp_path, text, says):
    path = tmp_path / CALIBRATION_FILE
    path.write_text(text)
    with pytest.raises(InputError) as err:
        Calibration.load(path)
    assert err.value.where == str(path) and says in err.value.reason


def test_load_knowledge_uses_the_models_dir_calibration(tmp_path):
    Calibration((0.0, 1.0), (0.2, 0.2)).save(tmp_path / CALIBRATION_FILE)
    knowledge = load_knowledge(Settings(models_dir=tmp_path))
    assert knowledge.diagnoser.calibration.apply(0.99) == pytest.approx(0.2)
    assert load_knowledge(Settings(models_dir=tmp_path / "none")).diagnoser.calibration.identity
    (tmp_path / CALIBRATION_FILE).write_text("[]")
    with pytest.raises(InputError) as err:
        load_knowledge(Settings(models_dir=tmp_path))
    assert CALIBRATION_FILE in err.value.where


def test_the_ensemble_applies_the_calibration_before_the_threshold():
    analyzers = [StatisticalRanker(), RuleEngine(RULES)]
    plain = _diagnose(memory_leak("cart"), "cart", sig.MEMORY, diagnoser=Diagnoser(analyzers, min_confidence=0.5))
    assert _chosen(plain) == ("cart", Fault.MEMORY_LEAK, "restart-workload") and plain.confidence > 0.9
    low = Diagnoser(analyzers, min_confidence=0.5, calibration=Calibration((0.0, 1.0), (0.2, 0.2)))
    d = _diagnose(memory_leak("cart"), "cart", sig.MEMORY, diagnoser=low)
    assert _chosen(d) == ("cart", Fault.UNKNOWN, "escalate")
    assert d.confidence == pytest.approx(0.2)


def test_below_the_fitted_data_it_is_never_more_confident_than_raw():
    cal = Calibration.fit([0.7, 0.8, 0.9, 0.95], [True, True, True, True])  # only strong, right cases seen
    assert cal.apply(0.95) == pytest.approx(1.0)
    assert cal.apply(0.4) == pytest.approx(0.4)  # clipping would have said 1.0 with no evidence at all
    assert cal.apply(0.0) == 0.0
    weak = Calibration.fit([0.6, 0.9], [False, True])
    assert weak.apply(0.3) == 0.0 and weak.apply(0.6) == 0.0
