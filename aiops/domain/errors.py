"""The two exception types the whole package raises on purpose.

Expected outcomes (blocked, already done, verification failed) are return values, not exceptions; exceptions are
for input a user must fix (``InputError``) and for broken invariants.
"""

from __future__ import annotations


class AiopsError(Exception):
    """Base class for errors aiops raises deliberately."""


class InputError(AiopsError):
    """Bad input from a user-facing entry point: names *what* is wrong and *where*.

    ``where`` is a file path, a file path plus key (``config.yaml: webhook.listen``), an HTTP field, or a CLI flag.
    The CLI maps this to exit code 2; the webhook maps it to a 4xx answer.
    """

    def __init__(self, where: str, reason: str) -> None:
        self.where = where
        self.reason = reason
        super().__init__(f"{where}: {reason}" if where else reason)
