"""Roll a Deployment back one revision, like ``kubectl rollout undo``."""

from __future__ import annotations

import copy
from typing import Any

from aiops.domain.plans import ActionPlan, Change
from aiops.remediate.actions.base import (UNDONE_ANNOTATION, ActionError, KubeApi, ObjectAction, differing_paths,
                                          guarded_patch, refuse_unless_ours)

REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
HASH_LABEL = "pod-template-hash"


def owned_replicasets(kube: KubeApi, deployment: dict) -> list[dict]:
    """The Deployment's ReplicaSets, oldest revision first (owner reference by uid, else by name)."""
    meta = deployment["metadata"]
    labels = ((deployment.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or None
    owned = []
    for rs in kube.list_replicasets(meta["namespace"], selector):
        for ref in (rs.get("metadata") or {}).get("ownerReferences") or []:
            if ref.get("kind") == "Deployment" and (ref.get("uid") == meta.get("uid") if meta.get("uid")
                                                    else ref.get("name") == meta["name"]):
                owned.append(rs)
                break
    return sorted(owned, key=revision)


def revision(rs: dict) -> int:
    """The ``deployment.kubernetes.io/revision`` of a ReplicaSet (0 when missing)."""
    try:
        return int(((rs.get("metadata") or {}).get("annotations") or {}).get(REVISION_ANNOTATION, 0))
    except ValueError:
        return 0


def template_of(rs: dict) -> dict:
    """The ReplicaSet's pod template as a Deployment template: without the controller's hash label."""
    template = copy.deepcopy((rs.get("spec") or {}).get("template") or {})
    labels = (template.get("metadata") or {}).get("labels")
    if labels:
        labels.pop(HASH_LABEL, None)
    return template


def images(template: dict) -> list[str]:
    """The container images of a pod template, in order."""
    return [c.get("image", "") for c in ((template.get("spec") or {}).get("containers") or [])]


class RollbackAction(ObjectAction):
    """Replace the Deployment's template with the previous revision's; undo puts the newer template back."""

    kind = "rollback"

    def _state(self, obj: dict) -> dict[str, Any]:
        template = (obj.get("spec") or {}).get("template") or {}
        return {"images": images(template), "template": template}

    def _prepare(self, plan: ActionPlan, obj: dict) -> tuple[Change, list]:
        history = owned_replicasets(self.kube, obj)
        if len(history) < 2:
            raise ActionError(f"{plan.target} has no previous revision to roll back to "
                              f"({len(history)} ReplicaSet(s))")
        current, previous = history[-1], history[-2]
        template = template_of(previous)
        before = {**self._state(obj), "revision": revision(current)}
        after = {"images": images(template), "template": template, "revision": revision(previous)}
        patch = guarded_patch(obj, [{"op": "replace", "path": "/spec/template", "value": template}], plan.id)
        change = Change(plan.target, f"roll back {plan.target} from revision {revision(current)} "
                                     f"({', '.join(before['images'])}) to revision {revision(previous)} "
                                     f"({', '.join(after['images'])})", before=before, after=after)
        return change, patch

    def _prepare_undo(self, plan: ActionPlan, change: Change, obj: dict) -> tuple[Change, list | None]:
        wanted = change.before.get("template")
        now = self._state(obj)
        reverse = Change(plan.target, f"roll {plan.target} forward again to {', '.join(images(wanted or {}))}",
                         before=now, after={"images": images(wanted or {}), "template": wanted})
        if not wanted or _same_template(now["template"], wanted):
            return reverse, None
        refuse_unless_ours(plan, str(plan.target), obj, _template_differences(now["template"],
                                                                              change.after.get("template")))
        patch = guarded_patch(obj, [{"op": "replace", "path": "/spec/template", "value": wanted}],
                              extra_annotations={UNDONE_ANNOTATION: plan.id})
        return reverse, patch


def _same_template(a: dict | None, b: dict | None) -> bool:
    return _comparable(a) == _comparable(b)


def _comparable(template: dict | None) -> dict:
    # The API server writes a null creationTimestamp into a template; compare what a person would call the
    # template. (Field defaults need no care: the templates compared were all read back from the API, defaulted.)
    t = copy.deepcopy(template or {})
    (t.get("metadata") or {}).pop("creationTimestamp", None)
    return t


def _template_differences(now: dict, written: dict | None) -> list[str]:
    """What differs between the live template and the one the plan wrote, in a person's terms."""
    if written is None:
        return ["the journal does not say which template the plan wrote"]
    if _same_template(now, written):
        return []
    if images(now) != images(written):
        return [f"images are {', '.join(images(now))}, the plan set {', '.join(images(written))}"]
    changed = differing_paths(_comparable(now), _comparable(written))
    return [f"the pod template differs from the one the plan set (at {', '.join(changed)})"]
