"""Collect: metrics, logs, events, alerts and case folders, turned into domain ``Observations``."""
