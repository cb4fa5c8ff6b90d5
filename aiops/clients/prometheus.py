"""The Prometheus HTTP API through prometheus-api-client, returning raw ``data.result`` lists."""

from __future__ import annotations

from datetime import datetime, timezone

import requests
from prometheus_api_client import PrometheusConnect
from urllib3.util.retry import Retry
from prometheus_api_client.exceptions import PrometheusApiClientException


class PrometheusError(Exception):
    """Prometheus could not be reached or rejected the query."""


class PrometheusClient:
    """Range and instant queries; every call passes explicit times (the library's defaults freeze at import)."""

    def __init__(self, url: str, timeout_seconds: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self._timeout = timeout_seconds
        # One quick retry for a dropped connection or a 5xx; the library's default (3 retries, 1 s backoff) keeps a
        # loop run and the agent's shutdown waiting for ~6 s when Prometheus is down.
        retry = Retry(total=1, backoff_factor=0.1, status_forcelist=(500, 502, 503, 504),
                      allowed_methods=("GET", "POST"))
        self._prom = PrometheusConnect(url=self.url, disable_ssl=False, timeout=timeout_seconds, retry=retry)

    def query_range(self, query: str, start: float, end: float, step: float) -> list[dict]:
        """``/api/v1/query_range``: a list of ``{"metric": {...}, "values": [[ts, "v"], ...]}``."""
        try:
            return self._prom.custom_query_range(
                query, start_time=_dt(start), end_time=_dt(end), step=f"{max(step, 0.001):g}s")
        except (PrometheusApiClientException, requests.RequestException, ValueError) as exc:
            raise PrometheusError(f"{self.url}: query_range {query!r} failed: {exc}") from None

    def query(self, query: str, at: float | None = None) -> list[dict]:
        """``/api/v1/query``: a list of ``{"metric": {...}, "value": [ts, "v"]}``."""
        params = {"time": f"{at:.3f}"} if at is not None else None
        try:
            return self._prom.custom_query(query, params=params)
        except (PrometheusApiClientException, requests.RequestException, ValueError) as exc:
            raise PrometheusError(f"{self.url}: query {query!r} failed: {exc}") from None

    def ready(self) -> bool:
        """True when Prometheus answers its readiness endpoint."""
        try:
            return requests.get(f"{self.url}/-/ready", timeout=self._timeout).ok
        except requests.RequestException:
            return False


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=timezone.utc)
