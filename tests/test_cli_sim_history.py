"""``aiops sim --history``: the simulated cluster starts with that much healthy metric history on its query API (as
``aiops demo`` does), none by default; a value that is no duration, or longer than the simulator keeps, is one line
naming the flag, exit 2 (issue #16, item 3)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from aiops.cli import main
from aiops.clients.kube import KubeClient
from aiops.clients.prometheus import PrometheusClient
from tests.support.polling import wait_until
from tests.test_cli_sim import REPO, free_port, stop_sim_process

STEP = 15.0  # the simulator's scrape step


@pytest.mark.parametrize("value", ["an hour", "-5m", "inf", "nan"])
def test_a_history_that_is_no_duration_is_a_usage_error(capsys, value):
    with pytest.raises(SystemExit) as exit_:
        main(["sim", "--history", value])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err
    assert err.splitlines()[-1].startswith("aiops: error: argument --history: ")


def test_a_history_longer_than_the_simulator_keeps_is_one_line(capsys):
    assert main(["sim", "--history", "7h", "--kube-port", "0", "--metrics-port", "0"]) == 2
    err = capsys.readouterr().err
    assert err == "aiops: error: --history: 7h is more than the simulator keeps (6h)\n"


@pytest.mark.parametrize("flags, history", [(["--history", "60m"], 3600.0), ([], 0.0), (["--history", "0"], 0.0)],
                         ids=["60m", "default", "0"])
def test_the_sim_process_starts_with_the_history_asked_for(flags, history):
    kube_port, metrics_port = free_port(), free_port()
    launched = time.time()
    process = subprocess.Popen(
        [sys.executable, "-m", "aiops.cli", "sim", "--kube-port", str(kube_port), "--metrics-port",
         str(metrics_port), *flags], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    kube = KubeClient.for_host(f"http://127.0.0.1:{kube_port}")
    prometheus = PrometheusClient(f"http://127.0.0.1:{metrics_port}", timeout_seconds=5)
    try:
        wait_until(lambda: kube.list_deployments("shop"), 20, "the sim's Kubernetes API")

        def samples():
            now = time.time()  # read each time: the API may answer before the first samples are recorded
            return prometheus.query_range('container_memory_working_set_bytes{namespace="shop"}', now - 2 * 3600,
                                          now, STEP)

        series = wait_until(samples, 10, "the sim's samples")
        earliest = min(float(s["values"][0][0]) for s in series)
        # The earliest sample is ``history`` before the start, give or take the start-up time, the first sample's
        # step and the query's grid.
        assert launched - history - STEP <= earliest <= time.time() - history + 2 * STEP
    finally:
        kube.close()
        code, stdout, stderr = stop_sim_process(process)
    assert code == 0, stderr
    assert ("history:        60 min of healthy metrics" in stdout) == bool(history)
