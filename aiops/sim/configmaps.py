"""What kube-apiserver v1.20 checks on a core/v1 ConfigMap, with its exact answers.

``data`` values must be strings (else the body cannot even be decoded: 400); every key must be a valid config key
(letters, digits, ``-``, ``_``, ``.``; at most 253 characters) and the whole object at most 1 MiB (422).
"""

from __future__ import annotations

import re

from aiops.sim.apierrors import ApiError

_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
MAX_BYTES = 1024 * 1024


def check_configmap_body(obj) -> None:
    """Decoding checks (400), run on every body that will become a ConfigMap."""
    if not isinstance(obj, dict):
        raise ApiError(400, "BadRequest", "ConfigMap in version \"v1\" cannot be handled as a ConfigMap: "
                                          f"expected an object, got {type(obj).__name__}")
    for field in ("data", "binaryData"):
        values = obj.get(field)
        if values is None:
            continue
        if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
            raise ApiError(400, "BadRequest", "ConfigMap in version \"v1\" cannot be handled as a ConfigMap: "
                                              f"v1.ConfigMap.{field[0].upper() + field[1:]}: ReadString: expects \" "
                                              "or n")


def validate_configmap(obj: dict) -> None:
    """Validation (422) of a decoded ConfigMap: its keys and its size."""
    name = obj["metadata"].get("name", "")
    for key in (obj.get("data") or {}):
        if len(key) > 253 or not _KEY.match(key):
            raise ApiError(422, "Invalid", f'ConfigMap "{name}" is invalid: data[{key}]: Invalid value: "{key}": '
                                           "a valid config key must consist of alphanumeric characters, '-', '_' "
                                           "or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for "
                                           "validation is '[-._a-zA-Z0-9]+')")
    size = sum(len(k) + len(v.encode()) for k, v in (obj.get("data") or {}).items())
    if size > MAX_BYTES:
        raise ApiError(422, "Invalid", f'ConfigMap "{name}" is invalid: []: Too long: must have at most {MAX_BYTES} '
                                       "bytes")

