"""Correlate: alerts and anomalies grouped into one incident per owning workload."""
