"""Leader election contract: the same tests against the real kube-apiserver v1.20 and the simulator.

The Lease API itself (what the simulator must answer like the real one), then ``LeaseElector`` driven by hand with
a fake clock (deterministic), then electors running in their threads with short leases.
"""

from __future__ import annotations

import copy
import threading

import pytest
import requests

from aiops.clients.kube import KubeError, micro_time
from aiops.serve.leader import FOLLOWER, LEADER, LEADER_URL_ANNOTATION, RENEW_FAILED, STOLEN, LeaseElector
from tests.support.polling import wait_until

LEASE = "aiops-leader"
DURATION, RENEW, RETRY = 2, 1.5, 0.2


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Flaky:
    """Wraps a ``KubeClient``; while ``down`` every Lease call fails like an unreachable API."""

    def __init__(self, api) -> None:
        self.api = api
        self.down = False

    def __getattr__(self, name):
        target = getattr(self.api, name)

        def call(*args, **kwargs):
            if self.down:
                raise ConnectionError("connection refused")
            return target(*args, **kwargs)
        return call


class Lockstep:
    """Wraps a ``KubeClient`` so that both racing candidates read the Lease before either writes it."""

    def __init__(self, api, barrier: threading.Barrier) -> None:
        self.api, self.barrier = api, barrier

    def get_lease(self, *args, **kwargs):
        try:
            return self.api.get_lease(*args, **kwargs)
        finally:
            self.barrier.wait(10)

    def create_lease(self, *args, **kwargs):
        return self.api.create_lease(*args, **kwargs)

    def replace_lease(self, *args, **kwargs):
        return self.api.replace_lease(*args, **kwargs)


@pytest.fixture
def api(kube):
    client = kube.client()
    yield client
    client.close()


def lease_body(name: str, holder: str, ts: float, rv: str | None = None) -> dict:
    meta = {"name": name, **({"resourceVersion": rv} if rv else {})}
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta,
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": DURATION, "acquireTime": micro_time(ts),
                     "renewTime": micro_time(ts), "leaseTransitions": 0}}


def elector(api, ns, identity, clock=None, **kwargs) -> LeaseElector:
    timing = {"clock": clock} if clock is not None else {}
    return LeaseElector(api, ns, LEASE, identity, lease_duration=DURATION, renew_deadline=RENEW,
                        retry_period=RETRY, **timing, **kwargs)


# --- the Lease API -------------------------------------------------------------------------------------------------

def test_lease_create_get_and_microtime_round_trip(api, ns):
    whole_second = 1_790_000_000.0  # zero microseconds: the case the client's own model gets wrong
    created = api.create_lease(ns, lease_body("a", "me", whole_second))
    assert created["kind"] == "Lease" and created["apiVersion"] == "coordination.k8s.io/v1"
    assert created["spec"]["renewTime"] == "2026-09-21T14:13:20.000000Z"
    got = api.get_lease(ns, "a")
    assert got["spec"] == created["spec"]
    assert got["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    assert got["metadata"]["namespace"] == ns and got["metadata"]["uid"]


def test_lease_errors_match_the_apiserver(api, ns):
    with pytest.raises(KubeError) as missing:
        api.get_lease(ns, "nope")
    assert missing.value.not_found
    first = api.create_lease(ns, lease_body("a", "me", 1_790_000_000.5))
    with pytest.raises(KubeError) as again:
        api.create_lease(ns, lease_body("a", "you", 1_790_000_001.5))
    assert (again.value.status, again.value.reason) == (409, "AlreadyExists")
    without_rv = lease_body("a", "you", 1_790_000_001.5)
    with pytest.raises(KubeError) as unconditional:
        api.replace_lease(ns, "a", without_rv)
    assert unconditional.value.status == 422 and "resourceVersion" in str(unconditional.value)
    bad_time = lease_body("b", "me", 1_790_000_000.5)
    bad_time["spec"]["renewTime"] = "2026-09-21T13:33:20Z"
    with pytest.raises(KubeError) as undecodable:
        api.create_lease(ns, bad_time)
    assert undecodable.value.status == 400
    zero = lease_body("c", "me", 1_790_000_000.5)
    zero["spec"]["leaseDurationSeconds"] = 0
    with pytest.raises(KubeError) as invalid:
        api.create_lease(ns, zero)
    assert invalid.value.status == 422
    assert api.get_lease(ns, "a")["spec"] == first["spec"]  # nothing half-done


def test_replace_with_a_stale_resource_version_conflicts(api, ns):
    first = api.create_lease(ns, lease_body("a", "me", 1_790_000_000.5))
    rv = first["metadata"]["resourceVersion"]
    renewed = api.replace_lease(ns, "a", lease_body("a", "me", 1_790_000_001.5, rv))
    assert renewed["spec"]["renewTime"] == "2026-09-21T14:13:21.500000Z"
    assert renewed["metadata"]["resourceVersion"] != rv
    with pytest.raises(KubeError) as stale:
        api.replace_lease(ns, "a", lease_body("a", "thief", 1_790_000_002.5, rv))
    assert stale.value.conflict and stale.value.reason == "Conflict"
    assert api.get_lease(ns, "a")["spec"]["holderIdentity"] == "me"


def test_merge_patch_of_a_lease_checks_its_resource_version(kube, api, ns):
    created = api.create_lease(ns, lease_body("a", "me", 1_790_000_000.5))
    url = f"{kube.url}/apis/coordination.k8s.io/v1/namespaces/{ns}/leases"
    headers = {"Authorization": f"Bearer {kube.token}", "Content-Type": "application/merge-patch+json"}

    def patch(name: str, body: dict) -> requests.Response:
        return requests.patch(f"{url}/{name}", json=body, headers=headers, verify=False, timeout=10)

    ok = patch("a", {"metadata": {"resourceVersion": created["metadata"]["resourceVersion"]},
                     "spec": {"holderIdentity": "you"}})
    assert ok.status_code == 200 and ok.json()["spec"]["holderIdentity"] == "you"
    assert ok.json()["spec"]["renewTime"] == created["spec"]["renewTime"]  # a merge patch keeps the rest
    stale = patch("a", {"metadata": {"resourceVersion": created["metadata"]["resourceVersion"]},
                        "spec": {"holderIdentity": "thief"}})
    assert stale.status_code == 409 and stale.json()["reason"] == "Conflict"
    assert patch("missing", {"spec": {"holderIdentity": "x"}}).status_code == 404
    auth = {"Authorization": headers["Authorization"]}
    assert requests.get(url, headers=auth, verify=False, timeout=10).json()["kind"] == "LeaseList"
    discovery = requests.get(f"{kube.url}/apis/coordination.k8s.io/v1", headers=auth, verify=False, timeout=10)
    assert discovery.status_code == 200, discovery.text
    leases = next(r for r in discovery.json()["resources"] if r["name"] == "leases")
    assert {"get", "create", "update", "patch"} <= set(leases["verbs"]) and leases["namespaced"] is True


# --- the elector, step by step on a fake clock ---------------------------------------------------------------------

def test_first_candidate_creates_the_lease_and_the_second_follows(api, ns):
    clock = FakeClock()
    a, b = elector(api, ns, "agent-a", clock), elector(api, ns, "agent-b", clock)
    assert a.step() is True
    assert b.step() is False
    assert a.status().state == LEADER and b.status().state == FOLLOWER
    assert b.status().holder == "agent-a"
    lease = api.get_lease(ns, LEASE)["spec"]
    assert lease["holderIdentity"] == "agent-a" and lease["leaseDurationSeconds"] == DURATION


def test_follower_takes_over_only_after_the_lease_duration_without_renewals(api, ns):
    clock = FakeClock()
    a, b = elector(api, ns, "agent-a", clock), elector(api, ns, "agent-b", clock)
    a.step()
    b.step()  # b sees a's record now; a never renews again (it died)
    clock.t += DURATION - 0.1
    assert b.step() is False
    clock.t += 0.1
    assert b.step() is True
    spec = api.get_lease(ns, LEASE)["spec"]
    assert spec["holderIdentity"] == "agent-b" and spec["leaseTransitions"] == 1
    assert a.is_leader is False  # a's own deadline passed without a renewal


def test_the_leader_advertises_its_url_in_the_lease_for_followers_to_forward_to(api, ns):
    clock = FakeClock()
    a = elector(api, ns, "agent-a", clock, advertise_url="http://10.0.0.5:8080")
    b = elector(api, ns, "agent-b", clock, advertise_url="http://10.0.0.6:8080")
    assert a.step() is True and b.step() is False
    lease = api.get_lease(ns, LEASE)
    assert lease["metadata"]["annotations"][LEADER_URL_ANNOTATION] == "http://10.0.0.5:8080"
    assert b.leader_url() == "http://10.0.0.5:8080" and b.status().holder_url == "http://10.0.0.5:8080"
    assert a.leader_url() is None  # the leader forwards to nobody
    clock.t += DURATION  # a stopped renewing: b no longer forwards to it, and takes over
    assert b.leader_url() is None
    assert b.step() is True
    assert api.get_lease(ns, LEASE)["metadata"]["annotations"][LEADER_URL_ANNOTATION] == "http://10.0.0.6:8080"
    assert a.step() is False and a.leader_url() == "http://10.0.0.6:8080"
    assert b.release() is True  # a released Lease advertises nothing
    assert LEADER_URL_ANNOTATION not in (api.get_lease(ns, LEASE)["metadata"].get("annotations") or {})
    assert a.step() is True


def test_renewals_keep_the_follower_out(api, ns):
    clock = FakeClock()
    a, b = elector(api, ns, "agent-a", clock), elector(api, ns, "agent-b", clock)
    a.step()
    for _ in range(4 * DURATION):
        clock.t += 0.5
        assert a.step() is True
        assert b.step() is False
    assert api.get_lease(ns, LEASE)["spec"]["leaseTransitions"] == 0


def test_stolen_lease_makes_the_leader_step_down_and_recover_by_itself(api, ns):
    clock = FakeClock()
    stopped = []
    a = elector(api, ns, "agent-a", clock, on_stopped_leading=lambda reason, detail: stopped.append(reason))
    a.step()
    current = api.get_lease(ns, LEASE)
    stolen = copy.deepcopy(current)
    stolen["spec"]["holderIdentity"] = "thief"
    api.replace_lease(ns, LEASE, stolen)
    clock.t += RETRY
    assert a.step() is False
    status = a.status()
    assert stopped == [STOLEN]
    assert status.state == FOLLOWER and status.holder == "thief" and "taken by thief" in status.reason
    clock.t += DURATION  # the thief never renews: its lease expires and a takes it back
    assert a.step() is True
    assert a.status().reason == "" and a.status().transitions == 3


def test_leader_that_cannot_renew_steps_down_at_the_renew_deadline_and_recovers(api, ns):
    clock = FakeClock()
    flaky = Flaky(api)
    a = elector(flaky, ns, "agent-a", clock)
    a.step()
    flaky.down = True
    clock.t += RENEW - 0.1
    assert a.step() is True  # one failed renewal is not yet a lost lease
    clock.t += 0.1
    assert a.is_leader is False  # the deadline alone ends leadership, before any step runs
    a.step()
    assert a.status().reason.startswith(RENEW_FAILED) and "connection refused" in a.status().reason
    flaky.down = False
    clock.t += RETRY
    assert a.step() is True  # still the holder in the Lease: it renews and leads again


def test_clean_release_lets_the_follower_in_at_once(api, ns):
    clock = FakeClock()
    a, b = elector(api, ns, "agent-a", clock), elector(api, ns, "agent-b", clock)
    a.step()
    b.step()
    assert a.release() is True
    assert a.is_leader is False
    assert b.step() is True  # no waiting for the lease duration: the clock did not move


@pytest.mark.parametrize("existing", [False, True], ids=["create-race", "update-race"])
def test_simultaneous_acquire_has_exactly_one_winner(api, ns, existing):
    if existing:  # a released Lease: free for anyone, both try to write the same resourceVersion
        api.create_lease(ns, {**lease_body(LEASE, "", 1_790_000_000.5)})
    barrier = threading.Barrier(2)
    candidates = [elector(Lockstep(api, barrier), ns, f"agent-{n}", FakeClock()) for n in "ab"]
    results: dict[str, bool] = {}
    threads = [threading.Thread(target=lambda c=c: results.__setitem__(c.identity, c.step())) for c in candidates]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert sorted(results.values()) == [False, True]
    winner = next(name for name, won in results.items() if won)
    assert api.get_lease(ns, LEASE)["spec"]["holderIdentity"] == winner


# --- electors in their own threads ---------------------------------------------------------------------------------

def leaders(electors) -> list[str]:
    return [e.identity for e in electors if e.is_leader]


def test_two_running_electors_have_exactly_one_leader_and_fail_over(api, ns, kube):
    a, b = elector(api, ns, "agent-a").start(), elector(kube.client(), ns, "agent-b").start()
    try:
        first = wait_until(lambda: leaders([a, b]), 10, "a leader")
        assert len(first) == 1
        old, new = (a, b) if first == ["agent-a"] else (b, a)
        # Watch a few renewals: never two leaders at once, and the follower never takes a renewed lease.
        for _ in range(5):
            wait_until(lambda: new.status().holder == old.identity, 5, "the follower sees the leader")
            assert len(leaders([a, b])) <= 1 and not new.is_leader
        old.stop(release=False)  # dies without a word: the follower waits out the lease
        wait_until(lambda: new.is_leader, 3 * DURATION + 5, "the follower takes over")
        assert old.is_leader is False
        assert api.get_lease(ns, LEASE)["spec"]["holderIdentity"] == new.identity
    finally:
        a.stop()
        b.stop()


def test_running_leader_notices_a_stolen_lease(api, ns):
    a = elector(api, ns, "agent-a").start()
    try:
        wait_until(lambda: a.is_leader, 10, "agent-a leads")
        current = api.get_lease(ns, LEASE)
        current["spec"]["holderIdentity"] = "thief"
        current["spec"]["renewTime"] = micro_time(1_790_000_000.5)
        api.replace_lease(ns, LEASE, current)
        wait_until(lambda: not a.is_leader and a.status().reason.startswith(STOLEN), 5, "agent-a steps down")
        wait_until(lambda: a.is_leader, 3 * DURATION + 5, "agent-a takes the expired lease back")
    finally:
        a.stop()
    assert api.get_lease(ns, LEASE)["spec"]["holderIdentity"] == ""  # released on stop
