"""The Loghub log-parsing benchmark: GA/PA evaluator, the generic header stripper, and a run on two systems."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from tests.support.benchdata import data_dir, require
from bench.logparse import grouping_accuracy, main, parsing_accuracy, read_raw_lines, strip_log_header

DATA = data_dir("loghub_2k")
SYSTEMS = ("HDFS", "OpenSSH")


def test_grouping_accuracy_counts_only_exactly_matching_groups():
    truth = ["A", "A", "B", "B", "C"]
    assert grouping_accuracy(truth, ["x", "x", "y", "y", "z"]) == 1.0
    # ids are arbitrary labels: a relabelled perfect grouping is still perfect
    assert grouping_accuracy(truth, ["z", "z", "x", "x", "y"]) == 1.0
    # B split in two: its 2 lines are wrong, A and C right
    assert grouping_accuracy(truth, ["x", "x", "y", "w", "z"]) == pytest.approx(3 / 5)
    # B and C merged: 3 lines wrong
    assert grouping_accuracy(truth, ["x", "x", "y", "y", "y"]) == pytest.approx(2 / 5)
    # everything in one group
    assert grouping_accuracy(truth, ["x"] * 5) == 0.0
    # a predicted group that is a strict subset of its true group is wrong even though it is pure
    assert grouping_accuracy(["A", "A", "A"], ["x", "x", "y"]) == 0.0


def test_grouping_accuracy_rejects_misaligned_input():
    with pytest.raises(ValueError):
        grouping_accuracy(["A"], ["x", "y"])


def test_parsing_accuracy_compares_templates_after_whitespace_normalisation():
    truth = ["Invalid user <*> from <*>", "boot  (command <*>)", "a <*>"]
    assert parsing_accuracy(truth, ["Invalid user <*> from <*>", "boot (command <*>)", "a b"]) == pytest.approx(2 / 3)
    assert parsing_accuracy(truth, truth) == 1.0


def test_generic_header_stripper_finds_the_message_without_a_format():
    assert strip_log_header("081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 for block "
                            "blk_38865049064139660 terminating") == "PacketResponder 1 for block blk_38865049064139660 terminating"
    assert strip_log_header("Dec 10 06:55:46 LabSZ sshd[24200]: Invalid user webmaster from 173.234.31.186") \
        == "Invalid user webmaster from 173.234.31.186"
    assert strip_log_header("2015-07-29 17:41:44,747 - INFO  [QuorumPeer[myid=1]/0:0:0:0:0:0:0:0:2181:"
                            "FastLeaderElection@774] - Notification time out: 3200") == "Notification time out: 3200"
    assert strip_log_header("20171223-22:15:29:606|Step_LSC|30002312|onStandStepChanged 3579") \
        == "onStandStepChanged 3579"
    assert strip_log_header("[Sun Dec 04 04:47:44 2005] [error] mod_jk child workerEnv in error state 6") \
        == "mod_jk child workerEnv in error state 6"
    assert strip_log_header("no header at all") == "no header at all"


def test_raw_lines_keep_alignment_with_crlf_and_missing_final_newline(tmp_path):
    path = tmp_path / "x.log"
    path.write_bytes(b"a 1\r\n\r\nb 2")
    assert read_raw_lines(path) == ["a 1", "", "b 2"]


@pytest.fixture()
def two_systems(tmp_path: Path) -> Path:
    require("loghub_2k")
    data = tmp_path / "data"
    for system in SYSTEMS:
        shutil.copytree(DATA / system, data / system)
    shutil.copytree(DATA / "published", data / "published")
    return data


def test_bench_on_two_systems_writes_outputs_and_reaches_ga(two_systems: Path, tmp_path: Path, capsys):
    out = tmp_path / "out"
    assert main(["--data", str(two_systems), "--out", str(out)]) == 0
    table = capsys.readouterr().out
    report = json.loads((out / "logparse.json").read_text())
    assert report["input"] == "raw"
    by_system = {r["system"]: r for r in report["systems"]}
    assert set(by_system) == set(SYSTEMS)
    for system in SYSTEMS:
        assert by_system[system]["ga"] >= 0.8, by_system[system]
        assert by_system[system]["published_ga"] is not None
        assert system in table
        with (out / system / f"{system}_2k.log_structured.csv").open(newline="") as fh:
            rows = list(csv.reader(fh))
        assert rows[0] == ["LineId", "EventId", "EventTemplate"]
        assert len(rows) == 2001
        assert [r[0] for r in rows[1:6]] == ["1", "2", "3", "4", "5"]
    assert report["average_ga"] >= 0.8 and report["lines_per_s"] > 0
    assert "Drain GA" in table


def test_bench_content_input_gives_the_same_grouping_quality(two_systems: Path, tmp_path: Path):
    out = tmp_path / "out"
    assert main(["--data", str(two_systems), "--out", str(out), "--input", "content"]) == 0
    report = json.loads((out / "logparse.json").read_text())
    assert report["input"] == "content" and report["average_ga"] >= 0.8


def test_bench_rejects_a_folder_without_systems(tmp_path: Path, capsys):
    assert main(["--data", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert "no <System>" in capsys.readouterr().err
