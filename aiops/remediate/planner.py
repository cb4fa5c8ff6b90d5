"""The planner: a pure function from a diagnosis to an ``ActionPlan`` or a ``Blocked`` refusal.

No I/O: what happened before reaches it as an ``ActionHistory`` (the journal), and "now" as a number, so every
guard is testable with plain values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol

from aiops.domain.diagnosis import Diagnosis
from aiops.domain.plans import ActionPlan, Blocked, Mode, plan_id
from aiops.domain.playbook import Playbook
from aiops.domain.target import Target
from aiops.settings import Settings

# Machine-readable ``Blocked.reason`` values.
UNKNOWN_PLAYBOOK = "unknown_playbook"
OUT_OF_SCOPE = "out_of_scope"
LOW_CONFIDENCE = "low_confidence"
COOLDOWN = "cooldown"
APPROVAL_NEVER = "approval_never"
# Not a refusal for good: the plan (attached) waits for a person to approve it.
APPROVAL_REQUIRED = "approval_required"
KILL_SWITCH = "kill_switch"
LABEL_SCOPE = "out_of_scope_labels"
RATE_LIMITED = "rate_limited"
CONCURRENCY = "concurrency"
BLAST_RADIUS = "blast_radius"
REPLICA_BOUNDS = "replica_bounds"
PDB = "pdb"
PAUSED = "paused"
ROLLOUT_IN_PROGRESS = "rollout_in_progress"
FACTS_UNAVAILABLE = "facts_unavailable"

# Actions that take healthy pods down (a PodDisruptionBudget with no disruption left forbids them). A rollback
# replaces pods too, but it is the remedy for a broken rollout, whose pods are the unhealthy ones.
DISRUPTIVE_ACTIONS = frozenset({"restart", "isolate"})
# Actions allowed on a workload mid-rollout: fixing the rollout is their job.
ROLLOUT_ACTIONS = frozenset({"rollback", "escalate"})
HOUR = 3600.0


class ActionHistory(Protocol):
    """What the journal knows of past actions: when a playbook last acted on a target (cooldowns), the start of
    every plan that changed the cluster since a time (rate limit, blast radius), and such plans running now
    (concurrency). Only changes to the cluster count against these budgets: escalations do not, and a plan's undo
    is part of the plan, not a second action."""

    def acted(self, target: Target, playbook: str) -> float | None: ...

    def acted_since(self, since: float) -> list[dict[str, Any]]: ...

    def in_flight(self) -> list[str]: ...


@dataclass(frozen=True, slots=True)
class TargetFacts:
    """What the cluster says about the target right now, read by ``remediate.facts`` before planning (the
    planner stays pure). ``kill_switch`` names where a kill switch is set; ``pdb_blocking`` names a
    PodDisruptionBudget that allows no disruption now."""

    labels: dict[str, str] = field(default_factory=dict)
    replicas: int | None = None
    paused: bool = False
    rolling_out: bool = False
    pdb_blocking: str | None = None
    namespace_workloads: int = 1
    kill_switch: str | None = None


@dataclass(frozen=True, slots=True)
class PlanPolicy:
    """The guards every plan passes. ``namespaces`` is the scope allow-list: empty means nothing is in scope
    (safe by default: acting anywhere needs the namespaces named)."""

    mode: Mode = Mode.DRY_RUN
    namespaces: tuple[str, ...] = ()
    cooldown_seconds: float = 900.0
    min_confidence: float = 0.5
    max_replicas: int = 20
    min_replicas: int = 1
    label_selector: tuple[tuple[str, str], ...] = ()
    max_actions_per_hour: int = 20
    max_concurrent: int = 3
    blast_radius_percent: float = 25.0
    kill_switch: bool = False
    approval_ttl_seconds: float = 3600.0

    @classmethod
    def from_settings(cls, settings: Settings) -> "PlanPolicy":
        """The policy a configured agent runs with."""
        p = settings.policy
        return cls(mode=settings.mode, namespaces=tuple(settings.kubernetes.namespaces),
                   cooldown_seconds=p.cooldown_seconds, min_confidence=p.min_confidence,
                   max_replicas=p.max_replicas, min_replicas=p.min_replicas,
                   label_selector=tuple(sorted(p.label_selector.items())),
                   max_actions_per_hour=p.max_actions_per_hour, max_concurrent=p.max_concurrent,
                   blast_radius_percent=p.blast_radius_percent, kill_switch=p.kill_switch,
                   approval_ttl_seconds=p.approval_ttl_seconds)

    def in_scope(self, namespace: str) -> bool:
        """True when the agent may act in ``namespace``."""
        return namespace in self.namespaces


def plan(diagnosis: Diagnosis, playbooks: Mapping[str, Playbook], policy: PlanPolicy,
         history: ActionHistory, now: float, facts: TargetFacts | None = None) -> ActionPlan | Blocked:
    """Turn the chosen hypothesis into a plan, or say which guard refused it.

    Guards, in order: the playbook must be allow-listed (``unknown_playbook``); the target's namespace must be in
    the policy's scope, whatever the alert claims (``out_of_scope``); an acting playbook needs at least
    ``min_confidence`` (``low_confidence``; ``escalate`` only notifies and is exempt); ``approval: never``
    refuses (``approval_never``); the same playbook on the same target within ``cooldown_seconds`` refuses
    (``cooldown``); then, for acting playbooks, the cluster-facing guards of ``check_guards`` (kill switch,
    label scope, rate limit, concurrency, blast radius, paused or rolling-out workloads, PodDisruptionBudgets,
    replica bounds); ``approval: approve`` returns ``approval_required`` with the plan attached.
    ``facts`` is what the cluster said about the target; ``None`` (offline diagnosis) skips the guards that
    need it, except the configured kill switch.
    """
    chosen = diagnosis.chosen
    target = chosen.target
    playbook = playbooks.get(chosen.playbook)
    if playbook is None:
        return Blocked(UNKNOWN_PLAYBOOK, f"playbook {chosen.playbook!r} is not allow-listed "
                                         f"(known: {', '.join(sorted(playbooks)) or 'none'})")
    candidate = ActionPlan(
        id=plan_id(diagnosis.incident.id, playbook.name, target), incident_id=diagnosis.incident.id,
        playbook=playbook.name, action=playbook.action, target=target,
        params=plan_params(playbook, chosen.params, policy), mode=policy.mode,
        reason=f"{chosen.fault.value} on {target} (confidence {chosen.confidence:.2f}, from {chosen.source})")
    if not policy.in_scope(target.namespace):
        return Blocked(OUT_OF_SCOPE, f"namespace {target.namespace!r} is not in the allow-list "
                                     f"{list(policy.namespaces)}", candidate)
    if playbook.acts and chosen.confidence < policy.min_confidence:
        return Blocked(LOW_CONFIDENCE, f"confidence {chosen.confidence:.2f} < {policy.min_confidence:.2f}",
                       candidate)
    if playbook.approval == "never":
        return Blocked(APPROVAL_NEVER, f"playbook {playbook.name!r} has approval: never", candidate)
    last = history.acted(target, playbook.name)
    if last is not None and now - last < policy.cooldown_seconds:
        return Blocked(COOLDOWN, f"{playbook.name} acted on {target} {now - last:.0f}s ago "
                                 f"(cooldown {policy.cooldown_seconds:.0f}s)", candidate)
    if playbook.acts:
        refusal = check_guards(candidate, policy, history, now, facts)
        if refusal is not None:
            return refusal
    if playbook.approval == "approve" and policy.mode is Mode.ACT:
        return Blocked(APPROVAL_REQUIRED, f"playbook {playbook.name!r} needs a person's approval", candidate)
    return candidate


# Params an analyzer may never set: bounds, where a degrade sends traffic, and which Service a shift, degrade or
# isolate rewrites (only the playbook's author says; otherwise a diagnosis could narrow another workload's Service,
# which the write gate, judging the plan's target, would not see).
PLAYBOOK_ONLY_PARAMS = frozenset({"max_replicas", "min_replicas", "max_fallback_replicas", "fallback", "selector",
                                  "strategy", "fraction", "service"})


def check_guards(candidate: ActionPlan, policy: PlanPolicy, history: ActionHistory, now: float,
                 facts: TargetFacts | None) -> Blocked | None:
    """The guards that read the cluster and the journal; also what an approved plan passes again before acting."""
    def blocked(reason: str, detail: str) -> Blocked:
        return Blocked(reason, detail, candidate)

    target = candidate.target
    if policy.kill_switch:
        return blocked(KILL_SWITCH, "the kill switch is on in the agent's config (policy.kill_switch)")
    if policy.mode is Mode.ACT:
        if (starts := len(history.acted_since(now - HOUR))) >= policy.max_actions_per_hour:
            return blocked(RATE_LIMITED, f"{starts} actions started in the last hour "
                                         f"(limit {policy.max_actions_per_hour})")
        if (running := len(history.in_flight())) >= policy.max_concurrent:
            return blocked(CONCURRENCY, f"{running} executions running (limit {policy.max_concurrent})")
    if facts is None:
        return None
    if facts.kill_switch:
        return blocked(KILL_SWITCH, f"the kill switch is on: {facts.kill_switch}")
    missing = [f"{k}={v}" for k, v in policy.label_selector if facts.labels.get(k) != v]
    if missing:
        return blocked(LABEL_SCOPE, f"{target} lacks the scope labels {', '.join(missing)}")
    if policy.mode is Mode.ACT:
        acted = {(r["data"].get("target") or {}).get("name") for r in history.acted_since(now - HOUR)
                 if (r["data"].get("target") or {}).get("namespace") == target.namespace}
        budget = max(1, math.floor(facts.namespace_workloads * policy.blast_radius_percent / 100))
        if len(acted | {target.name}) > budget:
            return blocked(BLAST_RADIUS, f"{len(acted)} of {facts.namespace_workloads} workloads in "
                                         f"{target.namespace} acted on in the last hour (budget {budget}, "
                                         f"{policy.blast_radius_percent:g}%)")
    if facts.paused:
        return blocked(PAUSED, f"{target} is paused (spec.paused): a person is in control of it")
    if facts.rolling_out and candidate.action not in ROLLOUT_ACTIONS:
        return blocked(ROLLOUT_IN_PROGRESS, f"{target} is mid-rollout; acting now would fight the rollout")
    if facts.pdb_blocking and candidate.action in DISRUPTIVE_ACTIONS:
        return blocked(PDB, f"PodDisruptionBudget {facts.pdb_blocking} allows no disruption now")
    if candidate.action == "scale" and facts.replicas is not None:
        ceiling = int(candidate.params.get("max_replicas", policy.max_replicas))
        if facts.replicas >= ceiling:
            return blocked(REPLICA_BOUNDS, f"{target} already has {facts.replicas} replicas (ceiling {ceiling})")
    return None


def plan_params(playbook: Playbook, proposed: Mapping[str, object], policy: PlanPolicy) -> dict:
    """The playbook's params, filled in by the hypothesis only for keys the playbook declares, then bounded.

    An analyzer (the GLM included) may say *which* ReplicaSet is healthy, but cannot add parameters or lift a
    bound: ``max_replicas`` never exceeds the policy's, and ``min_replicas`` is the policy's.
    """
    params = dict(playbook.params)
    for key, value in proposed.items():
        if key in params and key not in PLAYBOOK_ONLY_PARAMS:
            params[key] = value
    if playbook.action == "scale":
        params["max_replicas"] = min(int(params.get("max_replicas", policy.max_replicas)), policy.max_replicas)
        # The floor binds the undo too: scaling back never goes under it.
        params["min_replicas"] = policy.min_replicas
    if playbook.action == "degrade":
        for key in ("max_replicas", "max_fallback_replicas"):
            if key in params:
                params[key] = min(int(params[key]), policy.max_replicas)
    return params
