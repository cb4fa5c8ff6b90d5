"""The first hour of a new user, scripted (issue #16): every command is the one the README or a banner shows, run
as a separate process exactly as typed in a shell, and every answer is checked the way the user would read it.

1. ``aiops sim --history 60m``, then the kubectl command its banner prints, then other kubectl look-ups.
2. ``aiops diagnose --prometheus`` without and with cluster access: the first says what it did not look at.
3. ``aiops validate`` on the stock files and on mistakes a user makes.
4. ``aiops serve`` against a simulator with no history: it says it is learning and opens nothing.
5. Every error path the issue lists: one line naming what is wrong, exit 2, never a traceback.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
import requests

from tests.support import render
from tests.support.polling import wait_until
from tests.support.realstack import free_port

ROOT = Path(__file__).resolve().parent.parent
KUBECTL = render.tools_dir() / "kubectl"
AIOPS = [sys.executable, "-m", "aiops"]


def aiops(*args: str, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    """``aiops ARGS`` as a user runs it: a new process, its own output, its exit code."""
    return subprocess.run([*AIOPS, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT, **kwargs)


def one_line_error(proc: subprocess.CompletedProcess, *names: str) -> str:
    """The answer to bad input: exit 2, one line on stderr that starts with ``aiops: error`` (or argparse's usage
    line before it) and names each of ``names``, no traceback, nothing on stdout."""
    err = proc.stderr
    assert proc.returncode == 2, (proc.returncode, err[-2000:])
    assert "Traceback" not in err, err[-2000:]
    errors = [line for line in err.splitlines() if line.startswith("aiops: error")]
    assert len(errors) == 1 and all(not line.strip() or line.startswith(("usage:", "aiops: error", " "))
                                    for line in err.splitlines()), err
    for name in names:
        assert name in errors[0], (name, errors[0])
    return errors[0]


class SimProcess:
    """``aiops sim`` in its own process, with the banner it printed. Its output goes to a file, not a pipe: a pipe
    nobody drains fills up and stalls the simulator's request handlers."""

    def __init__(self, log: Path, *args: str) -> None:
        self.kube_port, self.metrics_port = free_port(), free_port()
        self.log = log
        with log.open("w") as out:
            self.proc = subprocess.Popen([*AIOPS, "sim", "--kube-port", str(self.kube_port), "--metrics-port",
                                          str(self.metrics_port), *args], stdout=out, stderr=subprocess.STDOUT,
                                         text=True, cwd=ROOT)

        def banner() -> list[str] | None:
            lines = log.read_text().splitlines()
            if self.proc.poll() is not None:
                raise AssertionError(f"aiops sim exited {self.proc.returncode}: {lines[-20:]}")
            return lines if any(line.lstrip().startswith("metrics:") for line in lines) else None

        self.banner: list[str] = wait_until(banner, 120, "aiops sim to print its banner")
        self.kube_url = f"http://127.0.0.1:{self.kube_port}"
        self.prom_url = f"http://127.0.0.1:{self.metrics_port}"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


@pytest.fixture(scope="module")
def sim(tmp_path_factory) -> Iterator[SimProcess]:
    process = SimProcess(tmp_path_factory.mktemp("sim") / "sim.log", "--history", "60m")
    try:
        yield process
    finally:
        process.stop()


def kubectl(command: str, cache: Path) -> subprocess.CompletedProcess:
    """A kubectl command line as printed, with the cached kubectl 1.32 binary and no user kubeconfig."""
    argv = shlex.split(command)
    assert argv[0] == "kubectl", command
    if not os.access(KUBECTL, os.X_OK):
        reason = f"kubectl is not cached in {render.tools_dir()}: run `make kube` / {render.TOOLS_SCRIPT}"
        if os.environ.get("CI"):
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return subprocess.run([str(KUBECTL), "--cache-dir", str(cache), *argv[1:]], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "KUBECONFIG": os.devnull})


# --- 1. the simulator with kubectl ---------------------------------------------------------------------------------

def test_the_sim_banner_command_and_the_first_kubectl_lookups_work(sim, tmp_path):
    assert any("60 min" in line or "history" in line for line in sim.banner), sim.banner
    [hint] = [line.split("(", 1)[1].rstrip(")") for line in sim.banner if "kubectl --server" in line]
    shown = kubectl(hint, tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "deployment.apps/cart" in shown.stdout and "READY" in shown.stdout and "pod/cart-" in shown.stdout

    for command, expect in ((f"kubectl --server {sim.kube_url} get svc,rs,ns -n shop", "service/cart"),
                            (f"kubectl --server {sim.kube_url} rollout status deployment/redis -n shop",
                             'deployment "redis" successfully rolled out'),
                            (f"kubectl --server {sim.kube_url} describe deployment cart -n shop", "Name:")):
        proc = kubectl(command, tmp_path)
        assert proc.returncode == 0 and expect in proc.stdout, (command, proc.stderr)


# --- 2. diagnose, without and with cluster access -----------------------------------------------------------------

def test_diagnose_from_prometheus_alone_says_what_it_did_not_look_at(sim, tmp_path):
    alone = aiops("diagnose", "--prometheus", sim.prom_url, "--namespace", "shop", "--format", "json")
    assert alone.returncode in (0, 1) and "Traceback" not in alone.stderr, alone.stderr[-2000:]
    report = json.loads(alone.stdout)
    assert {n["source"] for n in report["not_collected"]} == {"logs", "events"}
    text = aiops("diagnose", "--prometheus", sim.prom_url, "--namespace", "shop")
    assert "Not collected: pod logs, Kubernetes events" in text.stdout

    config = tmp_path / "diagnose.yaml"
    config.write_text(f"kubernetes: {{host: '{sim.kube_url}'}}\n")  # the README's example for the simulator
    full = aiops("diagnose", "--prometheus", sim.prom_url, "--namespace", "shop", "--config", str(config),
                 "--format", "json")
    assert full.returncode in (0, 1), full.stderr[-2000:]
    healthy = json.loads(full.stdout)
    assert healthy["not_collected"] == [] and healthy["not_ruled_out"] == []
    # An hour of healthy history and no fault: nothing to act on.
    assert healthy["playbook"]["name"] in ("escalate", "none") or healthy["root_cause"]["fault"] == "unknown"


# --- 3. validate --------------------------------------------------------------------------------------------------

def test_validate_passes_the_stock_files_and_names_each_mistake(tmp_path):
    stock = aiops("validate")
    assert stock.returncode == 0, stock.stdout + stock.stderr
    assert aiops("validate", "deploy/config.example.yaml").returncode == 0

    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing but a comment\n")
    missing_dir = tmp_path / "config.yaml"
    missing_dir.write_text(f"playbooks_dir: {tmp_path / 'no-such-folder'}\n")
    bad = aiops("validate", str(empty), str(missing_dir))
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    said = bad.stdout + bad.stderr
    assert f"{empty}" in said and "empty" in said
    assert f"{missing_dir}:1" in said and "no-such-folder" in said


class ServeProcess:
    """``aiops serve --config`` in its own process on a config a user would write for the simulator; output to a file."""

    def __init__(self, folder: Path, prom_url: str, kube_url: str, interval: int) -> None:
        self.base = f"http://127.0.0.1:{free_port()}"
        config = folder / "config.yaml"
        config.write_text(f"""\
prometheus: {{url: "{prom_url}"}}
kubernetes: {{host: "{kube_url}", namespaces: [shop]}}
webhook: {{listen: "{self.base.removeprefix('http://')}"}}
loop: {{interval_seconds: {interval}}}
state_dir: {folder / "state"}
log_format: text
""")
        self.log = folder / "serve.log"
        with self.log.open("w") as out:
            self.proc = subprocess.Popen([*AIOPS, "serve", "--config", str(config)], stdout=out,
                                         stderr=subprocess.STDOUT, text=True, cwd=ROOT)

    def stop(self) -> str:
        """Stop it as a pod is stopped (SIGTERM); its whole output."""
        self.proc.terminate()
        self.proc.wait(timeout=60)
        return self.log.read_text()


# --- 4. serve with a cold start ----------------------------------------------------------------------------------

def test_serve_on_a_cluster_with_no_history_says_it_is_learning_and_opens_nothing(tmp_path):
    cold = SimProcess(tmp_path / "sim.log")  # plain `aiops sim`: no history
    serve = ServeProcess(tmp_path, cold.prom_url, cold.kube_url, interval=5)
    try:
        def learning() -> dict | None:
            if serve.proc.poll() is not None:
                return {"exited": serve.proc.returncode}
            answer = requests.get(f"{serve.base}/readyz", timeout=5)
            assert answer.status_code == 200, answer.text  # learning is shown, never a reason to be unready
            return answer.json()["baseline"]["namespaces"].get("shop")

        shop = wait_until(learning, 90, "/readyz to report the shop's baseline")
        assert "exited" not in shop, serve.log.read_text()[-3000:]
        assert shop["state"] == "learning" and shop["detail"] == "learning: 0 of 30 minutes of baseline", shop
        metrics = requests.get(f"{serve.base}/metrics", timeout=5).text
        assert 'aiops_learning{namespace="shop"} 1.0' in metrics
        assert "aiops_baseline_required_seconds 1800.0" in metrics
    finally:
        out = serve.stop()
        cold.stop()
    assert serve.proc.returncode == 0, out[-3000:]
    assert "shop learning: 0 of 30 minutes of baseline" in out, out[-3000:]
    # No anomaly flagged and no incident opened on a healthy shop it has no baseline for.
    assert "INFO aiops.serve.worker: anomaly" not in out and "INFO aiops.serve.worker: incident" not in out, out
    assert "Traceback" not in out, out[-3000:]


def test_serve_with_prometheus_down_logs_one_line_per_run_not_a_traceback(tmp_path):
    kube = SimProcess(tmp_path / "sim.log")
    serve = ServeProcess(tmp_path, f"http://127.0.0.1:{free_port()}", kube.kube_url, interval=1)  # nobody there
    try:
        failed_runs = wait_until(lambda: [line for line in serve.log.read_text().splitlines()
                                          if "dependency is unreachable" in line][1:], 60,
                                 "two loop runs to fail on the unreachable Prometheus")
        readyz = requests.get(f"{serve.base}/readyz", timeout=5)
        assert readyz.status_code == 503 and "prometheus" in readyz.text
    finally:
        out = serve.stop()
        kube.stop()
    assert "Traceback" not in out and all("WARNING" in line for line in failed_runs), out[-3000:]


# --- 5. every error path: one line, exit 2 ----------------------------------------------------------------------

def test_every_bad_input_is_one_line_and_exit_2(tmp_path):
    one_line_error(aiops("sim", "--kube-port", "99999"), "--kube-port")
    one_line_error(aiops("diagnose", "--case", str(tmp_path / "nope")), str(tmp_path / "nope"))
    one_line_error(aiops("serve", "--config", str(tmp_path / "nope.yaml")), "nope.yaml")
    one_line_error(aiops("models", "--models-dir", str(tmp_path / "no-registry"), "list"), "no-registry")
    registry = tmp_path / "registry"
    registry.mkdir()
    one_line_error(aiops("models", "--models-dir", str(registry), "promote", "shop", "9"), "no saved model named 'shop'")
    one_line_error(aiops("diagnose", "--prometheus", "not a url", "--namespace", "shop"), "not a url")
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    one_line_error(aiops("record", "--prometheus", "http://127.0.0.1:9", "--namespace", "shop",
                         "--out", str(a_file)), str(a_file))

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        one_line_error(aiops("sim", "--kube-port", str(taken), "--metrics-port", "0"), str(taken))


def test_output_closed_by_head_is_one_line(sim):
    # `aiops diagnose ... | head -1`: the reader is gone before the report is written.
    shell = f"{shlex.join(AIOPS)} diagnose --prometheus {sim.prom_url} --namespace shop --explain | head -1"
    proc = subprocess.run(["bash", "-o", "pipefail", "-c", shell], capture_output=True, text=True, timeout=120,
                          cwd=ROOT)
    assert len(proc.stdout.splitlines()) == 1
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") <= 1, proc.stderr[-2000:]
