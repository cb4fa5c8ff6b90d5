"""The one PromQL form the simulator answers: a plain vector selector, ``name{label="v", label=~"re", ...}``."""

from __future__ import annotations

import re
from dataclasses import dataclass


class QueryError(ValueError):
    """Anything that is not a plain vector selector (Prometheus answers such with 400 bad_data)."""


@dataclass(frozen=True, slots=True)
class Matcher:
    """``label op value`` with ``op`` one of ``=``, ``!=``, ``=~``, ``!~`` (regexes are fully anchored)."""

    label: str
    op: str
    value: str

    def matches(self, labels: dict) -> bool:
        actual = labels.get(self.label, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        hit = re.fullmatch(self.value, actual) is not None
        return hit if self.op == "=~" else not hit


@dataclass(frozen=True, slots=True)
class Selector:
    """A parsed vector selector: the metric name (may be empty) and label matchers."""

    name: str
    matchers: tuple[Matcher, ...]

    def matches(self, name: str, labels: dict) -> bool:
        full = {**labels, "__name__": name}
        return (not self.name or name == self.name) and all(m.matches(full) for m in self.matchers)


_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_MATCHER = re.compile(r"\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*(\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*')\s*")


def parse_selector(query: str) -> Selector:
    """Parse ``query`` or raise ``QueryError`` with a Prometheus-like message."""
    text = query.strip()
    name = ""
    if m := _NAME.match(text):
        name, text = m.group(0), text[m.end():].strip()
    matchers: list[Matcher] = []
    if text.startswith("{") and text.endswith("}"):
        matchers = _parse_matchers(text[1:-1])
    elif text:
        raise QueryError(f"1:{len(query) - len(text) + 1}: parse error: only plain vector selectors are supported "
                         f"by the simulator, got {query!r}")
    if not name and not any(m.op in ("=", "=~") and not m.matches({}) for m in matchers):
        raise QueryError("vector selector must contain at least one non-empty matcher")
    if name and any(m.label == "__name__" for m in matchers):
        raise QueryError(f"metric name must not be set twice: {name!r}")
    for m in matchers:
        if m.op in ("=~", "!~"):
            try:
                re.compile(m.value)
            except re.error as exc:
                raise QueryError(f"invalid regular expression {m.value!r}: {exc}") from None
    name = name or next((m.value for m in matchers if m.label == "__name__" and m.op == "="), "")
    return Selector(name, tuple(m for m in matchers if not (m.label == "__name__" and m.op == "=")))


def _parse_matchers(body: str) -> list[Matcher]:
    matchers, pos = [], 0
    while pos < len(body):
        m = _MATCHER.match(body, pos)
        if not m:
            raise QueryError(f"parse error: unexpected {body[pos:pos + 10]!r} in label matching")
        raw = m.group(3)
        value = bytes(raw[1:-1], "utf-8").decode("unicode_escape") if "\\" in raw else raw[1:-1]
        matchers.append(Matcher(m.group(1), m.group(2), value))
        pos = m.end()
        if pos < len(body):
            if body[pos] != ",":
                raise QueryError(f"parse error: unexpected {body[pos]!r} in label matching, expected \",\" or \"}}\"")
            pos += 1
    return matchers
