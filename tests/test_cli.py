"""The ``aiops`` command: exit codes and messages for good and bad input (0 ok, 1 problem found, 2 bad input)."""

import json
import shutil
from pathlib import Path

import pytest

from aiops.cli import main
from aiops.settings import STOCK_ROOT


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_validate_stock_files_is_clean(capsys):
    code, out, _ = run(capsys, "validate")
    assert code == 0, out
    assert "0 problem(s)" in out


def test_validate_reports_bad_playbook_and_rule(tmp_path, capsys):
    shutil.copytree(STOCK_ROOT / "playbooks", tmp_path / "playbooks")
    (tmp_path / "playbooks" / "scale-up.yaml").write_text("name: scale-up\naction: explode\n")
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "x.yaml").write_text(
        "rules:\n  - name: r1\n    fault: memory_leak\n    playbook: no-such-playbook\n    confidence: 0.9\n"
        "    when:\n      - signal: memory\n        trend: rising\n")
    code, out, _ = run(capsys, "validate", str(tmp_path / "playbooks"), str(tmp_path / "rules"))
    assert code == 1
    assert "scale-up.yaml" in out and "action" in out
    assert "x.yaml" in out and "no-such-playbook" in out


def test_validate_config_file(tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text("mode: act\nwebhook: {listen: nowhere}\n")
    code, out, _ = run(capsys, "validate", str(config))
    assert code == 1
    assert "webhook.listen" in out and "config.yaml" in out


def test_validate_missing_path_is_bad_input(tmp_path, capsys):
    code, _, err = run(capsys, "validate", str(tmp_path / "absent"))
    assert code == 2
    assert "absent" in err and "no such file" in err


def test_diagnose_missing_case_folder(tmp_path, capsys):
    code, _, err = run(capsys, "diagnose", "--case", str(tmp_path / "nope"))
    assert code == 2
    assert "nope" in err and "not found" in err


def test_diagnose_bad_case_file_names_file_and_line(tmp_path, capsys):
    case = tmp_path / "case"
    case.mkdir()
    (case / "metrics.json").write_text(json.dumps([{
        "metric": {"__name__": "container_memory_working_set_bytes", "namespace": "shop", "workload": "cart"},
        "values": [[1000 + 15 * i, "1e8"] for i in range(10)]}]))
    (case / "logs.jsonl").write_text('{"ts": 1, "namespace": "shop", "pod": "p", "container": "c", "line": "x"}\n{oops\n')
    code, _, err = run(capsys, "diagnose", "--case", str(case))
    assert code == 2
    assert "logs.jsonl:2" in err


def test_serve_bad_config_is_exit_2(tmp_path, capsys):
    config = tmp_path / "agent.yaml"
    config.write_text("mode: act\nprometheus: {url: 'localhost:9090'}\n")
    code, _, err = run(capsys, "serve", "--config", str(config))
    assert code == 2
    assert "agent.yaml" in err and "prometheus.url" in err


def test_unknown_scenario_is_bad_input(capsys):
    code, _, err = run(capsys, "demo", "--scenario", "meteor_strike")
    assert code == 2
    assert "meteor_strike" in err and "memory_leak" in err


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["diagnose", "--since", "soon", "--case", "x"])
    assert info.value.code == 2
    assert "duration" in capsys.readouterr().err


def test_diagnose_live_needs_namespace(capsys):
    code, _, err = run(capsys, "diagnose", "--prometheus", "http://127.0.0.1:9")
    assert code == 2
    assert "--namespace" in err


# --- issue #13 defect 4: closed by default -------------------------------------------------------------------------

def test_serve_in_act_mode_on_a_public_address_without_a_token_refuses_to_start(tmp_path, capsys):
    config = tmp_path / "agent.yaml"
    config.write_text("mode: act\nwebhook: {listen: '0.0.0.0:0'}\n")
    code, out, err = run(capsys, "serve", "--config", str(config))
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "webhook.token_file" in lines[0] and "agent.yaml" in lines[0]


@pytest.mark.parametrize("text", [
    "mode: act\n",                                              # the default listen address is 0.0.0.0
    "mode: act\nwebhook: {listen: '10.1.2.3:8080'}\n",
    "mode: act\nwebhook: {listen: '[::]:8080'}\n",
])
def test_validate_refuses_act_mode_reachable_beyond_the_host_without_a_token(tmp_path, capsys, text):
    config = tmp_path / "config.yaml"
    config.write_text(text)
    code, out, _ = run(capsys, "validate", str(config))
    assert code == 1
    assert "webhook.token_file" in out and "config.yaml" in out and "1 problem(s)" in out


@pytest.mark.parametrize("text", [
    "mode: dry-run\n",
    "mode: act\nwebhook: {listen: '127.0.0.1:8080'}\n",
    "mode: act\nwebhook: {listen: 'localhost:8080'}\n",
    "mode: act\nwebhook: {listen: '[::1]:8080'}\n",
])
def test_validate_warns_about_every_other_config_without_a_token(tmp_path, capsys, text):
    config = tmp_path / "config.yaml"
    config.write_text(text)
    code, out, _ = run(capsys, "validate", str(config))
    assert code == 0, out
    assert "0 problem(s)" in out and "warning:" in out and "webhook.token_file is not set" in out


def test_validate_is_quiet_about_a_config_with_a_token(tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text("mode: act\nwebhook: {token_file: token}\n")
    (tmp_path / "token").write_text("a-long-enough-secret\n")
    code, out, _ = run(capsys, "validate", str(config))
    assert code == 0 and "warning" not in out
