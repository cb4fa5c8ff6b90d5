"""What kube-apiserver v1.20 checks on a ``coordination.k8s.io/v1`` Lease, with its exact answers.

The timestamps are ``MicroTime``: RFC 3339 with exactly six fractional digits, or the request cannot even be decoded
(400). ``leaseDurationSeconds`` must be positive (422). An update must name the resourceVersion it read (422
otherwise; a stale one is the usual 409 Conflict).
"""

from __future__ import annotations

import re

from aiops.sim.apierrors import ApiError

API_VERSION = "coordination.k8s.io/v1"
_MICRO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}(Z|[+-]\d{2}:\d{2})$")
_TIME_FIELDS = ("acquireTime", "renewTime")


def check_lease_body(obj) -> None:
    """Decoding checks (400), run on every body that will become a Lease."""
    if not isinstance(obj, dict):
        raise ApiError(400, "BadRequest", "Lease in version \"v1\" cannot be handled as a Lease: "
                                          f"expected an object, got {type(obj).__name__}")
    spec = obj.get("spec") or {}
    if not isinstance(spec, dict):
        raise ApiError(400, "BadRequest", "Lease in version \"v1\" cannot be handled as a Lease: "
                                          "v1.Lease.Spec: expected an object")
    for key in _TIME_FIELDS:
        value = spec.get(key)
        if value is not None and not (isinstance(value, str) and _MICRO_TIME.match(value)):
            raise ApiError(400, "BadRequest", f"Lease in version \"v1\" cannot be handled as a Lease: v1.Lease.Spec: "
                                              f"v1.LeaseSpec.{key[0].upper() + key[1:]}: unmarshalerDecoder: parsing "
                                              f"time {value!r} as \"2006-01-02T15:04:05.000000Z07:00\"")


def validate_lease(obj: dict) -> None:
    """Validation (422) of a decoded Lease."""
    name = obj["metadata"].get("name", "")
    duration = (obj.get("spec") or {}).get("leaseDurationSeconds")
    if duration is not None and (not isinstance(duration, int) or duration <= 0):
        raise ApiError(422, "Invalid", f'Lease.coordination.k8s.io "{name}" is invalid: spec.leaseDurationSeconds: '
                                       f"Invalid value: {duration}: must be greater than 0")
    transitions = (obj.get("spec") or {}).get("leaseTransitions")
    if transitions is not None and (not isinstance(transitions, int) or transitions < 0):
        raise ApiError(422, "Invalid", f'Lease.coordination.k8s.io "{name}" is invalid: spec.leaseTransitions: '
                                       f"Invalid value: {transitions}: must be greater than or equal to 0")


def require_resource_version(obj: dict) -> None:
    """A Lease update without ``metadata.resourceVersion`` is refused (no unconditional updates)."""
    if not obj["metadata"].get("resourceVersion"):
        name = obj["metadata"].get("name", "")
        raise ApiError(422, "Invalid", f'leases.coordination.k8s.io "{name}" is invalid: metadata.resourceVersion: '
                                       "Invalid value: 0x0: must be specified for an update")
