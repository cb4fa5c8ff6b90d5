"""The workload-level signals every detector and analyzer reads, and the raw metrics they come from.

Collectors keep the raw Prometheus series (what a case folder stores) and derive these, one value per step per
workload, so detection sees the same numbers whether data came from Prometheus, a case folder or the simulator.
"""

from __future__ import annotations

CPU = "cpu"                          # cores: sum over pods of rate(container_cpu_usage_seconds_total)
MEMORY = "memory"                    # bytes: max over containers of container_memory_working_set_bytes
RESTARTS = "restarts"                # restarts per second: sum of rate(kube_pod_container_status_restarts_total)
AVAILABLE_RATIO = "available_ratio"  # kube_deployment_status_replicas_available / kube_deployment_spec_replicas
REQUEST_RATE = "request_rate"        # requests per second: sum of rate(http_requests_total)
ERROR_RATIO = "error_ratio"          # rate(http_requests_total{code=~"5.."}) / rate(http_requests_total)
LATENCY_P99 = "latency_p99"          # seconds: max over pods of http_request_duration_seconds{quantile="0.99"}

SIGNALS: tuple[str, ...] = (CPU, MEMORY, RESTARTS, AVAILABLE_RATIO, REQUEST_RATE, ERROR_RATIO, LATENCY_P99)

# Raw metric names (the real exporters' names), as stored in case folders and exposed by the simulator.
RAW_CPU = "container_cpu_usage_seconds_total"
RAW_MEMORY = "container_memory_working_set_bytes"
RAW_RESTARTS = "kube_pod_container_status_restarts_total"
RAW_AVAILABLE = "kube_deployment_status_replicas_available"
RAW_SPEC_REPLICAS = "kube_deployment_spec_replicas"
RAW_REQUESTS = "http_requests_total"
RAW_DURATION = "http_request_duration_seconds"

RAW_METRICS: tuple[str, ...] = (RAW_CPU, RAW_MEMORY, RAW_RESTARTS, RAW_AVAILABLE, RAW_SPEC_REPLICAS,
                                RAW_REQUESTS, RAW_DURATION)
COUNTERS = frozenset({RAW_CPU, RAW_RESTARTS, RAW_REQUESTS})
