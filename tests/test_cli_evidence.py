"""``aiops diagnose --prometheus`` and ``aiops record`` say what they did not look at (issue #16 item 4).

The simulator's bad deploy, diagnosed live: from Prometheus alone it must not claim a cause whose deciding
evidence (the rollout, in the Kubernetes events) was never read; with ``--config`` giving cluster access it finds
the bad deploy.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest

from aiops.sim.runtime import SimRuntime
from tests.test_cli_sim import free_port, run

NOT_READ = "no --config with Kubernetes access"
FAULT_SECONDS = 600.0


@pytest.fixture(scope="module")
def bad_deploy():
    """cart rolled onto a bad image 10 minutes ago, after an hour of healthy history ending now."""
    start = math.floor(time.time() / 15.0) * 15.0 - FAULT_SECONDS
    with SimRuntime("bad_deploy", seed=0, start=start) as sim:
        sim.prefill(3600)
        sim.inject()
        sim.advance(FAULT_SECONDS)
        yield sim


def kube_config(tmp_path: Path, host: str) -> Path:
    config = tmp_path / "diagnose.yaml"
    config.write_text(f"kubernetes: {{host: '{host}'}}\n", encoding="utf-8")
    return config


def diagnose_json(capsys, sim: SimRuntime, *extra: str) -> tuple[int, dict]:
    code, out, err = run(capsys, "diagnose", "--prometheus", sim.prom_url, "--namespace", "shop", "--since", "70m",
                         "--format", "json", *extra)
    assert code in (0, 1), err
    return code, json.loads(out)


def test_metrics_only_does_not_claim_what_only_the_events_could_tell(bad_deploy, capsys):
    code, report = diagnose_json(capsys, bad_deploy)
    assert report["not_collected"] == [{"source": "logs", "reason": NOT_READ}, {"source": "events", "reason": NOT_READ}]
    assert report["playbook"]["name"] == "escalate"  # nothing to act on while a rollout could not be ruled out
    assert report["root_cause"]["fault"] not in ("cpu_saturation", "bad_deploy")
    assert {"workload": "cart", "fault": "bad_deploy", "playbook": "rollback-deploy", "confidence": 0.85,
            "source": "rules", "needs": ["events"], "rule": "bad-deploy"} in report["not_ruled_out"]
    assert not any("ReplicaSet" in e["summary"] for e in report["evidence"])
    assert code == 1  # a fault it could not rule out is a problem found

    code, text, _ = run(capsys, "diagnose", "--prometheus", bad_deploy.prom_url, "--namespace", "shop", "--since",
                        "70m", "--explain")
    lines = text.splitlines()
    assert f"Not collected: pod logs, Kubernetes events and rollouts ({NOT_READ})" in lines
    assert any(line.startswith("Not ruled out: cart/bad_deploy 0.85 (rules, needs events)") for line in lines)
    bad = next(line for line in lines if line.startswith("  unknown bad-deploy on cart: "))
    assert "? not evaluated: events not collected" in bad
    assert "no new ReplicaSet" not in text


def test_with_cluster_access_it_finds_the_bad_deploy(bad_deploy, capsys, tmp_path):
    code, report = diagnose_json(capsys, bad_deploy, "--config", str(kube_config(tmp_path, bad_deploy.kube_url)))
    assert code == 1
    assert report["root_cause"] == {"namespace": "shop", "workload": "cart", "fault": "bad_deploy"}
    assert report["playbook"]["name"] == "rollback-deploy"
    assert report["not_collected"] == [] and report["not_ruled_out"] == []


def test_an_unreachable_apiserver_leaves_the_events_unread_and_says_why(bad_deploy, capsys, tmp_path):
    config = kube_config(tmp_path, f"http://127.0.0.1:{free_port()}")  # nothing listens there
    _, report = diagnose_json(capsys, bad_deploy, "--config", str(config))
    assert [g["source"] for g in report["not_collected"]] == ["logs", "events"]
    assert all(g["reason"].startswith("reading them failed: ") for g in report["not_collected"])
    assert report["playbook"]["name"] == "escalate"


def test_record_without_cluster_access_leaves_logs_and_events_out_and_diagnose_knows(bad_deploy, capsys, tmp_path):
    out = tmp_path / "case"
    code, text, err = run(capsys, "record", "--prometheus", bad_deploy.prom_url, "--namespace", "shop",
                          "--since", "70m", "--out", str(out))
    assert code == 0, err
    assert f"not recorded: pod logs, Kubernetes events and rollouts ({NOT_READ})" in text.splitlines()
    assert (out / "metrics.json").is_file()
    assert not (out / "events.jsonl").exists() and not (out / "logs.jsonl").exists()
    code, out_text, err = run(capsys, "diagnose", "--case", str(out), "--format", "json")
    report = json.loads(out_text)
    assert report["not_collected"] == [
        {"source": "logs", "reason": "not recorded: the case folder has no logs.jsonl"},
        {"source": "events", "reason": "not recorded: the case folder has no events.jsonl"}]
    assert report["playbook"]["name"] == "escalate"
    assert any(r["workload"] == "cart" and r["fault"] == "bad_deploy" for r in report["not_ruled_out"])
