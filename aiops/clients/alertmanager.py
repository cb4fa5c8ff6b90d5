"""Alertmanager's v2 API, for the one thing the agent asks of it: silencing the alerts of a running remediation."""

from __future__ import annotations

from datetime import datetime, timezone

import requests


class AlertmanagerError(Exception):
    """Alertmanager could not be reached or refused the request (the message says which and why)."""


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat().replace("+00:00", "Z")


class AlertmanagerClient:
    """``POST /api/v2/silences`` and ``DELETE /api/v2/silence/{id}`` on ``url``."""

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._session = requests.Session()

    def create_silence(self, matchers: list[dict], starts: float, ends: float, comment: str,
                       created_by: str = "aiops") -> str:
        """Create a silence and return its id."""
        body = {"matchers": matchers, "startsAt": _iso(starts), "endsAt": _iso(ends), "createdBy": created_by,
                "comment": comment}
        data = self._send("POST", "/api/v2/silences", body)
        return str(data["silenceID"])

    def expire_silence(self, silence_id: str) -> None:
        """End a silence now (an already expired or unknown one is not an error worth failing over)."""
        self._send("DELETE", f"/api/v2/silence/{silence_id}", None, ok_missing=True)

    def silences(self) -> list[dict]:
        """Every silence Alertmanager knows (active, pending and expired)."""
        return self._send("GET", "/api/v2/silences", None)

    def _send(self, method: str, path: str, body: dict | None, ok_missing: bool = False):
        try:
            response = self._session.request(method, self.url + path, json=body, timeout=self.timeout)
        except requests.RequestException as exc:
            raise AlertmanagerError(f"{method} {self.url}{path}: {exc}") from None
        if ok_missing and response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise AlertmanagerError(f"{method} {self.url}{path}: {response.status_code} {response.text[:300]}")
        return response.json() if response.content else None
