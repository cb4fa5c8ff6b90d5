"""What an action or a diagnosis is about: one Kubernetes object."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, order=True)
class Target:
    """A Kubernetes object, by kind, namespace and name (e.g. ``Deployment shop/cart``)."""

    kind: str
    namespace: str
    name: str

    @classmethod
    def deployment(cls, namespace: str, name: str) -> "Target":
        """The usual target: a Deployment."""
        return cls("Deployment", namespace, name)

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "namespace": self.namespace, "name": self.name}

    @classmethod
    def from_dict(cls, data: dict) -> "Target":
        """The inverse of ``as_dict`` (journal records, HTTP bodies)."""
        return cls(str(data["kind"]), str(data["namespace"]), str(data["name"]))
