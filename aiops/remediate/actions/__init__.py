"""The actions a playbook can run, by the playbook's ``action`` kind (see ``ACTIONS``)."""

from aiops.remediate.actions.base import PLAN_ANNOTATION, ActionError, KubeApi, Superseded
from aiops.remediate.actions.degrade import DegradeAction
from aiops.remediate.actions.escalate import EscalateAction
from aiops.remediate.actions.isolate import IsolateAction
from aiops.remediate.actions.restart import RestartAction
from aiops.remediate.actions.retrain import RetrainAction
from aiops.remediate.actions.rollback import RollbackAction
from aiops.remediate.actions.scale import ScaleAction, scaled_replicas
from aiops.remediate.actions.shift import ShiftTrafficAction

# Each class is built as ``cls(kube, clock)``.
ACTIONS: dict[str, type] = {
    "restart": RestartAction,
    "scale": ScaleAction,
    "shift_traffic": ShiftTrafficAction,
    "rollback": RollbackAction,
    "escalate": EscalateAction,
    # Built without a model registry here; the agent gives it one (``aiops.serve.agent.build_parts``).
    "retrain": RetrainAction,
    "degrade": DegradeAction,
    "isolate": IsolateAction,
}

__all__ = ["ACTIONS", "PLAN_ANNOTATION", "ActionError", "DegradeAction", "EscalateAction", "IsolateAction",
           "KubeApi", "RestartAction", "RetrainAction", "RollbackAction", "ScaleAction", "ShiftTrafficAction",
           "Superseded", "scaled_replicas"]
