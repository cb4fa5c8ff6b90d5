"""Plain, frozen types that every layer speaks. No I/O lives here.

Only pydantic (for the YAML-backed models) and numpy (sample arrays of ``Series``) are imported: everything else
in the package depends on this layer, so it must stay small and dependency-free.
"""

from aiops.domain.alerts import Alert
from aiops.domain.diagnosis import Diagnosis, Evidence, Fault, Hypothesis
from aiops.domain.errors import AiopsError, InputError
from aiops.domain.incident import Anomaly, Incident, IncidentStatus
from aiops.domain.observations import KubeEvent, LogLine, Observations, Series, Topology
from aiops.domain.plans import ActionPlan, Blocked, Change, Execution, ExecutionState, Mode
from aiops.domain.playbook import Playbook
from aiops.domain.target import Target

__all__ = [
    "ActionPlan",
    "AiopsError",
    "Alert",
    "Anomaly",
    "Blocked",
    "Change",
    "Diagnosis",
    "Evidence",
    "Execution",
    "ExecutionState",
    "Fault",
    "Hypothesis",
    "Incident",
    "IncidentStatus",
    "InputError",
    "KubeEvent",
    "LogLine",
    "Mode",
    "Observations",
    "Playbook",
    "Series",
    "Target",
    "Topology",
]
