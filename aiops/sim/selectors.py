"""Kubernetes label selectors: the string form (``a=b,c in (x,y),!d``) and ``matchLabels`` maps."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping


class SelectorError(ValueError):
    """A label selector string that does not parse."""


@dataclass(frozen=True, slots=True)
class Requirement:
    """One clause: ``op`` is one of ``=``, ``!=``, ``in``, ``notin``, ``exists``, ``!exists``."""

    key: str
    op: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.op == "exists":
            return present
        if self.op == "!exists":
            return not present
        if self.op in ("=", "in"):
            return present and labels[self.key] in self.values
        return not present or labels[self.key] not in self.values  # "!=" and "notin"


_SET = re.compile(r"^([\w./-]+)\s+(in|notin)\s+\((.*)\)$")
_EQ = re.compile(r"^([\w./-]+)\s*(==|=|!=)\s*([\w./-]*)$")
_KEY = re.compile(r"^(!?)\s*([\w./-]+)$")


def parse_selector(text: str | None) -> tuple[Requirement, ...]:
    """Parse a selector string; an empty one selects everything."""
    if not text or not text.strip():
        return ()
    return tuple(_parse_clause(c.strip()) for c in _split_clauses(text))


def _split_clauses(text: str) -> list[str]:
    clauses, depth, current = [], 0, ""
    for ch in text:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            clauses.append(current)
            current = ""
        else:
            current += ch
    clauses.append(current)
    return clauses


def _parse_clause(clause: str) -> Requirement:
    if m := _SET.match(clause):
        values = tuple(v.strip() for v in m.group(3).split(",") if v.strip())
        return Requirement(m.group(1), m.group(2), values)
    if m := _EQ.match(clause):
        return Requirement(m.group(1), "!=" if m.group(2) == "!=" else "=", (m.group(3),))
    if m := _KEY.match(clause):
        return Requirement(m.group(2), "!exists" if m.group(1) else "exists")
    raise SelectorError(f"unable to parse requirement: {clause!r}")


def selector_matches(requirements: tuple[Requirement, ...], labels: Mapping[str, str] | None) -> bool:
    """True when every requirement holds for ``labels``."""
    labels = labels or {}
    return all(r.matches(labels) for r in requirements)


def match_labels_selector(match_labels: Mapping[str, str]) -> str:
    """The string form of a ``matchLabels`` map (what a Scale's ``status.selector`` holds)."""
    return ",".join(f"{k}={v}" for k, v in sorted(match_labels.items()))


# --- field selectors ---------------------------------------------------------------------------------------------

# The fields kube-apiserver v1.20 lets a kind be selected on besides metadata.name and metadata.namespace (the kinds
# with field label conversions); any other field is refused with the real server's message.
SELECTABLE_FIELDS = {
    "Pod": ("spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
            "status.phase", "status.podIP", "status.nominatedNodeName"),
    "Event": ("involvedObject.kind", "involvedObject.namespace", "involvedObject.name", "involvedObject.uid",
              "involvedObject.apiVersion", "involvedObject.resourceVersion", "involvedObject.fieldPath",
              "reason", "reportingComponent", "source", "type"),
    "Namespace": ("status.phase",),
}
_METADATA_FIELDS = ("metadata.name", "metadata.namespace")
_FIELD_ALIASES = {("Event", "source"): "source.component"}  # what the Event's ``source`` field label reads
_FIELD_TERM = re.compile(r"^(?P<field>[^=!]+?)(?P<op>!=|==|=)(?P<value>.*)$", re.S)


@dataclass(frozen=True, slots=True)
class FieldRequirement:
    """One ``field=value`` (``op`` ``=``) or ``field!=value`` (``op`` ``!=``) term of a field selector."""

    field: str
    op: str
    value: str


def parse_field_selector(text: str | None, kind: str) -> tuple[FieldRequirement, ...]:
    """Parse a field selector for objects of ``kind``; an empty one selects everything. A term the apiserver
    cannot read, or a field it cannot select ``kind`` on, raises ``SelectorError`` with its message."""
    if not text or not text.strip():
        return ()
    requirements = []
    for term in _split_unescaped(text):
        m = _FIELD_TERM.match(term)
        if not m or not m["field"].strip():
            raise SelectorError(f"invalid selector: '{text}'; can't understand '{_unescape(term)}'")
        field = m["field"].strip()
        if field not in _METADATA_FIELDS + SELECTABLE_FIELDS.get(kind, ()):
            raise SelectorError(f"field label not supported: {field}" if kind in SELECTABLE_FIELDS else
                                f'"{field}" is not a known field selector: only "metadata.name", "metadata.namespace"')
        requirements.append(FieldRequirement(field, "!=" if m["op"] == "!=" else "=", _unescape(m["value"])))
    return tuple(requirements)


def field_selector_matches(requirements: tuple[FieldRequirement, ...], obj: dict, kind: str) -> bool:
    """True when every field requirement holds for ``obj`` (an absent field reads as the empty string)."""
    return all((field_value(obj, r.field, kind) == r.value) == (r.op == "=") for r in requirements)


def field_value(obj: dict, field: str, kind: str) -> str:
    """The string a field selector compares for ``field`` of ``obj``."""
    value = obj
    for part in _FIELD_ALIASES.get((kind, field), field).split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return "" if value is None else str(value)


def _split_unescaped(text: str) -> list[str]:
    """Split on commas not escaped by a backslash (``\\,`` is a literal comma in a value)."""
    terms, current, escaped = [], "", False
    for ch in text:
        if escaped:
            current, escaped = current + "\\" + ch, False
        elif ch == "\\":
            escaped = True
        elif ch == ",":
            terms.append(current)
            current = ""
        else:
            current += ch
    terms.append(current + ("\\" if escaped else ""))
    return terms


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)
