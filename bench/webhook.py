"""Load on the Alertmanager webhook of a running ``aiops serve``: alerts per second, receive-path latency, and a
check that no alert is lost or handled twice.

    python -m bench.webhook [--workloads 2000] [--concurrency 8] [--out FILE.json]
    python -m bench.webhook --url http://127.0.0.1:8080 --token-file TOKEN --namespace shop   # an agent you run

Without ``--url`` it starts ``aiops serve`` itself (a child process: the server and this client each get their own
interpreter) in dry-run, with the bench namespace as its scope allow-list and a JSON-lines journal. ``--backend``
says what its Prometheus and Kubernetes API are: ``sim`` (default) an ``aiops sim`` child process, so the incident
worker really collects, diagnoses and journals each incident (the bench workloads have no pods or series there, so
each pass is light and ends in a dry-run ``escalate``) while the webhook takes the load; ``dead`` closed loopback
ports, so every incident fails and is logged with its traceback (an alert storm while the dependencies are down).

Payloads are the recorded Alertmanager 0.25 payloads (``--fixtures``), relabelled per workload. Each workload runs
one script, in order, while ``--concurrency`` workloads run at a time:

1. grouped, firing (3 alerts)             -> opened 1, updated 2
2. single, firing (a repeated delivery)   -> duplicate 1
3. grouped, mixed firing and resolved (3) -> updated 2 (two alerts resolve), duplicate 1
4. single, resolved                       -> resolved 1 (the incident closes)
5. single, resolved (repeated)            -> duplicate 1

so every outcome is known in advance: the bench checks each answer, that each workload's five answers name one
incident, and the agent's own counters (``/metrics``) against what was sent. Latency is measured by the client
per request (send to full answer). Numbers are printed and written as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import hashlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from bench.report import write_json

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "alertmanager"
WEBHOOK = "/webhook/alertmanager"
NAMESPACE = "bench"

# (kind, fixture stem, expected outcomes of the answer)
SCRIPT: list[tuple[str, str, dict[str, int]]] = [
    ("grouped_firing", "grouped_by_namespace_firing", {"opened": 1, "updated": 2}),
    ("single_firing_repeat", "HighErrorRate_firing", {"duplicate": 1}),
    ("grouped_mixed", "grouped_mixed_firing_and_resolved", {"updated": 2, "duplicate": 1}),
    ("single_resolved", "HighErrorRate_resolved", {"resolved": 1}),
    ("single_resolved_repeat", "HighErrorRate_resolved", {"duplicate": 1}),
]


@dataclass
class Outcome:
    """What one workload's script got back."""

    latencies: list[tuple[str, float]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    alerts: int = 0
    incidents: set[str] = field(default_factory=set)
    outcomes: Counter = field(default_factory=Counter)


# --- payloads -------------------------------------------------------------------------------------------------------

def _fingerprint(labels: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(sorted(labels.items())).encode()).hexdigest()[:16]


def relabel(payload: dict[str, Any], namespace: str, workload: str) -> dict[str, Any]:
    """The recorded payload for another namespace/deployment, with fingerprints that follow the labels (as
    Alertmanager's do)."""
    out = copy.deepcopy(payload)
    for alert in out["alerts"]:
        alert["labels"].update({"namespace": namespace, "deployment": workload})
        alert["fingerprint"] = _fingerprint(alert["labels"])
    for key in ("groupLabels", "commonLabels"):
        for label in ("namespace", "deployment"):
            if label in out.get(key, {}):
                out[key][label] = {"namespace": namespace, "deployment": workload}[label]
    out["groupKey"] = f'{{}}:{{namespace="{namespace}", deployment="{workload}"}}'
    return out


def build_scripts(fixtures: Path, namespace: str, workloads: list[str]) -> list[list[tuple[str, bytes, dict, int]]]:
    """Per workload: ``(kind, body, expected outcomes, alert count)`` for each step of ``SCRIPT``."""
    raw = {stem: json.loads((fixtures / f"alertmanager_{stem}.json").read_text()) for _, stem, _ in SCRIPT}
    scripts = []
    for workload in workloads:
        steps = []
        for kind, stem, expected in SCRIPT:
            payload = relabel(raw[stem], namespace, workload)
            steps.append((kind, json.dumps(payload).encode(), expected, len(payload["alerts"])))
        scripts.append(steps)
    return scripts


# --- the client -----------------------------------------------------------------------------------------------------

async def run_script(session: aiohttp.ClientSession, url: str, headers: dict[str, str], workload: str,
                     steps: list[tuple[str, bytes, dict, int]]) -> Outcome:
    result = Outcome()
    for kind, body, expected, count in steps:
        started = time.perf_counter()
        async with session.post(url, data=body, headers=headers) as response:
            answer = await response.read()
        result.latencies.append((kind, time.perf_counter() - started))
        result.alerts += count
        if response.status != 200:
            result.problems.append(f"{workload} {kind}: HTTP {response.status} {answer[:200]!r}")
            continue
        summary = json.loads(answer)
        result.outcomes.update(summary.get("outcomes", {}))
        result.incidents.update(summary.get("incidents", []))
        if summary.get("received") != count:
            result.problems.append(f"{workload} {kind}: received {summary.get('received')} of {count} alerts")
        if summary.get("outcomes") != expected:
            result.problems.append(f"{workload} {kind}: outcomes {summary.get('outcomes')}, expected {expected}")
    if len(result.incidents) != 1:
        result.problems.append(f"{workload}: answers named {len(result.incidents)} incidents, expected 1")
    return result


async def drive(base: str, token: str | None, scripts: list, concurrency: int) -> tuple[list[Outcome], float]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    queue: asyncio.Queue = asyncio.Queue()
    for n, steps in enumerate(scripts):
        queue.put_nowait((f"w{n}", steps))
    outcomes: list[Outcome] = []

    async def worker(session: aiohttp.ClientSession) -> None:
        while True:
            try:
                workload, steps = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            outcomes.append(await run_script(session, base + WEBHOOK, headers, workload, steps))

    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return outcomes, elapsed


# --- the agent's own counters ---------------------------------------------------------------------------------------

def scrape(base: str) -> dict[str, float]:
    """``/metrics`` as ``{'name{labels}': value}`` (only the aiops_ series)."""
    import requests  # the bench's only synchronous HTTP: before and after the load

    out = {}
    for line in requests.get(base + "/metrics", timeout=10).text.splitlines():
        if line.startswith("aiops_"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def counter_checks(before: dict[str, float], after: dict[str, float], expected: dict[str, float]) -> list[str]:
    problems = []
    for key, want in expected.items():
        got = after.get(key, 0.0) - before.get(key, 0.0)
        if got != want:
            problems.append(f"/metrics {key} grew by {got:g}, expected {want:g}")
    return problems


# --- the server -----------------------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _child(workdir: Path, name: str, args: list[str], ready_url: str) -> subprocess.Popen:
    """Start ``python -m aiops.cli ARGS`` with its output in ``workdir/NAME.log``; return once ``ready_url`` answers."""
    import requests

    with open(workdir / f"{name}.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "aiops.cli", *args], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"aiops {args[0]} exited with {proc.returncode}; see {workdir / name}.log")
        try:
            if requests.get(ready_url, timeout=1).status_code == 200:
                return proc
        except requests.RequestException:
            pass
        time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"aiops {args[0]} did not answer {ready_url} within 60 s")


def start_agent(workdir: Path, namespace: str, backend: str) -> tuple[list[subprocess.Popen], str, str]:
    """``aiops serve`` (and ``aiops sim`` for the sim backend) as child processes on free loopback ports; returns
    (processes, the agent's base URL, its webhook token)."""
    procs = []
    if backend == "sim":
        kube_port, metrics_port = free_port(), free_port()
        procs.append(_child(workdir, "sim", ["sim", "--kube-port", str(kube_port), "--metrics-port",
                                             str(metrics_port)], f"http://127.0.0.1:{kube_port}/version"))
        kube, prometheus = f"http://127.0.0.1:{kube_port}", f"http://127.0.0.1:{metrics_port}"
    else:
        kube = prometheus = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    token = secrets.token_hex(16)
    (workdir / "token").write_text(token + "\n")
    port = free_port()
    config = {
        "webhook": {"listen": f"127.0.0.1:{port}", "token_file": str(workdir / "token")},
        "prometheus": {"url": prometheus, "timeout_seconds": 5},
        "kubernetes": {"host": kube, "namespaces": [namespace]},
        "loop": {"interval_seconds": 86400},
        "state_dir": str(workdir / "state"),
    }
    (workdir / "config.yaml").write_text(json.dumps(config))  # JSON is YAML
    base = f"http://127.0.0.1:{port}"
    try:
        procs.append(_child(workdir, "agent", ["serve", "--config", str(workdir / "config.yaml")], base + "/healthz"))
    except BaseException:
        stop_all(procs)
        raise
    return procs, base, token


def stop_all(procs: list[subprocess.Popen]) -> None:
    for proc in reversed(procs):
        stop_agent(proc)


def stop_agent(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


# --- the run --------------------------------------------------------------------------------------------------------

def percentiles(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values) * 1000.0
    return {"p50": round(float(np.percentile(arr, 50)), 2), "p90": round(float(np.percentile(arr, 90)), 2),
            "p99": round(float(np.percentile(arr, 99)), 2), "max": round(float(arr.max()), 2)}


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds a process has used (Linux ``/proc``), or None."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench(base: str, token: str | None, namespace: str, fixtures: Path, workloads: int, concurrency: int,
          warmup: int, agent_pid: int | None = None) -> dict[str, Any]:
    prefix = f"r{secrets.token_hex(3)}-"  # fresh workload names each run, so a reused agent has no history of them
    if warmup:
        warm = build_scripts(fixtures, namespace, [f"{prefix}warm-{n}" for n in range(warmup)])
        asyncio.run(drive(base, token, warm, concurrency))
    scripts = build_scripts(fixtures, namespace, [f"{prefix}w{n}" for n in range(workloads)])
    before = scrape(base)
    load_before, cpu_before, client_before = os.getloadavg()[0], cpu_seconds(agent_pid), time.process_time()
    outcomes, elapsed = asyncio.run(drive(base, token, scripts, concurrency))
    cpu_after, client_after, load_after = cpu_seconds(agent_pid), time.process_time(), os.getloadavg()[0]
    after = scrape(base)

    latencies = [seconds for o in outcomes for _, seconds in o.latencies]
    by_kind: dict[str, list[float]] = {}
    for o in outcomes:
        for kind, seconds in o.latencies:
            by_kind.setdefault(kind, []).append(seconds)
    alerts = sum(o.alerts for o in outcomes)
    problems = [p for o in outcomes for p in o.problems]
    incidents = [i for o in outcomes for i in o.incidents]
    if len(set(incidents)) != len(incidents):
        problems.append("two workloads' answers named the same incident")
    outcome_totals = sum((o.outcomes for o in outcomes), Counter())
    per_script = Counter()
    for _, _, expected in SCRIPT:
        per_script.update(expected)
    requests_sent = len(latencies)
    firing = workloads * 5  # grouped firing 3 + repeated single 1 + the firing one in the mixed group 1
    resolved = workloads * 4  # 2 in the mixed group + 2 single resolved
    problems += counter_checks(before, after, {
        'aiops_webhook_requests_total{outcome="accepted"}': requests_sent,
        'aiops_alerts_received_total{status="firing"}': firing,
        'aiops_alerts_received_total{status="resolved"}': resolved,
        "aiops_alerts_deduplicated_total": per_script["duplicate"] * workloads,
    })
    if after.get("aiops_incidents_open", 0.0) > before.get("aiops_incidents_open", 0.0):
        problems.append("incidents left open: every script resolves its incident")
    return {
        "workloads": workloads, "concurrency": concurrency, "requests": requests_sent, "alerts": alerts,
        "seconds": round(elapsed, 3), "alerts_per_second": round(alerts / elapsed, 1),
        "requests_per_second": round(requests_sent / elapsed, 1),
        "latency_ms": percentiles(latencies),
        # On a shared machine wall-clock rates say as much about the neighbours as about aiops: CPU seconds don't.
        "agent_cpu_seconds": round(cpu_after - cpu_before, 2) if cpu_before is not None else None,
        "alerts_per_agent_cpu_second": round(alerts / (cpu_after - cpu_before), 1)
        if cpu_before is not None and cpu_after and cpu_after > cpu_before else None,
        "client_cpu_seconds": round(client_after - client_before, 2),
        "load_average_1m": [round(load_before, 2), round(load_after, 2)],
        "latency_ms_by_kind": {kind: percentiles(values) for kind, values in sorted(by_kind.items())},
        "outcomes": dict(sorted(outcome_totals.items())),
        "expected_outcomes": {k: v * workloads for k, v in sorted(per_script.items())},
        "agent_counters": {k: after.get(k, 0.0) - before.get(k, 0.0) for k in sorted(after)
                           if k.startswith(("aiops_webhook_requests_total", "aiops_alerts_",
                                            "aiops_worker_dropped_total", "aiops_handler_errors_total"))},
        "lost_or_double_handled": len(problems), "problems": problems[:20], "ok": not problems,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="an agent already running (default: start `aiops serve` here)")
    parser.add_argument("--token-file", type=Path, help="its webhook bearer token, with --url")
    parser.add_argument("--namespace", default=NAMESPACE, help="a namespace in the agent's allow-list")
    parser.add_argument("--workloads", type=int, default=2000, help="workload scripts (9 alerts, 5 requests each)")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight")
    parser.add_argument("--warmup", type=int, default=50, help="workload scripts before the measured run")
    parser.add_argument("--backend", choices=("sim", "dead"), default="sim",
                        help="what the started agent's Prometheus and Kubernetes API are (see above)")
    parser.add_argument("--fixtures", type=Path, default=FIXTURES, help="folder of alertmanager_*.json payloads")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)

    procs: list[subprocess.Popen] = []
    workdir = None
    if args.url:
        base = args.url.rstrip("/")
        token = args.token_file.read_text().strip() if args.token_file else None
    else:
        workdir = Path(tempfile.mkdtemp(prefix="aiops-bench-webhook-"))
        procs, base, token = start_agent(workdir, args.namespace, args.backend)
    try:
        agent_pid = procs[-1].pid if procs else None
        result = bench(base, token, args.namespace, args.fixtures, args.workloads, args.concurrency, args.warmup,
                       agent_pid)
    finally:
        stop_all(procs)
    result["command"] = "python -m bench.webhook " + " ".join(argv if argv is not None else sys.argv[1:])
    result["cpus"] = os.cpu_count()
    result["agent"] = args.url or f"aiops serve started by the bench, backend {args.backend} (logs in {workdir})"
    lat = result["latency_ms"]
    print(f"{result['alerts']} alerts in {result['requests']} requests over {result['seconds']} s: "
          f"{result['alerts_per_second']:.0f} alerts/s, {result['requests_per_second']:.0f} requests/s; "
          f"latency p50 {lat['p50']} ms, p99 {lat['p99']} ms, max {lat['max']} ms")
    if result["agent_cpu_seconds"] is not None:
        print(f"agent process: {result['agent_cpu_seconds']} CPU s, {result['alerts_per_agent_cpu_second']:.0f} "
              f"alerts per CPU second; client {result['client_cpu_seconds']} CPU s; 1-min load "
              f"{result['load_average_1m'][0]} -> {result['load_average_1m'][1]} on {os.cpu_count()} cores")
    for kind, k in result["latency_ms_by_kind"].items():
        print(f"  {kind:24s} p50 {k['p50']:7.2f} ms  p99 {k['p99']:7.2f} ms")
    print("no alert lost or handled twice" if result["ok"] else f"PROBLEMS: {result['problems']}")
    if args.out:
        write_json(args.out, result)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
