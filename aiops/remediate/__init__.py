"""Remediate: playbooks, the guarded planner, idempotent actions, the execution state machine, verification."""
