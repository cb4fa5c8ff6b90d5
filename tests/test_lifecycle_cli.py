"""``aiops train`` and ``aiops models``: training from case folders with tuning and a report, config errors that
name the file and key, and the registry's list/show/promote/rollback (store and CLI)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from aiops.cli import main
from aiops.collect.casefolder import write_case
from aiops.detect.lof import LofDetector
from aiops.detect.store import ModelFileError, ModelStore
from aiops.detect.workload import WorkloadDetector
from aiops.domain.errors import InputError
from aiops.domain.observations import Observations, Series
from aiops.serve.train_config import load_train_config
from aiops.serve.training import Trainer

T0, STEP = 1.7e9, 15.0
WORKLOADS = ("cart", "catalog", "frontend")


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def make_case(folder: Path, start: float, points: int, seed: int, leak: tuple[str, float] | None = None) -> Path:
    """Raw exporter series of three workloads; ``leak=(workload, onset)`` makes its memory climb from ``onset``
    and records that in truth.json (a labelled incident)."""
    rng = np.random.default_rng(seed)
    ts = start + np.arange(points) * STEP
    raw = []
    for w in WORKLOADS:
        memory = 2e8 + rng.normal(0, 5e6, ts.size)
        if leak and leak[0] == w:
            memory += np.clip(ts - leak[1], 0, None) * 2e5
        raw.append(Series("container_memory_working_set_bytes",
                          {"namespace": "shop", "workload": w, "pod": f"{w}-1", "container": w}, ts, memory))
        raw.append(Series("http_request_duration_seconds", {"namespace": "shop", "workload": w, "quantile": "0.99"},
                          ts, 0.12 + rng.normal(0, 0.01, ts.size)))
    write_case(folder, Observations("shop", ts[0], ts[-1], series=tuple(raw)))
    if leak:
        (folder / "truth.json").write_text(json.dumps({"workload": leak[0], "fault": "memory_leak",
                                                       "playbook": "restart-workload", "onset": leak[1]}))
    return folder


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "train.yaml"
    path.write_text(text)
    return path


BASE = """name: shop
models_dir: models
source:
  cases: [case]
tuning: {window: [2, 4], n_neighbors: [5, 10], contamination: [0.01, 0.05], patience: 3}
"""


# --- aiops train ---
def test_train_from_a_case_folder_tunes_saves_and_reports(tmp_path, capsys):
    make_case(tmp_path / "case", T0, 480, seed=1)
    config = write_config(tmp_path, BASE)
    code, out, err = run(capsys, "train", "--config", config, "--format", "json", "--report", tmp_path / "r.json")
    assert code == 0, err
    report = json.loads(out)
    assert report["version"] == 1 and report["promoted"] and report["decision"].startswith("promoted")
    assert report["workloads"] == ["shop/cart", "shop/catalog", "shop/frontend"]
    assert report["evaluation"]["test"]["criterion"] == "stability"
    assert 1 <= len(report["tuning"]["trials"]) <= 8
    assert json.loads((tmp_path / "r.json").read_text())["version"] == 1
    store = ModelStore(tmp_path / "models")
    model, record = store.load("shop", expected_class=WorkloadDetector)
    assert record.extra["params"] == report["params"]
    assert record.trained_start == T0 and record.trained_end == pytest.approx(T0 + 479 * STEP * 0.8, abs=STEP)
    assert record.extra["metrics"]["test"]["score"] == report["evaluation"]["test"]["score"]
    # Trained again on the same data: as good as the current version, so promoted (ties go to the newer).
    code, out, _ = run(capsys, "train", "--config", config)
    assert code == 0 and "trained shop v2" in out and store.current_version("shop") == 2


def test_labelled_incidents_from_truth_drive_the_criterion(tmp_path):
    onset = T0 + 420 * STEP
    make_case(tmp_path / "case", T0, 480, seed=2, leak=("cart", onset))
    report = Trainer(load_train_config(write_config(tmp_path, BASE))).run()
    assert report.test is not None and report.test.criterion == "labels"
    assert report.test.incidents == 1 and report.test.caught == 1


def test_train_from_two_disjoint_cases_and_refuses_overlap(tmp_path):
    make_case(tmp_path / "a", T0, 240, seed=3)
    make_case(tmp_path / "b", T0 + 300 * STEP, 240, seed=4)
    text = BASE.replace("cases: [case]", "cases: [a, b]")
    report = Trainer(load_train_config(write_config(tmp_path, text))).run()
    assert report.windows["train"][0] == T0 and report.windows["test"][1] == T0 + 539 * STEP
    make_case(tmp_path / "c", T0 + 100 * STEP, 240, seed=5)
    with pytest.raises(InputError) as info:
        Trainer(load_train_config(write_config(tmp_path, BASE.replace("cases: [case]", "cases: [a, c]")))).run()
    assert info.value.where.endswith("c") and "overlaps" in info.value.reason


@pytest.mark.parametrize("text, where, words", [
    ("name: shop\nsource: {cases: [case]}\ntuning: {window: [0, 4]}\n", ":3", "tuning.window"),
    ("name: shop\nsource: {}\n", ":2", "give exactly one of cases"),
    ("name: shop\nsource: {cases: [case]}\nsplit: {validation: 0.5, test: 0.4}\n", ":3", "split"),
    ("name: 'bad name'\nsource: {cases: [case]}\n", ":1", "name"),
    ("name: shop\nsource: {cases: [case]}\nwindw: 3\n", ":3", "windw: unknown key"),
    ("name: shop\nsource: {prometheus: {url: ftp://x, namespace: shop}}\n", ":2", "source.prometheus.url"),
    ("name: shop\nsource: {cases: [case]}\nincidents: [{workload: cart, start: 10, end: 5}]\n", ":3", "incidents.0"),
    ("name: shop\nsource: [case]\n", ":2", "source"),
    ("- not a mapping\n", "train.yaml", "mapping"),
    ("name: shop\nsource: {cases: [case]\n", "train.yaml:", "YAML"),
])
def test_train_config_errors_name_file_line_and_key(tmp_path, capsys, text, where, words):
    make_case(tmp_path / "case", T0, 240, seed=6)
    config = write_config(tmp_path, text)
    code, out, err = run(capsys, "train", "--config", config)
    assert code == 2 and out == ""
    assert str(config) in err and where in err and words in err, err
    assert not (tmp_path / "models").exists()


def test_train_data_errors_name_what_is_missing(tmp_path, capsys):
    config = write_config(tmp_path, BASE)
    code, _, err = run(capsys, "train", "--config", config)
    assert code == 2 and str(tmp_path / "case") in err and "not found" in err
    make_case(tmp_path / "case", T0, 240, seed=7)
    config = write_config(tmp_path, BASE + "workloads: [cart, nosuch]\n")
    code, _, err = run(capsys, "train", "--config", config)
    assert code == 2 and "workloads" in err and "nosuch" in err
    code, _, err = run(capsys, "train", "--config", tmp_path / "absent.yaml")
    assert code == 2 and "absent.yaml" in err


def test_a_corrupt_current_model_is_named_and_nothing_is_saved(tmp_path, capsys):
    make_case(tmp_path / "case", T0, 240, seed=8)
    config = write_config(tmp_path, BASE)
    assert run(capsys, "train", "--config", config)[0] == 0
    pkl = tmp_path / "models" / "shop" / "v0001.pkl"
    pkl.write_bytes(pkl.read_bytes()[:-10])
    code, _, err = run(capsys, "train", "--config", config)
    assert code == 2 and str(pkl) in err and "checksum" in err
    assert ModelStore(tmp_path / "models").versions("shop") == [1]


def test_if_better_keeps_the_current_version_and_exits_1(tmp_path, capsys):
    make_case(tmp_path / "case", T0, 480, seed=9)
    config = write_config(tmp_path, BASE)
    assert run(capsys, "train", "--config", config)[0] == 0
    # A deaf detector (every alarm needs a huge run) scores below the current one on the held-back span.
    deaf = BASE.replace("tuning: {window: [2, 4], n_neighbors: [5, 10], contamination: [0.01, 0.05], patience: 3}",
                        "tuning: {enabled: false}\ndetector: {window: 120, contamination: 0.001}")
    code, out, _ = run(capsys, "train", "--config", write_config(tmp_path, deaf))
    assert code == 1 and "kept v1" in out
    store = ModelStore(tmp_path / "models")
    assert store.versions("shop") == [1, 2] and store.current_version("shop") == 1


# --- the registry ---
def _lof(seed: int) -> LofDetector:
    return LofDetector().fit(np.random.default_rng(seed).normal(size=(30, 2)))


def test_store_promote_rollback_and_unpromoted_saves(tmp_path):
    store = ModelStore(tmp_path)
    assert store.save("m", _lof(1)).version == 1
    assert store.save("m", _lof(2)).version == 2 and store.current_version("m") == 2
    challenger = store.save("m", _lof(3), {"plan_id": "p-1"}, promote=False)
    assert challenger.version == 3 and store.current_version("m") == 2
    assert store.load("m")[1].version == 2 and store.find("m", "plan_id", "p-1").version == 3
    store.promote("m", 3)
    assert store.current_version("m") == 3 and store.list()[0].version == 3
    assert store.rollback("m").version == 2 and store.current_version("m") == 2
    assert store.rollback("m").version == 1
    with pytest.raises(ModelFileError, match="no earlier version"):
        store.rollback("m")
    assert store.rollback("m", to=3).version == 3
    with pytest.raises(ModelFileError) as info:
        store.promote("m", 9)
    assert info.value.where == str(tmp_path / "m")
    assert info.value.reason == "model m has no version 9 (versions: 1, 2, 3)"
    with pytest.raises(ModelFileError, match="has no version 7"):
        store.rollback("m", to=7)
    with pytest.raises(ModelFileError, match="no saved model named 'other'"):
        store.promote("other", 1)
    with pytest.raises(ModelFileError) as info:  # not "no earlier version (current v0)": there is no such model
        store.rollback("other")
    assert info.value.reason == "no saved model named 'other'"
    (tmp_path / "m" / "v0002.json").write_text("{")  # a version that is there but unreadable names its file
    with pytest.raises(ModelFileError) as info:
        store.promote("m", 2)
    assert info.value.where.endswith("v0002.json") and "sidecar unreadable" in info.value.reason


def test_store_without_pointer_uses_the_highest_version_and_a_bad_pointer_is_named(tmp_path):
    store = ModelStore(tmp_path)
    store.save("m", _lof(1))
    store.save("m", _lof(2))
    (tmp_path / "m" / "current.json").unlink(missing_ok=True)  # as written before promotion existed
    assert store.current_version("m") == 2 and store.rollback("m").version == 1
    (tmp_path / "m" / "current.json").write_text('{"version": "two"}')
    with pytest.raises(ModelFileError) as info:
        store.load("m")
    assert info.value.where == str(tmp_path / "m" / "current.json") and "malformed" in info.value.reason


def test_models_cli_list_show_promote_rollback(tmp_path, capsys):
    make_case(tmp_path / "case", T0, 240, seed=10)
    config = write_config(tmp_path, BASE)
    for _ in range(2):
        assert run(capsys, "train", "--config", config)[0] == 0
    models = tmp_path / "models"
    code, out, _ = run(capsys, "models", "--models-dir", models, "list")
    assert code == 0 and "shop" in out and "v2" in out and "stability" in out
    code, out, _ = run(capsys, "models", "--models-dir", models, "--format", "json", "list")
    [row] = json.loads(out)
    assert (row["name"], row["version"], row["versions"]) == ("shop", 2, 2)
    code, out, _ = run(capsys, "models", "--models-dir", models, "show", "shop")
    assert code == 0 and "* v2" in out and "  v1" in out and "params window=" in out
    code, out, _ = run(capsys, "models", "--models-dir", models, "rollback", "shop")
    assert code == 0 and "from v2 to v1" in out
    code, out, _ = run(capsys, "models", "--models-dir", models, "--format", "json", "show", "shop", "--version", "1")
    assert json.loads(out)["current"] == 1
    code, out, _ = run(capsys, "models", "--models-dir", models, "promote", "shop", "2")
    assert code == 0 and "v2 is current (was v1)" in out
    code, _, err = run(capsys, "models", "--models-dir", models, "promote", "shop", "7")
    assert (code, err) == (2, f"aiops: error: {models / 'shop'}: model shop has no version 7 (versions: 1, 2)\n")
    code, _, err = run(capsys, "models", "--models-dir", models, "show", "shop", "--version", "7")
    assert code == 2 and "model shop has no version 7 (versions: 1, 2)" in err
    code, _, err = run(capsys, "models", "--models-dir", models, "rollback", "shop", "--to", "7")
    assert code == 2 and "model shop has no version 7 (versions: 1, 2)" in err
    code, _, err = run(capsys, "models", "--models-dir", models, "show", "nosuch")
    assert code == 2 and "nosuch" in err
    code, _, err = run(capsys, "models", "--models-dir", models, "rollback", "../x")
    assert code == 2 and "model name" in err
    (tmp_path / "empty").mkdir()
    code, out, _ = run(capsys, "models", "--models-dir", tmp_path / "empty", "list")
    assert code == 0 and "no models" in out


@pytest.mark.parametrize("verb", [["list"], ["show", "shop"], ["promote", "shop", "1"], ["rollback", "shop"]])
def test_models_cli_refuses_a_registry_folder_that_is_not_there(tmp_path, capsys, verb):
    missing = tmp_path / "nonexistent"
    code, out, err = run(capsys, "models", "--models-dir", missing, *verb)
    assert (code, out) == (2, "")
    assert err == f"aiops: error: --models-dir: no model registry folder at {missing} (it does not exist)\n"
    (tmp_path / "file").write_text("")
    code, _, err = run(capsys, "models", "--models-dir", tmp_path / "file", *verb)
    assert code == 2 and "is a file, not a model registry folder" in err
    config = tmp_path / "config.yaml"
    config.write_text(f"models_dir: {missing}\n")
    code, _, err = run(capsys, "models", "--config", config, *verb)
    assert code == 2 and f"models_dir of {config}" in err and str(missing) in err
    assert not missing.exists()  # nothing created on the way
