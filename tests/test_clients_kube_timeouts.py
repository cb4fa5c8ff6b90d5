"""Every Kubernetes API call is bounded (issue #13, defect 10): against an apiserver that accepts the connection
and never answers, each call the agent makes (the collectors' lists and log reads, the guards' facts, the actions'
patches, the journal, the Lease) raises instead of blocking the single worker forever, and the client never sends a
request again by itself (a retried write could land long after the caller gave up)."""

from __future__ import annotations

import socket
import threading
import time

import pytest
import urllib3

from aiops.clients.kube import KubeClient, KubeError, outcome_unknown
from aiops.collect.kube import KubeCollector
from aiops.domain.target import Target
from aiops.remediate.actions import ActionError
from aiops.remediate.facts import ClusterFacts
from aiops.remediate.kube_journal import KubeJournal
from aiops.settings import KubernetesSettings

TIMEOUT = 0.5
# Far beyond the bound (each call alone takes TIMEOUT): only a call that hangs gets near it.
DEADLINE = 60.0
NS, NAME = "shop", "web"
LEASE = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
         "metadata": {"name": "l", "namespace": NS, "resourceVersion": "1"}, "spec": {"holderIdentity": "me"}}
CALLS = {
    "version": (),
    "get_deployment": (NS, NAME),
    "list_deployments": (NS,),
    "patch_deployment": (NS, NAME, {"metadata": {"labels": {"a": "b"}}}),
    "get_scale": (NS, NAME),
    "patch_scale": (NS, NAME, 3),
    "list_replicasets": (NS, "app=web"),
    "list_pods": (NS,),
    "get_pod": (NS, "p"),
    "patch_pod": (NS, "p", [{"op": "remove", "path": "/metadata/labels/a"}]),
    "read_pod_log": (NS, "p", "c", 60, 100),
    "list_events": (NS,),
    "create_event": (NS, {"metadata": {"name": "e"}, "involvedObject": {}}),
    "get_namespace": (NS,),
    "list_pdbs": (NS,),
    "request": ("GET", "/api/v1/namespaces/{namespace}", {"namespace": NS}),
    "get_service": (NS, NAME),
    "list_services": (NS,),
    "patch_service": (NS, NAME, {"spec": {"selector": {"app": "web"}}}),
    "get_configmap": (NS, "c"),
    "list_configmaps": (NS, "aiops.io/journal=true"),
    "create_configmap": (NS, {"metadata": {"name": "c"}, "data": {}}),
    "patch_configmap": (NS, "c", [{"op": "add", "path": "/data/k", "value": "v"}]),
    "delete_configmap": (NS, "c"),
    "get_lease": (NS, "l"),
    "create_lease": (NS, LEASE),
    "replace_lease": (NS, "l", LEASE),
}
NOT_CALLS = {"close", "for_host", "from_settings", "request_timeout"}


class SilentServer:
    """A loopback port whose kernel completes every TCP handshake (the listen backlog) while nothing ever reads a
    request or answers one: an apiserver that hangs. Counts the connections it got, to see retries."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(256)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.held: list[socket.socket] = []

    def accepted(self) -> int:
        """Take (and keep open, unanswered) every connection waiting; how many there were in all."""
        self.sock.setblocking(False)
        try:
            while True:
                self.held.append(self.sock.accept()[0])
        except BlockingIOError:
            pass
        return len(self.held)

    def close(self) -> None:
        for conn in self.held:
            conn.close()
        self.sock.close()


@pytest.fixture
def silent():
    server = SilentServer()
    yield server
    server.close()


def outcomes(calls: dict[str, tuple]) -> dict[str, BaseException | str]:
    """Run every call at once on its own thread; what each raised, or "hung" if it was still waiting at DEADLINE."""
    results: dict[str, BaseException | str] = {}

    def run(name: str, fn) -> None:
        try:
            fn()
            results[name] = "returned"
        except BaseException as exc:  # noqa: BLE001 - the outcome is what we look at
            results[name] = exc

    threads = [threading.Thread(target=run, args=(name, fn), daemon=True) for name, fn in calls.items()]
    for t in threads:
        t.start()
    end = time.monotonic() + DEADLINE
    for t in threads:
        t.join(max(0.0, end - time.monotonic()))
    return {name: results.get(name, "hung") for name in calls}


def is_timeout(exc) -> bool:
    return isinstance(exc, (urllib3.exceptions.TimeoutError, TimeoutError))


def test_every_call_of_the_client_is_listed_here():
    public = {n for n in dir(KubeClient) if not n.startswith("_")}
    assert public - NOT_CALLS == set(CALLS), "a new API call needs a case here (and a bound)"


def test_every_api_call_raises_within_the_bound_against_a_hung_apiserver(silent):
    kube = KubeClient.for_host(silent.url, request_timeout=TIMEOUT)
    try:
        results = outcomes({name: (lambda n=name, a=args: getattr(kube, n)(*a)) for name, args in CALLS.items()})
    finally:
        kube.close()
    assert {n for n, r in results.items() if r == "hung"} == set()
    assert {n: type(r).__name__ for n, r in results.items() if not is_timeout(r)} == {}
    # One connection per call: nothing was sent a second time (GET and PUT used to be retried three times).
    assert silent.accepted() == len(CALLS)


def test_the_bound_comes_from_the_settings(silent):
    settings = KubernetesSettings(host=silent.url, request_timeout_seconds=TIMEOUT)
    kube = KubeClient.from_settings(settings)
    try:
        assert kube.request_timeout == TIMEOUT
        assert is_timeout(outcomes({"list_pods": lambda: kube.list_pods(NS)})["list_pods"])
    finally:
        kube.close()


def test_collectors_facts_and_journal_raise_instead_of_hanging(silent):
    """What the worker runs for one incident: logs and events, the guards' facts, the journal's questions."""
    kube = KubeClient.for_host(silent.url, request_timeout=TIMEOUT)
    collector, facts = KubeCollector(kube, clock=lambda: 1000.0), ClusterFacts(kube)
    journal = KubeJournal(kube, NS)
    try:
        results = outcomes({
            "logs": lambda: collector.logs(NS, 900.0, 1000.0),
            "events": lambda: collector.events(NS, 900.0, 1000.0),
            "facts": lambda: facts.read(Target.deployment(NS, NAME)),
            "journal.latest": journal.latest,
            "journal.history": lambda: journal.history("p-1"),
            "journal.record": lambda: journal.record("p-1", "executing", "go", {"ts": 1.0}),
        })
    finally:
        kube.close()
    assert {n for n, r in results.items() if r == "hung"} == set()
    assert all(isinstance(r, BaseException) for r in results.values()), results


def test_a_call_that_timed_out_after_it_was_sent_has_an_unknown_outcome(silent):
    """What the runner asks before it calls a write failed (the bench's lost answer, bench/faults.py row 3): a
    timeout after the request left may hide a write that landed; a refused connection or an API answer does not."""
    hung = KubeClient.for_host(silent.url, request_timeout=TIMEOUT)
    dead = KubeClient.for_host(f"http://127.0.0.1:{closed_port()}", request_timeout=TIMEOUT)
    try:
        timed_out = outcomes({"patch": lambda: hung.patch_deployment(NS, NAME, {"spec": {"replicas": 3}})})["patch"]
        refused = outcomes({"patch": lambda: dead.patch_deployment(NS, NAME, {"spec": {"replicas": 3}})})["patch"]
    finally:
        hung.close()
        dead.close()
    assert outcome_unknown(timed_out), repr(timed_out)
    assert not outcome_unknown(refused), repr(refused)
    assert outcome_unknown(KubeError(504, "Timeout", "request did not complete within the allowed duration"))
    assert outcome_unknown(KubeError(500, "InternalError", "etcdserver: request timed out"))
    for definite in (KubeError(409, "Conflict", "modified"), KubeError(422, "Invalid", "test failed"),
                     KubeError(404, "NotFound", "gone"), ValueError("a bug"), ActionError("no revision")):
        assert not outcome_unknown(definite), repr(definite)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
