"""Contract tests for undo ownership and the restart precondition (issue #13, defects 2 and 11b), on the real
kube-apiserver v1.20 and on the simulator alike (``kube`` is parametrized; see ``tests/test_kube_contract.py``).

What the real API adds matters here: template defaults and a null ``creationTimestamp`` must not make the agent's
own rollback look changed, a person's ``kubectl scale`` (the scale subresource) or image change must, and the
restart's JSON-patch ``test`` must turn a second racing restart into "already done".
"""

from __future__ import annotations

import pytest

from aiops.remediate.actions import ACTIONS, PLAN_ANNOTATION, Superseded
from aiops.remediate.actions.restart import RESTARTED_AT
from tests.test_kube_contract import (APP, CLOCK, IMAGE_1, IMAGE_2, api, app, make_plan,  # noqa: F401 - fixtures
                                      replicasets, set_image, wait_rolled_out)

HOTFIX = "registry.local/web:2.1-hotfix"


def image(api, ns: str) -> str:
    return api.get_deployment(ns, APP)["spec"]["template"]["spec"]["containers"][0]["image"]


def test_scale_undo_after_a_person_scaled_is_superseded_and_writes_nothing(api, ns, app):
    plan = make_plan(app, "scale", {"factor": 2, "step_min": 1, "max_replicas": 3})
    action = ACTIONS["scale"](api, CLOCK)
    change = action.apply(plan, dry_run=False)
    api.patch_scale(ns, APP, 4)  # kubectl scale: the scale subresource, annotations untouched
    # Rolled out first: the controller's own status writes would change the resourceVersion as well.
    rv = wait_rolled_out(api, ns)["metadata"]["resourceVersion"]

    with pytest.raises(Superseded) as info:
        action.undo(plan, change, dry_run=False)

    assert "replicas are 4, the plan set 3" in info.value.detail
    dep = api.get_deployment(ns, APP)
    assert dep["spec"]["replicas"] == 4 and dep["metadata"]["resourceVersion"] == rv
    assert dep["metadata"]["annotations"][PLAN_ANNOTATION] == plan.id, "the plan's annotation alone is not enough"


def test_rollback_undo_after_a_hotfix_is_superseded_and_the_hotfix_stays(api, ns, app):
    set_image(api, ns, IMAGE_2)
    wait_rolled_out(api, ns)
    plan = make_plan(app, "rollback")
    action = ACTIONS["rollback"](api, CLOCK)
    change = action.apply(plan, dry_run=False)
    wait_rolled_out(api, ns)
    set_image(api, ns, HOTFIX)  # shipped by a person during the verify window
    rv = wait_rolled_out(api, ns)["metadata"]["resourceVersion"]

    with pytest.raises(Superseded) as info:
        action.undo(plan, change, dry_run=False)

    assert f"images are {HOTFIX}, the plan set {IMAGE_1}" in info.value.detail
    assert image(api, ns) == HOTFIX and api.get_deployment(ns, APP)["metadata"]["resourceVersion"] == rv


def test_rollback_undo_of_its_own_change_sees_through_the_apiservers_defaults(api, ns, app):
    """The template read back after the rollback (defaulted, null creationTimestamp) is still the plan's."""
    set_image(api, ns, IMAGE_2)
    wait_rolled_out(api, ns)
    plan = make_plan(app, "rollback")
    action = ACTIONS["rollback"](api, CLOCK)
    intended = action.apply(plan, dry_run=True)  # what the runner journals before the patch
    action.apply(plan, dry_run=False)
    wait_rolled_out(api, ns)

    assert action.undo(plan, intended, dry_run=False).applied
    assert image(api, ns) == IMAGE_2


def test_restart_racing_itself_restarts_once(api, ns, app):
    """Two runs of one plan read the Deployment before either writes: one restart, the other finds it done."""
    plan = make_plan(app, "restart")
    landed: list[str] = []

    class Interleaved:
        def __init__(self, other=None):
            self.other = other

        def __getattr__(self, name):
            return getattr(api, name)

        def patch_deployment(self, namespace, name, patch):
            if self.other is not None:
                other, self.other = self.other, None
                other()
            result = api.patch_deployment(namespace, name, patch)
            landed.append(result["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT])
            return result

    second = ACTIONS["restart"](Interleaved(), CLOCK)
    first = ACTIONS["restart"](Interleaved(other=lambda: second.apply(plan, dry_run=False)), CLOCK)

    change = first.apply(plan, dry_run=False)

    assert change.already_done and len(landed) == 1
    dep = wait_rolled_out(api, ns)
    assert dep["metadata"]["annotations"][PLAN_ANNOTATION] == plan.id
    assert dep["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT] == landed[0]
    assert len(replicasets(api, ns)) == 2, "one restart: one new ReplicaSet"
