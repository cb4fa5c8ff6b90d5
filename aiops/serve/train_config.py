"""The ``aiops train --config FILE`` schema: which data, which workloads, how to split, tune and promote.

```yaml
name: shop                        # model name in the registry (models/<name>/)
models_dir: ../models             # default: the stock models/ folder; relative paths resolve against this file
source:                           # exactly one of:
  cases: [cases/monday, cases/tuesday]     # case folders (disjoint in time), or
  prometheus: {url: http://prometheus:9090, namespace: shop, since: 6h}
workloads: []                     # only these workloads (default: every workload with data)
incidents:                        # labelled incidents (optional; a case's truth.json onset adds one too)
  - {workload: cart, start: 1700003600, end: 1700004200}
split: {validation: 0.2, test: 0.2}        # the last 20% is held back for the report, the 20% before it tunes
detector: {window: 4, n_neighbors: 20, contamination: 0.01}   # the defaults (and the first trial)
tuning: {enabled: true, window: [2, 4, 8], n_neighbors: [5, 10, 20, 40], contamination: [0.005, 0.01, 0.05],
         max_trials: 36, patience: 8, min_delta: 0.001, seed: 0, shift: 6.0, copies: 3}
promote: if-better                # always | if-better (than the current version on the test span) | never
min_gain: 0.0
```
Every problem is an ``InputError`` naming the file, the line of the top-level key and the dotted key.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from aiops.domain.errors import InputError
from aiops.settings import STOCK_ROOT, error_where, validation_message
from aiops.yamlfile import YamlLines, read_yaml_mapping

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


def parse_duration(value: object) -> float:
    """``90``, ``"90s"``, ``"30m"``, ``"6h"``, ``"1d"`` -> seconds (positive)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and value.strip():
        text = value.strip()
        try:
            seconds = float(text[:-1]) * _UNITS[text[-1]] if text[-1] in _UNITS else float(text)
        except ValueError:
            raise ValueError(f"{value!r} is not a duration like 30m, 6h or 90s") from None
    else:
        raise ValueError(f"{value!r} is not a duration like 30m, 6h or 90s")
    if seconds <= 0:
        raise ValueError("must be positive")
    return seconds


class PrometheusSource(_Section):
    """Train on the last ``since`` (ending at ``end``, default now) of one namespace."""

    url: str
    namespace: str = Field(min_length=1)
    since: float = 6 * 3600.0
    end: float | None = None
    timeout_seconds: float = Field(default=30.0, gt=0)

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value

    @field_validator("since", mode="before")
    @classmethod
    def _duration(cls, value: object) -> float:
        return parse_duration(value)


class SourceConfig(_Section):
    cases: list[Path] = Field(default_factory=list)
    prometheus: PrometheusSource | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> "SourceConfig":
        if bool(self.cases) == (self.prometheus is not None):
            raise ValueError("give exactly one of cases (a list of case folders) or prometheus")
        return self


class IncidentLabel(_Section):
    """A labelled incident: the workload misbehaved in ``[start, end]`` (unix seconds or ISO 8601)."""

    workload: str = Field(min_length=1)
    namespace: str | None = None
    start: float
    end: float

    @field_validator("start", "end", mode="before")
    @classmethod
    def _time(cls, value: object) -> float:
        if isinstance(value, datetime):
            return value.timestamp()
        if isinstance(value, str):
            try:
                return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
            except ValueError:
                raise ValueError(f"{value!r} is neither unix seconds nor an ISO 8601 time") from None
        return value  # type: ignore[return-value]

    @model_validator(mode="after")
    def _ordered(self) -> "IncidentLabel":
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class SplitConfig(_Section):
    """Fractions of the data's time span, from the end: ``test`` is held back for the report, ``validation``
    (just before it) scores the tuning trials; the rest is the training window."""

    validation: float = Field(default=0.2, gt=0, lt=1)
    test: float = Field(default=0.2, ge=0, lt=1)

    @model_validator(mode="after")
    def _room_to_train(self) -> "SplitConfig":
        if self.validation + self.test > 0.8:
            raise ValueError("validation + test must leave at least 20% of the data to train on")
        return self


class DetectorConfig(_Section):
    window: int = Field(default=4, ge=1, le=120)
    n_neighbors: int = Field(default=20, ge=1, le=1000)
    contamination: float = Field(default=0.01, gt=0, le=0.5)


class TuningConfig(_Section):
    enabled: bool = True
    window: list[int] = Field(default_factory=lambda: [2, 4, 8], min_length=1)
    n_neighbors: list[int] = Field(default_factory=lambda: [5, 10, 20, 40], min_length=1)
    contamination: list[float] = Field(default_factory=lambda: [0.005, 0.01, 0.05], min_length=1)
    max_trials: int = Field(default=36, ge=1)
    patience: int = Field(default=8, ge=1)
    min_delta: float = Field(default=0.001, ge=0)
    seed: int = 0
    shift: float = Field(default=6.0, gt=0)
    copies: int = Field(default=3, ge=1, le=20)

    @field_validator("window", "n_neighbors")
    @classmethod
    def _positive(cls, values: list[int]) -> list[int]:
        if any(v < 1 for v in values):
            raise ValueError("every value must be >= 1")
        return values

    @field_validator("contamination")
    @classmethod
    def _fraction(cls, values: list[float]) -> list[float]:
        if any(not 0 < v <= 0.5 for v in values):
            raise ValueError("every value must be in (0, 0.5]")
        return values


class TrainConfig(_Section):
    """The whole ``aiops train`` file (see the module docstring)."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
    models_dir: Path = STOCK_ROOT / "models"
    step_seconds: float = Field(default=15.0, gt=0)
    source: SourceConfig
    workloads: list[str] = Field(default_factory=list)
    incidents: list[IncidentLabel] = Field(default_factory=list)
    split: SplitConfig = Field(default_factory=SplitConfig)
    detector: DetectorConfig = Field(default_factory=DetectorConfig)
    tuning: TuningConfig = Field(default_factory=TuningConfig)
    promote: Literal["always", "if-better", "never"] = "if-better"
    min_gain: float = Field(default=0.0, ge=0, le=1)
    # Where the config came from (set by ``load_train_config``; errors about the data name it).
    origin: str = Field(default="train config", exclude=True)


def load_train_config(path: str | Path) -> TrainConfig:
    """Read and validate a train config; relative ``cases`` and ``models_dir`` resolve against its folder."""
    path = Path(path)
    raw, lines = read_yaml_mapping(path, "train config")
    config = parse_train_config(raw, str(path), lines)
    base = path.parent

    def fix(p: Path) -> Path:
        return p if p.is_absolute() else base / p

    source = config.source.model_copy(update={"cases": [fix(c) for c in config.source.cases]})
    models_dir = fix(config.models_dir) if "models_dir" in raw else config.models_dir
    return config.model_copy(update={"source": source, "models_dir": models_dir, "origin": str(path)})


def parse_train_config(raw: dict, where: str = "train config", lines: YamlLines | None = None) -> TrainConfig:
    """Validate an already-parsed mapping; the error names the file, the first bad key's line and every key."""
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as exc:
        raise InputError(error_where(where, lines, exc), validation_message(exc)) from None
