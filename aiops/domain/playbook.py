"""A playbook: the one allow-listed way to act on a kind of fault (pydantic model of ``playbooks/*.yaml``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

ActionKind = Literal["restart", "scale", "shift_traffic", "rollback", "escalate", "retrain", "degrade",
                     "isolate"]
ApprovalMode = Literal["auto", "approve", "never"]
# Actions that only tell a person and never change the cluster (not counted against change budgets).
NOTIFY_ONLY_ACTIONS = frozenset({"escalate"})


class VerifySpec(BaseModel):
    """How to tell the action worked, and when to judge it.

    Readings are taken every ``interval_seconds`` from the moment the action was applied, but they only count once
    the rollout the action started has completed (``wait_for_rollout``; ``rollout_timeout_seconds`` at most: a
    rollout that does not complete in time leaves the outcome open, for a person) and ``settle_seconds`` more
    have passed: while the old pods still serve, and while rate signals still average in what they served, a
    reading says nothing about the action. From then on the signals get ``window_seconds`` to come back:

    - recovered, ending verification early, after ``recovered_samples`` readings in a row with every signal at or
      below ``recovered_ratio`` x its pre-action level (or inside its normal band);
    - worse, which triggers the undo, after ``worse_samples`` readings in a row with a signal above ``worse_ratio``
      x its worst known level: the highest of its pre-action level, its normal band and its peak in the
      ``worse_lookback_seconds`` before the action. A level taken while the fault was still unfolding (rates lag
      the pods by their trailing window) is then not mistaken for the fault's level;
    - otherwise unchanged when the window ends (a run of readings under way then is followed to its verdict).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    signals: tuple[str, ...] = ()
    window_seconds: float = Field(default=120.0, gt=0)
    interval_seconds: float = Field(default=15.0, gt=0)
    # Below this fraction of the pre-action level (or back inside the baseline band) counts as recovered.
    recovered_ratio: float = Field(default=0.8, gt=0)
    # Above this multiple of the worst known level counts as worse, which triggers the undo.
    worse_ratio: float = Field(default=1.2, gt=1)
    # At least the trailing window rate signals are computed over (4 scrape steps, 1 min at 15 s scrapes).
    settle_seconds: float = Field(default=60.0, ge=0)
    # Wait for the target Deployment's rollout to complete before judging. False for actions that do not roll the
    # Deployment (shift-traffic changes a Service): a rollout already under way there, say a canary the action
    # routes around, may never complete.
    wait_for_rollout: bool = True
    # How long the action's rollout may take (the Deployment's progressDeadlineSeconds default).
    rollout_timeout_seconds: float = Field(default=600.0, gt=0)
    worse_samples: int = Field(default=3, ge=1)
    recovered_samples: int = Field(default=2, ge=1)
    # 0: judge worse against the pre-action level and the normal band only.
    worse_lookback_seconds: float = Field(default=300.0, ge=0)

    @model_validator(mode="after")
    def _window_fits_the_samples(self) -> "VerifySpec":
        needed = max(self.worse_samples, self.recovered_samples)
        if self.window_seconds < needed * self.interval_seconds * (1 - 1e-9):  # 3 x 0.1 is 0.30000000000000004
            raise ValueError(f"window_seconds {self.window_seconds:g} is too short for {needed} readings every "
                             f"interval_seconds {self.interval_seconds:g} (worse_samples {self.worse_samples}, "
                             f"recovered_samples {self.recovered_samples}): make it at least "
                             f"{needed * self.interval_seconds:g}")
        return self


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
