"""The approvers' credentials: who may approve a plan over HTTP, and the name the journal records for it.

Each approver has their own bearer token (``approvals.token_file``: ``name: token`` per line), so an approval names
the person whose token was presented, never a name the caller typed. The Alertmanager webhook's token is a
different credential: a file that reuses it is refused, so whoever can send alerts cannot approve actions.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from pathlib import Path

from aiops.domain.errors import InputError
from aiops.settings import read_yaml_mapping

APPROVER_NAME = re.compile(r"^[\w.@+-]{1,64}$")
# Shorter tokens are guessable; ``openssl rand -hex 24`` gives 48 characters.
MIN_TOKEN_CHARS = 16
SETTING = "approvals.token_file"


@dataclass(frozen=True)
class Approvers:
    """The configured approvers, as (name, token) pairs; empty when ``approvals.token_file`` is unset."""

    tokens: tuple[tuple[str, bytes], ...] = ()

    @property
    def configured(self) -> bool:
        """True when at least one approver can approve over HTTP."""
        return bool(self.tokens)

    def identify(self, authorization: str) -> str | None:
        """The approver whose token an ``Authorization: Bearer ...`` header presents, or ``None``."""
        presented = bearer(authorization)
        if presented is None:
            return None
        found = None
        for name, token in self.tokens:  # every token is compared (no early exit): the time says nothing
            if hmac.compare_digest(presented, token):
                found = name
        return found


def bearer(authorization: str) -> bytes | None:
    """The token of an ``Authorization: Bearer <token>`` header, or ``None`` for any other header."""
    scheme, _, presented = authorization.partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        return None
    return presented.strip().encode()


def read_webhook_token(path: Path | None) -> str | None:
    """The Alertmanager webhook's bearer token from ``webhook.token_file`` (None when unset); a file that cannot be
    read or holds nothing is an ``InputError`` (never echoing the token)."""
    if path is None:
        return None
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError("webhook.token_file", f"cannot read {path}: {exc}") from None
    if not token:
        raise InputError("webhook.token_file", f"{path} is empty")
    return token


def load_approvers(path: Path | None, webhook_token: str | None = None) -> Approvers:
    """Read ``approvals.token_file``; ``None`` gives no approvers. Every problem is an ``InputError`` naming the
    file (and line) and the approver, never echoing a token."""
    if path is None:
        return Approvers()
    raw, lines = read_yaml_mapping(path, "approvers' token file (one `name: token` line per approver)")
    if not raw:
        raise InputError(f"{path}", f"{SETTING} names no approver; write one `name: token` line per approver")
    pairs: list[tuple[str, bytes]] = []
    owner: dict[bytes, str] = {}
    for name, token in raw.items():
        where = f"{path}:{lines[str(name)]}" if str(name) in lines else str(path)
        name = str(name)
        if not APPROVER_NAME.match(name):
            raise InputError(where, f"approver name {name!r} must be 1-64 letters, digits or . _ @ + -")
        if not isinstance(token, str):
            raise InputError(where, f"the token of {name} must be a string (quote it)")
        secret = token.strip().encode()
        if len(secret) < MIN_TOKEN_CHARS:
            raise InputError(where, f"the token of {name} is shorter than {MIN_TOKEN_CHARS} characters")
        if webhook_token and hmac.compare_digest(secret, webhook_token.strip().encode()):
            raise InputError(where, f"the token of {name} is the webhook's (webhook.token_file): Alertmanager's "
                                    f"credential must not be able to approve; give {name} a token of their own")
        if secret in owner:
            raise InputError(where, f"{name} and {owner[secret]} share a token, so an approval could not say who "
                                    f"gave it")
        owner[secret] = name
        pairs.append((name, secret))
    return Approvers(tuple(pairs))
