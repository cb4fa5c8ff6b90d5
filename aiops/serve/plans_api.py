"""The agent's plan endpoints: list executions and approve the ones waiting for a person.

``GET /api/v1/plans`` lists each plan's latest state, newest last (``summaries``). It needs a credential: an
approver's token (approvers read the list to decide) or the webhook's token (read-only tooling that already holds
it); an agent configured with neither refuses it (403), since plan notes name workloads and faults.

``POST /api/v1/plans/{id}/approve`` records an approval. Approving changes the cluster, so it needs an approver's
own token (``approvals.token_file``); the journal records the name that token belongs to. The webhook's token
cannot approve (403), and an agent without approvers refuses every approval over HTTP (403; ``aiops approve``,
which needs access to the journal, still works). The optional body ``{"approver": "alice"}`` must name the token's
owner: it is checked, never believed.
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import Callable

from aiohttp import web

from aiops.domain.errors import InputError
from aiops.domain.protocols import Clock, ExecutionStore
from aiops.remediate.runner import approve
from aiops.serve.approvers import APPROVER_NAME, SETTING, Approvers, bearer

log = logging.getLogger(__name__)

PLANS_PATH = "/api/v1/plans"


def add_plan_routes(app: web.Application, store: ExecutionStore, clock: Clock, on_approved: Callable[[str], None],
                    *, approvers: Approvers, webhook_token: str | None = None) -> None:
    """Add the plan endpoints to ``app`` over any journal (SQLite, Kubernetes); ``on_approved(plan_id)`` is called
    after an approval is recorded. ``approvers`` may approve and list; ``webhook_token`` may only list."""
    webhook = webhook_token.strip().encode() if webhook_token else None

    def is_webhook(header: str) -> bool:
        presented = bearer(header)
        return webhook is not None and presented is not None and hmac.compare_digest(presented, webhook)

    async def list_plans(request: web.Request) -> web.Response:
        if not approvers.configured and webhook is None:
            return _error(403, f"listing plans needs a credential: configure {SETTING} (approvers) or "
                               f"webhook.token_file")
        header = request.headers.get("Authorization", "")
        if approvers.identify(header) is None and not is_webhook(header):
            return _error(401, "missing or wrong bearer token (an approver's or the webhook's)")
        return web.json_response({"plans": summaries(store)})

    async def approve_plan(request: web.Request) -> web.Response:
        if not approvers.configured:
            return _error(403, f"approvals over HTTP need {SETTING} (each approver's own token); "
                               f"the webhook's token cannot approve")
        header = request.headers.get("Authorization", "")
        approver = approvers.identify(header)
        if approver is None:
            if is_webhook(header):
                return _error(403, f"the webhook's token cannot approve: use your own token from {SETTING}")
            return _error(401, "missing or wrong approver token")
        if request.can_read_body:
            try:
                body = json.loads(await request.text() or "{}")
            except ValueError:
                return _error(400, "malformed JSON body")
            except RecursionError:
                return _error(400, "JSON body nested too deeply (an approval is one flat object)")
            if not isinstance(body, dict):
                return _error(400, "the body must be a JSON object")
            claimed = body.get("approver")
            if claimed is not None and not (isinstance(claimed, str) and APPROVER_NAME.match(claimed)):
                return _error(422, "approver must be 1-64 letters, digits or . _ @ + -")
            if claimed is not None and claimed != approver:
                return _error(403, f"this token is {approver}'s; it cannot approve as {claimed}")
        plan_id = request.match_info["plan_id"]
        try:
            record = approve(store, plan_id, approver, clock.now())
        except InputError as exc:
            return _error(404 if "no such plan" in exc.reason else 409, str(exc))
        log.info("plan %s approved by %s over HTTP: %s on %s", plan_id, approver, record["data"].get("playbook"),
                 summary(record)["target"], extra={"plan": plan_id, "approver": approver})
        on_approved(plan_id)
        return web.json_response({"plan": plan_id, "approved_by": record["data"].get("approved_by")})

    app.router.add_get(PLANS_PATH, list_plans)
    app.router.add_post(PLANS_PATH + "/{plan_id}/approve", approve_plan)


def summary(record: dict) -> dict:
    """One plan's latest journal record, as ``aiops history`` and ``GET /api/v1/plans`` show it."""
    data = record.get("data") or {}
    target = data.get("target") or {}
    return {"plan": record["plan_id"], "state": record["state"], "ts": record["ts"],
            "playbook": data.get("playbook"), "mode": data.get("mode"),
            "target": f"{target.get('kind')} {target.get('namespace')}/{target.get('name')}" if target else None,
            "note": record.get("note", "")}


def summaries(store: ExecutionStore) -> list[dict]:
    """Every plan's ``summary``, oldest first by the time of its latest record (newest last, as ``helm history``
    and ``kubectl get events --sort-by=.lastTimestamp`` list); ties by plan id, so the SQLite and the Kubernetes
    journals, which keep plans in different orders, list the same."""
    return sorted((summary(r) for r in store.latest()), key=lambda row: (row["ts"], row["plan"]))


def _error(status: int, detail: str) -> web.Response:
    return web.json_response({"error": detail}, status=status)
