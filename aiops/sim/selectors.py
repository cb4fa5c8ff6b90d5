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
