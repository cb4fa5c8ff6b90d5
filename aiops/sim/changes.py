"""The cluster's change feed: every write as a numbered change, kept for a while, so watches can follow it.

Like etcd behind the apiserver's watch cache: a watch names the ``resourceVersion`` it has seen and is sent every
change after it. Only the last ``capacity`` changes are kept; a watch from before them is told its version is too
old (410 Expired), and a client then lists again.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass

ADDED, MODIFIED, DELETED = "ADDED", "MODIFIED", "DELETED"


class Expired(Exception):
    """A watch asked for changes older than the oldest one kept."""

    def __init__(self, requested: int, oldest: int) -> None:
        self.requested, self.oldest = requested, oldest
        super().__init__(f"too old resource version: {requested} ({oldest})")


@dataclass(frozen=True, slots=True)
class Change:
    """One write: ``obj`` is the object's JSON after it (for a deletion, its last state), ``before`` its JSON
    before (None when it was created), so a selective watch can see an object enter or leave its selection."""

    resource_version: int
    type: str
    kind: str
    namespace: str
    obj: str
    before: str | None

    def object(self) -> dict:
        """The object after the change."""
        return json.loads(self.obj)

    def previous(self) -> dict | None:
        """The object before the change (None when it was created)."""
        return json.loads(self.before) if self.before is not None else None


class ChangeLog:
    """The last ``capacity`` changes, in order, guarded by ``lock`` (the cluster's, so a change is recorded in the
    same critical section as the write). Snapshots are JSON text: cheaper to take than a deep copy."""

    def __init__(self, lock, capacity: int = 4000) -> None:
        self._changed = threading.Condition(lock)
        self._changes: deque[Change] = deque()
        self._capacity = capacity
        self._oldest = 0  # changes after this resourceVersion are all kept
        self._current: dict[tuple[str, str, str], str] = {}

    def record(self, resource_version: int, kind: str, obj: dict, deleted: bool = False) -> None:
        """Note that ``obj`` (of ``kind``) was written, or deleted, at ``resource_version``."""
        meta = obj["metadata"]
        key = (kind, meta.get("namespace", ""), meta["name"])
        text = json.dumps(obj)
        with self._changed:
            before = self._current.pop(key, None) if deleted else self._current.get(key)
            if not deleted:
                self._current[key] = text
            kind_of_change = DELETED if deleted else (MODIFIED if before is not None else ADDED)
            self._changes.append(Change(resource_version, kind_of_change, kind, key[1], text, before))
            while len(self._changes) > self._capacity:
                self._oldest = self._changes.popleft().resource_version
            self._changed.notify_all()

    def wait_since(self, resource_version: int, timeout: float) -> list[Change]:
        """The changes after ``resource_version``, waiting up to ``timeout`` seconds for one when there is none
        yet. Raises ``Expired`` when changes after it are no longer kept."""
        with self._changed:
            if resource_version < self._oldest:
                raise Expired(resource_version, self._oldest)
            if not self._changes or self._changes[-1].resource_version <= resource_version:
                self._changed.wait(timeout)
            newer = []
            for change in reversed(self._changes):
                if change.resource_version <= resource_version:
                    break
                newer.append(change)
            return newer[::-1]

    def wake(self) -> None:
        """Wake every waiting reader (a server stopping)."""
        with self._changed:
            self._changed.notify_all()
