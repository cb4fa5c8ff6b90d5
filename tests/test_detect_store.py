"""ModelStore: round trip, versions, and a clear ModelFileError for every way a model file can be unusable."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from aiops.detect.lof import LofDetector
from aiops.detect.store import ModelFileError, ModelStore
from aiops.detect.workload import WorkloadDetector
from aiops.domain.errors import InputError
from aiops.domain.observations import Series


def _fitted_workload_detector() -> WorkloadDetector:
    rng = np.random.default_rng(0)
    ts = 1000.0 + np.arange(60) * 15.0
    series = [Series(name, {"namespace": "shop", "workload": "cart"}, ts, rng.normal(1.0, 0.1, ts.size))
              for name in ("cpu", "memory")]
    return WorkloadDetector().fit(series, ts[0], ts[-1])


def test_round_trip_and_versions(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    det = _fitted_workload_detector()
    rec1 = store.save("shop", det)
    assert rec1.version == 1
    assert rec1.features == det.features == ("cpu:level", "cpu:slope", "memory:level", "memory:slope")
    assert rec1.trained_start == 1000.0 and rec1.trained_end == 1000.0 + 59 * 15.0
    assert rec1.detector_class == "aiops.detect.workload.WorkloadDetector"
    assert {"numpy", "pyod", "scikit-learn", "python"} <= set(rec1.libraries)
    rec2 = store.save("shop", det, {"note": "retrained"})
    assert rec2.version == 2 and rec2.extra == {"note": "retrained"}
    model, record = store.load("shop", expected_features=det.features, expected_class=WorkloadDetector)
    assert record.version == 2
    assert model.fitted_workloads == [("shop", "cart")]
    key = ("shop", "cart")
    X = np.zeros((1, 4))
    assert model.models[key].detector.decision_function(X) == pytest.approx(
        det.models[key].detector.decision_function(X))
    old, old_rec = store.load("shop", version=1)
    assert old_rec.version == 1
    assert [r.name for r in store.list()] == ["shop"] and store.list()[0].version == 2
    assert store.versions("shop") == [1, 2]


def test_explicit_metadata_and_plain_detector(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    det = LofDetector().fit(np.random.default_rng(1).normal(size=(50, 2)))
    rec = store.save("plain", det, {"features": ["a", "b"], "trained_start": 1, "trained_end": 2})
    assert (rec.features, rec.trained_start, rec.trained_end) == (("a", "b"), 1.0, 2.0)
    sidecar = json.loads((tmp_path / "plain" / "v0001.json").read_text())
    assert sidecar["sha256"] == rec.sha256 and sidecar["version"] == 1


def test_missing_model_name(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="no saved model"):
        ModelStore(tmp_path).load("nothing")
    with pytest.raises(InputError):
        ModelStore(tmp_path).save("../escape", object())


def test_checksum_mismatch(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    store.save("m", LofDetector().fit(np.zeros((10, 2)) + np.arange(10)[:, None]))
    pkl = tmp_path / "m" / "v0001.pkl"
    data = bytearray(pkl.read_bytes())
    data[-5] ^= 0xFF
    pkl.write_bytes(bytes(data))
    with pytest.raises(ModelFileError) as info:
        store.load("m")
    assert info.value.where == str(pkl) and "checksum" in info.value.reason


def test_corrupt_pickle_with_matching_checksum(tmp_path: Path) -> None:
    import hashlib
    store = ModelStore(tmp_path)
    store.save("m", {"a": 1})
    pkl, side = tmp_path / "m" / "v0001.pkl", tmp_path / "m" / "v0001.json"
    pkl.write_bytes(b"not a pickle")
    meta = json.loads(side.read_text())
    meta["sha256"] = hashlib.sha256(b"not a pickle").hexdigest()
    side.write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match="cannot unpickle"):
        store.load("m")


def test_missing_or_broken_sidecar(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    store.save("m", {"a": 1})
    side = tmp_path / "m" / "v0001.json"
    side.write_text("{broken")
    with pytest.raises(ModelFileError, match="sidecar unreadable"):
        store.load("m")
    side.write_text(json.dumps({"name": "m"}))
    with pytest.raises(ModelFileError, match="sidecar malformed"):
        store.load("m")
    assert store.list() == []
    side.unlink()
    with pytest.raises(ModelFileError, match="sidecar missing"):
        store.load("m", version=1)


def test_feature_and_class_mismatch(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    det = _fitted_workload_detector()
    store.save("shop", det)
    with pytest.raises(ModelFileError, match="feature list does not match") as info:
        store.load("shop", expected_features=("cpu:level", "cpu:slope"))
    assert info.value.where.endswith("v0001.json")
    with pytest.raises(ModelFileError, match="expected LofDetector"):
        store.load("shop", expected_class=LofDetector)
    side = tmp_path / "shop" / "v0001.json"
    meta = json.loads(side.read_text())
    meta["detector_class"] = "aiops.detect.lof.LofDetector"
    side.write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match="sidecar says"):
        store.load("shop")
