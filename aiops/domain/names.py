"""Kubernetes' rules for names and labels (k8s.io/apimachinery/pkg/util/validation), as plain checks.

Alert labels come from outside, and some plan params (the pod to isolate) come from a diagnosis that read them out
of logs or metrics. A value that becomes part of an API path, a label selector, a JSON-pointer path or a plan must
be one the API itself would accept, so a crafted value (``../secrets``, ``a,b``, ``x=y``) never reaches any of
them. Each check returns why a value is not valid, or None when it is.
"""

from __future__ import annotations

import re

# RFC 1123 label (namespaces): lowercase alphanumerics and '-', starting and ending alphanumeric.
_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
# RFC 1035 label (Services): the same, starting with a letter.
_DNS1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
# RFC 1123 subdomain (Deployments, pods, most objects): labels joined by '.'.
_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
# Label keys' name part and label values: letters, digits, '-', '_', '.', alphanumeric at both ends.
_QUALIFIED = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
LABEL_MAX = 63
SUBDOMAIN_MAX = 253


def dns_label_problem(value: str) -> str | None:
    """Why ``value`` is not a DNS-1123 label (a namespace name), or None when it is one."""
    if len(value) > LABEL_MAX:
        return f"longer than {LABEL_MAX} characters"
    if not _LABEL.fullmatch(value):
        return "not a DNS-1123 label (lowercase letters, digits and '-', starting and ending with a letter or digit)"
    return None


def dns1035_label_problem(value: str) -> str | None:
    """Why ``value`` is not a DNS-1035 label (a Service name), or None when it is one."""
    if len(value) > LABEL_MAX:
        return f"longer than {LABEL_MAX} characters"
    if not _DNS1035.fullmatch(value):
        return "not a DNS-1035 label (lowercase letters, digits and '-', starting with a letter)"
    return None


def dns_subdomain_problem(value: str) -> str | None:
    """Why ``value`` is not a DNS-1123 subdomain (a Deployment or pod name), or None when it is one."""
    if len(value) > SUBDOMAIN_MAX:
        return f"longer than {SUBDOMAIN_MAX} characters"
    if not _SUBDOMAIN.fullmatch(value):
        return ("not a DNS-1123 subdomain (lowercase letters, digits, '-' and '.', starting and ending with a "
                "letter or digit)")
    return None


def label_key_problem(value: str) -> str | None:
    """Why ``value`` is not a label key (``[prefix/]name``), or None when it is one."""
    prefix, slash, name = value.rpartition("/")
    if slash and (not prefix or dns_subdomain_problem(prefix)):
        return "the prefix before '/' must be a lowercase DNS subdomain"
    if len(name) > LABEL_MAX or not _QUALIFIED.fullmatch(name):
        return (f"the name must be at most {LABEL_MAX} characters: letters, digits, '-', '_', '.', beginning and "
                "ending with a letter or digit")
    return None


def label_value_problem(value: str) -> str | None:
    """Why ``value`` is not a label value (may be empty), or None when it is one."""
    if len(value) > LABEL_MAX or (value and not _QUALIFIED.fullmatch(value)):
        return (f"at most {LABEL_MAX} characters: letters, digits, '-', '_', '.', beginning and ending with a "
                "letter or digit")
    return None
