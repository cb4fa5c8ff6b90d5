"""The agent's plan endpoints: list executions and approve the ones waiting for a person.

``GET /api/v1/plans`` lists each plan's latest state; ``POST /api/v1/plans/{id}/approve`` records an approval
(body, optional: ``{"approver": "alice"}``). Approving changes the cluster, so it needs the webhook's bearer token;
an agent configured without one refuses approvals over HTTP (the CLI, which needs access to the journal file,
still works).
"""

from __future__ import annotations

import hmac
import json
import re
from typing import Callable

from aiohttp import web

from aiops.domain.errors import InputError
from aiops.domain.protocols import Clock, ExecutionStore
from aiops.remediate.runner import approve

PLANS_PATH = "/api/v1/plans"
_APPROVER = re.compile(r"^[\w.@+-]{1,64}$")


def add_plan_routes(app: web.Application, store: ExecutionStore, token: str | None, clock: Clock,
                    on_approved: Callable[[str], None]) -> None:
    """Add the plan endpoints to ``app`` over any journal (SQLite, Kubernetes); ``on_approved(plan_id)`` is called
    after an approval is recorded."""
    async def list_plans(request: web.Request) -> web.Response:
        if (refusal := _auth(request, token)) is not None:
            return refusal
        return web.json_response({"plans": [summary(r) for r in store.latest()]})

    async def approve_plan(request: web.Request) -> web.Response:
        if (refusal := _auth(request, token, needed=True)) is not None:
            return refusal
        approver = "http"
        if request.can_read_body:
            try:
                body = json.loads(await request.text() or "{}")
            except ValueError:
                return _error(400, "malformed JSON body")
            if not isinstance(body, dict):
                return _error(400, "the body must be a JSON object")
            approver = str(body.get("approver", approver))
        if not _APPROVER.match(approver):
            return _error(422, "approver must be 1-64 letters, digits or . _ @ + -")
        plan_id = request.match_info["plan_id"]
        try:
            record = approve(store, plan_id, approver, clock.now())
        except InputError as exc:
            return _error(404 if "no such plan" in exc.reason else 409, str(exc))
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


def _auth(request: web.Request, token: str | None, needed: bool = False) -> web.Response | None:
    if token is None:
        return _error(403, "approvals over HTTP need webhook.token_file to be configured") if needed else None
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(), token.encode()):
        return _error(401, "missing or wrong bearer token")
    return None


def _error(status: int, detail: str) -> web.Response:
    return web.json_response({"error": detail}, status=status)
