"""``?watch=true``: the stream of changes to the objects a list would return, as the apiserver sends it.

A watch from ``resourceVersion`` N gets every change after N; without one (or from "0") it first gets the current
objects as ADDED. With a label or field selector it gets only the objects selected, and sees an object that stops
(starts) matching as DELETED (ADDED), like the apiserver's watch cache. A version older than the change feed keeps
ends the stream with an ERROR event carrying the 410 Expired Status, after which a client lists again.
"""

from __future__ import annotations

import threading
import time
from typing import Iterator

from aiops.sim import objects as ob
from aiops.sim.apierrors import ApiError
from aiops.sim.changes import ADDED, DELETED, MODIFIED, Change, Expired
from aiops.sim.selectors import field_selector_matches, parse_field_selector, parse_selector, selector_matches

DEFAULT_TIMEOUT = 1800.0  # the apiserver's --min-request-timeout


class Watch:
    """One watch on ``kind`` objects (in ``namespace`` unless None). Bad selectors or a resourceVersion that is no
    number fail here, before anything is streamed (``SelectorError``, ``ApiError`` 400)."""

    def __init__(self, cluster, kind: str, namespace: str | None, label_selector: str | None,
                 field_selector: str | None, resource_version: str | None) -> None:
        self.cluster, self.kind, self.namespace = cluster, kind, namespace
        self._labels = parse_selector(label_selector)
        self._fields = parse_field_selector(field_selector, kind)
        self._label_selector, self._field_selector = label_selector, field_selector
        if resource_version not in (None, "", "0") and not str(resource_version).isdigit():
            raise ApiError(400, "BadRequest", f'resourceVersion: Invalid value: "{resource_version}": must be a '
                                              "number")
        self._since = None if resource_version in (None, "", "0") else int(resource_version)

    def events(self, stopping: threading.Event, timeout: float = DEFAULT_TIMEOUT,
               idle: float = 1.0) -> Iterator[dict | None]:
        """Watch events (``{"type", "object"}``) until ``timeout`` seconds pass or ``stopping`` is set; None after
        each ``idle`` seconds without one, so the caller can notice a client that went away."""
        deadline = time.monotonic() + timeout
        since = self._since
        if since is None:
            with self.cluster.lock:
                current = self.cluster.list(self.kind, self.namespace, self._label_selector, self._field_selector)
                since = int(self.cluster.resource_version())
            for obj in current:
                yield {"type": ADDED, "object": obj}
        while not stopping.is_set() and (left := deadline - time.monotonic()) > 0:
            try:
                changes = self.cluster.changes.wait_since(since, min(idle, left))
            except Expired as exc:
                yield {"type": "ERROR", "object": ob.status(410, "Expired", str(exc))}
                return
            sent = False
            for change in changes:
                since = change.resource_version
                if (event := self._event(change)) is not None:
                    sent = True
                    yield event
            if not sent:
                yield None

    def _event(self, change: Change) -> dict | None:
        if change.kind != self.kind or (self.namespace is not None and change.namespace != self.namespace):
            return None
        obj, before = change.object(), change.previous()
        now, was = self._selects(obj), before is not None and self._selects(before)
        if change.type == MODIFIED and now != was:
            return {"type": ADDED if now else DELETED, "object": obj}
        return {"type": change.type, "object": obj} if now else None

    def _selects(self, obj: dict) -> bool:
        return selector_matches(self._labels, obj["metadata"].get("labels")) and \
            field_selector_matches(self._fields, obj, self.kind)
