"""A Kubernetes client that refuses to write unless this agent is the leader right now.

The worker checks leadership before it handles an incident, but a plan takes time (apply, then minutes of
verification, maybe an undo). The runner gets this wrapper instead of the bare client, so a lease lost or stolen
mid-plan stops every later write at the last moment: reads go through, writes raise ``NotLeaderError`` (which the
runner records as the plan's failure), and nothing is changed by an agent that no longer leads.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from aiops.domain.errors import AiopsError

log = logging.getLogger(__name__)


class NotLeaderError(AiopsError):
    """A cluster write was refused because this agent does not hold the leader Lease."""


class LeaderFence:
    """Wraps a ``KubeClient``: ``patch_*`` and ``create_*`` calls run only while ``is_leader()`` is true."""

    def __init__(self, kube: Any, is_leader: Callable[[], bool], why: Callable[[], str] = lambda: "",
                 on_refused: Callable[[], None] | None = None) -> None:
        self._kube = kube
        self._is_leader = is_leader
        self._why = why
        self._on_refused = on_refused

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._kube, name)
        if not name.startswith(("patch_", "create_", "replace_", "delete_")) or name.endswith("_lease"):
            return target  # reads, and the election's own Lease calls

        def guarded(*args, **kwargs):
            if not self._is_leader():
                why = self._why()
                if self._on_refused is not None:
                    self._on_refused()
                log.warning("refused %s: not the leader%s", name, f" ({why})" if why else "")
                raise NotLeaderError(f"not the leader, {name} refused" + (f": {why}" if why else ""))
            return target(*args, **kwargs)
        return guarded
