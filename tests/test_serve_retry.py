"""Deferred incidents (back-off, claiming, giving up) and the dependency breaker, on a hand-moved clock."""

from __future__ import annotations

import errno

from aiops.clients.kube import KubeError
from aiops.clients.prometheus import PrometheusError
from aiops.serve.journal_guard import JournalUnwritable
from aiops.serve.retry import DeferredIncidents, DependencyBreaker, is_dependency_failure


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_back_off_doubles_and_claimed_ids_are_not_handed_out_twice():
    clock = Clock()
    deferred = DeferredIncidents(first_delay=10, max_delay=25, clock=clock)
    assert deferred.defer("a", "down")
    assert deferred.claim_due() == []
    clock.t += 10
    assert deferred.claim_due() == ["a"]
    assert deferred.claim_due() == [] and deferred.claim_due(force=True) == []  # claimed: in the worker now
    deferred.defer("a", "down again")  # second failure: 20 s
    clock.t += 19
    assert deferred.claim_due() == []
    clock.t += 1
    assert deferred.claim_due() == ["a"]
    deferred.defer("a", "third")  # capped at 25 s
    clock.t += 25
    assert deferred.claim_due() == ["a"]
    deferred.done("a")
    assert len(deferred) == 0


def test_force_ignores_back_off_and_gives_up_after_max_attempts():
    deferred = DeferredIncidents(max_attempts=3, clock=Clock())
    assert deferred.defer("a", "1") and deferred.defer("b", "1")
    assert deferred.claim_due(force=True) == ["a", "b"]
    assert deferred.defer("a", "2")
    assert not deferred.defer("a", "3")  # third failure: given up
    assert deferred.reasons() == {"b": "1"}


def test_breaker_holds_for_a_while_then_lets_one_try():
    clock = Clock()
    breaker = DependencyBreaker(hold_seconds=5, clock=clock)
    assert breaker.holding() is None and not breaker.reset()
    breaker.trip("PrometheusError: down")
    assert breaker.holding() == "PrometheusError: down"
    clock.t += 5
    assert breaker.holding() is None  # half-open: the next incident is tried
    breaker.trip("still down")
    assert breaker.holding() == "still down"
    assert breaker.reset() and breaker.holding() is None


def test_dependency_failures_are_told_from_incident_problems():
    assert is_dependency_failure(PrometheusError("refused"))
    assert is_dependency_failure(JournalUnwritable("full"))
    assert is_dependency_failure(OSError(errno.ENOSPC, "No space left on device"))
    assert is_dependency_failure(KubeError(503, "ServiceUnavailable", ""))
    assert is_dependency_failure(KubeError(0, "", "connection refused"))
    assert not is_dependency_failure(KubeError(409, "Conflict", ""))
    assert not is_dependency_failure(KubeError(404, "NotFound", ""))
    assert not is_dependency_failure(ValueError("bad incident"))


def test_giving_up_calls_on_give_up_once_so_the_incident_can_be_forgotten():
    given_up: list[tuple[str, str]] = []
    deferred = DeferredIncidents(max_attempts=2, clock=Clock(), on_give_up=lambda i, why: given_up.append((i, why)))
    assert deferred.defer("a", "first")
    assert given_up == []
    assert not deferred.defer("a", "second")
    assert given_up == [("a", "second")] and len(deferred) == 0
