"""What a user sees when a command meets a busy port, a bad port, a closed pipe or an unwritable folder: one line
naming what is wrong, exit 2, never a traceback (issue #16, item 5)."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from aiops.cli import build_parser, main
from aiops.serve.scheduler import LoopScheduler
from aiops.sim.runtime import SimRuntime
from tests.support.polling import wait_until

ROOT = Path(__file__).resolve().parent.parent


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("port", ["99999", "-1", "eighty"])
def test_a_port_that_is_no_port_is_a_usage_error(capsys, port):
    with pytest.raises(SystemExit) as exit_:
        main(["sim", "--kube-port", port])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "--kube-port" in err and "Traceback" not in err


def test_sim_on_a_busy_port_says_which_and_leaves_no_port_bound(capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        with socket.socket() as free_probe:
            free_probe.bind(("127.0.0.1", 0))
            free = free_probe.getsockname()[1]
        code, _, err = run(capsys, "sim", "--kube-port", str(free), "--metrics-port", str(taken))
    assert code == 2 and err.count("\n") == 1 and str(taken) in err and "Address already in use" in err
    with socket.socket() as again:  # the API port it bound first was let go when the metrics port failed
        again.bind(("127.0.0.1", free))


@pytest.mark.parametrize("where", ["a-file", "/proc/nope/case"])
def test_record_onto_a_path_it_cannot_write_names_it(tmp_path, capsys, where):
    out = tmp_path / "a-file" if where == "a-file" else Path(where)
    if where == "a-file":
        out.write_text("not a folder")
    with SimRuntime("memory_leak", seed=0) as sim:
        sim.prefill(1800)
        code, _, err = run(capsys, "record", "--prometheus", sim.prom_url, "--namespace", "shop", "--since", "20m",
                           "--out", str(out))
    assert code == 2 and err.count("\n") == 1 and str(out) in err and "Traceback" not in err


def test_output_closed_early_is_one_line_not_a_traceback():
    # `aiops validate ... | head -1` once head has gone: the pipe's reading end is closed before aiops writes.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        writer = subprocess.run([sys.executable, "-m", "aiops.cli", "validate", str(ROOT / "playbooks")],
                                stdout=write_end, stderr=subprocess.PIPE, text=True, cwd=ROOT, timeout=120)
    finally:
        os.close(write_end)
    assert writer.returncode == 2 and "broken pipe" in writer.stderr, writer.stderr[-2000:]
    assert "Traceback" not in writer.stderr and writer.stderr.count("\n") == 1


def test_a_loop_run_failing_on_a_dependency_logs_one_line_not_a_traceback(caplog):
    def prometheus_down() -> None:
        raise ConnectionRefusedError(111, "Connection refused")

    scheduler = LoopScheduler(prometheus_down, 3600)
    with caplog.at_level(logging.WARNING, logger="aiops.serve.scheduler"):
        scheduler._run_once()
    (record,) = [r for r in caplog.records if r.name == "aiops.serve.scheduler"]
    assert record.exc_info is None and "dependency is unreachable" in record.getMessage()
    assert scheduler.failures == 1


@pytest.mark.parametrize("setting, kubeconfig", [
    ("kubeconfig: kubeconfig", "{{{\n"),                      # not YAML
    ("kubeconfig: kubeconfig", "[]\n"),                       # YAML, not a kubeconfig
    ("kubeconfig: kubeconfig", "apiVersion: v1\nclusters: 5\n"),
    ("kubeconfig: kubeconfig", b"\xff\xfe\x00garbage"),       # not text
    ("in_cluster: true", None),                               # not in a pod
])
def test_diagnose_with_cluster_access_it_cannot_load_names_the_setting(tmp_path, capsys, monkeypatch, setting,
                                                                       kubeconfig):
    # The README's way to give `aiops diagnose --prometheus` the events: a config with Kubernetes access.
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    if isinstance(kubeconfig, bytes):
        (tmp_path / "kubeconfig").write_bytes(kubeconfig)
    elif kubeconfig is not None:
        (tmp_path / "kubeconfig").write_text(kubeconfig)
    config = tmp_path / "config.yaml"
    config.write_text(f"kubernetes:\n  {setting}\n")
    code, _, err = run(capsys, "diagnose", "--prometheus", "http://127.0.0.1:9", "--namespace", "shop",
                       "--config", str(config))
    key = setting.split(":")[0]
    assert code == 2 and err.count("\n") == 1 and f"kubernetes.{key}" in err and "Traceback" not in err, err


@pytest.mark.parametrize("argv", [
    ("diagnose", "--prometheus", "http://127.0.0.1:9", "--namespace", "shop", "--since", "inf"),
    ("diagnose", "--prometheus", "http://127.0.0.1:9", "--namespace", "shop", "--since", "1e400"),
    ("diagnose", "--prometheus", "http://127.0.0.1:9", "--namespace", "shop", "--since", "nan"),
    ("record", "--prometheus", "http://127.0.0.1:9", "--namespace", "shop", "--since", "infm", "--out", "x"),
    ("sim", "--inject-after", "inf"),
    ("history", "--config", "c.yaml", "--limit", "0"),
    ("history", "--config", "c.yaml", "--limit", "-3"),
])
def test_a_number_that_is_no_duration_or_count_is_a_usage_error(capsys, argv):
    # Parsed only: accepted, `sim --inject-after inf` would run a simulator until killed.
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(list(argv))
    err = capsys.readouterr().err
    flag = argv[-2] if argv[-2].startswith("--") else argv[-4]
    assert exit_.value.code == 2 and flag in err and "Traceback" not in err, err
