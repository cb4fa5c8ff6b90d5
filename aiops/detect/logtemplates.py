"""Log templates: drain3 with one cross-system masking configuration, template-count series and template evidence.

``LogTemplateMiner`` turns log lines into templates (``"Invalid user <*> from <*>"``) with ``drain3.TemplateMiner``,
configured through ``TemplateMinerConfig`` only. The masking below is ONE configuration for every system: it was
chosen on the Loghub 2k samples (``python -m bench.logparse``) without per-system settings, and every mask renders as
Loghub's ``<*>`` so the mined templates compare directly with the benchmark's ground truth.

The agent-facing helpers turn templates into detector input (``template_counts``: one count series per workload and
template) and into diagnosis evidence (``new_templates``, ``surging_templates``).
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Sequence

import numpy as np
from drain3 import TemplateMiner
from drain3.masking import MaskingInstruction
from drain3.template_miner_config import TemplateMinerConfig

from aiops.domain.diagnosis import Evidence
from aiops.domain.observations import LogLine, Series

PARAM = "<*>"
TEMPLATE_COUNT_METRIC = "log_template_count"

# Parameter shapes, applied in order (earlier, more specific shapes first so a later, looser one cannot split them):
# (name, a substring the line must contain for the shape to be possible, regex). The guard skips most regexes on
# most lines, which is where the miner's time goes.
MASKS: tuple[tuple[str, str, str], ...] = (
    ("url", "://", r"\b[a-zA-Z][\w+.\-]*://[^\s,;\"'()\[\]{}<>]+"),
    ("uuid", "-", r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"),
    ("mac", "", r"\b(?:[0-9a-fA-F]{2}[:\-]){5}[0-9a-fA-F]{2}\b"),
    ("ipv4", ".", r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])"),
    # Unix paths with at least two components; Windows paths
    ("path", "/", r"(?<![\w.\-])(?:/[\w.\-@+~$#%]+){2,}/?"),
    ("winpath", "\\", r"\b[A-Za-z]:\\[^\s,;\"']*"),
    # the host of host:port (the port is masked as a number below)
    ("host_port", ":", r"(?<![\w.\-])[A-Za-z][\w\-]*(?:\.[\w\-]+)+(?=:\d{1,5}\b)"),
    # dotted names that carry a digit (host-12.cluster.example, 6.1.7601 versions); plain class names stay
    ("dotted_num", ".", r"(?<![\w.])(?=[\w\-.]*\d)[\w\-]+(?:\.[\w\-]+){2,}(?![\w.])"),
    ("hex", "0", r"\b0[xX][0-9a-fA-F]+\b"),
    # hex ids of 6+ digits holding both a digit and a letter (commit hashes, object ids)
    ("hexid", "", r"(?<![\w])(?=[0-9a-fA-F]*\d)(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{6,}(?![\w])"),
    # durations and sizes: 12ms, 3.5s, 1 sec, 10 KB
    ("duration", "", r"(?<![\w.])[-+]?\d+(?:\.\d+)?\s?(?:ns|us|µs|ms|s|sec|secs|min|mins|h|m|KB|MB|GB|TB|kB|B|k|K|M|G)\b"),
    # the value of key=value when it carries a digit (id=a1b2, ws=WorkSource{10113}); word values (state=FAILED)
    # stay, they tell events apart
    ("kv", "=", r"(?<=[A-Za-z_]=)(?=[^\s,;]*\d)[^\s,;\]\)}\"']+"),
    # every other number (signed, decimal, 12:30:01-like), also after "_" or "-" (blk_123) but not inside a word (ipv6)
    ("num", "", r"(?<![A-Za-z])[-+]?\d+(?:[.,:]\d+)*"),
)


@functools.lru_cache(maxsize=4096)
def _has_digit(content: str) -> bool:
    # Asked once per unguarded mask for the same line: cache the answer for the last lines seen.
    return any(ch.isdigit() for ch in content)


class _GuardedMask(MaskingInstruction):
    """A drain3 masking instruction that skips its regex when the line cannot contain the shape."""

    def __init__(self, pattern: str, mask_with: str, guard: str) -> None:
        super().__init__(pattern, mask_with)
        self.guard = guard

    def mask(self, content: str, mask_prefix: str, mask_suffix: str) -> str:
        if self.guard and self.guard not in content:
            return content
        if not self.guard and not _has_digit(content):
            return content  # every unguarded shape needs a digit
        return super().mask(content, mask_prefix, mask_suffix)


# Masked values render as "<#>" inside drain3 so that they count as EQUAL tokens in Drain's similarity (two lines
# that differ only in masked values are the same event); only the output spells them "<*>", like Loghub.
MASK_NAME = "#"
MASKED = "<" + MASK_NAME + ">"


def _masking_instructions() -> list[MaskingInstruction]:
    return [_GuardedMask(pattern, MASK_NAME, guard) for _name, guard, pattern in MASKS]


def _render(template: str) -> str:
    return template.replace(MASKED, PARAM)


# A leading RFC3339 / ISO-8601 timestamp and log level, as container runtimes and most services write them.
_LEADING_TS = re.compile(
    r"^\s*\[?\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?\]?\s*"
)
_LEADING_LEVEL = re.compile(
    r"^\s*[\[(]?(?:TRACE|DEBUG|INFO|NOTICE|WARN|WARNING|ERROR|ERR|CRITICAL|CRIT|FATAL|PANIC|SEVERE)[\])]?:?\s+",
    re.IGNORECASE,
)
_ERROR_WORDS = re.compile(
    r"(?:error|exception|fail(?:ed|ure|s)?)\b|\b(?:err|fatal|panic|critical|crash(?:ed)?|refused|timeout|timed out"
    r"|unavailable|denied|killed|oom|traceback|invalid|unable|cannot|could not)\b",
    re.IGNORECASE,
)


def template_key(template: str) -> str:
    """What identifies an event regardless of how its parameters were tokenised.

    Drain keys clusters by token count, so one event whose parameters vary in length ("lifetime 00:01" and
    "lifetime <1 sec", "12 bytes sent" and "1190 bytes (1.16 KB) sent") lands in several clusters. Their keys agree:
    parameters are cut out of tokens that keep a word ("uid=<*>" -> "uid="), a parameter wrapped in punctuation
    ("(<*>)", "<<*>") is dropped, and a run of bare "<*>" tokens becomes one "<*>".
    """
    out: list[str] = []
    for tok in template.split():
        if PARAM not in tok:
            out.append(tok)
        elif _WORDLIKE.search(rest := tok.replace(PARAM, "")):
            out.append(rest)
        elif tok == PARAM and (not out or out[-1] != PARAM):
            out.append(PARAM)
    return " ".join(out)


_WORDLIKE = re.compile(r"[A-Za-z0-9]")


def strip_header(line: str) -> str:
    """The message part of a container log line: a leading RFC3339 timestamp and a log level are removed."""
    rest = _LEADING_TS.sub("", line, count=1)
    return _LEADING_LEVEL.sub("", rest, count=1).strip()


def is_error_template(template: str) -> bool:
    """Whether a template reads as an error (error, exception, failed, timeout, refused, ...)."""
    return bool(_ERROR_WORDS.search(template))


def miner_config(sim_th: float = 0.7, depth: int = 5) -> TemplateMinerConfig:
    """The drain3 configuration used everywhere (benchmark and agent): the masks above, ``<*>`` as parameter."""
    config = TemplateMinerConfig()
    config.drain_sim_th = sim_th
    config.drain_depth = depth
    config.drain_max_children = 100
    config.masking_instructions = _masking_instructions()
    config.mask_prefix = "<"
    config.mask_suffix = ">"
    config.parametrize_numeric_tokens = True
    config.profiling_enabled = False
    return config


@dataclass(frozen=True, slots=True)
class Template:
    """One mined template: drain3's cluster id, its current text and how many lines it has absorbed."""

    template_id: int
    template: str
    size: int


class LogTemplateMiner:
    """Streaming template miner: ``add`` learns from a line, ``match`` only looks a line up.

    Lines may be bare messages (the Loghub Content column) or full container log lines; a leading RFC3339 timestamp
    and log level are stripped first (``strip_header``).
    """

    def __init__(self, sim_th: float = 0.7, depth: int = 5, strip: bool = True) -> None:
        self.strip = strip
        self._miner = TemplateMiner(config=miner_config(sim_th, depth))

    def _message(self, line: str) -> str:
        return strip_header(line) if self.strip else line.strip()

    def add(self, line: str) -> tuple[int, str]:
        """Learn from ``line``; returns its (template_id, template) as of now (a template may generalise later)."""
        result = self._miner.add_log_message(self._message(line))
        return int(result["cluster_id"]), _render(str(result["template_mined"]))

    def add_tokens(self, line: str) -> tuple[int, list[str]]:
        """Learn from ``line`` like ``add``; returns its template_id and its own masked tokens ("<*>" for masked
        values), masking the line once."""
        masked = self._miner.masker.mask(self._message(line))
        cluster, _change = self._miner.drain.add_log_message(masked)
        return int(cluster.cluster_id), _render(masked).split()

    def match(self, line: str) -> tuple[int, str] | None:
        """The known template of ``line`` without learning from it, or None when no template fits exactly."""
        cluster = self._miner.match(self._message(line), full_search_strategy="fallback")
        if cluster is None:
            return None
        return int(cluster.cluster_id), _render(cluster.get_template())

    def masked_tokens(self, line: str) -> list[str]:
        """The tokens drain3 sees for ``line``: the message after the masks, split on whitespace."""
        return _render(self._miner.masker.mask(self._message(line))).split()

    def template(self, template_id: int) -> str:
        """The current text of template ``template_id`` (templates generalise as lines arrive)."""
        cluster = self._miner.drain.id_to_cluster.get(template_id)
        return _render(cluster.get_template()) if cluster is not None else ""

    def templates(self) -> list[Template]:
        """Every template mined so far, by id."""
        clusters = sorted(self._miner.drain.clusters, key=lambda c: c.cluster_id)
        return [Template(int(c.cluster_id), _render(c.get_template()), int(c.size)) for c in clusters]


# A token that reads as a word (an enum value, a client name), not as a parameter value.
_PLAIN_WORD = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]*[.,;:!]?$")


@dataclass(frozen=True, slots=True)
class Event:
    """The event a line belongs to after a batch is mined: a stable id (md5 of the key) and its template."""

    event_id: str
    template: str


def mine_events(messages: Sequence[str], miner: "LogTemplateMiner | None" = None,
                max_word_values: int = 3) -> list[Event]:
    """The event of every message, mined as one batch.

    Two corrections on top of drain3's clusters, both independent of any system:

    * a cluster whose parameter position only ever holds a few plain words ("client WindowsUpdateAgent." /
      "client SPP.", "HTTPS" / "SOCKS5") is split by that word: such a slot names a kind of event, not a value
      (Drain merges them because one differing token in a long line is still above the similarity threshold);
    * clusters whose templates have the same ``template_key`` are one event (parameters of varying length).
    """
    miner = miner if miner is not None else LogTemplateMiner()
    added = [miner.add_tokens(m) for m in messages]
    final = {t.template_id: t.template.split() for t in miner.templates()}
    lines_of: dict[int, list[int]] = defaultdict(list)
    for i, (c, _tokens) in enumerate(added):
        lines_of[c].append(i)
    templates: list[str] = [""] * len(messages)
    for cid, rows in lines_of.items():
        tokens = final[cid]
        masked = [added[i][1] for i in rows]
        split_at = []
        for pos, tok in enumerate(tokens):
            if tok != PARAM:
                continue
            values = {m[pos] for m in masked if len(m) == len(tokens)}
            if 1 < len(values) <= max_word_values and all(_PLAIN_WORD.match(v) for v in values):
                split_at.append(pos)
        for i, m in zip(rows, masked):
            own = list(tokens)
            if len(m) == len(tokens):
                for pos in split_at:
                    own[pos] = m[pos]
            templates[i] = " ".join(own)
    return [Event("E" + hashlib.md5(template_key(t).encode("utf-8")).hexdigest()[:8], t) for t in templates]


# ---------------------------------------------------------------------------------------------------- agent helpers

WorkloadKey = tuple[str, str]  # (namespace, workload)


@dataclass(frozen=True, slots=True)
class _Mined:
    """Log lines of one or more windows mined as one batch, so event ids agree across the windows."""

    lines: tuple[LogLine, ...]
    events: tuple[Event, ...]


def _mine(*windows: Sequence[LogLine], miner: "LogTemplateMiner | None" = None) -> list[_Mined]:
    flat = [line for window in windows for line in window]
    events = mine_events([line.line for line in flat], miner)
    out, at = [], 0
    for window in windows:
        out.append(_Mined(tuple(window), tuple(events[at:at + len(window)])))
        at += len(window)
    return out


def template_counts(log_lines: Sequence[LogLine], step: float, start: float, end: float,
                    miner: "LogTemplateMiner | None" = None) -> list[Series]:
    """One ``log_template_count`` series per (namespace, workload, template) on the grid ``start, start+step, ..
    end`` (as ``query_range``): the value at ``t`` counts that template's lines with timestamp in ``(t - step, t]``.

    Labels: namespace, workload, template_id (stable for the same template text), template. Lines outside
    ``(start - step, end]`` and lines without a workload are ignored.
    """
    if step <= 0:
        raise ValueError(f"step must be positive, got {step}")
    count = int(np.floor((end - start) / step + 1e-9)) + 1
    grid = start + step * np.arange(max(count, 0), dtype=np.float64)
    if grid.size == 0:
        return []
    (mined,) = _mine(log_lines, miner=miner)
    counts: dict[tuple[str, str, str], np.ndarray] = {}
    text: dict[str, str] = {}
    for line, event in zip(mined.lines, mined.events):
        if not line.workload or not (start - step < line.ts <= grid[-1]):
            continue
        # the first grid point whose trailing interval (t - step, t] holds ts
        slot = int(np.ceil((line.ts - start) / step - 1e-9))
        slot = min(max(slot, 0), grid.size - 1)
        key = (line.namespace, line.workload, event.event_id)
        counts.setdefault(key, np.zeros(grid.size))[slot] += 1
        text.setdefault(event.event_id, event.template)
    return [
        Series(TEMPLATE_COUNT_METRIC,
               {"namespace": ns, "workload": wl, "template_id": eid, "template": text[eid]},
               grid.copy(), values)
        for (ns, wl, eid), values in sorted(counts.items())
    ]


@dataclass
class _Tally:
    count: int = 0
    first: float = float("inf")
    template: str = ""
    example: str = ""

    def add(self, line: LogLine, template: str) -> None:
        self.count += 1
        if line.ts < self.first:
            self.first, self.example = line.ts, line.line
        self.template = self.template or template


def _tally(mined: _Mined) -> dict[tuple[str, str, str], _Tally]:
    out: dict[tuple[str, str, str], _Tally] = defaultdict(_Tally)
    for line, event in zip(mined.lines, mined.events):
        if line.workload:
            out[(line.namespace, line.workload, event.event_id)].add(line, event.template)
    return out


def _clock(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%H:%M")


def new_templates(baseline_lines: Sequence[LogLine], recent_lines: Sequence[LogLine], errors_only: bool = True,
                  miner: "LogTemplateMiner | None" = None) -> list[Evidence]:
    """Evidence for templates a workload logs now but never logged in the baseline (by default only templates that
    read as errors): "a never-seen error template appeared in cart at 10:02". Most frequent first.

    ``data`` holds namespace, template_id, template, count, first_seen (unix s), error and an example line.
    """
    return _new_in(*_mine(baseline_lines, recent_lines, miner=miner), errors_only=errors_only)


def _new_in(baseline: _Mined, recent: _Mined, errors_only: bool = True) -> list[Evidence]:
    known = {(ns, wl, eid) for (ns, wl, eid) in _tally(baseline)}
    found = []
    for (ns, wl, eid), tally in _tally(recent).items():
        error = is_error_template(tally.template)
        if (ns, wl, eid) in known or (errors_only and not error):
            continue
        kind = "error template" if error else "template"
        found.append(Evidence(
            kind="log",
            summary=(f"a never-seen {kind} appeared in {wl} at {_clock(tally.first)}: "
                     f"\"{tally.template}\" ({tally.count} line{'s' if tally.count != 1 else ''})"),
            workload=wl, ts=tally.first,
            data={"namespace": ns, "template_id": eid, "template": tally.template, "count": tally.count,
                  "first_seen": tally.first, "error": error, "example": tally.example, "new": True},
        ))
    return sorted(found, key=lambda e: (-e.data["count"], e.ts, e.workload))


def _span(lines: Sequence[LogLine], span: tuple[float, float] | None) -> float:
    if span is not None:
        return max(span[1] - span[0], 1.0)
    if not lines:
        return 1.0
    stamps = [line.ts for line in lines]
    return max(max(stamps) - min(stamps), 1.0)


def surging_templates(baseline_lines: Sequence[LogLine], recent_lines: Sequence[LogLine],
                      baseline_span: tuple[float, float] | None = None,
                      recent_span: tuple[float, float] | None = None,
                      min_ratio: float = 5.0, min_count: int = 10,
                      miner: "LogTemplateMiner | None" = None) -> list[Evidence]:
    """Evidence for known templates a workload now logs at least ``min_ratio`` times as often (lines per second) as
    in the baseline, with at least ``min_count`` recent lines. Spans default to each window's first-to-last line.

    ``data`` holds namespace, template_id, template, count, baseline_count, rate, baseline_rate, ratio, first_seen.
    """
    baseline, recent = _mine(baseline_lines, recent_lines, miner=miner)
    return _surging_in(baseline, recent, _span(baseline_lines, baseline_span), _span(recent_lines, recent_span),
                       min_ratio, min_count)


def _surging_in(baseline: _Mined, recent: _Mined, base_s: float, recent_s: float,
                min_ratio: float, min_count: int) -> list[Evidence]:
    before = _tally(baseline)
    found = []
    for key, tally in _tally(recent).items():
        old = before.get(key)
        if old is None or tally.count < min_count:
            continue
        rate, base_rate = tally.count / recent_s, old.count / base_s
        ratio = rate / base_rate
        if ratio < min_ratio:
            continue
        ns, wl, eid = key
        found.append(Evidence(
            kind="log",
            summary=(f"template \"{tally.template}\" in {wl} is {ratio:.0f}x more frequent since "
                     f"{_clock(tally.first)} ({rate * 60:.1f}/min vs {base_rate * 60:.1f}/min)"),
            workload=wl, ts=tally.first,
            data={"namespace": ns, "template_id": eid, "template": tally.template, "count": tally.count,
                  "baseline_count": old.count, "rate": rate, "baseline_rate": base_rate, "ratio": ratio,
                  "first_seen": tally.first, "error": is_error_template(tally.template), "surge": True},
        ))
    return sorted(found, key=lambda e: (-e.data["ratio"], e.workload))


def template_evidence(baseline_lines: Sequence[LogLine], recent_lines: Sequence[LogLine],
                      baseline_span: tuple[float, float] | None = None,
                      recent_span: tuple[float, float] | None = None,
                      min_ratio: float = 5.0, min_count: int = 10,
                      miner: "LogTemplateMiner | None" = None) -> list[Evidence]:
    """``new_templates`` then ``surging_templates``, mining the lines once (what the agent runs every pass)."""
    baseline, recent = _mine(baseline_lines, recent_lines, miner=miner)
    return _new_in(baseline, recent) + _surging_in(baseline, recent, _span(baseline_lines, baseline_span),
                                                   _span(recent_lines, recent_span), min_ratio, min_count)
