"""The stage of the fault-injection bench (``bench.faults``): a simulated cluster whose API server records every write
and can hang on one, agents built the way ``aiops serve`` builds them, and the switches that break them.

* ``World``: a ``SimRuntime`` (served through the real Kubernetes client) whose API server passes every write
  through ``ApiTap``: the tap records what each write changed on a Deployment (the bench's write log: which plan
  applied, undid, or changed something a second time) and can hang on the n-th write, either without doing it
  (``NEVER_LANDS``) or after doing it (``ANSWER_LOST``), longer than the agent's request timeout.
* ``World.agent``: a new ``Agent`` on ``aiops.serve.agent.build_parts`` (its gate, its journal guard, its runner),
  on the sim's clock and its SQLite journal file, verifying with ``ScriptedProbe`` (the outcome the row wants).
* ``FaultyJournal``: the SQLite journal that can crash the agent after its k-th record, or refuse writes with
  ENOSPC from the k-th on; ``CrashingKube``: the client that crashes the agent right after its n-th write landed.

A crash is ``Crash``, a ``BaseException`` nothing in the agent catches: the agent is abandoned mid-call, and a new
one (new ``build_parts``, same journal file, same cluster) takes over.
"""

from __future__ import annotations

import copy
import errno
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from aiops.clients.kube import KubeClient
from aiops.domain.plans import ActionPlan, Mode, plan_id
from aiops.domain.target import Target
from aiops.remediate.actions.base import PLAN_ANNOTATION, UNDONE_ANNOTATION
from aiops.remediate.playbooks import load_playbooks
from aiops.remediate.sqlite_journal import SqliteJournal
from aiops.remediate.verify import Verifier
from aiops.serve.agent import Agent, build_parts
from aiops.serve.scheduler import LoopScheduler
from aiops.settings import (STOCK_ROOT, KubernetesSettings, LoopSettings, PolicySettings, PrometheusSettings,
                            Settings, WebhookSettings)
from aiops.sim.apierrors import ApiError
from aiops.sim.runtime import SimRuntime

log = logging.getLogger(__name__)

NEVER_LANDS = "never_lands"    # the apiserver holds the write and drops it: the call times out, nothing changed
ANSWER_LOST = "answer_lost"    # the apiserver makes the change, then the answer never comes: the call times out
# Wall seconds: the agent's bound on every apiserver call, and how long a hung write holds (longer than the bound).
REQUEST_TIMEOUT = 0.5
HANG_SECONDS = 0.8
TOKEN = "faults-bench-token"
PLAYBOOKS = load_playbooks(STOCK_ROOT / "playbooks")
# The verify signals' levels before acting, and what the probe reads after it, by outcome.
BEFORE = {"latency_p99": 1.0, "error_ratio": 0.1}
READINGS = {"recovered": {"latency_p99": 0.2, "error_ratio": 0.01},
            "worse": {"latency_p99": 5.0, "error_ratio": 0.5}}


class Crash(BaseException):
    """The agent dying mid-call: not an ``Exception``, so nothing in the agent handles it."""


@dataclass
class Write:
    """One write request the simulated apiserver received, and what it changed on a Deployment."""

    verb: str
    kind: str
    namespace: str
    name: str
    landed: bool
    spec_before: Any = None
    spec_after: Any = None
    notes_before: dict = field(default_factory=dict)
    notes_after: dict = field(default_factory=dict)

    @property
    def changed_spec(self) -> bool:
        return self.landed and self.kind == "Deployment" and self.spec_before != self.spec_after

    def role(self, plan: str) -> str | None:
        """``apply`` (the write that put ``plan``'s change in place), ``undo`` (the one that took it back),
        ``again`` (any other spec change made under ``plan``'s annotation: a double action), or None."""
        if not self.changed_spec:
            return None
        if self.notes_after.get(UNDONE_ANNOTATION) == plan and self.notes_before.get(UNDONE_ANNOTATION) != plan:
            return "undo"
        if self.notes_after.get(PLAN_ANNOTATION) == plan:
            return "again" if self.notes_before.get(PLAN_ANNOTATION) == plan else "apply"
        return None


class ApiTap:
    """Stands in for the simulated cluster behind its API server: every write request passes here (recorded, and
    hung when armed); everything else goes straight to the cluster."""

    def __init__(self, cluster: Any) -> None:
        self._cluster = cluster
        self._lock = threading.Lock()
        self.writes: list[Write] = []
        self._hang_at: int | None = None
        self._hang_mode = NEVER_LANDS
        self._only: str | None = None
        self._seen = 0
        self.hung = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cluster, name)

    def hang(self, nth: int | None, mode: str = NEVER_LANDS, only: str | None = None) -> None:
        """Hang on the ``nth`` write from now on (1-based; None: no hang), counting only the ``only`` verb
        (``patch``, ``create``) when given."""
        with self._lock:
            self._hang_at, self._hang_mode, self._only, self._seen = nth, mode, only, 0

    def writes_by(self, plan: str, role: str) -> list[Write]:
        """The writes that played ``role`` (``apply``, ``undo``, ``again``) for ``plan``."""
        with self._lock:
            return [w for w in self.writes if w.role(plan) == role]

    # --- the write verbs the API server calls ---
    def patch(self, kind: str, namespace: str, name: str, body, patch_type: str = "merge") -> dict:
        return self._write("patch", kind, namespace, name,
                           lambda: self._cluster.patch(kind, namespace, name, body, patch_type))

    def patch_scale(self, namespace: str, name: str, body, patch_type: str = "merge") -> dict:
        return self._write("patch_scale", "Deployment", namespace, name,
                           lambda: self._cluster.patch_scale(namespace, name, body, patch_type))

    def create(self, kind: str, namespace: str, obj: dict) -> dict:
        name = str((obj.get("metadata") or {}).get("name", ""))
        return self._write("create", kind, namespace, name, lambda: self._cluster.create(kind, namespace, obj))

    def _write(self, verb: str, kind: str, namespace: str, name: str, call: Callable[[], dict]) -> dict:
        if kind in ("Lease", "ConfigMap"):
            return call()  # leader election and a ConfigMap journal: not the plans' writes
        with self._lock:
            counted = self._only is None or verb == self._only
            self._seen += counted
            hang = self._hang_mode if counted and self._seen == self._hang_at else None
        before = self._cluster.get(kind, namespace, name) if kind == "Deployment" else None
        entry = Write(verb, kind, namespace, name, landed=False)
        if hang == NEVER_LANDS:
            self._hold(entry)
            raise ApiError(504, "Timeout", "the request did not complete in time (injected hang)")
        try:
            result = call()
        except ApiError:
            self._record(entry)
            raise
        entry.landed = True
        if before is not None:
            after = self._cluster.get(kind, namespace, name) or {}
            entry.spec_before, entry.spec_after = copy.deepcopy(before.get("spec")), copy.deepcopy(after.get("spec"))
            entry.notes_before = dict((before.get("metadata") or {}).get("annotations") or {})
            entry.notes_after = dict((after.get("metadata") or {}).get("annotations") or {})
        if hang == ANSWER_LOST:
            self._hold(entry)
        else:
            self._record(entry)
        return result

    def _hold(self, entry: Write) -> None:
        self._record(entry)
        with self._lock:
            self.hung += 1
        time.sleep(HANG_SECONDS)  # the injected hang itself: the client gives up meanwhile

    def _record(self, entry: Write) -> None:
        with self._lock:
            self.writes.append(entry)


class FaultyJournal(SqliteJournal):
    """The agent's SQLite journal with two faults: ``crash_after`` (the agent dies right after its k-th record is
    committed) and ``full_from`` (the k-th record and every later one fail with ENOSPC until ``full_from`` is
    cleared; ``probe_writable`` says the same, as ``JournalGuard`` asks it)."""

    def __init__(self, path: Path, clock: Any) -> None:
        super().__init__(path, clock)
        self.crash_after: int | None = None
        self.full_from: int | None = None
        self.written = 0

    def record(self, plan_id: str, state: str, note: str, data: dict[str, Any]) -> None:
        if self.full_from is not None and self.written + 1 >= self.full_from:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path))
        super().record(plan_id, state, note, data)
        self.written += 1
        if self.crash_after is not None and self.written == self.crash_after:
            raise Crash(f"crashed after journal record {self.written} ({state})")

    def probe_writable(self) -> None:
        """What ``JournalGuard`` calls to learn whether a write would work now."""
        if self.full_from is not None:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path))


class CrashingKube:
    """The agent's Kubernetes client; with ``crash_after`` set, the agent dies right after its n-th write (a patch,
    an Event) landed, before it could journal anything about it."""

    def __init__(self, kube: KubeClient) -> None:
        self._kube = kube
        self.crash_after: int | None = None
        self.written = 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._kube, name)
        if not callable(attr) or not name.startswith(("patch_", "create_", "replace_", "delete_")):
            return attr

        def write(*args: Any, **kwargs: Any) -> Any:
            result = attr(*args, **kwargs)
            self.written += 1
            if self.crash_after is not None and self.written == self.crash_after:
                raise Crash(f"crashed right after write {self.written} ({name}) landed")
            return result
        return write


class ScriptedProbe:
    """Verify readings: what the signals read after the action (``READINGS[outcome]``)."""

    def __init__(self, outcome: str) -> None:
        self.values = READINGS[outcome]

    def read(self, namespace: str, workload: str, signals) -> dict[str, float]:
        return {s: v for s, v in self.values.items() if s in signals}


@dataclass
class AgentUnderTest:
    """One agent on the world: the ``Agent``, its journal (with the fault switches) and its client."""

    agent: Agent
    journal: FaultyJournal
    kube: CrashingKube
    serving: bool = False

    @property
    def runner(self):
        return self.agent.parts.pipeline.runner

    def start(self) -> None:
        """Start the agent's server, worker and pollers (rows that post alerts)."""
        self.agent.start()
        self.serving = True

    def stop(self) -> None:
        """Stop what ``start`` started (once)."""
        if self.serving:
            self.serving = False
            self.agent.stop()

    def close(self) -> None:
        """Let go of what this agent holds (a crashed one too: its threads are gone, its files are not)."""
        self.stop()
        self.agent.readiness.close()
        self.journal.close()
        self.kube.close()


def tap_server(server: Any) -> ApiTap:
    """Put an ``ApiTap`` between a simulated API server (``aiops.sim.kubeapi.KubeApiServer``) and its cluster."""
    tap = ApiTap(server.cluster)
    server.cluster = tap
    # A hung write answers a client that has gone: the broken pipe is expected, not worth a traceback.
    httpd = server._httpd  # noqa: SLF001
    original = httpd.handle_error

    def handle_error(request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            original(request, client_address)
    httpd.handle_error = handle_error
    return tap


class World:
    """One simulated cluster (``scenario``), its tapped API server, and a journal file in ``folder``."""

    def __init__(self, folder: Path, scenario: str = "memory_leak", seed: int = 0) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.sim = SimRuntime(scenario, seed=seed).start()
        self.tap = tap_server(self.sim._kube)  # noqa: SLF001 - the runtime keeps its API server private
        self.journal_path = folder / "journal.sqlite3"
        self.agents: list[AgentUnderTest] = []
        (folder / "token").write_text(TOKEN + "\n")

    @property
    def namespace(self) -> str:
        return self.sim.namespace

    def settings(self, prometheus: bool = False, **policy: Any) -> Settings:
        """The agent's config: act mode, the sim's namespace in scope, the bench's request timeout."""
        return Settings(
            mode=Mode.ACT,
            webhook=WebhookSettings(listen="127.0.0.1:0", token_file=self.folder / "token"),
            prometheus=PrometheusSettings(url=self.sim.prom_url if prometheus else None),
            kubernetes=KubernetesSettings(host=self.sim.kube_url, namespaces=(self.namespace,),
                                          request_timeout_seconds=REQUEST_TIMEOUT),
            loop=LoopSettings(interval_seconds=3600, baseline_seconds=3600, recent_seconds=600,
                              step_seconds=self.sim.step),
            policy=PolicySettings(**policy),
            state_dir=self.folder / "state")

    def agent(self, outcome: str = "recovered", *, prometheus: bool = False, pace: float = 0.0) -> AgentUnderTest:
        """A new agent on this world (the journal file is shared with every earlier one); it verifies with
        ``ScriptedProbe(outcome)`` unless ``prometheus`` (then it diagnoses and verifies on the sim's metrics).
        ``pace``: wall seconds each of its waits also takes (so others can act while its plan verifies)."""
        settings = self.settings(prometheus)

        def sleep(seconds: float) -> None:
            self.sim.advance(seconds)
            if pace:
                time.sleep(pace)  # the wait itself, in wall time too
        kube = CrashingKube(KubeClient.for_host(self.sim.kube_url, request_timeout=REQUEST_TIMEOUT))
        journal = FaultyJournal(self.journal_path, self.sim.clock)
        parts = build_parts(settings, kube=kube, clock=self.sim.clock, sleep=sleep,  # type: ignore[arg-type]
                            topology=self.sim.scenario.topology, journal=journal)
        if not prometheus:
            parts.pipeline.runner.verifier = Verifier(ScriptedProbe(outcome), sleep, self.sim.clock)
        agent = Agent(parts)
        # The scheduled loop is driven by hand (or not at all): it must not race the faults for the workload.
        agent.scheduler = LoopScheduler(agent.run_cycle, settings.loop.interval_seconds, agent.metrics,
                                        run_immediately=False)
        under_test = AgentUnderTest(agent, journal, kube)
        self.agents.append(under_test)
        return under_test

    def plan(self, incident: str, playbook: str = "scale-up", workload: str = "cart") -> ActionPlan:
        """The plan the planner would make for ``incident`` with ``playbook`` on ``workload``."""
        target = Target.deployment(self.namespace, workload)
        book = PLAYBOOKS[playbook]
        return ActionPlan(plan_id(incident, playbook, target), incident, playbook, book.action, target,
                          dict(book.params), Mode.ACT, "fault-injection bench")

    def spec(self, workload: str = "cart") -> Any:
        return (self.sim.cluster.get("Deployment", self.namespace, workload) or {}).get("spec")

    def close(self) -> None:
        for under_test in self.agents:
            try:
                under_test.close()
            except Exception:  # noqa: BLE001 - a crashed agent's parts may be half gone; the rest still closes
                log.debug("closing an agent failed", exc_info=True)
        self.sim.stop()
