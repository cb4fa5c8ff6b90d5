"""What an approval means: a person approved *this* change, shown to them, for a limited time.

When a plan is held for approval the runner journals the change a dry run describes (``shown``). When the approval
comes, the runner describes the change again and acts only if it is still the one that was shown: a rollback that
would now start from another revision, replicas someone changed meanwhile, make the approval ``stale_approval``.
A request older than ``policy.approval_ttl_seconds`` (from when it was held) is ``approval_expired``, approved or
not: the world it was judged in is gone.

An approval answers one request. A plan whose request ended (blocked, expired) and that is held again (the same
incident, so the same plan id) is a new request: only the records since it was held again count (when it was held,
what was shown, who approved), so an approval given before a person stopped the agent never starts it later.
"""

from __future__ import annotations

import json
from typing import Any

from aiops.domain.plans import Change, ExecutionState
from aiops.remediate.journal import APPROVED_FLAG

APPROVAL_EXPIRED = "approval_expired"
STALE_APPROVAL = "stale_approval"
SHOWN_KEY = "shown"
# Parts of a change that say *when* it is made, not *what* it is (a restart's stamp): not compared.
_WHEN_KEYS = frozenset({"restartedAt"})


def current_request(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records of the plan's latest approval request: the trailing ``awaiting_approval`` records (empty when
    the plan is not waiting). Records of an earlier request, which ended, never count for this one."""
    start = len(history)
    while start > 0 and history[start - 1]["state"] == ExecutionState.AWAITING_APPROVAL.value:
        start -= 1
    return history[start:]


def held_at(history: list[dict[str, Any]]) -> float | None:
    """When the plan was held for the current approval request (unix s), or None."""
    request = current_request(history)
    return request[0]["ts"] if request else None


def approver_of(history: list[dict[str, Any]]) -> str | None:
    """Who approved the current request (the latest approval recorded for it), or None."""
    return next((r["data"][APPROVED_FLAG] for r in reversed(current_request(history))
                 if r["data"].get(APPROVED_FLAG)), None)


def shown_change(history: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The change described to the approver when the plan was held for the current request, or None."""
    return next((r["data"][SHOWN_KEY] for r in current_request(history) if r["data"].get(SHOWN_KEY)), None)


def expired(history: list[dict[str, Any]], now: float, ttl_seconds: float) -> bool:
    """True when the request was held more than ``ttl_seconds`` ago."""
    since = held_at(history)
    return since is not None and now - since > ttl_seconds


def why_stale(shown: dict[str, Any] | None, now: Change) -> str | None:
    """Why acting now would not be what was approved (None when it is the change that was shown)."""
    if shown is None:
        return "no change was shown when the plan was held for approval"
    if now.already_done:
        return None  # the change is in place: what follows is verifying the plan's own change
    if _comparable(shown.get("before")) != _comparable(now.before) or \
            _comparable(shown.get("after")) != _comparable(now.after):
        return f"approved: {shown.get('description', '?')!r}; now it would be: {now.description!r}"
    return None


def _comparable(part: Any) -> Any:
    """``part`` as the journal stores it (JSON), without the keys that only say when."""
    data = json.loads(json.dumps(part or {}, sort_keys=True, default=str))
    return {k: v for k, v in data.items() if k not in _WHEN_KEYS} if isinstance(data, dict) else data
