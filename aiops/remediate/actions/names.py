"""Kubernetes' rules for names and labels, checked before a plan parameter goes into a selector or a patch.

Plan params come from playbooks and, for some (the pod to isolate), from a diagnosis that read them out of logs or
metrics. A value the API would reject, or one that would change the meaning of a selector or a JSON-pointer path
(``a,b=c``, ``x/../y``), is an ``ActionError`` naming the param, and nothing is sent to the API.
"""

from __future__ import annotations

import re
from typing import Any

from aiops.remediate.actions.base import ActionError

# k8s.io/apimachinery/pkg/util/validation: IsQualifiedName, IsValidLabelValue, IsDNS1123Subdomain, IsDNS1035Label.
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def label_key(param: str, value: Any) -> str:
    """``value`` as a label key (``[prefix/]name``: a DNS subdomain prefix, a name of at most 63 characters)."""
    text = _text(param, value)
    prefix, _, name = text.rpartition("/")
    if "/" in text and (not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        raise ActionError(f"params.{param}: {text!r} is not a valid label key (the prefix before '/' must be a "
                          "lowercase DNS subdomain)")
    if len(name) > 63 or not _LABEL_NAME.match(name):
        raise ActionError(f"params.{param}: {text!r} is not a valid label key (at most 63 characters: letters, "
                          "digits, '-', '_', '.', beginning and ending with a letter or digit)")
    return text


def label_value(param: str, value: Any) -> str:
    """``value`` as a label value (at most 63 characters: letters, digits, ``-_.``, alphanumeric at both ends)."""
    text = _text(param, value, empty_ok=True)
    if len(text) > 63 or not _LABEL_VALUE.match(text):
        raise ActionError(f"params.{param}: {text!r} is not a valid label value (at most 63 characters: letters, "
                          "digits, '-', '_', '.', beginning and ending with a letter or digit)")
    return text


def selector(param: str, value: Any) -> dict[str, str]:
    """A label selector given as a mapping: every key a label key, every value a label value."""
    if not isinstance(value, dict):
        raise ActionError(f"params.{param}: must be a mapping of label keys to values, not {type(value).__name__}")
    return {label_key(f"{param} key", k): label_value(f"{param}.{k}", v) for k, v in value.items()}


def object_name(param: str, value: Any) -> str:
    """``value`` as the name of a Deployment or Pod (a lowercase DNS subdomain, at most 253 characters)."""
    text = _text(param, value)
    if len(text) > 253 or not _DNS_SUBDOMAIN.match(text):
        raise ActionError(f"params.{param}: {text!r} is not a valid object name (a lowercase DNS subdomain: "
                          "a-z, 0-9, '-', '.')")
    return text


def service_name(param: str, value: Any) -> str:
    """``value`` as the name of a Service (a DNS label: at most 63 characters, a-z, 0-9, '-', a letter first)."""
    text = _text(param, value)
    if len(text) > 63 or not _DNS_LABEL.match(text):
        raise ActionError(f"params.{param}: {text!r} is not a valid Service name (at most 63 characters: a-z, "
                          "0-9, '-', beginning with a letter)")
    return text


def _text(param: str, value: Any, empty_ok: bool = False) -> str:
    # Numbers written unquoted in YAML (a zone "1") are fine as text; anything else is a mistake in the playbook.
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ActionError(f"params.{param}: must be a string, not {type(value).__name__}")
    text = str(value)
    if not text and not empty_ok:
        raise ActionError(f"params.{param}: must not be empty")
    return text
