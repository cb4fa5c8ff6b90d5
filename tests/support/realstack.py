"""Start Debian's real Prometheus and Alertmanager on free loopback ports, with throwaway configs.

Used by the integration tests. Everything binds to 127.0.0.1; readiness is polled with a deadline.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import requests
import yaml

from tests.support.polling import wait_until

PROMETHEUS = "/usr/bin/prometheus"
ALERTMANAGER = "/usr/bin/prometheus-alertmanager"
PROMTOOL = "/usr/bin/promtool"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Process:
    name: str
    popen: subprocess.Popen
    log: Path

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=5)

    def tail(self) -> str:
        try:
            return self.log.read_text()[-3000:]
        except OSError:
            return ""


@dataclass
class MonitoringStack:
    """A running Prometheus (and optionally Alertmanager) in a temp dir."""

    workdir: Path
    prometheus_url: str = ""
    alertmanager_url: str = ""
    processes: list[Process] = field(default_factory=list)

    def stop(self) -> None:
        for proc in reversed(self.processes):
            proc.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.tail()}" for p in self.processes)


def _spawn(name: str, args: list[str], workdir: Path) -> Process:
    log = workdir / f"{name}.log"
    handle = log.open("wb")
    popen = subprocess.Popen(args, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    return Process(name, popen, log)


def _ready(url: str) -> bool:
    return requests.get(f"{url}/-/ready", timeout=1).ok


def start_stack(scrape_targets: dict[str, str], rules: dict | None = None,
                webhook_url: str | None = None, webhook_token: str | None = None,
                scrape_interval: str = "1s") -> MonitoringStack:
    """Start Prometheus scraping ``scrape_targets`` ({job: "127.0.0.1:port"}) and, with ``webhook_url``, an
    Alertmanager that sends every alert there (with a bearer token when given)."""
    workdir = Path(tempfile.mkdtemp(prefix="aiops-stack-"))
    stack = MonitoringStack(workdir)
    try:
        if webhook_url:
            am_port = free_port()
            stack.alertmanager_url = f"http://127.0.0.1:{am_port}"
            webhook: dict = {"url": webhook_url, "send_resolved": True, "max_alerts": 0}
            if webhook_token:
                (workdir / "token").write_text(webhook_token)
                webhook["http_config"] = {"authorization": {"type": "Bearer",
                                                            "credentials_file": str(workdir / "token")}}
            am_config = {
                "route": {"receiver": "aiops", "group_by": ["alertname", "namespace", "deployment"],
                          "group_wait": "1s", "group_interval": "1s", "repeat_interval": "1h"},
                "receivers": [{"name": "aiops", "webhook_configs": [webhook]}],
            }
            (workdir / "alertmanager.yml").write_text(yaml.safe_dump(am_config))
            (workdir / "am-data").mkdir()
            stack.processes.append(_spawn("alertmanager", [
                ALERTMANAGER, f"--config.file={workdir / 'alertmanager.yml'}",
                f"--storage.path={workdir / 'am-data'}", f"--web.listen-address=127.0.0.1:{am_port}",
                "--cluster.listen-address=", f"--web.external-url={stack.alertmanager_url}",
            ], workdir))

        prom_port = free_port()
        stack.prometheus_url = f"http://127.0.0.1:{prom_port}"
        prom_config: dict = {
            "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval,
                       "scrape_timeout": "900ms" if scrape_interval == "1s" else "5s"},
            "scrape_configs": [{"job_name": job, "static_configs": [{"targets": [target]}]}
                               for job, target in scrape_targets.items()],
        }
        if rules:
            (workdir / "rules.yml").write_text(yaml.safe_dump(rules))
            prom_config["rule_files"] = [str(workdir / "rules.yml")]
        if stack.alertmanager_url:
            prom_config["alerting"] = {"alertmanagers": [{"static_configs": [
                {"targets": [stack.alertmanager_url.removeprefix("http://")]}]}]}
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(prom_config))
        stack.processes.append(_spawn("prometheus", [
            PROMETHEUS, f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'prom-data'}", f"--web.listen-address=127.0.0.1:{prom_port}",
            f"--web.external-url={stack.prometheus_url}",
        ], workdir))

        for proc, url in ((p, stack.alertmanager_url if p.name == "alertmanager" else stack.prometheus_url)
                          for p in stack.processes):
            wait_until(lambda: proc.popen.poll() is None and _ready(url), 30, f"{proc.name} ready")
        return stack
    except BaseException as exc:
        logs = stack.logs()
        stack.stop()
        raise RuntimeError(f"monitoring stack failed to start: {exc}\n{logs}") from exc


def available() -> bool:
    """True when the Debian binaries are installed (``make test`` installs them)."""
    return all(Path(p).exists() for p in (PROMETHEUS, ALERTMANAGER, PROMTOOL))
