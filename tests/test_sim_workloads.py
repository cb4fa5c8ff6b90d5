"""Simulated workloads: each fault shows in the raw metrics, and only the right change (made through the API)
fixes it."""

from __future__ import annotations

import pytest

from aiops.clients.kube import KubeClient
from aiops.domain import signals as sig
from aiops.domain.errors import InputError
from aiops.sim.clock import SimClock
from aiops.sim.runtime import SimRuntime
from aiops.sim.scenarios import SCENARIOS, build_scenario

START = 1_800_000_000.0
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"


def _series(rt: SimRuntime, name: str, workload: str, **labels) -> list[dict]:
    return [l for n, l in rt.store.select(lambda n, l: n == name and l.get("pod", "").startswith(workload + "-")
                                          and all(l.get(k) == v for k, v in labels.items()))]


def _current(rt: SimRuntime, name: str, workload: str, **labels) -> list[float]:
    return [v for n, l, v in rt.store.current() if n == name and l.get("pod", "").startswith(workload + "-")
            and all(l.get(k) == v2 for k, v2 in labels.items())]


def _rate(rt: SimRuntime, name: str, workload: str, window: float, **labels) -> float:
    """Sum over pods of the counter's increase per second over the last ``window`` (pods alive throughout)."""
    now = rt.clock.now()
    total = 0.0
    for l in _series(rt, name, workload, **labels):
        end, begin = rt.store.value_at(name, l, now), rt.store.value_at(name, l, now - window)
        if end is not None and begin is not None:
            total += (end - begin) / window
    return total


def _p99(rt: SimRuntime, workload: str) -> float:
    return max(_current(rt, sig.RAW_DURATION, workload, quantile="0.99"))


def _error_ratio(rt: SimRuntime, workload: str, window: float = 300) -> float:
    bad = _rate(rt, sig.RAW_REQUESTS, workload, window, code="500")
    return bad / (bad + _rate(rt, sig.RAW_REQUESTS, workload, window, code="200"))


@pytest.fixture()
def running():
    runtimes = []

    def start(name: str) -> tuple[SimRuntime, KubeClient]:
        rt = SimRuntime(name, seed=3, start=START).start()
        rt.prefill(1800)
        runtimes.append(rt)
        return rt, KubeClient.for_host(rt.kube_url)

    yield start
    for rt in runtimes:
        rt.stop()


def _restart(client: KubeClient, workload: str) -> None:
    client.patch_deployment("shop", workload, {"spec": {"template": {"metadata": {"annotations": {
        RESTARTED_AT: "2027-01-15T08:00:00Z"}}}}})


def _rollback(client: KubeClient, workload: str) -> None:
    """What ``kubectl rollout undo`` does: put the previous ReplicaSet's template back on the Deployment."""
    rses = sorted(client.list_replicasets("shop", f"app={workload}"),
                  key=lambda rs: int(rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]))
    template = rses[-2]["spec"]["template"]
    template["metadata"]["labels"].pop("pod-template-hash")
    client.patch_deployment("shop", workload, [{"op": "replace", "path": "/spec/template", "value": template}])


def test_scenarios_are_the_documented_ones():
    assert SCENARIOS == {"memory_leak", "traffic_surge", "bad_deploy", "model_overload", "model_memory_growth"}
    scenario = build_scenario("bad_deploy", SimClock(START))
    assert scenario.namespace == "shop" and scenario.fault_workload == "cart"
    assert scenario.expected.playbook == "rollback-deploy"
    assert set(scenario.topology.calls) == {("frontend", "cart"), ("frontend", "catalog"), ("cart", "redis"),
                                            ("cart", "payments")}
    assert {d["metadata"]["name"] for d in scenario.cluster.list("Deployment", "shop")} == {
        "frontend", "cart", "catalog", "redis", "payments"}
    with pytest.raises(InputError) as err:
        build_scenario("meteor", SimClock(START))
    assert err.value.where == "--scenario" and "memory_leak" in err.value.reason


def test_same_seed_same_cluster_and_metrics():
    def run(seed):
        rt = SimRuntime("traffic_surge", seed=seed, start=START)
        rt.prefill(600)
        rt.advance(60)
        return rt.store.current(), [p["metadata"]["name"] for p in rt.cluster.list("Pod", "shop")]

    assert run(1) == run(1)
    assert run(1)[0] != run(2)[0]


def test_prefill_is_healthy_history_ending_now():
    rt = SimRuntime("memory_leak", seed=0, start=START)
    rt.prefill(3600)
    assert rt.clock.now() == START and rt.store.last_round == START
    (labels,) = [l for l in _series(rt, sig.RAW_MEMORY, "cart")][:1]
    assert rt.store.value_at(sig.RAW_MEMORY, labels, START - 3600 + 15) is not None
    assert _current(rt, sig.RAW_RESTARTS, "cart") == [0.0, 0.0]
    dep = rt.cluster.get("Deployment", "shop", "cart")
    assert dep["metadata"]["creationTimestamp"] <= "2027-01-15T07:00:00Z"  # backdated: START is 08:00 UTC
    assert _current(rt, sig.RAW_AVAILABLE, "") == []  # kube-state-metrics series carry deployment, not pod
    assert [v for n, l, v in rt.store.current() if n == sig.RAW_AVAILABLE and l["deployment"] == "cart"] == [2.0]


def test_memory_leak_oomkills_and_restart_fixes_it(running):
    rt, client = running("memory_leak")
    baseline = max(_current(rt, sig.RAW_MEMORY, "cart"))
    rt.inject()
    rt.advance(300)
    assert max(_current(rt, sig.RAW_MEMORY, "cart")) > baseline + 100 * 2**20
    assert max(_current(rt, sig.RAW_MEMORY, "catalog")) < baseline * 1.2  # only the cart leaks
    rt.advance(900)
    assert sum(_current(rt, sig.RAW_RESTARTS, "cart")) >= 2
    events = client.list_events("shop")
    assert {"OOMKilling", "BackOff"} <= {e["reason"] for e in events if e["type"] == "Warning"}
    backoffs = [e for e in events if e["reason"] == "BackOff"]
    assert sum(e["count"] for e in backoffs) == sum(_current(rt, sig.RAW_RESTARTS, "cart"))  # aggregated
    assert len(backoffs) == 2  # one Event per pod, counted up
    pod = client.list_pods("shop", "app=cart")[0]
    assert pod["status"]["containerStatuses"][0]["lastState"]["terminated"]["reason"] == "OOMKilled"
    log = client.read_pod_log("shop", pod["metadata"]["name"], timestamps=False)
    assert "ERROR java.lang.OutOfMemoryError: Java heap space" in log

    _restart(client, "cart")
    rt.advance(1800)
    assert sum(_current(rt, sig.RAW_RESTARTS, "cart")) == 0  # fresh pods, no OOM since
    assert max(_current(rt, sig.RAW_MEMORY, "cart")) < baseline * 1.2


def test_memory_leak_is_not_fixed_by_scaling(running):
    rt, client = running("memory_leak")
    rt.inject()
    rt.advance(900)
    before = sum(_current(rt, sig.RAW_RESTARTS, "cart"))
    client.patch_scale("shop", "cart", 4)
    rt.advance(1200)
    assert sum(_current(rt, sig.RAW_RESTARTS, "cart")) > before


def test_traffic_surge_overloads_frontend_and_scaling_fixes_it(running):
    rt, client = running("traffic_surge")
    base_rate = _rate(rt, sig.RAW_REQUESTS, "frontend", 300)
    base_p99 = _p99(rt, "frontend")
    base_cpu = _rate(rt, sig.RAW_CPU, "frontend", 300)
    rt.inject()
    rt.advance(600)
    assert _rate(rt, sig.RAW_REQUESTS, "frontend", 300) > 3 * base_rate
    assert _p99(rt, "frontend") > 2 * base_p99
    assert _rate(rt, sig.RAW_CPU, "frontend", 300) > 2 * base_cpu
    assert _p99(rt, "catalog") < 0.2  # callees have headroom

    client.patch_scale("shop", "frontend", 5)
    rt.advance(600)
    assert _p99(rt, "frontend") < 1.5 * base_p99
    assert len(_current(rt, sig.RAW_DURATION, "frontend", quantile="0.99")) == 5


def test_traffic_surge_is_not_fixed_by_restart(running):
    rt, client = running("traffic_surge")
    base_p99 = _p99(rt, "frontend")
    rt.inject()
    rt.advance(300)
    _restart(client, "frontend")
    rt.advance(600)
    assert _p99(rt, "frontend") > 2 * base_p99


def test_bad_deploy_errors_on_new_pods_and_rollback_fixes_it(running):
    rt, client = running("bad_deploy")
    assert _error_ratio(rt, "cart") < 0.02
    rt.inject()
    revisions = {rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
                 for rs in client.list_replicasets("shop", "app=cart")}
    assert revisions == {"1", "2"}
    rt.advance(600)
    assert 0.2 < _error_ratio(rt, "cart") < 0.4
    pod = client.list_pods("shop", "app=cart")[0]
    assert pod["spec"]["containers"][0]["image"].endswith(":1.1")
    log = client.read_pod_log("shop", pod["metadata"]["name"], timestamps=False)
    assert "NullPointerException at CartService.checkout(CartService.java:142)" in log

    _rollback(client, "cart")
    rt.advance(600)
    assert _error_ratio(rt, "cart") < 0.02
    assert all(p["spec"]["containers"][0]["image"].endswith(":1.0") for p in client.list_pods("shop", "app=cart"))
    dep = client.get_deployment("shop", "cart")
    assert dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"


@pytest.mark.parametrize("wrong_fix", ["restart", "scale"])
def test_bad_deploy_is_not_fixed_by_restart_or_scale(running, wrong_fix):
    rt, client = running("bad_deploy")
    rt.inject()
    rt.advance(300)
    if wrong_fix == "restart":
        _restart(client, "cart")
    else:
        client.patch_scale("shop", "cart", 4)
    rt.advance(600)
    assert _error_ratio(rt, "cart") > 0.2


def test_history_is_bounded_by_retention():
    rt = SimRuntime("memory_leak", seed=0, start=START, retention_seconds=600)
    rt.prefill(1800)
    rt.advance(300)
    (labels,) = _series(rt, sig.RAW_MEMORY, "redis")
    assert rt.store.value_at(sig.RAW_MEMORY, labels, START - 600) is None
    assert rt.store.value_at(sig.RAW_MEMORY, labels, START) is not None


def test_realtime_mode_ticks_on_its_own():
    import threading
    import time

    rt = SimRuntime("memory_leak", realtime=True, step=0.05).start()
    stop = threading.Event()
    worker = threading.Thread(target=rt.run_forever, args=(stop,), daemon=True)
    worker.start()
    try:
        deadline = time.monotonic() + 5
        rounds = set()
        while len(rounds) < 3 and time.monotonic() < deadline:
            if rt.store.last_round is not None:
                rounds.add(rt.store.last_round)
            stop.wait(0.01)
        assert len(rounds) >= 3
        assert abs(rt.store.last_round - time.time()) < 5
    finally:
        stop.set()
        worker.join(timeout=5)
        rt.stop()
    assert not worker.is_alive()
