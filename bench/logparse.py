"""Loghub 2k log-parsing benchmark: the project's drain3 miner, one configuration, GA and PA per system.

    python -m bench.logparse --data ../shared/data/loghub_2k --out var/bench/logparse [--input raw|content]

For every ``DIR/<System>/<System>_2k.log`` with its ``<System>_2k.log_structured.csv`` ground truth, the miner parses
the lines and ``OUT/<System>/<System>_2k.log_structured.csv`` gets ``LineId,EventId,EventTemplate``. By default
(``--input raw``) the RAW lines go through ONE generic header stripper (``strip_log_header``: shapes only, no
per-system format); ``--input content`` feeds the ground truth's Content column instead (what logparser's Drain sees
after its per-system header regex). Grouping accuracy (GA, logparser's ``get_accuracy``) and parsing accuracy (PA,
template text equal after whitespace normalisation) are printed beside Drain's published GA and written with
lines/s to ``OUT/logparse.json``. No setting depends on the system name.
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from aiops.detect.logtemplates import LogTemplateMiner, mine_events
from aiops.domain.errors import InputError
from bench import datasets
from bench.report import write_json

PUBLISHED_GA = Path("published") / "icse19_grouping_accuracy_all_parsers.csv"


def grouping_accuracy(truth: Sequence[str], predicted: Sequence[str]) -> float:
    """logparser's GA: a message counts when its predicted group holds exactly the messages of its true group."""
    if len(truth) != len(predicted):
        raise ValueError(f"{len(truth)} ground-truth labels but {len(predicted)} predictions")
    if not truth:
        return 0.0
    true_size = Counter(truth)
    members: dict[str, list[int]] = defaultdict(list)
    for i, p in enumerate(predicted):
        members[p].append(i)
    correct = 0
    for rows in members.values():
        labels = {truth[i] for i in rows}
        if len(labels) == 1 and true_size[next(iter(labels))] == len(rows):
            correct += len(rows)
    return correct / len(truth)


def normalise_template(template: str) -> str:
    """Whitespace-normalised template text, the form PA compares."""
    return " ".join(template.split())


def parsing_accuracy(truth: Sequence[str], predicted: Sequence[str]) -> float:
    """PA: the fraction of messages whose template equals the ground-truth template after whitespace normalisation."""
    if len(truth) != len(predicted):
        raise ValueError(f"{len(truth)} ground-truth templates but {len(predicted)} predictions")
    if not truth:
        return 0.0
    same = sum(normalise_template(t) == normalise_template(p) for t, p in zip(truth, predicted))
    return same / len(truth)


# ---------------------------------------------------------------------------------------------------- header

# Header tokens, recognised by shape only (never by system): ids, numbers, dates and times, month and weekday names,
# log levels, dotted component names, bracketed fields, pipe-separated fields, and a "component:" token that ends it.
_ID = re.compile(r"^[\w.:/,+\-@]*\d[\w.:/,+\-@]*$")
_CALENDAR = re.compile(r"^(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec|mon|tue|wed|thu|fri|sat|sun)[a-z]*[,.]?$",
                       re.IGNORECASE)
_LEVEL = re.compile(r"^[\[(<]?(?:trace|debug|info|notice|warn|warning|error|err|critical|crit|fatal|panic|severe|"
                    r"emerg|alert|[vdiwef])[\])>]?:?,?$", re.IGNORECASE)
_DOTTED = re.compile(r"^[A-Za-z_][\w\-]*(?:\.[\w\-]+)+$")
_CAPS = re.compile(r"^[A-Z][A-Z0-9_]+$")
_PLAIN = re.compile(r"^[A-Za-z_][\w.\-]*$")
_COMPONENT = re.compile(r"^[\w.$\-/@()]+(?:\[[^\]\s]*\])?:$")
_MAX_HEADER_TOKENS = 16


def _is_component(tok: str) -> bool:
    return bool(_COMPONENT.match(tok)) and any(ch in tok for ch in ".$[(/")


def strip_log_header(line: str) -> str:
    """The message part of a raw log line, found without knowing the system.

    Leading header-shaped tokens are dropped (see above). The header ends after a ``component:`` token
    (``sshd[24200]:``, ``dfs.DataNode$PacketResponder:``, possibly after one host word), and at a lone ``-`` once a
    level, bracket or component has been seen (``INFO [main] - message``, ``app.exe - message``). Up to two plain
    words before a level (``RAS KERNEL INFO``) and one all-caps or dotted name after it (``Info CBS``) are header.
    """
    tokens = line.split()
    if tokens and tokens[0].count("|") >= 2:
        head = tokens[0].split("|")
        tokens = [*(f"{field}|" for field in head[:-1]), head[-1], *tokens[1:]]
    i, depth, named, closed, after_level = 0, 0, False, False, False
    while i < len(tokens) and i < _MAX_HEADER_TOKENS:
        tok = tokens[i]
        if depth or tok.startswith("["):
            depth = max(depth + tok.count("[") - tok.count("]"), 0)
            i, named, closed = i + 1, True, True
            continue
        if tok == "-" and named:
            i += 1
            break
        if _COMPONENT.match(tok) and (i > 0 and (named or _ID.match(tokens[i - 1]) or _LEVEL.match(tokens[i - 1]))):
            i += 1
            break
        if tok.endswith("|"):
            i, named, closed = i + 1, True, True
            continue
        # ids and times come before the level; after a level, bracket or pipe field they are the message's own
        if not closed and (_ID.match(tok) or _CALENDAR.match(tok) or tok in ("-", ",", ":")):
            i += 1
            continue
        if _LEVEL.match(tok) and i > 0:
            i, named, closed, after_level = i + 1, True, True, True
            continue
        # a leading all-caps label ("- 1117838570 ..." or "APPREAD 1117838570 ...")
        if i == 0 and _CAPS.match(tok) and len(tokens) > 1 and _ID.match(tokens[1]):
            i += 1
            continue
        if _DOTTED.match(tok) or (after_level and _CAPS.match(tok)):
            i, named, after_level = i + 1, True, False
            continue
        # before any level: up to three words between ids ("node-70 action start 1074119817 1 message")
        if not closed and i > 0:
            ids_at = next((j for j in (i + 1, i + 2, i + 3) if j + 1 < len(tokens) and _ID.match(tokens[j])
                           and _ID.match(tokens[j + 1])), None)
            if ids_at is not None and all(_PLAIN.match(t) for t in tokens[i:ids_at]):
                i = ids_at
                continue
        # a host word before "program[pid]:", a tag before " - ", or plain words before a level ("RAS KERNEL INFO")
        if i > 0 and i + 1 < len(tokens) and _is_component(tokens[i + 1]):
            i += 2
            break
        if named and i + 1 < len(tokens) and tokens[i + 1] == "-":
            i += 2
            break
        level_at = next((j for j in range(i + 1, min(i + 3, len(tokens))) if _LEVEL.match(tokens[j])
                         and len(tokens[j]) > 1), None)
        if i > 0 and level_at is not None and all(_CAPS.match(t) for t in tokens[i:level_at]):
            i, named, closed, after_level = level_at + 1, True, True, True
            continue
        break
    rest = tokens[i:]
    return " ".join(rest) if rest else line.strip()


# ---------------------------------------------------------------------------------------------------- input


@dataclass(frozen=True, slots=True)
class GroundTruth:
    """One system's labelled sample."""

    line_ids: list[str]
    contents: list[str]
    event_ids: list[str]
    templates: list[str]


def read_ground_truth(path: Path) -> GroundTruth:
    """The LineId, Content, EventId and EventTemplate columns of a Loghub ``*_structured.csv``."""
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise InputError(str(path), f"cannot read ground truth: {exc}") from exc
    for column in ("LineId", "Content", "EventId", "EventTemplate"):
        if rows and column not in rows[0]:
            raise InputError(str(path), f"missing column {column}")
    return GroundTruth([r["LineId"] for r in rows], [r["Content"] for r in rows],
                       [r["EventId"] for r in rows], [r["EventTemplate"] for r in rows])


def read_raw_lines(path: Path) -> list[str]:
    """The raw log lines (CRLF or LF), without line terminators."""
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError as exc:
        raise InputError(str(path), f"cannot read log: {exc}") from exc
    lines = [line.rstrip("\r") for line in text.split("\n")]
    if lines and lines[-1] == "":
        lines.pop()  # the terminator of the last line, not a line
    return lines


def read_published_ga(data: Path, parser: str = "Drain") -> dict[str, float]:
    """Drain's published GA per system (ICSE'19 table), or {} when the table is absent."""
    path = data / PUBLISHED_GA
    if not path.is_file():
        return {}
    with path.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if row.get("parser") == parser:
                return {k: float(v) for k, v in row.items() if k not in ("parser", "average") and v}
    return {}


# ---------------------------------------------------------------------------------------------------- run


@dataclass(frozen=True, slots=True)
class SystemResult:
    """GA, PA and speed on one system."""

    system: str
    lines: int
    templates_truth: int
    templates_found: int
    ga: float
    pa: float
    lines_per_s: float
    published_ga: float | None


def parse_messages(messages: Sequence[str], raw: bool) -> tuple[list[str], list[str]]:
    """Every message's (event id, template), mined as one batch with the agent's miner; raw lines lose their
    header first (``strip_log_header``)."""
    if raw:
        messages = [strip_log_header(m) for m in messages]
    events = mine_events(messages, LogTemplateMiner(strip=False))
    return [e.event_id for e in events], [e.template for e in events]


def run_system(system_dir: Path, mode: str, published: dict[str, float]) -> tuple[SystemResult, list[list[str]]]:
    """Parse one system folder and score it; returns the result and the output CSV rows."""
    system = system_dir.name
    truth = read_ground_truth(system_dir / f"{system}_2k.log_structured.csv")
    if mode == "raw":
        messages = read_raw_lines(system_dir / f"{system}_2k.log")
        if len(messages) != len(truth.line_ids):
            raise InputError(str(system_dir), f"{len(messages)} raw lines but {len(truth.line_ids)} labelled rows")
    else:
        messages = truth.contents
    started = time.perf_counter()
    ids, templates = parse_messages(messages, raw=(mode == "raw"))
    elapsed = max(time.perf_counter() - started, 1e-9)
    result = SystemResult(
        system=system, lines=len(messages), templates_truth=len(set(truth.event_ids)),
        templates_found=len(set(ids)), ga=grouping_accuracy(truth.event_ids, ids),
        pa=parsing_accuracy(truth.templates, templates), lines_per_s=len(messages) / elapsed,
        published_ga=published.get(system),
    )
    rows = [[lid, eid, tpl] for lid, eid, tpl in zip(truth.line_ids, ids, templates)]
    return result, rows


def system_dirs(data: Path) -> list[Path]:
    """Every ``DIR/<System>`` holding ``<System>_2k.log`` and its structured ground truth, sorted by name."""
    return sorted(d for d in data.iterdir()
                  if d.is_dir() and (d / f"{d.name}_2k.log").is_file()
                  and (d / f"{d.name}_2k.log_structured.csv").is_file())


def run(data: Path, out: Path, mode: str = "raw") -> dict:
    """Parse and score every system under ``data``; writes the CSVs and ``out/logparse.json``, returns the report."""
    if not data.is_dir():
        raise InputError("--data", f"{data} is not a directory")
    dirs = system_dirs(data)
    if not dirs:
        raise InputError("--data", f"no <System>/<System>_2k.log with structured ground truth under {data}")
    published = read_published_ga(data)
    results = []
    for d in dirs:
        result, rows = run_system(d, mode, published)
        target = out / d.name
        target.mkdir(parents=True, exist_ok=True)
        with (target / f"{d.name}_2k.log_structured.csv").open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["LineId", "EventId", "EventTemplate"])
            writer.writerows(rows)
        results.append(result)
    total_lines = sum(r.lines for r in results)
    total_time = sum(r.lines / r.lines_per_s for r in results)
    with_published = [r for r in results if r.published_ga is not None]
    report = {
        "input": mode,
        "systems": [asdict(r) for r in results],
        "average_ga": sum(r.ga for r in results) / len(results),
        "average_pa": sum(r.pa for r in results) / len(results),
        "average_published_drain_ga_same_systems": (
            sum(r.published_ga for r in with_published) / len(with_published) if with_published else None),
        "lines_per_s": total_lines / total_time if total_time else 0.0,
    }
    write_json(out / "logparse.json", report)
    return report


def format_table(report: dict) -> str:
    """The per-system table, with Drain's published GA beside ours."""
    lines = [f"input: {report['input']}",
             f"{'system':<12} {'GA':>6} {'PA':>6} {'Drain GA':>9} {'#tmpl':>6} {'#truth':>6} {'lines/s':>9}"]
    for r in report["systems"]:
        pub = f"{r['published_ga']:.3f}" if r["published_ga"] is not None else "-"
        lines.append(f"{r['system']:<12} {r['ga']:6.3f} {r['pa']:6.3f} {pub:>9} {r['templates_found']:6d} "
                     f"{r['templates_truth']:6d} {r['lines_per_s']:9.0f}")
    pub_avg = report["average_published_drain_ga_same_systems"]
    pub_avg_s = f"{pub_avg:.3f}" if pub_avg is not None else "-"
    lines.append(f"{'average':<12} {report['average_ga']:6.3f} {report['average_pa']:6.3f} {pub_avg_s:>9} "
                 f"{'':6} {'':6} {report['lines_per_s']:9.0f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; exit code 2 on bad input."""
    parser = argparse.ArgumentParser(prog="python -m bench.logparse", description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=datasets.path("loghub_2k"),
                        help="a loghub_2k-layout folder; default: see bench.datasets")
    parser.add_argument("--out", type=Path, required=True, help="where the structured CSVs and logparse.json go")
    parser.add_argument("--input", choices=("raw", "content"), default="raw",
                        help="content: the ground truth's Content column; raw: raw lines through one generic header stripper")
    args = parser.parse_args(argv)
    try:
        report = run(args.data, args.out, args.input)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_table(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
