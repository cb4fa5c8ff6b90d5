"""Case folders: write/read round trip, and an error naming file and line/index/field for every bad input."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from aiops.collect.casefolder import read_case, write_case
from aiops.domain import signals as sig
from aiops.domain.errors import InputError
from aiops.domain.observations import EVENTS, LOGS, KubeEvent, LogLine, Observations, Series, SourceGap, Topology

T0 = 1795802820.0
ALERT = Path(__file__).parent / "fixtures" / "alertmanager" / "alertmanager_HighErrorRate_firing.json"


def _observations() -> Observations:
    ts = T0 + np.arange(20) * 15.0
    series = (
        Series(sig.RAW_MEMORY, {"namespace": "shop", "workload": "cart", "pod": "cart-7d4b9c8f6-x2k9p"}, ts,
               1e8 + np.arange(20) * 1e6),
        Series(sig.RAW_CPU, {"namespace": "shop", "workload": "cart", "pod": "cart-7d4b9c8f6-x2k9p"}, ts,
               np.arange(20) * 3.0),
        Series("some_custom_metric", {"namespace": "shop", "workload": "web"}, ts, np.full(20, np.nan)),
    )
    logs = (LogLine(T0 + 30.5, "shop", "cart-7d4b9c8f6-x2k9p", "app", "cart", "OOM soon"),)
    events = (KubeEvent(T0 + 60.25, "shop", "Pod", "cart-7d4b9c8f6-x2k9p", "BackOff", "Back-off restarting",
                        "Warning", 3, "cart"),)
    return Observations("shop", ts[0], ts[-1], series=series, logs=logs, events=events,
                        topology=Topology((("web", "cart"),)))


def test_round_trip(tmp_path: Path) -> None:
    obs = _observations()
    payload = json.loads(ALERT.read_text())
    truth = {"workload": "cart", "fault": "memory_leak", "playbook": "restart-workload"}
    folder = write_case(tmp_path / "case", obs, alert_payload=payload, truth=truth)
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["metrics.json", "logs.jsonl", "events.jsonl", "alert.json", "topology.json", "truth.json"])
    assert [p.name for p in tmp_path.iterdir()] == ["case"]  # no temp folders left behind
    case = read_case(folder, step=15.0)
    got = case.observations
    assert (got.namespace, got.start, got.end) == ("shop", obs.start, obs.end)
    assert [s.name for s in got.series] == [s.name for s in obs.series]
    for a, b in zip(got.series, obs.series):
        assert dict(a.labels) == dict(b.labels)
        np.testing.assert_array_equal(a.timestamps, b.timestamps)
        np.testing.assert_array_equal(a.values, b.values)  # NaN == NaN here
    assert got.logs == obs.logs and got.events == obs.events and got.topology == obs.topology
    assert got.not_collected == ()  # logs.jsonl and events.jsonl are there: both were recorded
    assert {(s.workload, s.name) for s in got.signals} == {("cart", sig.MEMORY), ("cart", sig.CPU)}
    assert case.truth == truth and case.alert_payload == payload
    assert [a.name for a in case.alerts] == ["HighErrorRate"]


def test_a_source_not_recorded_has_no_file_and_reads_back_as_not_collected(tmp_path: Path) -> None:
    gaps = (SourceGap(LOGS, "no --config"), SourceGap(EVENTS, "no --config"))
    blind = replace(_observations(), logs=(), events=(), not_collected=gaps)
    folder = write_case(tmp_path / "blind", blind)
    assert not (folder / "logs.jsonl").exists() and not (folder / "events.jsonl").exists()
    got = read_case(folder).observations
    assert got.not_collected == (SourceGap(LOGS, "not recorded: the case folder has no logs.jsonl"),
                                 SourceGap(EVENTS, "not recorded: the case folder has no events.jsonl"))
    # Read, and nothing happened: an empty file, read back as collected.
    quiet = write_case(tmp_path / "quiet", replace(_observations(), logs=(), events=()))
    assert (quiet / "events.jsonl").read_text() == "" and (quiet / "logs.jsonl").read_text() == ""
    got = read_case(quiet).observations
    assert got.not_collected == () and got.collected(EVENTS) and got.events == ()


def test_write_refuses_a_non_empty_folder_unless_overwrite(tmp_path: Path) -> None:
    write_case(tmp_path / "case", _observations())
    with pytest.raises(InputError, match="already exists"):
        write_case(tmp_path / "case", _observations())
    write_case(tmp_path / "case", _observations(), truth={"workload": "x"}, overwrite=True)
    assert read_case(tmp_path / "case").truth == {"workload": "x"}
    assert [p.name for p in tmp_path.iterdir()] == ["case"]


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        write_case(tmp_path / "case", _observations(), alert_payload={"bad": object()})
    assert list(tmp_path.iterdir()) == []


def test_minimal_folder_and_namespace_vote(tmp_path: Path) -> None:
    rows = [{"metric": {"__name__": sig.RAW_MEMORY, "namespace": ns, "pod": f"{ns}-0"},
             "values": [[T0, "1"], [T0 + 15, "2"]]} for ns in ("a", "b", "b")]
    (tmp_path / "metrics.json").write_text(json.dumps(rows))
    case = read_case(tmp_path)
    assert case.observations.namespace == "b"
    assert case.alerts == [] and case.truth is None and not case.observations.topology.known


def _case_with(tmp_path: Path, **files: str) -> Path:
    folder = write_case(tmp_path / "case", _observations())
    for name, text in files.items():
        (folder / name.replace("_", ".")).write_text(text)
    return folder


@pytest.mark.parametrize("files, where, reason", [
    ({"metrics_json": "[1,"}, "metrics.json:1", "not valid JSON"),
    ({"metrics_json": "{}"}, "metrics.json", "must be a list"),
    ({"metrics_json": "[]"}, "metrics.json", "no samples"),
    ({"metrics_json": '[{"metric": {}, "values": [[1, "1"], [2, "x"]]}]'}, "metrics.json[0].values[1]",
     'not a [timestamp, "value"] pair'),
    ({"metrics_json": '[{"metric": {"a": 1}, "values": []}]'}, "metrics.json[0].metric", "string labels"),
    ({"logs_jsonl": '{"ts": 1, "line": "ok"}\n\n{nope\n'}, "logs.jsonl:3", "not valid JSON"),
    ({"logs_jsonl": '{"ts": "later", "line": "x"}\n'}, "logs.jsonl:1: ts", "RFC3339"),
    ({"logs_jsonl": '{"ts": 1}\n'}, "logs.jsonl:1: line", "missing"),
    ({"events_jsonl": '{"reason": "x"}\n'}, "events.jsonl:1.involvedObject", "missing"),
    ({"events_jsonl": '[1]\n'}, "events.jsonl:1", "JSON object"),
    ({"alert_json": '{"alerts": [{"status": "firing"}]}'}, "alert.json: alerts[0].labels", "missing"),
    ({"topology_json": '{"calls": [["a"]]}'}, "topology.json: calls[0]", "pair"),
    ({"truth_json": '{"fault": 3}'}, "truth.json: fault", "string"),
    ({"metrics_json": "[" * 100_000 + "]" * 100_000}, "metrics.json", "nested too deeply"),
    ({"events_jsonl": '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}\n"}, "events.jsonl:1", "nested too deeply"),
])
def test_bad_files_are_named(tmp_path: Path, files: dict, where: str, reason: str) -> None:
    folder = _case_with(tmp_path, **files)
    with pytest.raises(InputError) as info:
        read_case(folder)
    assert info.value.where == f"{folder}/{where}"
    assert reason in info.value.reason


def test_missing_folder_and_missing_metrics(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="case folder not found"):
        read_case(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="not a folder"):
        read_case(tmp_path / "file")
    folder = _case_with(tmp_path)
    (folder / "metrics.json").unlink()
    with pytest.raises(InputError) as info:
        read_case(folder)
    assert info.value.where.endswith("metrics.json") and "missing" in info.value.reason
    shutil.rmtree(folder)
