"""Retrain a detector: fit a challenger, compare it with the current model on held-back data, promote only a
better one; undo rolls the model registry back. The ``retrain-detector`` playbook runs it."""

from __future__ import annotations

from typing import Protocol

from aiops.domain.plans import ActionPlan, Change
from aiops.domain.protocols import Clock
from aiops.remediate.actions.base import ActionError, KubeApi
from aiops.remediate.verify import VerifyResult


class ModelRetrainer(Protocol):
    """What the action needs from the model lifecycle (``aiops.detect.lifecycle.ModelLifecycle`` in the agent)."""

    def is_done(self, plan: ActionPlan) -> bool: ...

    def retrain(self, plan: ActionPlan, dry_run: bool) -> Change: ...

    def check(self, plan: ActionPlan, change: Change) -> tuple[str, str]: ...

    def restore(self, plan: ActionPlan, change: Change, dry_run: bool) -> Change: ...


class RetrainAction:
    """The ``retrain`` action kind. The target is the model (``Target("Detector", namespace, model name)``), not a
    cluster object, so idempotency rests on the registry: the challenger version records the plan id, and a second
    ``apply`` of the same plan finds it and saves nothing. The action judges its own result (``verify_change``):
    there is no workload signal to poll, the held-back comparison is the check.
    """

    kind = "retrain"
    # The registry keeps every version with its plan id, so the runner need not journal a described change
    # before applying (describing a retrain would train twice).
    journals_intent = False

    def __init__(self, kube: KubeApi, clock: Clock, retrainer: ModelRetrainer | None = None) -> None:
        self.kube = kube
        self.clock = clock
        self.retrainer = retrainer

    def _lifecycle(self) -> ModelRetrainer:
        if self.retrainer is None:
            raise ActionError("retrain needs the model registry: this runner was built without one")
        return self.retrainer

    def is_satisfied(self, plan: ActionPlan) -> bool:
        """True when this plan already saved its challenger version."""
        return self._lifecycle().is_done(plan)

    def apply(self, plan: ActionPlan, dry_run: bool) -> Change:
        """Train the challenger, compare, promote if better (dry-run: compare and describe only)."""
        return self._lifecycle().retrain(plan, dry_run)

    def undo(self, plan: ActionPlan, change: Change, dry_run: bool) -> Change:
        """Roll the registry back to the version that was current before the plan."""
        return self._lifecycle().restore(plan, change, dry_run)

    def verify_change(self, plan: ActionPlan, change: Change) -> VerifyResult:
        """The promoted model against the one it replaced on the newest data (see ``ModelLifecycle.check``)."""
        outcome, note = self._lifecycle().check(plan, change)
        return VerifyResult(outcome, [(self.clock.now(), {})], note)  # type: ignore[arg-type]
