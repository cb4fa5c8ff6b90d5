"""Loading and validating playbook files: the stock set, and every kind of bad file."""

from __future__ import annotations

from pathlib import Path

import pytest

from aiops.domain.errors import InputError
from aiops.remediate.playbooks import load_playbooks, validate_playbook_file

STOCK = Path(__file__).resolve().parent.parent / "playbooks"
GOOD = "name: scale-up\naction: scale\nparams:\n  factor: 2\nverify:\n  signals: [cpu]\n"


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_stock_playbooks_load_with_their_contracted_shape():
    books = load_playbooks(STOCK)
    assert set(books) == {"restart-workload", "scale-up", "shift-traffic", "rollback-deploy", "escalate",
                          "retrain-detector", "degrade-model", "isolate-pod"}
    assert {b.action for b in books.values()} == {"restart", "scale", "shift_traffic", "rollback", "escalate",
                                                  "retrain", "degrade", "isolate"}
    assert books["retrain-detector"].faults == ("detector_drift",)
    assert books["degrade-model"].restore.healthy_checks == 3
    assert books["isolate-pod"].restore.healthy_checks == 3
    assert books["scale-up"].params == {"factor": 2, "step_min": 1, "max_replicas": 10}
    assert set(books["restart-workload"].verify.signals) == {"memory", "restarts"}
    assert set(books["scale-up"].verify.signals) == {"latency_p99", "error_ratio"}
    assert "pod-template-hash" in books["shift-traffic"].description
    assert not books["escalate"].acts
    for path in STOCK.glob("*.yaml"):
        assert validate_playbook_file(path) == []


def test_bad_yaml_names_file_and_line(tmp_path):
    path = write(tmp_path, "broken.yaml", "name: x\naction: [restart\nfaults: []\n")
    with pytest.raises(InputError) as info:
        load_playbooks(tmp_path)
    assert info.value.where.startswith(f"{path}:") and info.value.where.rsplit(":", 1)[1].isdigit()
    assert "YAML" in info.value.reason


def test_unknown_key_names_file_line_and_key(tmp_path):
    path = write(tmp_path, "a.yaml", "name: a\naction: restart\nretries: 3\n")
    with pytest.raises(InputError) as info:
        load_playbooks(tmp_path)
    assert info.value.where == f"{path}:3"
    assert "retries: unknown key" in info.value.reason


def test_unknown_action_names_the_field(tmp_path):
    write(tmp_path, "a.yaml", "name: a\naction: reboot-node\n")
    with pytest.raises(InputError, match=r"a\.yaml:2: action:"):
        load_playbooks(tmp_path)


def test_unknown_param_for_the_action(tmp_path):
    write(tmp_path, "a.yaml", "name: a\naction: scale\nparams:\n  factr: 2\n")
    with pytest.raises(InputError, match=r"params\.factr: unknown key"):
        load_playbooks(tmp_path)


def test_unknown_verify_signal(tmp_path):
    write(tmp_path, "a.yaml", "name: a\naction: restart\nverify:\n  signals: [mem]\n")
    with pytest.raises(InputError, match="verify.signals: unknown signal"):
        load_playbooks(tmp_path)


def test_name_may_differ_from_the_stem_but_duplicates_are_refused(tmp_path):
    write(tmp_path, "one.yaml", GOOD)
    assert set(load_playbooks(tmp_path)) == {"scale-up"}
    dup = write(tmp_path, "two.yaml", GOOD)
    with pytest.raises(InputError) as info:
        load_playbooks(tmp_path)
    assert str(dup) in info.value.where and "name" in info.value.where
    assert "duplicate" in info.value.reason and "one.yaml" in info.value.reason


def test_not_a_mapping_and_missing_folder(tmp_path):
    write(tmp_path, "a.yaml", "- just\n- a list\n")
    with pytest.raises(InputError, match="must be a mapping"):
        load_playbooks(tmp_path)
    with pytest.raises(InputError, match="not found"):
        load_playbooks(tmp_path / "nope")


def test_validate_file_returns_messages_instead_of_raising(tmp_path):
    path = write(tmp_path, "a.yaml", "name: Bad Name\naction: restart\n")
    problems = validate_playbook_file(path)
    assert len(problems) == 1 and problems[0].startswith(f"{path}:1") and "name" in problems[0]
    assert validate_playbook_file(write(tmp_path, "b.yaml", GOOD)) == []
