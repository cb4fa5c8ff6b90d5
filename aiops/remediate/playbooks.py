"""Loading ``playbooks/*.yaml`` into validated ``Playbook`` models.

Every problem is an ``InputError`` that names the file, the line when known, and the field, so ``aiops validate``
and ``aiops serve`` can tell a user exactly what to fix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from aiops.domain.errors import InputError
from aiops.domain.playbook import Playbook
from aiops.domain.signals import ALL_SIGNALS
from aiops.settings import error_where, validation_message
from aiops.yamlfile import read_yaml_mapping

PLAYBOOK_SUFFIXES = (".yaml", ".yml")


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ScaleParams(_Params):
    """``scale``: new replicas = min(max(current * factor, current + step_min), max_replicas, policy max)."""

    factor: float = Field(default=2.0, ge=1)
    step_min: int = Field(default=1, ge=0)
    max_replicas: int = Field(default=10, ge=1)


class ShiftTrafficParams(_Params):
    """``shift_traffic``: the Service selector gains ``label=value`` (value chosen at run time when null)."""

    label: str = Field(default="pod-template-hash", min_length=1)
    value: str | None = None
    service: str | None = None


class EscalateParams(_Params):
    """``escalate``: where the notification goes (free text for the notifier)."""

    channel: str | None = None


class DegradeParams(_Params):
    """``degrade``: relieve an overloaded model server, either by sending ``fraction`` of its traffic to the
    ``fallback`` Deployment (a smaller or quantised model; ``strategy: fallback``) or by scaling it out
    (``strategy: scale``, bounded like ``scale``)."""

    strategy: Literal["fallback", "scale"] = "fallback"
    fallback: str | None = Field(default=None, min_length=1)
    fraction: float = Field(default=0.3, gt=0, lt=1)
    # The Service selector that matches both the primary's and the fallback's pods (e.g. {model-group: chat}).
    selector: dict[str, str] = Field(default_factory=dict)
    service: str | None = None
    max_fallback_replicas: int = Field(default=4, ge=1)
    factor: float = Field(default=2.0, ge=1)
    step_min: int = Field(default=1, ge=0)
    max_replicas: int = Field(default=10, ge=1)

    @model_validator(mode="after")
    def _fallback_named(self) -> "DegradeParams":
        if self.strategy == "fallback" and (not self.fallback or not self.selector):
            raise ValueError("strategy fallback needs fallback (the Deployment) and selector (labels its pods and "
                             "the primary's share)")
        return self


class IsolateParams(_Params):
    """``isolate``: take one pod out of its Service's endpoints by removing ``label`` (a key of the Service and
    Deployment selectors); the pod keeps running for inspection and the ReplicaSet replaces its capacity.
    ``pod`` is the pod to isolate (given by the diagnosis)."""

    label: str = Field(default="app", min_length=1)
    pod: str | None = None
    service: str | None = None


class _NoParams(_Params):
    pass


class RetrainParams(_Params):
    """``retrain``: fit on the last ``history_seconds`` minus the held-back last ``holdout_seconds``; promote when
    the challenger beats the current model there by more than ``min_gain`` (criterion in [0, 1])."""

    history_seconds: float = Field(default=21600.0, gt=0)
    holdout_seconds: float = Field(default=3600.0, gt=0)
    min_gain: float = Field(default=0.02, ge=0, le=1)
    drift_threshold: float = Field(default=0.3, gt=0, le=1)


# The params each action kind accepts; anything else in ``params`` is a typo the user should hear about.
PARAMS_SCHEMAS: dict[str, type[_Params]] = {
    "restart": _NoParams,
    "scale": ScaleParams,
    "shift_traffic": ShiftTrafficParams,
    "rollback": _NoParams,
    "escalate": EscalateParams,
    "retrain": RetrainParams,
    "degrade": DegradeParams,
    "isolate": IsolateParams,
}


def load_playbooks(directory: str | Path) -> dict[str, Playbook]:
    """Every playbook file in ``directory`` by playbook name; the first bad file raises ``InputError``."""
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(str(directory), "playbooks folder not found")
    playbooks: dict[str, Playbook] = {}
    origin: dict[str, Path] = {}
    for path in sorted(p for p in directory.iterdir() if p.suffix in PLAYBOOK_SUFFIXES and p.is_file()):
        playbook = read_playbook(path)
        if playbook.name in playbooks:
            _, lines = read_yaml_mapping(path, "playbook")
            raise InputError(f"{lines.at(str(path), ('name',))}: name",
                             f"duplicate playbook name {playbook.name!r} (also in {origin[playbook.name].name})")
        playbooks[playbook.name] = playbook
        origin[playbook.name] = path
    return playbooks


def validate_playbook_file(path: str | Path) -> list[str]:
    """The problems of one playbook file as ``where: reason`` lines (empty when the file is good)."""
    try:
        read_playbook(Path(path))
    except InputError as exc:
        return [str(exc)]
    return []


def read_playbook(path: Path) -> Playbook:
    """Parse and validate one playbook file, including the params of its action and its verify signals."""
    raw, lines = read_yaml_mapping(path, "playbook")
    try:
        playbook = Playbook.model_validate(raw)
    except ValidationError as exc:
        raise InputError(error_where(str(path), lines, exc), validation_message(exc)) from None
    try:
        PARAMS_SCHEMAS[playbook.action].model_validate(playbook.params)
    except ValidationError as exc:
        reason = "; ".join(f"params.{line}" for line in validation_message(exc).split("; "))
        raise InputError(error_where(str(path), lines, exc, under=("params",)),
                         f"{reason} (action {playbook.action})") from None
    unknown = [s for s in playbook.verify.signals if s not in ALL_SIGNALS]
    if unknown:
        raise InputError(lines.at(str(path), ("verify", "signals")),
                         f"verify.signals: unknown signal(s) {', '.join(unknown)}; known: {', '.join(ALL_SIGNALS)}")
    unknown = [s for s in (playbook.restore.below if playbook.restore else {}) if s not in ALL_SIGNALS]
    if unknown:
        raise InputError(lines.at(str(path), ("restore", "below")),
                         f"restore.below: unknown signal(s) {', '.join(unknown)}; known: {', '.join(ALL_SIGNALS)}")
    return playbook

