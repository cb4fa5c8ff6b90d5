"""One alert of an Alertmanager webhook payload."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping


@dataclass(frozen=True, slots=True)
class Alert:
    """A single alert, as Alertmanager sends it (``status`` is ``firing`` or ``resolved``).

    Times are unix seconds; ``ends_at`` is ``None`` while Alertmanager says ``0001-01-01T00:00:00Z``.
    """

    fingerprint: str
    status: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str] = field(default_factory=dict)
    starts_at: float = 0.0
    ends_at: float | None = None
    generator_url: str = ""

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "")

    @property
    def firing(self) -> bool:
        return self.status == "firing"
