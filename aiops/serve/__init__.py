"""Serve: the agent runtime (scheduled loop, Alertmanager webhook, own metrics)."""
