"""The planner: a pure function from a diagnosis to an ``ActionPlan`` or a ``Blocked`` refusal.

No I/O: what happened before reaches it as an ``ActionHistory`` (the journal), and "now" as a number, so every
guard is testable with plain values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Protocol

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


class ActionHistory(Protocol):
    """When a playbook last acted on a target (unix s), or ``None``: what cooldowns read."""

    def acted(self, target: Target, playbook: str) -> float | None: ...


@dataclass(frozen=True, slots=True)
class PlanPolicy:
    """The guards every plan passes. ``namespaces`` is the scope allow-list: empty means nothing is in scope
    (safe by default: acting anywhere needs the namespaces named)."""

    mode: Mode = Mode.DRY_RUN
    namespaces: tuple[str, ...] = ()
    cooldown_seconds: float = 900.0
    min_confidence: float = 0.5
    max_replicas: int = 20

    @classmethod
    def from_settings(cls, settings: Settings) -> "PlanPolicy":
        """The policy a configured agent runs with."""
        return cls(mode=settings.mode, namespaces=tuple(settings.kubernetes.namespaces),
                   cooldown_seconds=settings.policy.cooldown_seconds,
                   min_confidence=settings.policy.min_confidence, max_replicas=settings.policy.max_replicas)

    def in_scope(self, namespace: str) -> bool:
        """True when the agent may act in ``namespace``."""
        return namespace in self.namespaces


def plan(diagnosis: Diagnosis, playbooks: Mapping[str, Playbook], policy: PlanPolicy,
         history: ActionHistory, now: float) -> ActionPlan | Blocked:
    """Turn the chosen hypothesis into a plan, or say which guard refused it.

    Guards, in order: the playbook must be allow-listed (``unknown_playbook``); the target's namespace must be in
    the policy's scope, whatever the alert claims (``out_of_scope``); an acting playbook needs at least
    ``min_confidence`` (``low_confidence``; ``escalate`` only notifies and is exempt); ``approval: never``
    refuses (``approval_never``); the same playbook on the same target within ``cooldown_seconds`` refuses
    (``cooldown``); ``approval: approve`` returns ``approval_required`` with the plan attached.
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
    if playbook.approval == "approve":
        return Blocked(APPROVAL_REQUIRED, f"playbook {playbook.name!r} needs a person's approval", candidate)
    return candidate


# Params an analyzer may never set: bounds, and where a degrade sends traffic (only the playbook's author says).
PLAYBOOK_ONLY_PARAMS = frozenset({"max_replicas", "max_fallback_replicas", "fallback", "selector", "strategy",
                                  "fraction"})


def plan_params(playbook: Playbook, proposed: Mapping[str, object], policy: PlanPolicy) -> dict:
    """The playbook's params, filled in by the hypothesis only for keys the playbook declares, then bounded.

    An analyzer (the GLM included) may say *which* ReplicaSet is healthy, but cannot add parameters or lift a
    bound: ``max_replicas`` never exceeds the policy's.
    """
    params = dict(playbook.params)
    for key, value in proposed.items():
        if key in params and key not in PLAYBOOK_ONLY_PARAMS:
            params[key] = value
    if playbook.action == "scale":
        params["max_replicas"] = min(int(params.get("max_replicas", policy.max_replicas)), policy.max_replicas)
    if playbook.action == "degrade":
        for key in ("max_replicas", "max_fallback_replicas"):
            if key in params:
                params[key] = min(int(params[key]), policy.max_replicas)
    return params
