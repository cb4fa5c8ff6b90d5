"""The execution journal kept in the Kubernetes API, so every replica of the agent reads and writes the same one.

Why: with leader election, the replica that takes over from a dead leader must see the plan that leader left half
done. A local SQLite file (an ``emptyDir``) dies with its pod; ConfigMaps in the agent's own namespace do not.

Layout: one ConfigMap per plan (label ``aiops.io/journal: "true"``, the plan id in an annotation), one data key per
record. A key is the write time in nanoseconds, zero-padded, plus a random suffix: unique without coordination and
sortable, so the records of a plan read back in the order they were written. Appending is a JSON-patch ``add`` of a
new key: no read-modify-write, so two writers cannot overwrite each other. The first record creates the ConfigMap
(a create that loses the race to another writer falls back to the patch). ``record`` returns only once the
apiserver has stored the record, and raises otherwise: the state machine never acts on an unjournaled transition.

Retention: ConfigMaps of plans that ended (``unfinished`` no longer lists them) and whose last record was written
more than ``retention_days`` ago are deleted, at most once an hour, from inside ``record``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
import threading
import time
from typing import Any

from aiops.clients.kube import KubeClient, KubeError
from aiops.domain.protocols import Clock
from aiops.remediate.journal import JournalReads, is_unfinished

log = logging.getLogger(__name__)

JOURNAL_LABEL = "aiops.io/journal"
PLAN_ANNOTATION = "aiops.io/plan-id"
NAME_PREFIX = "aiops-plan-"
PRUNE_EVERY_SECONDS = 3600.0
_DNS_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_KEY_TIME_DIGITS = 20


def configmap_name(plan_id: str) -> str:
    """The ConfigMap of a plan: ``aiops-plan-<id>`` when that is a valid name, else a digest of the id."""
    name = NAME_PREFIX + plan_id
    if len(name) <= 63 and _DNS_NAME.match(name):
        return name
    return NAME_PREFIX + hashlib.sha256(plan_id.encode()).hexdigest()[:40]


def _key_ns(key: str) -> int:
    return int(key[:_KEY_TIME_DIGITS])


class KubeJournal(JournalReads):
    """An ``ExecutionStore`` in ConfigMaps of ``namespace``, shared by every agent pointed at the same cluster.

    ``retention_days`` = 0 keeps every plan forever. ``timeout`` bounds each API call (seconds).
    """

    def __init__(self, kube: KubeClient, namespace: str, clock: Clock | None = None, retention_days: float = 30.0,
                 timeout: float = 10.0) -> None:
        self.kube = kube
        self.namespace = namespace
        self._clock = clock
        self.retention_days = float(retention_days)
        self.timeout = timeout
        self._lock = threading.Lock()
        # The newest key seen per ConfigMap: a new key is always after it, even when this replica's clock is
        # behind the one that wrote before it (e.g. the old leader).
        self._last_ns: dict[str, int] = {}
        self._next_prune = 0.0

    # --- writes ---
    def record(self, plan_id: str, state: str, note: str, data: dict[str, Any]) -> None:
        """Append one transition; returns once the apiserver stored it, raises ``KubeError`` if it did not."""
        ts = float(data["ts"]) if "ts" in data else (self._clock.now() if self._clock else time.time())
        entry = {"ts": ts, "plan_id": plan_id, "state": state, "note": note, "data": data}
        value = json.dumps(entry, sort_keys=True, default=str)
        name = configmap_name(plan_id)
        key = self._new_key(name)
        try:
            self._append(name, key, value)
        except KubeError as exc:
            if not exc.not_found:
                raise
            self._create(name, plan_id, key, value)
        self._maybe_prune()

    def _new_key(self, name: str) -> str:
        with self._lock:
            stamp = max(time.time_ns(), self._last_ns.get(name, 0) + 1)
            self._last_ns[name] = stamp
        return f"{stamp:0{_KEY_TIME_DIGITS}d}-{secrets.token_hex(3)}"

    def _append(self, name: str, key: str, value: str) -> None:
        self.kube.patch_configmap(self.namespace, name, [{"op": "add", "path": f"/data/{key}", "value": value}],
                                  timeout=self.timeout)

    def _create(self, name: str, plan_id: str, key: str, value: str) -> None:
        body = {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": name, "labels": {JOURNAL_LABEL: "true"},
                             "annotations": {PLAN_ANNOTATION: plan_id}},
                "data": {key: value}}
        try:
            self.kube.create_configmap(self.namespace, body, timeout=self.timeout)
        except KubeError as exc:
            if exc.status != 409:
                raise
            self._append(name, key, value)  # another writer created it first: append to theirs

    # --- reads ---
    def _plans(self) -> list[list[tuple[str, dict[str, Any]]]]:
        """Each plan's (key, record) pairs in write order; plans in the order they were first written."""
        items = self.kube.list_configmaps(self.namespace, f"{JOURNAL_LABEL}=true", timeout=self.timeout)
        plans = []
        for cm in items:
            pairs = []
            for key, raw in sorted((cm.get("data") or {}).items()):
                try:
                    entry = json.loads(raw)
                    _key_ns(key)
                except ValueError:
                    continue  # not one of ours (someone edited the ConfigMap by hand)
                if isinstance(entry, dict) and {"plan_id", "state", "ts"} <= entry.keys():
                    entry.setdefault("note", "")
                    entry.setdefault("data", {})
                    pairs.append((key, entry))
            if pairs:
                plans.append(pairs)
                name = cm["metadata"]["name"]
                with self._lock:
                    self._last_ns[name] = max(self._last_ns.get(name, 0), _key_ns(pairs[-1][0]))
        plans.sort(key=lambda pairs: pairs[0][0])
        return plans

    def records(self) -> list[dict[str, Any]]:
        """Every record, oldest first (by write time)."""
        return [entry for _, entry in sorted(pair for pairs in self._plans() for pair in pairs)]

    def history(self, plan_id: str) -> list[dict[str, Any]]:
        """The transitions of one plan, oldest first (one GET)."""
        name = configmap_name(plan_id)
        try:
            cm = self.kube.get_configmap(self.namespace, name, timeout=self.timeout)
        except KubeError as exc:
            if exc.not_found:
                return []
            raise
        pairs = []
        for key, raw in sorted((cm.get("data") or {}).items()):
            try:
                entry, stamp = json.loads(raw), _key_ns(key)
            except ValueError:
                continue
            if isinstance(entry, dict) and entry.get("plan_id") == plan_id:
                entry.setdefault("data", {})
                pairs.append(entry)
                with self._lock:
                    self._last_ns[name] = max(self._last_ns.get(name, 0), stamp)
        return pairs

    def latest(self) -> list[dict[str, Any]]:
        """The last record of each plan, in the order plans first appeared."""
        return [pairs[-1][1] for pairs in self._plans()]

    # --- retention ---
    def _maybe_prune(self) -> None:
        if self.retention_days <= 0:
            return
        now = time.time()
        with self._lock:
            if now < self._next_prune:
                return
            self._next_prune = now + PRUNE_EVERY_SECONDS
        try:
            self.prune(now)
        except KubeError as exc:  # retention is housekeeping: a failure must not fail the record just written
            log.warning("journal retention failed: %s", exc)

    def prune(self, now: float | None = None) -> list[str]:
        """Delete the ConfigMaps of plans that ended more than ``retention_days`` ago (by the time their last
        record was written); returns the plan ids removed."""
        now = time.time() if now is None else now
        cutoff_ns = int((now - self.retention_days * 86400) * 1e9)
        removed = []
        for pairs in self._plans():
            key, last = pairs[-1]
            if is_unfinished(last) or _key_ns(key) >= cutoff_ns:
                continue
            try:
                self.kube.delete_configmap(self.namespace, configmap_name(last["plan_id"]), timeout=self.timeout)
            except KubeError as exc:
                if not exc.not_found:
                    raise
            removed.append(last["plan_id"])
        return removed
