"""The simulated cluster: a Kubernetes REST API, workloads whose metrics/logs/events react, fault scenarios."""
