"""Reading the YAML files aiops is configured with (config, playbooks, rules, train configs, approvers' tokens):
one mapping per file, and where each part of it is written, so every error can name the file and the line."""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import yaml

from aiops.domain.errors import InputError


# Deeper than any real config, rule or playbook; the readers after the parser (pydantic, the rule engine) recurse.
MAX_DEPTH = 100


class YamlLines(Mapping[str, int]):
    """Where each part of a YAML document starts: the 1-based line of every mapping key and sequence item, by its
    path (``("rules", 2, "when", 0)``). As a mapping, the lines of the top-level keys."""

    def __init__(self, lines: dict[tuple, int] | None = None) -> None:
        self._lines = lines or {}

    @classmethod
    def of(cls, node: yaml.Node | None) -> "YamlLines":
        """The lines of a composed YAML document."""
        lines: dict[tuple, int] = {}
        for path, here in _walk(node):
            for child_path, start, _ in _children(path, here):
                lines.setdefault(child_path, start.start_mark.line + 1)
        return cls(lines)

    def line(self, loc: Sequence) -> int | None:
        """The line of ``loc``, or of the nearest part of it the document has (a missing key's mapping)."""
        loc = tuple(str(p) if not isinstance(p, int) else p for p in loc)
        for end in range(len(loc), 0, -1):
            if (found := self._lines.get(loc[:end])) is not None:
                return found
        return None

    def at(self, origin: str, loc: Sequence) -> str:
        """``origin:LINE`` for ``loc`` (just ``origin`` when the document has no line for it)."""
        line = self.line(loc)
        return f"{origin}:{line}" if line else origin

    def __getitem__(self, key: str) -> int:
        return self._lines[(key,)]

    def __iter__(self) -> Iterator[str]:
        return (path[0] for path in self._lines if len(path) == 1)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def read_yaml_mapping(path: Path, what: str) -> tuple[dict, YamlLines]:
    """Parse a YAML file that must hold a mapping, for every YAML file aiops reads: config, playbooks, rules, train
    configs. Returns the mapping and where each of its parts starts (``YamlLines``), so validation errors can point
    at a line. Every problem is an ``InputError`` naming the file (and line) and ``what`` it should be; an empty
    file (or one of only comments) is one too: it is a file that lost its content, never a deliberate default."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(str(path), f"{what} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(str(path), f"cannot read {what}: {exc}") from None
    too_deep = InputError(str(path), f"{what} is nested too deeply to read (over {MAX_DEPTH} levels)")
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if _deeper_than(node, MAX_DEPTH):  # every reader after this one recurses too
            raise too_deep
        twice = _key_written_twice(node)  # before constructing, which merges ``<<`` keys into the node itself
        raw = loader.construct_document(node) if node is not None else None
    except RecursionError:  # PyYAML's composer recurses: it gives up long before a Python stack would
        raise too_deep from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise InputError(where, f"not valid YAML: {getattr(exc, 'problem', None) or exc}") from None
    finally:
        loader.dispose()
    if twice is not None:
        line, dotted, first = twice
        raise InputError(f"{path}:{line}", f"{dotted}: written twice (first on line {first}); YAML would keep only "
                                           "the last one without a word: remove one")
    if raw is None:  # no document, or only ``---`` / ``null``
        raise InputError(str(path), f"{what} is empty (nothing but blank lines or comments)")
    if not isinstance(raw, dict):
        raise InputError(str(path), f"{what} must be a mapping of keys, got {type(raw).__name__}")
    return raw, YamlLines.of(node)


def _children(path: tuple, here: yaml.Node) -> list[tuple[tuple, yaml.Node, yaml.Node]]:
    """(path, the node it starts at, its value) of each part of a mapping or sequence node (none of a scalar)."""
    if isinstance(here, yaml.MappingNode):
        return [(path + (str(key.value),), key, value) for key, value in here.value]
    if isinstance(here, yaml.SequenceNode):
        return [(path + (i,), item, item) for i, item in enumerate(here.value)]
    return []


def _walk(node: yaml.Node | None) -> Iterator[tuple[tuple, yaml.Node]]:
    """Every (path, node) of a composed document, breadth first; a node an alias repeats (even inside itself) is
    visited once, at its first path."""
    pending = deque([((), node)] if node is not None else [])
    expanded: set[int] = set()
    while pending:
        path, here = pending.popleft()
        if id(here) in expanded:
            continue
        expanded.add(id(here))
        yield path, here
        pending.extend((child_path, value) for child_path, _, value in _children(path, here))


def _deeper_than(node: yaml.Node | None, limit: int) -> bool:
    """True when ``node`` nests mappings and sequences more than ``limit`` levels deep, aliases followed (an anchor
    nested inside another one adds up; one inside itself is endless)."""
    height: dict[int, int] = {}
    stack = [(node, False)] if node is not None else []
    while stack:
        here, done = stack.pop()
        parts = [value for _, _, value in _children((), here)]
        if done:
            height[id(here)] = 1 + max((height[id(p)] for p in parts), default=0) if parts else 0
            if height[id(here)] > limit:
                return True
        elif id(here) not in height:
            height[id(here)] = limit + 1  # while its parts are measured: met again below itself, it is a loop
            stack.append((here, True))
            stack.extend((p, False) for p in parts if id(p) not in height)
    return False


def _key_written_twice(node: yaml.Node | None) -> tuple[int, str, int] | None:
    """The first mapping key written twice in the same mapping, as (its second line, dotted path, its first line)."""
    for path, here in _walk(node):
        if not isinstance(here, yaml.MappingNode):
            continue
        first: dict[str, int] = {}
        for key, _ in here.value:
            if key.tag == "tag:yaml.org,2002:merge":  # ``<<: *anchor``: merged keys may be overridden
                continue
            name, line = str(key.value), key.start_mark.line + 1
            if name in first:
                return line, _dotted(path + (name,)), first[name]
            first[name] = line
    return None


def _dotted(path: tuple) -> str:
    """``("rules", 0, "when")`` -> ``rules[0].when``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
