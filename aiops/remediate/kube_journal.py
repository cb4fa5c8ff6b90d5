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

Reads: every question about all plans (cooldown, rate limit, concurrency, blast radius, what to resume) is answered
from one LIST of the journal, reused for ``read_cache_seconds`` (a decision asks four in a few milliseconds). This
agent's own writes are added to that snapshot as they land, so it never misses its own actions; another replica's
show after at most ``read_cache_seconds``. That is safe because only the leader writes: the settings require
``read_cache_seconds`` < ``lease_duration - renew_deadline``, so a snapshot a new leader uses was listed after the
old leader's last action record (written before its last fenced write, at most ``renew_deadline`` after its last
renewal). ``history`` of one plan is always a fresh GET.

Size: the API refuses a ConfigMap over 1 MiB, and a long restore watch journals a check every interval. When a
plan's ConfigMap grows past ``compact_bytes``, its older restore checks are folded into one summary record (how
many, how many healthy, first and last time) at the place of the newest folded one, keeping the last
``KEEP_RESTORE_CHECKS``; nothing a resume reads (the plan, the levels, the change, approvals, flags of the latest
record) is touched. The fold is one JSON patch guarded by the ConfigMap's ``resourceVersion``: a concurrent write
makes it fail whole, and it is tried again with the next check.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
import threading
import time
from bisect import insort
from typing import Any, Callable

from aiops.clients.kube import KubeClient, KubeError
from aiops.domain.protocols import Clock
from aiops.remediate.journal import JournalReads, is_unfinished
from aiops.settings import Settings

log = logging.getLogger(__name__)

JOURNAL_LABEL = "aiops.io/journal"
PLAN_ANNOTATION = "aiops.io/plan-id"
NAME_PREFIX = "aiops-plan-"
PRUNE_EVERY_SECONDS = 3600.0
# ``data`` key of a restore watch's reading (``remediate.restore``) and of the summary older readings fold into.
RESTORE_CHECK = "restore_check"
FOLDED_CHECKS = "restore_checks_folded"
KEEP_RESTORE_CHECKS = 20
DEFAULT_READ_CACHE_SECONDS = 1.0
DEFAULT_COMPACT_BYTES = 262_144
_DNS_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_KEY_TIME_DIGITS = 20

Pair = tuple[str, dict[str, Any]]


def configmap_name(plan_id: str) -> str:
    """The ConfigMap of a plan: ``aiops-plan-<id>`` when that is a valid name, else a digest of the id."""
    name = NAME_PREFIX + plan_id
    if len(name) <= 63 and _DNS_NAME.match(name):
        return name
    return NAME_PREFIX + hashlib.sha256(plan_id.encode()).hexdigest()[:40]


def _key_ns(key: str) -> int:
    return int(key[:_KEY_TIME_DIGITS])


def _entry(key: str, raw: str) -> dict[str, Any] | None:
    """The record stored under ``key``, or ``None`` when it is not one of ours (someone edited the ConfigMap)."""
    try:
        entry = json.loads(raw)
        _key_ns(key)
    except ValueError:
        return None
    if not isinstance(entry, dict) or not {"plan_id", "state", "ts"} <= entry.keys():
        return None
    entry.setdefault("note", "")
    if not isinstance(entry.get("data"), dict):
        entry["data"] = {}
    return entry


def _pairs(cm: dict[str, Any], plan_id: str | None = None) -> list[Pair]:
    """A ConfigMap's records in write order (only ``plan_id``'s when given)."""
    pairs = []
    for key, raw in sorted((cm.get("data") or {}).items()):
        entry = _entry(key, raw)
        if entry is not None and (plan_id is None or entry["plan_id"] == plan_id):
            pairs.append((key, entry))
    return pairs


def _size(cm: dict[str, Any]) -> int:
    """The bytes the API counts against a ConfigMap's 1 MiB limit (keys and values of ``data``)."""
    return sum(len(k) + len(v.encode()) for k, v in (cm.get("data") or {}).items())


class KubeJournal(JournalReads):
    """An ``ExecutionStore`` in ConfigMaps of ``namespace``, shared by every agent pointed at the same cluster.

    ``retention_days`` = 0 keeps every plan forever. ``timeout`` bounds each API call (seconds; default: the
    client's own bound). ``read_cache_seconds`` = 0 lists the journal for every question. ``monotonic`` is the
    clock the snapshot's age is measured on (tests inject one).
    """

    def __init__(self, kube: KubeClient, namespace: str, clock: Clock | None = None, retention_days: float = 30.0,
                 timeout: float | None = None, read_cache_seconds: float = DEFAULT_READ_CACHE_SECONDS,
                 compact_bytes: int = DEFAULT_COMPACT_BYTES,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.kube = kube
        self.namespace = namespace
        self._clock = clock
        self.retention_days = float(retention_days)
        self.timeout = timeout
        self.read_cache_seconds = float(read_cache_seconds)
        self.compact_bytes = int(compact_bytes)
        self._monotonic = monotonic
        self._lock = threading.Lock()
        # The newest key seen per ConfigMap: a new key is always after it, even when this replica's clock is
        # behind the one that wrote before it (e.g. the old leader).
        self._last_ns: dict[str, int] = {}
        # The last LIST (per ConfigMap name, its records in key order) and when it was sent; None: list again.
        self._snapshot: dict[str, list[Pair]] | None = None
        self._snapshot_at = 0.0
        # The bytes of each ConfigMap as last read, plus what this agent appended since (for the fold).
        self._bytes: dict[str, int] = {}
        self._next_prune = 0.0

    @classmethod
    def from_settings(cls, kube: KubeClient, settings: Settings, clock: Clock | None = None) -> "KubeJournal":
        """The journal the ``journal`` settings describe (in ``settings.journal_namespace``)."""
        j = settings.journal
        return cls(kube, settings.journal_namespace, clock, j.retention_days, read_cache_seconds=j.read_cache_seconds,
                   compact_bytes=j.compact_bytes)

    # --- writes ---
    def record(self, plan_id: str, state: str, note: str, data: dict[str, Any]) -> None:
        """Append one transition; returns once the apiserver stored it, raises ``KubeError`` if it did not."""
        ts = float(data["ts"]) if "ts" in data else (self._clock.now() if self._clock else time.time())
        entry = {"ts": ts, "plan_id": plan_id, "state": state, "note": note, "data": data}
        value = json.dumps(entry, sort_keys=True, default=str)
        name = configmap_name(plan_id)
        key = self._new_key(name)
        try:
            try:
                self._append(name, key, value)
            except KubeError as exc:
                if not exc.not_found:
                    raise
                self._create(name, plan_id, key, value)
        except Exception:
            self._forget_snapshot()  # it may have landed after all (a timeout): do not answer from a view without it
            raise
        self._remember(name, key, json.loads(value), len(key) + len(value.encode()))
        if RESTORE_CHECK in data:
            self._maybe_fold(name, plan_id)
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

    # --- the snapshot ---
    def _remember(self, name: str, key: str, entry: dict[str, Any], size: int) -> None:
        """Add a record this agent just stored to the snapshot (so its own writes show at once)."""
        with self._lock:
            if name in self._bytes:
                self._bytes[name] += size
            if self._snapshot is not None:
                insort(self._snapshot.setdefault(name, []), (key, entry), key=lambda pair: pair[0])

    def _forget_snapshot(self) -> None:
        with self._lock:
            self._snapshot = None

    def _learned(self, name: str, cm: dict[str, Any], pairs: list[Pair]) -> None:
        """What a read of ConfigMap ``name`` taught: its newest key, its size, its records for the snapshot."""
        with self._lock:
            if pairs:
                self._last_ns[name] = max(self._last_ns.get(name, 0), _key_ns(pairs[-1][0]))
            self._bytes[name] = _size(cm)
            if self._snapshot is not None and pairs:
                self._snapshot[name] = pairs

    def _plans(self) -> list[list[Pair]]:
        """Each plan's (key, record) pairs in write order; plans in the order they were first written."""
        with self._lock:
            fresh = self._snapshot is not None and self._monotonic() - self._snapshot_at < self.read_cache_seconds
            snapshot = self._snapshot if fresh else None
            if snapshot is not None:
                plans = [list(pairs) for pairs in snapshot.values() if pairs]
        if snapshot is None:
            sent = self._monotonic()  # the answer shows the journal as of this moment or later
            items = self.kube.list_configmaps(self.namespace, f"{JOURNAL_LABEL}=true", timeout=self.timeout)
            listed: dict[str, list[Pair]] = {}
            for cm in items:
                name = cm["metadata"]["name"]
                pairs = _pairs(cm)
                self._learned(name, cm, pairs)
                if pairs:
                    listed[name] = pairs
            with self._lock:
                if self.read_cache_seconds > 0:
                    self._snapshot, self._snapshot_at = listed, sent
            plans = [list(pairs) for pairs in listed.values()]
        plans.sort(key=lambda pairs: pairs[0][0])
        return plans

    # --- reads ---
    def records(self) -> list[dict[str, Any]]:
        """Every record, oldest first (by write time)."""
        return [entry for _, entry in sorted((pair for pairs in self._plans() for pair in pairs),
                                             key=lambda pair: pair[0])]

    def history(self, plan_id: str) -> list[dict[str, Any]]:
        """The transitions of one plan, oldest first (one GET, never from the snapshot)."""
        name = configmap_name(plan_id)
        try:
            cm = self.kube.get_configmap(self.namespace, name, timeout=self.timeout)
        except KubeError as exc:
            if exc.not_found:
                return []
            raise
        pairs = _pairs(cm, plan_id)
        self._learned(name, cm, pairs)
        return [entry for _, entry in pairs]

    def latest(self) -> list[dict[str, Any]]:
        """The last record of each plan, in the order plans first appeared."""
        return [pairs[-1][1] for pairs in self._plans()]

    # --- size ---
    def _maybe_fold(self, name: str, plan_id: str) -> None:
        with self._lock:
            size = self._bytes.get(name)
        if size is not None and size < self.compact_bytes:
            return
        try:  # a size not known yet (this agent never read the plan) is learned by the fold's own GET
            self.fold_restore_checks(plan_id, min_bytes=self.compact_bytes)
        except KubeError as exc:  # housekeeping: the record itself landed; the next check tries again
            log.warning("journal: folding the restore checks of plan %s failed: %s", plan_id, exc)

    def fold_restore_checks(self, plan_id: str, keep: int = KEEP_RESTORE_CHECKS, min_bytes: int = 0) -> int:
        """Fold all but the last ``keep`` restore checks of a plan (and earlier summaries) into one summary record,
        if its ConfigMap holds at least ``min_bytes``; returns how many records were folded (0: none)."""
        name = configmap_name(plan_id)
        try:
            cm = self.kube.get_configmap(self.namespace, name, timeout=self.timeout)
        except KubeError as exc:
            if exc.not_found:
                return 0
            raise
        pairs = _pairs(cm, plan_id)
        self._learned(name, cm, pairs)
        if _size(cm) < min_bytes:
            return 0
        checks = [(k, e) for k, e in pairs if RESTORE_CHECK in e["data"] or FOLDED_CHECKS in e["data"]]
        folded = checks[:-keep] if keep else checks
        if len(folded) < 2:
            return 0
        ops: list[dict[str, Any]] = [{"op": "test", "path": "/metadata/resourceVersion",
                                      "value": cm["metadata"]["resourceVersion"]}]
        ops += [{"op": "remove", "path": f"/data/{k}"} for k, _ in folded[:-1]]
        ops.append({"op": "replace", "path": f"/data/{folded[-1][0]}",
                    "value": json.dumps(_summary(folded), sort_keys=True, default=str)})
        updated = self.kube.patch_configmap(self.namespace, name, ops, timeout=self.timeout)
        self._learned(name, updated, _pairs(updated, plan_id))
        log.info("journal: folded %d restore checks of plan %s (%d bytes now)", len(folded), plan_id,
                 _size(updated))
        return len(folded)

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
            name = configmap_name(last["plan_id"])
            try:
                self.kube.delete_configmap(self.namespace, name, timeout=self.timeout)
            except KubeError as exc:
                if not exc.not_found:
                    raise
            with self._lock:
                if self._snapshot is not None:
                    self._snapshot.pop(name, None)
                self._bytes.pop(name, None)
            removed.append(last["plan_id"])
        return removed


def _summary(folded: list[Pair]) -> dict[str, Any]:
    """One record standing for ``folded`` restore checks (and summaries): counts and times, at the place (state,
    flags) of the newest of them, so the order and the latest record of the plan do not change."""
    count = healthy = 0
    first_ts = folded[0][1]["ts"]
    for _, entry in folded:
        data = entry["data"]
        if FOLDED_CHECKS in data:
            count += int(data[FOLDED_CHECKS].get("count", 0))
            healthy += int(data[FOLDED_CHECKS].get("healthy", 0))
            first_ts = min(first_ts, data[FOLDED_CHECKS].get("first_ts", first_ts))
        else:
            count += 1
            healthy += bool((data.get(RESTORE_CHECK) or {}).get("healthy"))
    last = folded[-1][1]
    data = {k: v for k, v in last["data"].items() if k not in (RESTORE_CHECK, FOLDED_CHECKS)}
    data[FOLDED_CHECKS] = {"count": count, "healthy": healthy, "first_ts": first_ts, "last_ts": last["ts"]}
    note = (f"{count} restore checks folded to keep the journal under the ConfigMap size limit "
            f"({healthy} healthy, {count - healthy} not)")
    return {"ts": last["ts"], "plan_id": last["plan_id"], "state": last["state"], "note": note, "data": data}
