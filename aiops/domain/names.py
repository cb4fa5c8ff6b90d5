"""Kubernetes object names: which strings may name a namespace, a Deployment or a pod.

Alert labels come from outside; a label value that becomes part of an API path, a label selector or a plan must be
a name the API itself would accept, so a crafted value (``../secrets``, ``a,b``, ``x=y``) never reaches either.
"""

from __future__ import annotations

import re

# RFC 1123 label (namespaces, Services): lowercase alphanumerics and '-', starting and ending alphanumeric.
_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
# RFC 1123 subdomain (Deployments, pods, most objects): labels joined by '.'.
_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
LABEL_MAX = 63
SUBDOMAIN_MAX = 253


def dns_label_problem(value: str) -> str | None:
    """Why ``value`` is not a DNS-1123 label (a namespace name), or None when it is one."""
    if len(value) > LABEL_MAX:
        return f"longer than {LABEL_MAX} characters"
    if not _LABEL.fullmatch(value):
        return "not a DNS-1123 label (lowercase letters, digits and '-', starting and ending with a letter or digit)"
    return None


def dns_subdomain_problem(value: str) -> str | None:
    """Why ``value`` is not a DNS-1123 subdomain (a Deployment or pod name), or None when it is one."""
    if len(value) > SUBDOMAIN_MAX:
        return f"longer than {SUBDOMAIN_MAX} characters"
    if not _SUBDOMAIN.fullmatch(value):
        return ("not a DNS-1123 subdomain (lowercase letters, digits, '-' and '.', starting and ending with a "
                "letter or digit)")
    return None
