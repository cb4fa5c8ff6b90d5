"""The rule file format (``rules/*.yaml``) and ``RuleSet``, which loads and checks a folder of them.

A rule names a fault, the playbook that answers it, a confidence, and ``when``: criteria that must all hold.
Each criterion has exactly one kind key::

    - signal: memory            # plus one or more of: trend, above_baseline_z, below_baseline_z, ratio_to_baseline
      trend: rising
    - signal: inference_latency_p99   # absolute levels: the median of the last 3 points above/below a number
      above: 0.2
    - signal: process_memory    # up by more than 30 % (latest level over the lowest) within the last 10 minutes
      increase: {by: 0.3, within: 10m}
    - event: {reason: "OOMKill.*|BackOff", type: Warning, within: 15m}
    - log: {pattern: "(?i)error", min_count: 5, new: true, max_pod_fraction: 0.5}
    - alert: {alertname: HighErrorRate}          # label -> regex (full match)
    - rollout: {within: 30m}                     # a new ReplicaSet of this workload
    - callers: {signal: latency_p99, above_baseline_z: 3}   # some caller of this workload matches
    - callees: {signal: latency_p99, above_baseline_z: 3}   # some callee of this workload matches
    - any_of: [...]    all_of: [...]    none_of: [...]

A rule may declare ``params`` (name -> number) and use ``"$name"`` for any number in its criteria, so every
threshold is a parameter; ``RuleSet.load(path, params={rule: {name: value}})`` overrides them (unknown names are
refused).

Every problem is reported as ``InputError("rules/x.yaml:31: rules[2].when[0].signal", reason)``: file, line, key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Mapping, Sequence

import re._constants as _sre  # the standard library's regex parser, to inspect a pattern's structure
import re._parser as _sre_parse
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from aiops.domain import signals as sig
from aiops.domain.diagnosis import Fault
from aiops.domain.errors import InputError
from aiops.yamlfile import YamlLines, read_yaml_mapping

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_RATIO = re.compile(r"^\s*(>=|<=|>|<)\s*(\d+(?:\.\d+)?)\s*$")
KIND_KEYS = ("signal", "event", "log", "alert", "rollout", "callers", "callees", "any_of", "all_of", "none_of")
SIGNAL_OPTIONS = ("trend", "above_baseline_z", "below_baseline_z", "ratio_to_baseline", "above", "below", "increase")
_PARAM_REF = re.compile(r"^\$([a-z_][a-z0-9_]*)$")


def parse_duration(value: Any) -> float:
    """``90``, ``"90s"``, ``"15m"``, ``"1h"`` -> seconds."""
    if isinstance(value, bool):
        raise ValueError("must be a duration like 90s, 15m or 1h")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        m = _DURATION.match(str(value))
        if not m:
            raise ValueError(f"bad duration {value!r}; use e.g. 90s, 15m or 1h")
        seconds = float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
    if seconds <= 0:
        raise ValueError("duration must be positive")
    return seconds


def parse_ratio(value: str) -> tuple[str, float]:
    """``">1.5"`` -> (``">"``, 1.5)."""
    m = _RATIO.match(value)
    if not m:
        raise ValueError(f"bad ratio {value!r}; use e.g. '>1.5' or '<0.5'")
    return m.group(1), float(m.group(2))


_REPEATS = {_sre.MAX_REPEAT, _sre.MIN_REPEAT}


def _risky(items: Any, inside_repeat: bool) -> bool:
    """True if a repeated part itself repeats or alternates: ``(a+)+``, ``(a|aa)*`` backtrack exponentially."""
    for op, av in items:
        if op in _REPEATS:
            repeats = av[1] > 1
            if inside_repeat and repeats:
                return True
            if _risky(av[2], inside_repeat or repeats):
                return True
        elif op is _sre.BRANCH:
            if inside_repeat:
                return True
            if any(_risky(branch, inside_repeat) for branch in av[1]):
                return True
        elif op is _sre.SUBPATTERN:
            if _risky(av[-1], inside_repeat):
                return True
    return False


def _check_regex(value: str | None) -> str | None:
    """Compile once to check the syntax, and refuse patterns that can backtrack catastrophically.

    Log lines are cut to 2 KB, but a nested repetition is exponential even on 30 characters, so such patterns are
    refused when the rule file is read. Possessive repeats and atomic groups are not checked (they are safe).
    """
    if value is not None:
        try:
            parsed = _sre_parse.parse(value)
        except re.error as exc:
            raise ValueError(f"bad regex {value!r}: {exc}") from None
        if _risky(parsed, False):
            raise ValueError(f"bad regex {value!r}: a repeated group that itself repeats or alternates may "
                             "backtrack catastrophically; rewrite it without the nesting")
    return value


Duration = Annotated[float, BeforeValidator(parse_duration)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EventSpec(_Strict):
    """Kubernetes events of the workload (or its pods/ReplicaSets) in the last ``within`` of the window."""

    reason: str | None = None      # regex, full match
    message: str | None = None     # regex, searched
    type: Literal["Normal", "Warning"] | None = None
    within: Duration = 900.0
    min_count: int = Field(default=1, ge=1)

    @field_validator("reason", "message")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        return _check_regex(value)


class LogSpec(_Strict):
    """Log lines of the workload matching ``pattern`` (searched); ``new`` = template unseen in the baseline."""

    pattern: str
    min_count: int = Field(default=1, ge=1)
    new: bool = False
    within: Duration | None = None
    # Errors confined to some pods (one ReplicaSet or zone): matching pods / pods logging, at most this.
    max_pod_fraction: float | None = Field(default=None, gt=0, le=1)

    @field_validator("pattern")
    @classmethod
    def _regex(cls, value: str) -> str:
        return _check_regex(value)


class RolloutSpec(_Strict):
    """The workload rolled onto a new ReplicaSet in the last ``within`` of the window."""

    within: Duration = 1800.0


class IncreaseSpec(_Strict):
    """The latest level is more than ``by`` (0.3 = 30 %) above the lowest level of the last ``within``."""

    by: float = Field(gt=0)
    within: Duration = 600.0


class Criterion(_Strict):
    """One condition; exactly one kind key is set (see the module docstring)."""

    signal: str | None = None
    trend: Literal["rising", "falling"] | None = None
    above_baseline_z: float | None = Field(default=None, gt=0)
    below_baseline_z: float | None = Field(default=None, gt=0)
    ratio_to_baseline: str | None = None
    above: float | None = None
    below: float | None = None
    increase: IncreaseSpec | None = None
    event: EventSpec | None = None
    log: LogSpec | None = None
    alert: dict[str, str] | None = None
    rollout: RolloutSpec | None = None
    callers: Criterion | None = None
    callees: Criterion | None = None
    any_of: list[Criterion] | None = Field(default=None, min_length=1)
    all_of: list[Criterion] | None = Field(default=None, min_length=1)
    none_of: list[Criterion] | None = Field(default=None, min_length=1)

    @field_validator("signal")
    @classmethod
    def _known_signal(cls, value: str | None) -> str | None:
        if value is not None and value not in sig.ALL_SIGNALS:
            raise ValueError(f"unknown signal {value!r}; choose from {', '.join(sig.ALL_SIGNALS)}")
        return value

    @field_validator("ratio_to_baseline", mode="before")
    @classmethod
    def _ratio(cls, value: Any) -> Any:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = f">={value}"
        if value is not None:
            parse_ratio(str(value))
        return value

    @field_validator("alert")
    @classmethod
    def _matchers(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for pattern in (value or {}).values():
            _check_regex(pattern)
        if value is not None and not value:
            raise ValueError("needs at least one label matcher, e.g. {alertname: HighErrorRate}")
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> "Criterion":
        kinds = [k for k in KIND_KEYS if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(f"needs exactly one of {', '.join(KIND_KEYS)}; got {', '.join(kinds) or 'none'}")
        options = [o for o in SIGNAL_OPTIONS if getattr(self, o) is not None]
        if self.signal is None and options:
            raise ValueError(f"{', '.join(options)} only go with 'signal'")
        if self.signal is not None and not options:
            raise ValueError(f"signal needs a condition: one or more of {', '.join(SIGNAL_OPTIONS)}")
        for key in ("callers", "callees"):
            inner = getattr(self, key)
            if inner is not None and inner.signal is None:
                raise ValueError(f"{key} takes a signal criterion, e.g. {{signal: latency_p99, above_baseline_z: 3}}")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in KIND_KEYS if getattr(self, k) is not None)


class Rule(_Strict):
    """If every ``when`` criterion holds for a workload, it suffers ``fault``, answered by ``playbook``."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    description: str = ""
    fault: Fault
    playbook: str = Field(pattern=r"^[a-z][a-z0-9-]{0,62}$")
    confidence: float = Field(ge=0, le=1)
    when: list[Criterion] = Field(min_length=1)
    # The thresholds named in ``when`` as ``"$name"`` (already substituted when the file is read).
    params: dict[str, float] = Field(default_factory=dict)

    @field_validator("fault", mode="before")
    @classmethod
    def _known_fault(cls, value: Any) -> Any:
        if isinstance(value, str) and value not in {f.value for f in Fault}:
            raise ValueError(f"unknown fault {value!r}; choose from {', '.join(f.value for f in Fault)}")
        return value


class RuleFile(_Strict):
    """One ``rules/*.yaml`` file."""

    rules: list[Rule] = Field(default_factory=list)


def _where(loc: Sequence[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _at(file: Path, lines: YamlLines, loc: Sequence[Any]) -> str:
    """``rules/x.yaml:12: rules[0].when[1]``: the file, the line ``loc`` is written on, and ``loc``."""
    return f"{lines.at(str(file), loc)}: {_where(loc)}"


def _reason(err: dict) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown key"
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ")


def _dotted(*loc: str) -> str:
    return ".".join(loc)


@dataclass(frozen=True, slots=True)
class RuleOrigin:
    """Where a rule is defined: its file, its place in the file's ``rules`` and the lines of the file."""

    file: Path
    index: int
    lines: YamlLines

    def at(self, key: str | None = None) -> str:
        """``rules/x.yaml:14: rules[1]`` (or ``...:16: rules[1].playbook`` for a ``key`` of the rule)."""
        return _at(self.file, self.lines, ("rules", self.index) + ((key,) if key else ()))

    def __str__(self) -> str:
        return self.at()


@dataclass(frozen=True, slots=True)
class RuleSet:
    """The loaded rules, in file-name order, and where each one was defined (``rules/x.yaml:3: rules[0]``)."""

    rules: tuple[Rule, ...] = ()
    origins: dict[str, RuleOrigin] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path, params: Mapping[str, Mapping[str, float]] | None = None,
             where_params: Callable[..., str] = _dotted) -> "RuleSet":
        """Every ``*.yaml``/``*.yml`` file of a folder (or one file). Raises ``InputError`` naming file, line and key.

        ``params`` overrides rule parameters by rule name, then parameter name; a problem with an override is named
        by ``where_params("rule_params", rule, name)`` (where the caller took them from: the agent's config).
        """
        path = Path(path)
        if path.is_file():
            files = [path]
        elif path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
        else:
            raise InputError(str(path), "rules folder not found")
        rules: list[Rule] = []
        origins: dict[str, RuleOrigin] = {}
        overrides = {k: dict(v) for k, v in (params or {}).items()}
        for file in files:
            parsed, lines = cls._read(file, overrides, where_params)
            for i, rule in enumerate(parsed.rules):
                here = RuleOrigin(file, i, lines)
                if rule.name in origins:
                    raise InputError(here.at("name"),
                                     f"duplicate rule name {rule.name!r} (first in {origins[rule.name]})")
                origins[rule.name] = here
                rules.append(rule)
        unused = sorted(set(overrides) - set(origins))
        if unused:
            raise InputError(where_params("rule_params", unused[0]),
                             f"no rule named {', '.join(unused)} in {path}")
        return cls(tuple(rules), origins)

    @staticmethod
    def _read(file: Path, overrides: Mapping[str, Mapping[str, float]],
              where_params: Callable[..., str]) -> tuple[RuleFile, YamlLines]:
        raw, lines = read_yaml_mapping(file, "rule file (a mapping with a 'rules' list)")
        raw = substitute_params(raw, overrides, file, lines, where_params)
        try:
            return RuleFile.model_validate(raw), lines
        except ValidationError as exc:
            errors = exc.errors()
            first = errors[0]
            more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
            raise InputError(_at(file, lines, first["loc"]), _reason(first) + more) from None

    def validate(self, playbook_names: Sequence[str]) -> list[str]:
        """Problems that need the playbooks to see: a rule naming a playbook that is not loaded."""
        known = set(playbook_names)
        return [f"{self.origins[r.name].at('playbook') if r.name in self.origins else r.name}: unknown playbook "
                f"{r.playbook!r}; choose from {', '.join(sorted(known)) or '(none loaded)'}"
                for r in self.rules if r.playbook not in known]


def substitute_params(raw: Any, overrides: Mapping[str, Mapping[str, float]], file: Path,
                      lines: YamlLines | None = None, where_params: Callable[..., str] = _dotted) -> Any:
    """The rule file with every ``"$name"`` in a rule's ``when`` replaced by that rule's parameter value.

    A rule's ``params`` give the defaults; ``overrides[rule name]`` replaces them (only names the rule declares).
    """
    if not isinstance(raw, dict) or not isinstance(raw.get("rules"), list):
        return raw
    lines = lines if lines is not None else YamlLines()
    rules = []
    for i, rule in enumerate(raw["rules"]):
        if not isinstance(rule, dict):
            rules.append(rule)
            continue
        declared = rule.get("params") or {}
        if not isinstance(declared, dict) or not all(_is_number(v) for v in declared.values()):
            raise InputError(_at(file, lines, ("rules", i, "params")), "must map parameter names to numbers")
        values = dict(declared)
        name = str(rule.get("name"))
        for param, value in (overrides.get(name, {}) or {}).items():
            if param not in declared:
                raise InputError(where_params("rule_params", name, param),
                                 f"rule {name!r} ({_at(file, lines, ('rules', i))}) has no parameter {param!r}; "
                                 f"declared: {', '.join(sorted(declared)) or 'none'}")
            if not _is_number(value):
                raise InputError(where_params("rule_params", name, param), f"must be a number, got {value!r}")
            values[param] = value
        rules.append({**rule, "params": values,
                      "when": _resolve(rule.get("when"), values, file, lines, ("rules", i, "when"))})
    return {**raw, "rules": rules}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _resolve(node: Any, values: Mapping[str, float], file: Path, lines: YamlLines, loc: tuple) -> Any:
    if isinstance(node, str) and (m := _PARAM_REF.match(node)):
        if m.group(1) not in values:
            raise InputError(_at(file, lines, loc), f"unknown parameter {node!r}; declare it under the rule's params")
        return values[m.group(1)]
    if isinstance(node, dict):
        return {k: _resolve(v, values, file, lines, loc + (k,)) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve(v, values, file, lines, loc + (i,)) for i, v in enumerate(node)]
    return node
