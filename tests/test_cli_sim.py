"""The ``aiops`` command against the simulator: ``record`` then ``diagnose`` a case folder, ``demo`` for every
scenario, and ``aiops sim`` as a standing process that answers the Kubernetes API and ``/metrics``."""

from __future__ import annotations

import json
import math
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from aiops.cli import main
from aiops.clients.kube import KubeClient
from aiops.sim.clock import SimClock
from aiops.sim.runtime import SimRuntime
from aiops.sim.scenarios import build_scenario
from tests.support.polling import wait_until

REPO = Path(__file__).resolve().parent.parent
DIAGNOSIS_KEYS = {"incident", "root_cause", "ranking", "playbook", "confidence", "evidence", "analyzers"}
DEMO_STAGES = ["setup", "fault", "detect", "diagnose", "plan", "act", "verify", "result"]
LEAK_SECONDS = 600.0


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def recorded_case(tmp_path: Path, capsys, inject: bool) -> Path:
    """A case folder recorded by ``aiops record`` from a sim whose history ends at the wall clock's now:
    an hour of healthy baseline, then 10 minutes (with the memory leak when ``inject``). ``--config`` gives it the
    sim's Kubernetes API, so the pod logs and events are recorded too."""
    start = math.floor(time.time() / 15.0) * 15.0 - LEAK_SECONDS
    out = tmp_path / ("leak" if inject else "healthy")
    config = tmp_path / "record.yaml"
    with SimRuntime("memory_leak", seed=0, start=start) as sim:
        config.write_text(f"kubernetes: {{host: '{sim.kube_url}'}}\n", encoding="utf-8")
        sim.prefill(3600)
        if inject:
            sim.inject()
        sim.advance(LEAK_SECONDS)
        code, text, err = run(capsys, "record", "--prometheus", sim.prom_url, "--namespace", "shop",
                              "--since", "70m", "--out", str(out), "--config", str(config))
    assert code == 0, err
    assert f"wrote {out}" in text
    assert (out / "metrics.json").is_file() and (out / "events.jsonl").is_file()
    return out


# --- record + diagnose --------------------------------------------------------------------------------------------

def test_record_then_diagnose_finds_the_memory_leak(tmp_path, capsys):
    case = recorded_case(tmp_path, capsys, inject=True)
    series = json.loads((case / "metrics.json").read_text())
    assert any(s["metric"].get("__name__") == "container_memory_working_set_bytes" for s in series)

    code, out, err = run(capsys, "diagnose", "--case", str(case), "--format", "json")
    assert code == 1, err  # a problem was found
    report = json.loads(out)
    assert DIAGNOSIS_KEYS <= set(report)
    assert report["root_cause"] == {"namespace": "shop", "workload": "cart", "fault": "memory_leak"}
    assert set(report["playbook"]) >= {"name", "target", "params"}
    assert report["playbook"]["name"] == "restart-workload"
    assert report["playbook"]["target"] == {"kind": "Deployment", "namespace": "shop", "name": "cart"}
    assert report["ranking"][0]["workload"] == "cart"
    assert 0.5 <= report["confidence"] <= 1.0
    assert report["evidence"] and all("summary" in e for e in report["evidence"])
    assert {"stats", "rules"} <= set(report["analyzers"])

    code, out, _ = run(capsys, "diagnose", "--case", str(case), "--explain")
    assert code == 1
    assert "Root cause: shop/cart - memory_leak" in out
    rules = out.split("Rules:", 1)[1]
    assert "memory-leak" in rules and "restarts of cart" in rules


def test_healthy_case_reports_no_fault(tmp_path, capsys):
    case = recorded_case(tmp_path, capsys, inject=False)
    code, out, err = run(capsys, "diagnose", "--case", str(case), "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    assert DIAGNOSIS_KEYS <= set(report)
    assert report["root_cause"]["fault"] == "unknown"
    assert report["playbook"]["name"] == "escalate"
    assert report["anomalies"] == []


# --- demo ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("scenario", ["memory_leak", "traffic_surge", "bad_deploy"])
def test_demo_recovers_every_scenario(scenario, capsys):
    code, out, err = run(capsys, "demo", "--format", "json", "--scenario", scenario)
    assert code == 0, err
    outcome = json.loads(out)
    assert outcome["recovered"] is True
    assert outcome["scenario"] == scenario

    expected = build_scenario(scenario, SimClock(0.0)).expected
    diagnosis = outcome["diagnosis"]
    assert DIAGNOSIS_KEYS <= set(diagnosis)
    assert diagnosis["root_cause"] == {"namespace": expected.namespace, "workload": expected.workload,
                                       "fault": expected.fault}
    assert diagnosis["playbook"]["name"] == expected.playbook
    assert outcome["execution"]["state"] == "succeeded"
    assert outcome["escalated"] is False
    assert outcome["incident"]["status"] == "resolved"  # the plan fixed it: the incident is over

    stages = [entry["stage"] for entry in outcome["timeline"]]
    assert set(DEMO_STAGES) <= set(stages), stages
    first_seen = [stages.index(stage) for stage in DEMO_STAGES]
    assert first_seen == sorted(first_seen), f"stages out of order: {stages}"
    assert stages[-2:] == ["result", "incident"]
    target = f"Deployment {expected.namespace}/{expected.workload}"
    assert outcome["timeline"][-2]["message"] == f"succeeded: {expected.playbook} on {target} worked: the service " \
                                                  "recovered"


def test_a_demo_that_ends_with_an_escalation_says_so_and_exits_1(monkeypatch, capsys):
    # Stop watching right after the first answer, "escalate" (too early for the memory-growth policy to fit).
    monkeypatch.setattr("aiops.demo.GIVE_UP_AFTER", 150.0)
    code, out, err = run(capsys, "demo", "--scenario", "model_memory_growth")
    assert code == 1, err
    lines = out.splitlines()
    results = [line.split("result", 1)[1].strip() for line in lines if line[8:17].strip() == "result"]
    assert results == ["escalated to a person: nothing was changed in the cluster and the service has not recovered"]
    assert "recovered" not in out.replace("not recovered", "").replace("NOT RECOVERED", "")
    assert "the fault is left to the person it was escalated to" in lines[-3]
    assert lines[-1].startswith("NOT RECOVERED: escalated to a person (")


# --- aiops sim as a process ---------------------------------------------------------------------------------------

def test_sim_process_serves_kube_api_and_metrics_and_stops_on_sigterm():
    kube_port, metrics_port = free_port(), free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "aiops.cli", "sim", "--kube-port", str(kube_port), "--metrics-port",
         str(metrics_port)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    kube = KubeClient.for_host(f"http://127.0.0.1:{kube_port}")
    try:
        deployments = wait_until(lambda: kube.list_deployments("shop"), 20, "the sim's Kubernetes API")
        assert sorted(d["metadata"]["name"] for d in deployments) == \
            ["cart", "catalog", "frontend", "payments", "redis"]

        def metric_families():
            answer = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5)
            answer.raise_for_status()
            return {family.name: family for family in text_string_to_metric_families(answer.text)}

        families = wait_until(lambda: metric_families().get("container_memory_working_set_bytes") and
                              metric_families(), 10, "container_memory_working_set_bytes on /metrics")
        memory = families["container_memory_working_set_bytes"]
        assert {s.labels["namespace"] for s in memory.samples} == {"shop"}
        assert all(s.value > 0 for s in memory.samples)
    finally:
        kube.close()
        code, stdout, stderr = stop_sim_process(process)
    assert code == 0, stderr
    assert "simulated cluster running" in stdout


def stop_sim_process(process: subprocess.Popen) -> tuple[int, str, str]:
    """SIGTERM an ``aiops sim`` process; its exit code and output (the test fails when it does not stop)."""
    process.send_signal(signal.SIGTERM)
    try:
        code = process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        pytest.fail("aiops sim did not exit within 10 s of SIGTERM")
    stdout, stderr = process.communicate()
    return code, stdout, stderr
