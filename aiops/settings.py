"""The agent's configuration: the one place that reads the config file.

Every other module receives these typed objects; none reads files or the environment for configuration itself.
A bad file is an ``InputError`` naming the file, the key and the reason (the CLI turns it into exit code 2).
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Annotated, Literal, Optional

from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator,
                      model_validator)

from aiops.domain.addresses import is_loopback, url_key
from aiops.domain.diagnosis import Fault
from aiops.domain.errors import InputError
from aiops.domain.plans import Mode
from aiops.domain.signals import ALL_SIGNALS
from aiops.yamlfile import YamlLines, read_yaml_mapping

# The stock playbooks, rules and models folders that ship beside the package (repo root in a checkout).
STOCK_ROOT = Path(__file__).resolve().parent.parent


def _http_url(value: str | None) -> str | None:
    if value is not None and not value.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return value


# An optional http(s) URL (Prometheus, Alertmanager, an OpenAI-compatible endpoint).
HttpUrl = Annotated[Optional[str], AfterValidator(_http_url)]
# A DNS-1123 label: a namespace or Service name.
_DNS_LABEL = re.compile(r"^(?=.{1,63}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WebhookSettings(_Section):
    """The HTTP intake: where it listens, the bearer token Alertmanager (and the plans API) must present, and which
    other replicas a follower may forward webhooks to.

    ``peer_service`` names the agent's own Service (in ``leader_election.namespace``): a follower forwards (with the
    bearer token) only to a leader whose advertised URL is a pod address among that Service's endpoints.
    ``peer_urls`` lists peers' base URLs explicitly instead (or as well). With neither, a follower never forwards.
    ``alert_idle_seconds``: a firing alert not delivered again for this long is dropped from its incident (its
    ``resolved`` notification was lost), so a later firing is new work; keep it above Alertmanager's
    ``repeat_interval`` (4 h by default), which re-sends every alert still firing.
    """

    listen: str = "0.0.0.0:8080"
    token_file: Path | None = None
    max_body_bytes: int = Field(default=1_048_576, gt=0)
    peer_service: str | None = None
    peer_urls: tuple[str, ...] = ()
    alert_idle_seconds: float = Field(default=18_000.0, gt=0)

    @field_validator("peer_service")
    @classmethod
    def _service_name(cls, value: str | None) -> str | None:
        if value is not None and not _DNS_LABEL.match(value):
            raise ValueError("must be a Service name (lowercase DNS label: a-z, 0-9, '-', at most 63)")
        return value

    @field_validator("peer_urls")
    @classmethod
    def _peer_urls(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for url in value:
            if url_key(url) is None:
                raise ValueError(f"{url!r} is not a base URL like http://10.0.0.5:8080 (no path, no user info)")
        return value

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError("must be HOST:PORT, e.g. 0.0.0.0:8080")
        return value

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]") or "0.0.0.0"

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class ApprovalSettings(_Section):
    """Who may approve plans over HTTP (``POST /api/v1/plans/ID/approve``), and under which name.

    ``token_file`` is a YAML file giving each approver their own bearer token, ``name: token`` per line (a
    Kubernetes Secret key). The journal records the name the presented token belongs to, never a name the caller
    sends. It must not contain the webhook's token: Alertmanager's credential cannot approve. Unset, approvals over
    HTTP are refused (403); ``aiops approve`` (which writes the journal directly) records the OS user.
    """

    token_file: Path | None = None


class PrometheusSettings(_Section):
    url: HttpUrl = None
    timeout_seconds: float = Field(default=10.0, gt=0)


class KubernetesSettings(_Section):
    kubeconfig: Path | None = None
    context: str | None = None
    in_cluster: bool = False
    # Direct API access (the simulator, or a proxy); takes precedence over kubeconfig when set.
    host: str | None = None
    token_file: Path | None = None
    verify_ssl: bool = True
    # The scope allow-list: the agent never reads or changes objects outside these namespaces.
    namespaces: tuple[str, ...] = ()
    # Every API call gives up after this long (connecting plus waiting for the answer): a hung apiserver cannot
    # block the agent, and a write let through by the leader fence lands within this long or not at all. With
    # leader election on it must be shorter than lease_duration_seconds - renew_deadline_seconds (see Settings).
    request_timeout_seconds: float = Field(default=4.0, gt=0)

    @model_validator(mode="after")
    def _one_source(self) -> "KubernetesSettings":
        if self.in_cluster and (self.kubeconfig or self.host):
            raise ValueError("in_cluster cannot be combined with kubeconfig or host")
        return self


class AlertmanagerSettings(_Section):
    """Where to silence the alerts of an incident while its remediation runs (off when ``url`` is unset)."""

    url: HttpUrl = None
    timeout_seconds: float = Field(default=5.0, gt=0)
    # A silence also ends by itself after this long, so a crashed agent never mutes an alert for long.
    silence_max_seconds: float = Field(default=1800.0, gt=0)


class StreamingLoopSettings(_Section):
    """The streaming detector (the one benchmarked on NAB) on the loop's series, kept between cycles.

    One detector per workload and signal in ``signals``; a score at or above ``threshold`` (0.5 = as unusual as
    the series' own record, 0.55 = the record beaten by 22 %) is an anomaly, which opens an incident on its own
    from ``open_threshold`` (0.8 = four times the record) and otherwise adds evidence to a workload another detector
    or an alert flagged. The first ``settle`` samples of a series only teach its detector. ``history`` samples are
    remembered per series (500 at a 15 s step: about 2 hours; ~0.17 MB of memory each, 0.3 MB at 1,000); at most
    ``max_series`` are watched, later ones wait for room (``aiops_streaming_skipped``).
    """

    enabled: bool = True
    signals: tuple[str, ...] = ("latency_p99", "error_ratio")
    threshold: float = Field(default=0.55, gt=0, lt=1)
    open_threshold: float = Field(default=0.8, gt=0, le=1)
    settle: int = Field(default=300, ge=0)
    history: int = Field(default=500, ge=200)
    max_series: int = Field(default=2000, ge=1)

    @field_validator("signals")
    @classmethod
    def _known_signals(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(value) - set(ALL_SIGNALS))
        if unknown:
            raise ValueError(f"unknown signal(s) {unknown}; known: {list(ALL_SIGNALS)}")
        return value

    @model_validator(mode="after")
    def _thresholds(self) -> "StreamingLoopSettings":
        if self.open_threshold < self.threshold:
            raise ValueError(f"open_threshold ({self.open_threshold}) must be >= threshold ({self.threshold})")
        return self


# The share of ``loop.baseline_seconds`` a namespace needs by default before the agent acts on its statistics.
# Measured on the simulator (docs/benchmarks.md, "Cold start"): with 10 minutes half the healthy workloads are
# flagged and no diagnosis is right; from 15 the diagnoses are right; from 30 false alarms are as rare as with 60.
DEFAULT_BASELINE_SHARE = 0.5


class LoopSettings(_Section):
    """The scheduled collect/detect loop.

    Each run reads ``baseline_seconds`` of history before the last ``recent_seconds``. A namespace with less history
    than ``min_baseline_seconds`` before that recent window (a new cluster, a new Prometheus) is *learning*: its
    detector findings open no incident, and incidents its alerts open are diagnosed but not acted on until it has
    learned (``aiops_learning``, ``/readyz``). Unset, it is half of ``baseline_seconds``; 0 turns learning off, and
    so does an agent without ``prometheus.url`` (it has no statistics to learn).
    """

    interval_seconds: float = Field(default=60.0, gt=0)
    # How often approved plans are picked up (an approval through the HTTP API is acted on at once).
    approval_poll_seconds: float = Field(default=10.0, gt=0)
    baseline_seconds: float = Field(default=3600.0, gt=0)
    recent_seconds: float = Field(default=600.0, gt=0)
    step_seconds: float = Field(default=15.0, gt=0)
    min_baseline_seconds: float | None = Field(default=None, ge=0)
    streaming: StreamingLoopSettings = Field(default_factory=StreamingLoopSettings)

    @model_validator(mode="after")
    def _learnable(self) -> "LoopSettings":
        if self.min_baseline_seconds is not None and self.min_baseline_seconds > self.baseline_seconds:
            raise ValueError(f"min_baseline_seconds ({self.min_baseline_seconds:g}) must not exceed baseline_seconds "
                             f"({self.baseline_seconds:g}): the window never holds that much, so no namespace "
                             "would ever finish learning")
        return self

    @property
    def required_baseline_seconds(self) -> float:
        """How much history before the recent window a namespace needs before the agent acts on its statistics."""
        if self.min_baseline_seconds is None:
            return self.baseline_seconds * DEFAULT_BASELINE_SHARE
        return self.min_baseline_seconds


class PolicySettings(_Section):
    """Guards the planner applies to every plan."""

    cooldown_seconds: float = Field(default=900.0, ge=0)
    min_confidence: float = Field(default=0.5, ge=0, le=1)
    max_replicas: int = Field(default=20, ge=1)
    # Never scale a workload below this many replicas (the floor; max_replicas is the ceiling).
    min_replicas: int = Field(default=1, ge=0)
    # Only workloads carrying all these labels are in scope (empty: every workload of the allowed namespaces).
    label_selector: dict[str, str] = Field(default_factory=dict)
    # Global limits: action starts per hour, executions at once, and the share of a namespace's workloads
    # acted on per hour (at least one workload is always allowed).
    max_actions_per_hour: int = Field(default=20, ge=0)
    max_concurrent: int = Field(default=3, ge=1)
    blast_radius_percent: float = Field(default=25.0, gt=0, le=100)
    # The kill switch: true stops all acting. The annotation aiops.io/kill-switch: "true" on a namespace or a
    # workload does the same for what it is on, without touching the agent's config.
    kill_switch: bool = False
    # A plan held for a person's approval is not acted on once this long has passed since it was held: the
    # request ends blocked (approval_expired) and the next incident plans afresh.
    approval_ttl_seconds: float = Field(default=3600.0, gt=0)
    # A second playbook tried once when the first left the fault in place (fault -> playbook name; the playbook
    # must be in playbooks_dir, checked when the playbooks load).
    second_playbook: dict[str, str] = Field(default_factory=dict)

    @field_validator("second_playbook")
    @classmethod
    def _known_faults(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - {f.value for f in Fault})
        if unknown:
            raise ValueError(f"unknown fault(s) {unknown}; known: {[f.value for f in Fault]}")
        return value


class GlmSettings(_Section):
    """The optional GLM analyzer: a local ``transformers`` checkpoint or an OpenAI-compatible endpoint."""

    backend: Literal["none", "transformers", "openai"] = "none"
    # transformers: a local folder holding a GLM-4 / GLM-Edge checkpoint (never downloaded).
    model_path: Path | None = None
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    # openai: the server's base URL (``/v1/chat/completions`` is appended) and the model name it serves.
    endpoint: HttpUrl = None
    model: str = "glm-4"
    api_key_file: Path | None = None
    # openai: the whole request (connect, send, every byte of the answer) must be done within this deadline, and an
    # answer larger than max_response_bytes is refused (a chat completion of a few hundred tokens is a few KiB).
    timeout_seconds: float = Field(default=30.0, gt=0)
    max_response_bytes: int = Field(default=1_048_576, ge=1024)
    max_prompt_tokens: int = Field(default=2048, ge=64)

    @model_validator(mode="after")
    def _backend_needs(self) -> "GlmSettings":
        if self.backend == "transformers" and self.model_path is None:
            raise ValueError("backend transformers needs model_path")
        if self.backend == "openai" and not self.endpoint:
            raise ValueError("backend openai needs endpoint")
        return self


_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def _default_identity() -> str:
    # Unique per process even when two agents share a host (or a pod's hostname is reused after a restart).
    return f"{socket.gethostname()}-{os.getpid()}"


class LeaderElectionSettings(_Section):
    """Several agents, one acting: only the holder of a ``coordination.k8s.io/v1`` Lease plans and acts.

    A follower that receives a webhook forwards it to the leader at the URL the leader advertises in the Lease
    (``advertise_url``: this agent's own base URL as the other replicas reach it, e.g. ``http://<pod IP>:8080``;
    ``aiops serve --advertise-url`` sets it per replica). When no leader is known or it cannot be reached, the
    follower tracks the incident itself and handles it once it leads. The timings work like client-go's: a follower
    takes an unrenewed Lease after ``lease_duration_seconds``; a leader that could not renew for
    ``renew_deadline_seconds`` stops acting; everyone retries every ``retry_period_seconds``.
    """

    enabled: bool = False
    lease_name: str = "aiops-leader"
    namespace: str = "default"
    identity: str = Field(default_factory=_default_identity, min_length=1, max_length=253)
    lease_duration_seconds: int = Field(default=15, ge=1)
    renew_deadline_seconds: float = Field(default=10.0, gt=0)
    retry_period_seconds: float = Field(default=2.0, gt=0)
    advertise_url: HttpUrl = None

    @field_validator("lease_name", "namespace")
    @classmethod
    def _dns_name(cls, value: str) -> str:
        if len(value) > 253 or not _DNS_SUBDOMAIN.match(value):
            raise ValueError("must be a lowercase DNS name (a-z, 0-9, '-', '.')")
        return value

    @model_validator(mode="after")
    def _timings(self) -> "LeaderElectionSettings":
        if not self.lease_duration_seconds > self.renew_deadline_seconds > self.retry_period_seconds:
            raise ValueError("need lease_duration_seconds > renew_deadline_seconds > retry_period_seconds")
        return self
class LifecycleSettings(_Section):
    """The detectors' model lifecycle: the scheduled drift check of each namespace's model in ``models_dir``.

    A model whose drift score (largest over its workloads, in [0, 1]) reaches ``drift_threshold`` opens a
    ``detector_drift`` incident answered by the ``retrain-detector`` playbook. ``models`` maps a namespace to its
    model's name (default: the namespace's own name); namespaces without a saved model are skipped.
    """

    drift_check: bool = True
    drift_interval_seconds: float = Field(default=3600.0, gt=0)
    drift_window_seconds: float = Field(default=3600.0, gt=0)
    drift_threshold: float = Field(default=0.3, gt=0, le=1)
    models: dict[str, str] = Field(default_factory=dict)
    # window: the loop fits each workload on its baseline window every cycle (the default); registry: it scores
    # with the namespace's current model from models_dir when there is one (unknown workloads still use the window).
    detect_with: Literal["window", "registry"] = "window"

    def model_name(self, namespace: str) -> str:
        """The model that watches ``namespace``."""
        return self.models.get(namespace, namespace)


class JournalSettings(_Section):
    """Where the execution journal lives.

    ``sqlite`` (the default): a file in ``state_dir``, for one agent. ``kubernetes``: ConfigMaps in ``namespace``
    (default: ``leader_election.namespace``), shared by every replica, so a new leader resumes the plans the old
    one left half done. Plans that ended more than ``retention_days`` ago are deleted (0 keeps them forever).
    """

    backend: Literal["sqlite", "kubernetes"] = "sqlite"
    namespace: str | None = None
    retention_days: float = Field(default=30.0, ge=0)
    # kubernetes: one LIST of the journal answers every question asked within this many seconds (a decision asks
    # four); this agent's own writes show at once, another replica's after at most this long. With leader
    # election on it must be shorter than lease_duration_seconds - renew_deadline_seconds (see Settings). 0: no reuse.
    read_cache_seconds: float = Field(default=1.0, ge=0)
    # kubernetes: a plan's ConfigMap growing past this many bytes has its older restore checks folded into one
    # summary record (the API refuses a ConfigMap over 1 MiB).
    compact_bytes: int = Field(default=262_144, ge=16_384, le=786_432)

    @field_validator("namespace")
    @classmethod
    def _dns_name(cls, value: str | None) -> str | None:
        if value is not None and (len(value) > 63 or not _DNS_SUBDOMAIN.match(value)):
            raise ValueError("must be a lowercase DNS name (a-z, 0-9, '-', '.')")
        return value


class Settings(_Section):
    """The whole configuration file (YAML)."""

    mode: Mode = Mode.DRY_RUN
    webhook: WebhookSettings = Field(default_factory=WebhookSettings)
    approvals: ApprovalSettings = Field(default_factory=ApprovalSettings)
    prometheus: PrometheusSettings = Field(default_factory=PrometheusSettings)
    alertmanager: AlertmanagerSettings = Field(default_factory=AlertmanagerSettings)
    kubernetes: KubernetesSettings = Field(default_factory=KubernetesSettings)
    loop: LoopSettings = Field(default_factory=LoopSettings)
    policy: PolicySettings = Field(default_factory=PolicySettings)
    glm: GlmSettings = Field(default_factory=GlmSettings)
    playbooks_dir: Path = STOCK_ROOT / "playbooks"
    rules_dir: Path = STOCK_ROOT / "rules"
    models_dir: Path = STOCK_ROOT / "models"
    state_dir: Path = Path("var")
    log_format: Literal["json", "text"] = "json"
    leader_election: LeaderElectionSettings = Field(default_factory=LeaderElectionSettings)
    lifecycle: LifecycleSettings = Field(default_factory=LifecycleSettings)
    # Rule thresholds by rule name, then parameter name (``rules/*.yaml`` declare them under ``params``), e.g.
    # {model-overload: {latency_seconds: 0.3}}; a name the rule does not declare is refused when rules load.
    rule_params: dict[str, dict[str, float]] = Field(default_factory=dict)
    journal: JournalSettings = Field(default_factory=JournalSettings)
    # The file these settings came from and where each key is in it (set by ``load_settings``), for ``where``.
    _origin: str = PrivateAttr(default="config")
    _lines: YamlLines = PrivateAttr(default_factory=YamlLines)

    @model_validator(mode="after")
    def _fence_window(self) -> "Settings":
        # The old leader's last fenced write starts at most renew_deadline after its last renewal; a follower takes
        # the Lease lease_duration after it. That write must be over (request_timeout) and the journal records
        # before it must be visible to the new leader (read_cache) within the gap, or both could act at once.
        le = self.leader_election
        if not le.enabled:
            return self
        gap = le.lease_duration_seconds - le.renew_deadline_seconds
        bounded = [("kubernetes.request_timeout_seconds", self.kubernetes.request_timeout_seconds)]
        if self.journal.backend == "kubernetes":
            bounded.append(("journal.read_cache_seconds", self.journal.read_cache_seconds))
        for key, value in bounded:
            if not value < gap:
                raise ValueError(f"{key} ({value:g}) must be shorter than leader_election.lease_duration_seconds - "
                                 f"renew_deadline_seconds ({gap:g}): a leader's last write could otherwise land, or "
                                 "go unseen, after another replica took over")
        return self

    @property
    def journal_namespace(self) -> str:
        """The namespace of the kubernetes journal: ``journal.namespace``, else the leader election's."""
        return self.journal.namespace or self.leader_election.namespace

    def where(self, *loc: str) -> str:
        """Where a setting is written, for an error about it: ``config.yaml:61: policy.second_playbook.x``."""
        return f"{self._lines.at(self._origin, loc)}: {'.'.join(loc)}"

    def missing_paths(self) -> list[tuple[str, Path]]:
        """The files and folders this config names that do not exist, as (dotted key, path): ``aiops serve``
        refuses to start without any of them."""
        named = {"playbooks_dir": self.playbooks_dir, "rules_dir": self.rules_dir,
                 "webhook.token_file": self.webhook.token_file, "approvals.token_file": self.approvals.token_file,
                 "kubernetes.kubeconfig": self.kubernetes.kubeconfig,
                 "kubernetes.token_file": self.kubernetes.token_file,
                 "glm.model_path": self.glm.model_path, "glm.api_key_file": self.glm.api_key_file}
        return [(key, path) for key, path in named.items() if path is not None and not path.exists()]

    def refusal_to_serve(self) -> str | None:
        """Why ``aiops serve`` must not start with this config (None when it may): in ``mode: act``, a webhook
        reachable beyond this host without ``webhook.token_file`` would let anyone post an alert that changes the
        cluster."""
        if self.mode is Mode.ACT and self.webhook.token_file is None and not is_loopback(self.webhook.host):
            return (f"webhook.token_file: required in mode act when webhook.listen ({self.webhook.listen}) is not a "
                    "loopback address (without it anyone who reaches the webhook can post alerts that change the "
                    "cluster); set it, or listen on 127.0.0.1")
        return None

    def open_intake_warning(self) -> str | None:
        """A warning for every other config without ``webhook.token_file`` (None when a token is set)."""
        if self.webhook.token_file is not None:
            return None
        return (f"webhook.token_file is not set: anyone who reaches {self.webhook.listen} can post alerts and list "
                "plans without a token")


def load_settings(path: str | Path) -> Settings:
    """Read and validate a YAML config file. Relative paths in it resolve against the file's folder."""
    path = Path(path)
    raw, lines = read_yaml_mapping(path, "config file")
    settings = _resolve_paths(parse_settings(raw, where=str(path), lines=lines), path.parent)
    settings._origin, settings._lines = str(path), lines
    return settings


def with_advertise_url(settings: Settings, url: str, where: str = "--advertise-url") -> Settings:
    """``settings`` with ``leader_election.advertise_url`` set to ``url`` (a per-replica value the shared config
    file cannot hold, e.g. ``http://$(POD_IP):8080`` from the Deployment's arguments)."""
    section = {**settings.leader_election.model_dump(), "advertise_url": url}
    try:
        election = LeaderElectionSettings.model_validate(section)
    except ValidationError as exc:
        raise InputError(where, validation_message(exc)) from None
    return settings.model_copy(update={"leader_election": election})


def parse_settings(raw: dict, where: str = "config", lines: YamlLines | None = None) -> Settings:
    """Validate an already-parsed mapping; errors name the dotted key (and its line, given the file's ``lines``)."""
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        raise InputError(error_where(where, lines, exc), validation_message(exc)) from None


def error_where(origin: str, lines: YamlLines | None, exc: ValidationError, under: tuple = ()) -> str:
    """``origin:LINE``: the file and the line of the first problem in ``exc``, a model read from the part of the file
    at ``under`` (just ``origin`` when the line is unknown)."""
    first = exc.errors()[0]["loc"] if exc.errors() else ()
    return lines.at(origin, (*under, *first)) if lines is not None else origin


def validation_message(exc: ValidationError) -> str:
    """One line per problem: ``key.path: reason``, shared by every YAML-backed file we read."""
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"{key}: {msg}")
    return "; ".join(lines)


def _resolve_paths(settings: Settings, base: Path) -> Settings:
    def fix(p: Path | None) -> Path | None:
        return p if p is None or p.is_absolute() else (base / p)

    return settings.model_copy(update={
        "playbooks_dir": fix(settings.playbooks_dir),
        "rules_dir": fix(settings.rules_dir),
        "models_dir": fix(settings.models_dir),
        "state_dir": fix(settings.state_dir),
        "webhook": settings.webhook.model_copy(update={"token_file": fix(settings.webhook.token_file)}),
        "approvals": settings.approvals.model_copy(update={"token_file": fix(settings.approvals.token_file)}),
        "glm": settings.glm.model_copy(update={"model_path": fix(settings.glm.model_path),
                                               "api_key_file": fix(settings.glm.api_key_file)}),
        "kubernetes": settings.kubernetes.model_copy(update={
            "kubeconfig": fix(settings.kubernetes.kubeconfig), "token_file": fix(settings.kubernetes.token_file)}),
    })
