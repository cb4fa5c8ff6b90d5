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

# --- Model serving -------------------------------------------------------------------------------------------
# Derived only for workloads that export them (a GPU inference server); other workloads simply lack them.
GPU_UTIL = "gpu_util"                      # percent: mean over the workload's GPUs of DCGM_FI_DEV_GPU_UTIL
GPU_MEMORY = "gpu_memory"                  # bytes: max over GPUs of DCGM_FI_DEV_FB_USED (MiB in the exporter)
GPU_MEMORY_RATIO = "gpu_memory_ratio"      # max over GPUs of FB_USED / (FB_USED + FB_FREE)
INFERENCE_P99 = "inference_latency_p99"    # seconds: histogram_quantile(0.99, vllm:e2e_request_latency_seconds)
REQUESTS_WAITING = "requests_waiting"      # sum over pods of vllm:num_requests_waiting
KV_CACHE_USAGE = "kv_cache_usage"          # max over pods of vllm:gpu_cache_usage_perc (a 0-1 fraction)
PROCESS_MEMORY = "process_memory"          # bytes: max over pods of process_resident_memory_bytes

SERVING_SIGNALS: tuple[str, ...] = (GPU_UTIL, GPU_MEMORY, GPU_MEMORY_RATIO, INFERENCE_P99, REQUESTS_WAITING,
                                    KV_CACHE_USAGE, PROCESS_MEMORY)
ALL_SIGNALS: tuple[str, ...] = SIGNALS + SERVING_SIGNALS

# The NVIDIA DCGM exporter's and vLLM's own metric names. vLLM's contain ':' (legal in Prometheus metric names).
RAW_GPU_UTIL = "DCGM_FI_DEV_GPU_UTIL"
RAW_FB_USED = "DCGM_FI_DEV_FB_USED"
RAW_FB_FREE = "DCGM_FI_DEV_FB_FREE"
RAW_E2E_LATENCY = "vllm:e2e_request_latency_seconds"        # a histogram family
RAW_E2E_LATENCY_BUCKET = RAW_E2E_LATENCY + "_bucket"        # its cumulative bucket counters (label ``le``)
RAW_REQUESTS_WAITING = "vllm:num_requests_waiting"
RAW_GPU_CACHE_USAGE = "vllm:gpu_cache_usage_perc"
RAW_PROCESS_MEMORY = "process_resident_memory_bytes"

SERVING_RAW_METRICS: tuple[str, ...] = (RAW_GPU_UTIL, RAW_FB_USED, RAW_FB_FREE, RAW_E2E_LATENCY_BUCKET,
                                        RAW_REQUESTS_WAITING, RAW_GPU_CACHE_USAGE, RAW_PROCESS_MEMORY)
ALL_RAW_METRICS: tuple[str, ...] = RAW_METRICS + SERVING_RAW_METRICS
SERVING_COUNTERS = frozenset({RAW_E2E_LATENCY_BUCKET})
MIB = 1024 * 1024  # DCGM reports framebuffer memory in MiB
