"""Plan params checked against Kubernetes' name and label rules (``aiops.domain.names``) before they go into a
selector, a path or a patch: a value the API would reject, or one that would change the meaning of a selector or a
JSON-pointer path (``a,b=c``, ``x/../y``), is an ``ActionError`` naming the param, and nothing is sent to the API.
"""

from __future__ import annotations

from typing import Any, Callable

from aiops.domain import names as rules
from aiops.remediate.actions.base import ActionError


def label_key(param: str, value: Any) -> str:
    """``value`` as a label key (``[prefix/]name``)."""
    return _checked(param, value, rules.label_key_problem, "a valid label key")


def label_value(param: str, value: Any) -> str:
    """``value`` as a label value (at most 63 characters: letters, digits, ``-_.``, alphanumeric at both ends)."""
    return _checked(param, value, rules.label_value_problem, "a valid label value", empty_ok=True)


def selector(param: str, value: Any) -> dict[str, str]:
    """A label selector given as a mapping: every key a label key, every value a label value."""
    if not isinstance(value, dict):
        raise ActionError(f"params.{param}: must be a mapping of label keys to values, not {type(value).__name__}")
    return {label_key(f"{param} key", k): label_value(f"{param}.{k}", v) for k, v in value.items()}


def object_name(param: str, value: Any) -> str:
    """``value`` as the name of a Deployment or Pod (a lowercase DNS subdomain, at most 253 characters)."""
    return _checked(param, value, rules.dns_subdomain_problem, "a valid object name")


def service_name(param: str, value: Any) -> str:
    """``value`` as the name of a Service (a DNS-1035 label)."""
    return _checked(param, value, rules.dns1035_label_problem, "a valid Service name")


def _checked(param: str, value: Any, problem_of: Callable[[str], str | None], what: str,
             empty_ok: bool = False) -> str:
    # Numbers written unquoted in YAML (a zone "1") are fine as text; anything else is a mistake in the playbook.
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ActionError(f"params.{param}: must be a string, not {type(value).__name__}")
    text = str(value)
    if not text and not empty_ok:
        raise ActionError(f"params.{param}: must not be empty")
    problem = problem_of(text) if text else None
    if problem:
        raise ActionError(f"params.{param}: {text!r} is not {what} ({problem})")
    return text
