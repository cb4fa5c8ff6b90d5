"""The apiserver's error answers (``Status`` bodies) and the patch/concurrency checks that produce them."""

from __future__ import annotations

from aiops.sim import objects as ob
from aiops.sim.discovery import RESOURCES
from aiops.sim.patching import PatchError, json_patch, merge_patch, strategic_merge_patch

# (resource, group) of each kind, as Status details name them.
RESOURCE = {**{r.kind: (r.plural, r.group) for r in RESOURCES}, "Scale": ("deployments/scale", "apps")}


class ApiError(Exception):
    """The apiserver's error answer: ``status`` is the full ``Status`` body (``code``, ``reason``, ``message``)."""

    def __init__(self, code: int, reason: str, message: str, details: dict | None = None) -> None:
        self.status = ob.status(code, reason, message, details)
        self.code = code
        super().__init__(f"{code} {reason}: {message}")


def not_found(kind: str, name: str) -> ApiError:
    """The 404 Status for ``kind``/``name``."""
    resource, group = RESOURCE.get(kind, (kind.lower() + "s", ""))
    full = f"{resource}.{group}" if group else resource
    return ApiError(404, "NotFound", f'{full} "{name}" not found',
                    {"name": name, "group": group, "kind": resource} if group else {"name": name, "kind": resource})


def apply_patch(current: dict, body, patch_type: str) -> dict:
    """Apply a ``merge``/``strategic``/``json`` patch, answering bad ones with the apiserver's Status."""
    try:
        if patch_type == "json":
            return json_patch(current, body)
        if not isinstance(body, dict):
            raise PatchError(400, "merge patch body must be a JSON object")
        return (strategic_merge_patch if patch_type == "strategic" else merge_patch)(current, body)
    except PatchError as exc:
        if exc.code == 422:
            # kube-apiserver v1.20 answers every JSON patch that fails to apply (a failed ``test`` included) so.
            raise ApiError(422, "Invalid", "the server rejected our request due to an error in our request") from None
        raise ApiError(400, "BadRequest", str(exc)) from None


def check_version(kind: str, name: str, current: dict, patched: dict) -> None:
    """Optimistic concurrency: a patch naming another resourceVersion than the current one -> 409 Conflict."""
    wanted = (patched.get("metadata") or {}).get("resourceVersion")
    if wanted is not None and wanted != current["metadata"]["resourceVersion"]:
        resource, group = RESOURCE[kind]
        full = f"{resource}.{group}" if group else resource
        raise ApiError(409, "Conflict", f'Operation cannot be fulfilled on {full} "{name}": '
                       "the object has been modified; please apply your changes to the latest version and try again",
                       {"name": name, "group": group, "kind": resource})
