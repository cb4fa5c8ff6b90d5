"""Leadership as the write gate sees it: a write needs the leader Lease at the very moment it is made.

The worker checks leadership before it handles an incident, but a plan takes time (apply, then minutes of
verification, maybe an undo). So the write gate (``aiops.remediate.gate``) asks ``leader_check`` before every
write: a lease lost or stolen mid-plan stops every later write at the last moment, with ``NotLeaderError``. Such a
refusal is transient: the plan stays resumable, and the next leader (or this agent, leading again) finishes it.
"""

from __future__ import annotations

from aiops.remediate.gate import LeaderCheck, NotLeaderError
from aiops.serve.leader import LeaseElector

__all__ = ["NotLeaderError", "leader_check"]


def leader_check(election: LeaseElector | None) -> LeaderCheck | None:
    """Why this agent may not write now (``None`` while it leads); ``None`` itself when election is off (the
    agent always leads)."""
    if election is None:
        return None

    def why_not() -> str | None:
        if election.is_leader:
            return None
        reason = election.status().reason
        return "not the leader" + (f" ({reason})" if reason else "")
    return why_not
