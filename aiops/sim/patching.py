"""The three PATCH flavours the Kubernetes API accepts, applied to API-shaped dicts.

- merge patch (RFC 7386): objects merge recursively, ``null`` deletes a key, lists are replaced;
- strategic merge patch: the same, except that lists the API marks with a merge key (containers by ``name``...)
  merge element by element, as the apiserver does for the fields the agent touches;
- JSON patch (RFC 6902), including ``test``.
"""

from __future__ import annotations

import copy
from typing import Any


class PatchError(Exception):
    """A patch that cannot be applied. ``code`` is the HTTP status the apiserver answers with (400 or 422)."""

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        super().__init__(message)


# Lists that strategic merge patch merges by a key instead of replacing (the subset of the API's patchMergeKey
# markers that matter for Deployments, Pods and Services).
STRATEGIC_MERGE_KEYS = {
    "containers": "name", "initContainers": "name", "ephemeralContainers": "name", "env": "name",
    "volumes": "name", "volumeMounts": "mountPath", "imagePullSecrets": "name", "ports": "containerPort",
    "tolerations": "key",
}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: returns a new value; ``target`` is not modified."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge_patch(target: Any, patch: Any, key: str = "") -> Any:
    """Merge patch, except that lists named in ``STRATEGIC_MERGE_KEYS`` merge element-wise by their merge key."""
    if isinstance(patch, list) and isinstance(target, list) and key in STRATEGIC_MERGE_KEYS:
        return _merge_list_by_key(target, patch, STRATEGIC_MERGE_KEYS[key])
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, value in patch.items():
        if value is None:
            result.pop(k, None)
        else:
            result[k] = strategic_merge_patch(result.get(k), value, k)
    return result


def _merge_list_by_key(target: list, patch: list, merge_key: str) -> list:
    result = copy.deepcopy(target)
    for item in patch:
        if not isinstance(item, dict) or merge_key not in item:
            raise PatchError(400, f"strategic merge patch: list item without merge key {merge_key!r}")
        index = next((i for i, old in enumerate(result)
                      if isinstance(old, dict) and old.get(merge_key) == item[merge_key]), None)
        if item.get("$patch") == "delete":
            if index is not None:
                result.pop(index)
        elif index is None:
            result.append(copy.deepcopy(item))
        else:
            result[index] = strategic_merge_patch(result[index], item)
    return result


def json_patch(target: Any, operations: Any) -> Any:
    """RFC 6902. A malformed patch -> ``PatchError(400)``; an operation that fails (incl. ``test``) -> 422."""
    if not isinstance(operations, list):
        raise PatchError(400, "json patch must be a list of operations")
    doc = copy.deepcopy(target)
    for op in operations:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise PatchError(400, f"invalid json patch operation: {op!r}")
        doc = _apply_op(doc, op)
    return doc


def _apply_op(doc: Any, op: dict) -> Any:
    kind, path = op["op"], _pointer(op["path"])
    if kind in ("add", "replace", "test") and "value" not in op:
        raise PatchError(400, f"json patch {kind} at {op['path']} needs a value")
    if kind == "test":
        current = _get(doc, path, op["path"])
        if current != op["value"]:
            raise PatchError(422, f"testing value {op['path']} failed: test failed")
        return doc
    if kind == "remove":
        _get(doc, path, op["path"])
        return _remove(doc, path)
    if kind == "add":
        return _add(doc, path, copy.deepcopy(op["value"]), op["path"])
    if kind == "replace":
        _get(doc, path, op["path"])
        return _add(_remove(doc, path), path, copy.deepcopy(op["value"]), op["path"], replace=True)
    if kind in ("move", "copy"):
        if "from" not in op:
            raise PatchError(400, f"json patch {kind} needs 'from'")
        source = _pointer(op["from"])
        value = copy.deepcopy(_get(doc, source, op["from"]))
        if kind == "move":
            doc = _remove(doc, source)
        return _add(doc, path, value, op["path"])
    raise PatchError(400, f"unknown json patch operation {kind!r}")


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(400, f"invalid json pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _get(doc: Any, parts: list[str], raw: str) -> Any:
    for part in parts:
        if isinstance(doc, dict) and part in doc:
            doc = doc[part]
        elif isinstance(doc, list) and part.isdigit() and int(part) < len(doc):
            doc = doc[int(part)]
        else:
            raise PatchError(422, f"doc is missing path: {raw}: missing value")
    return doc


def _remove(doc: Any, parts: list[str]) -> Any:
    if not parts:
        return None
    parent = _get(doc, parts[:-1], "/" + "/".join(parts[:-1]))
    last = parts[-1]
    if isinstance(parent, list):
        parent.pop(int(last))
    else:
        parent.pop(last)
    return doc


def _add(doc: Any, parts: list[str], value: Any, raw: str, replace: bool = False) -> Any:
    if not parts:
        return value
    parent = _get(doc, parts[:-1], raw)
    last = parts[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-":
            parent.append(value)
        elif last.isdigit() and int(last) <= len(parent):
            parent.insert(int(last), value)
        else:
            raise PatchError(422, f"add operation does not apply: {raw}: index out of range")
    else:
        raise PatchError(422, f"add operation does not apply: doc is missing path: {raw}")
    return doc
