"""Adapters to the outside world: the only modules that import the Kubernetes, Prometheus and model clients."""
