"""A playbook: the one allow-listed way to act on a kind of fault (pydantic model of ``playbooks/*.yaml``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ActionKind = Literal["restart", "scale", "shift_traffic", "rollback", "escalate", "retrain", "degrade",
                     "isolate"]
ApprovalMode = Literal["auto", "approve", "never"]
# Actions that only tell a person and never change the cluster (not counted against change budgets).
NOTIFY_ONLY_ACTIONS = frozenset({"escalate"})


class VerifySpec(BaseModel):
    """How to tell the action worked: these signals must return below their pre-action level within the window."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    signals: tuple[str, ...] = ()
    window_seconds: float = Field(default=120.0, gt=0)
    interval_seconds: float = Field(default=15.0, gt=0)
    # Below this fraction of the pre-action level (or back inside the baseline band) counts as recovered.
    recovered_ratio: float = Field(default=0.8, gt=0)
    # Above this multiple of the pre-action level counts as worse, which triggers the undo.
    worse_ratio: float = Field(default=1.2, gt=1)


class RestoreSpec(BaseModel):
    """Undo a successful action once the service is healthy again: after ``healthy_checks`` consecutive healthy
    readings, taken every ``interval_seconds``, the action's undo restores the original routing.

    A reading is healthy when every signal in ``below`` is under its limit (limits below the trigger leave headroom
    for the traffic that comes back), or, with ``below`` empty, when every verify signal is at or under
    ``recovered_ratio`` x its pre-action level or inside its normal band, as verification judges. After ``max_checks`` readings without such a run, the changed
    routing stays and the journal says so.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    healthy_checks: int = Field(default=3, ge=1)
    interval_seconds: float = Field(default=60.0, gt=0)
    max_checks: int = Field(default=60, ge=1)
    below: dict[str, float] = Field(default_factory=dict)


class Playbook(BaseModel):
    """An idempotent remediation. ``action`` picks the implementation; ``params`` are bounded by the schema."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9-]{0,62}$")
    description: str = ""
    action: ActionKind
    faults: tuple[str, ...] = ()
    params: dict[str, Any] = Field(default_factory=dict)
    approval: ApprovalMode = "auto"
    verify: VerifySpec = Field(default_factory=VerifySpec)
    # Undo the action when verification says the service got worse.
    undo_on_worse: bool = True
    # Undo the action again once the service is healthy (the temporary mitigations: degrade, isolate).
    restore: RestoreSpec | None = None
    # Queue priority 0 (most urgent) - 9 of this playbook's work; None: derived from the action kind.
    priority: int | None = Field(default=None, ge=0, le=9)

    @property
    def acts(self) -> bool:
        """False for playbooks that only notify (``escalate``)."""
        return self.action not in NOTIFY_ONLY_ACTIONS
