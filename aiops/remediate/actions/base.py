"""What every action shares: the Kubernetes calls it needs, the plan-id annotation, conflict retries, audit Events.

Idempotency rests on one rule: the change and the annotation ``aiops.io/plan-id: <plan id>`` are written in the
same patch, so an object carrying the annotation has the change, and ``apply`` seeing it does nothing.

Undo rests on the same annotation: it reverts only what is still the plan's own change (the object carries this
plan's annotation and the fields the plan set still hold the values it wrote). An object already back at
``change.before`` needs nothing; any other state means someone changed it since, and the undo raises
``Superseded`` without writing. Every undo write is a guarded patch, so the check and the write see one version.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime, timezone
from typing import Any, Protocol

from aiops.domain.errors import AiopsError
from aiops.domain.plans import ActionPlan, Change
from aiops.domain.protocols import Clock

log = logging.getLogger(__name__)

PLAN_ANNOTATION = "aiops.io/plan-id"
UNDONE_ANNOTATION = "aiops.io/undone-plan-id"
AUDIT_REASON = "AiopsAction"
# A read-modify-write losing a race (409 Conflict, or 422 from a failed JSON-patch ``test``) is retried this often.
CONFLICT_ATTEMPTS = 3


class KubeApi(Protocol):
    """The subset of ``aiops.clients.kube.KubeClient`` the actions call (API-shaped dicts in and out)."""

    def get_deployment(self, namespace: str, name: str) -> dict: ...

    def patch_deployment(self, namespace: str, name: str, patch: dict | list) -> dict: ...

    def list_replicasets(self, namespace: str, selector: str | None = None) -> list[dict]: ...

    def get_service(self, namespace: str, name: str) -> dict: ...

    def patch_service(self, namespace: str, name: str, patch: dict | list) -> dict: ...

    def create_event(self, namespace: str, event: dict) -> dict: ...

    def list_events(self, namespace: str) -> list[dict]: ...

    def get_pod(self, namespace: str, name: str) -> dict: ...

    def patch_pod(self, namespace: str, name: str, patch: dict | list) -> dict: ...


class ActionError(AiopsError):
    """The cluster is not in a state this action can work with (e.g. no previous revision to roll back to)."""


class Superseded(ActionError):
    """An undo refused because the object is no longer as the plan left it: someone changed it since (a hotfix
    image, replicas set by hand, another plan). Reverting would overrule them, so the runner journals the plan
    ``superseded`` and tells a person instead. ``detail`` says what differs."""

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(detail)


def rfc3339(ts: float) -> str:
    """Seconds-precision UTC timestamp, as Kubernetes writes them."""
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def annotations(obj: dict) -> dict[str, str]:
    """``metadata.annotations`` of an API object (``{}`` when absent)."""
    return dict((obj.get("metadata") or {}).get("annotations") or {})


def is_conflict(exc: Exception) -> bool:
    """True for the API errors a fresh read and a retry can fix."""
    return getattr(exc, "status", None) in (409, 422)


def guarded_patch(obj: dict, ops: list[dict], plan_id: str | None = None,
                  extra_annotations: dict[str, str] | None = None) -> list[dict]:
    """A JSON patch that applies ``ops`` only if ``obj`` is unchanged, writing the plan annotation with them."""
    notes = annotations(obj)
    if plan_id is not None:
        notes[PLAN_ANNOTATION] = plan_id
    notes.update(extra_annotations or {})
    return [{"op": "test", "path": "/metadata/resourceVersion", "value": obj["metadata"]["resourceVersion"]},
            *ops, {"op": "add", "path": "/metadata/annotations", "value": notes}]


def ownership_problems(obj: dict, plan_id: str) -> list[str]:
    """Why ``obj`` is not (any more) this plan's change by its annotations; empty when it still is."""
    notes = annotations(obj)
    owner = notes.get(PLAN_ANNOTATION)
    if notes.get(UNDONE_ANNOTATION) == plan_id:
        return [f"plan {plan_id} already undid its change and it was changed again since"]
    if owner == plan_id:
        return []
    if owner:
        return [f"plan {owner} has written it since (annotation {PLAN_ANNOTATION})"]
    # Either the plan's patch never landed (a crash between journaling the intent and the write) and someone
    # changed the object anyway, or the annotation was removed: in both cases the current state is not ours.
    return [f"it does not carry this plan's annotation {PLAN_ANNOTATION}"]


def refuse_unless_ours(plan: ActionPlan, what: str, obj: dict, differences: list[str]) -> None:
    """Raise ``Superseded`` unless ``obj`` carries ``plan``'s annotation and ``differences`` (the fields the plan
    set that no longer hold its values, described) is empty. ``what`` names the object in the message."""
    problems = ownership_problems(obj, plan.id) + differences
    if problems:
        raise Superseded(f"{what} is no longer as plan {plan.id} left it: {'; '.join(problems)}; not undone, "
                         "so as not to overrule whoever changed it")


def differing_paths(now: Any, wanted: Any, path: str = "", limit: int = 3) -> list[str]:
    """Up to ``limit`` dotted paths where ``now`` differs from ``wanted`` (to name what a person changed)."""
    if isinstance(now, dict) and wanted is None or now is None and isinstance(wanted, dict):
        now, wanted = now or {}, wanted or {}  # a map added or removed: name the keys inside it
    if isinstance(now, dict) and isinstance(wanted, dict):
        found: list[str] = []
        for key in sorted(set(now) | set(wanted), key=str):
            if now.get(key) != wanted.get(key):
                found += differing_paths(now.get(key), wanted.get(key), f"{path}.{key}" if path else str(key),
                                         limit - len(found))
            if len(found) >= limit:
                break
        return found[:limit]
    if isinstance(now, list) and isinstance(wanted, list) and len(now) == len(wanted):
        found = []
        for i, (a, b) in enumerate(zip(now, wanted)):
            if a != b:
                found += differing_paths(a, b, f"{path}[{i}]", limit - len(found))
            if len(found) >= limit:
                break
        return found[:limit]
    return [] if now == wanted else [path or "(the whole value)"]


class ObjectAction:
    """Read-check-patch skeleton: subclasses say how to read the object and what patch makes (or undoes) the change.

    ``_prepare`` returns the ``Change`` and the patch; ``_prepare_undo`` the same, with ``None`` for "nothing to
    undo" (the object is back at ``change.before``), and raises ``Superseded`` (``refuse_unless_ours``) when the
    object is neither the plan's change nor back at ``before``. Reads happen in dry-run too (to describe the
    change); writes never do.
    """

    kind = ""
    api_version = "apps/v1"

    def __init__(self, kube: KubeApi, clock: Clock) -> None:
        self.kube = kube
        self.clock = clock

    # --- what subclasses provide ---
    def _read(self, plan: ActionPlan) -> dict:
        return self.kube.get_deployment(plan.target.namespace, plan.target.name)

    def _write(self, plan: ActionPlan, patch: dict | list) -> dict:
        return self.kube.patch_deployment(plan.target.namespace, plan.target.name, patch)

    def _state(self, obj: dict) -> dict[str, Any]:
        """The part of the object this action changes, for ``Change.before``/``after``."""
        return {}

    def _prepare(self, plan: ActionPlan, obj: dict) -> tuple[Change, dict | list]:
        raise NotImplementedError

    def _prepare_undo(self, plan: ActionPlan, change: Change, obj: dict) -> tuple[Change, dict | list | None]:
        raise NotImplementedError

    # --- the Action protocol ---
    def is_satisfied(self, plan: ActionPlan) -> bool:
        """True when the object already carries this plan's annotation (so the change is in place)."""
        return annotations(self._read(plan)).get(PLAN_ANNOTATION) == plan.id

    def apply(self, plan: ActionPlan, dry_run: bool) -> Change:
        """Make the change once; in dry-run only describe it."""
        def attempt(obj: dict) -> tuple[Change, dict | list | None]:
            if annotations(obj).get(PLAN_ANNOTATION) == plan.id:
                return Change(plan.target, f"{self.kind}: already done by plan {plan.id}", after=self._state(obj),
                              already_done=True), None
            return self._prepare(plan, obj)
        return self._write_with_retry(plan, attempt, dry_run, "apply")

    def undo(self, plan: ActionPlan, change: Change, dry_run: bool) -> Change:
        """Restore ``change.before`` while the object is still as the plan left it; a change already undone (or
        never applied) is left alone; anything else raises ``Superseded`` and writes nothing. A conflict retry
        re-reads the object and checks again."""
        def attempt(obj: dict) -> tuple[Change, dict | list | None]:
            reverse, patch = self._prepare_undo(plan, change, obj)
            return (dataclasses.replace(reverse, already_done=True), None) if patch is None else (reverse, patch)
        return self._write_with_retry(plan, attempt, dry_run, "undo")

    def _write_with_retry(self, plan: ActionPlan, attempt, dry_run: bool, step: str) -> Change:
        """Read, prepare, write; again from a fresh read when the write lost a race (409, or a failed ``test``).

        ``attempt(obj)`` returns the change and its patch, or no patch when there is nothing to write. It runs
        on every fresh read, so whatever it checks (ownership on undo) is checked against the version written.
        """
        for n in range(CONFLICT_ATTEMPTS):
            change, patch = attempt(self._read(plan))
            if patch is None or dry_run:
                return change
            try:
                self._write(plan, patch)
            except Exception as exc:
                if is_conflict(exc) and n + 1 < CONFLICT_ATTEMPTS:
                    continue
                raise
            # The write landed: from here the change must be verified (and undone when worse), so an audit Event
            # the apiserver refuses (a quota, an admission webhook, a timeout, the Lease just lost) is logged, not
            # raised; the journal is the record. Raised, it ended the plan ``failed`` with the change in place.
            try:
                self.audit(plan, step, change.description)
            except Exception as exc:  # noqa: BLE001 - see above
                log.warning("plan %s: %s landed but its audit Event was not written: %s", plan.id, step, exc,
                            extra={"plan": plan.id})
            return dataclasses.replace(change, applied=True)
        raise AssertionError("unreachable: the last attempt returns or raises")

    # --- audit ---
    def audit(self, plan: ActionPlan, step: str, message: str, reason: str = AUDIT_REASON) -> bool:
        """Write a Kubernetes Event on the target naming the plan; False when it already existed."""
        return write_event(self.kube, self.clock, plan, step, f"plan {plan.id}: {message}", reason,
                           self.api_version)


def event_name(plan: ActionPlan, step: str) -> str:
    """A deterministic Event name, so a repeated step cannot write a second Event."""
    return f"{plan.target.name}.aiops-{plan.id}-{step}"


def write_event(kube: KubeApi, clock: Clock, plan: ActionPlan, step: str, message: str, reason: str,
                api_version: str = "apps/v1") -> bool:
    """Create the audit Event ``event_name(plan, step)``; an existing one (409) is not an error."""
    now = rfc3339(clock.now())
    target = plan.target
    body = {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": event_name(plan, step), "namespace": target.namespace,
                     "annotations": {PLAN_ANNOTATION: plan.id}},
        "involvedObject": {"apiVersion": api_version, "kind": target.kind, "name": target.name,
                           "namespace": target.namespace},
        "reason": reason, "message": message[:1000], "type": "Normal", "count": 1,
        "firstTimestamp": now, "lastTimestamp": now,
        "source": {"component": "aiops"}, "reportingComponent": "aiops", "reportingInstance": "aiops",
    }
    try:
        kube.create_event(target.namespace, body)
    except Exception as exc:
        if getattr(exc, "status", None) == 409:
            return False
        raise
    return True
