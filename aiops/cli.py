"""The ``aiops`` command line.

Exit codes (README.md): 0 ok, 1 the job ran and found a problem it reports (a diagnosed fault, lint errors, a demo
that did not recover), 2 bad input (the message names the file, flag or field).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import Callable, Sequence

from aiops import __version__, commands
from aiops.commands import EXIT_BAD_INPUT
from aiops.domain.errors import InputError


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors say which flag is wrong and exit 2 like every other bad input."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_BAD_INPUT, f"aiops: error: {message}\n")


def _duration(text: str, allow_zero: bool = False) -> float:
    """``90``, ``90s``, ``30m``, ``2h``, ``1d`` -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = text.strip()
    try:
        if text and text[-1] in units:
            value = float(text[:-1]) * units[text[-1]]
        else:
            value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 30m, 2h or 90s") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 30m, 2h or 90s")
    if value < 0 or (value == 0 and not allow_zero):
        raise argparse.ArgumentTypeError(f"{text!r} must be positive" + (" or 0" if allow_zero else ""))
    return value


def _count(text: str) -> int:
    """A whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be 1 or more")
    return value


def _history(text: str) -> float:
    """``aiops sim --history``: a duration, or 0 for none."""
    return _duration(text, allow_zero=True)


def _port(text: str) -> int:
    """A TCP port, 0 (any free port) to 65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port (0-65535; 0 picks a free one)")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="aiops", description="A self-healing agent for Kubernetes services.")
    parser.add_argument("--version", action="version", version=f"aiops {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    demo = sub.add_parser("demo", help="run the closed loop on the built-in simulated cluster")
    demo.add_argument("--scenario", default="memory_leak",
                      help="memory_leak, traffic_surge, bad_deploy, model_overload or model_memory_growth")
    demo.add_argument("--format", choices=("text", "json"), default="text")
    demo.add_argument("--seed", type=int, default=0)

    sim = sub.add_parser("sim", help="run the simulated cluster as a standing process")
    sim.add_argument("--scenario", default="memory_leak")
    sim.add_argument("--kube-port", type=_port, default=8001)
    sim.add_argument("--metrics-port", type=_port, default=9102)
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--inject-after", type=_duration, default=None,
                     help="inject the scenario's fault after this long (default: never)")
    sim.add_argument("--history", type=_history, default=0.0,
                     help="start with this much healthy metric history, e.g. 60m (at most 6h; default 0: none, as "
                          "a Prometheus scraping the sim sees it), so an agent querying the sim has a baseline at once")

    serve = sub.add_parser("serve", help="run the agent: scheduled loop + Alertmanager webhook")
    serve.add_argument("--config", required=True, type=Path)
    serve.add_argument("--advertise-url", help="this replica's base URL as the others reach it (with leader "
                                               "election, followers forward webhooks to the leader's)")

    diagnose = sub.add_parser("diagnose", help="diagnose a recorded case folder or a live namespace")
    source = diagnose.add_mutually_exclusive_group(required=True)
    source.add_argument("--case", type=Path, help="a case folder (docs/case-folder.md)")
    source.add_argument("--prometheus", help="Prometheus URL, to diagnose live")
    diagnose.add_argument("--namespace", help="namespace to diagnose (with --prometheus)")
    diagnose.add_argument("--since", type=_duration, default=1800.0, help="how far back to look (default 30m)")
    diagnose.add_argument("--config", type=Path, help="config file (playbooks, rules, and the kubernetes access that "
                                                      "reads events, rollouts and pod logs: without it, they are "
                                                      "not collected)")
    diagnose.add_argument("--format", choices=("text", "json"), default="text")
    diagnose.add_argument("--explain", action="store_true", help="show which rules matched and why")

    record = sub.add_parser("record", help="write a case folder from a live system")
    record.add_argument("--prometheus", required=True)
    record.add_argument("--namespace", required=True)
    record.add_argument("--since", type=_duration, default=3600.0)
    record.add_argument("--out", required=True, type=Path)
    record.add_argument("--config", type=Path, help="config file (kube access for logs and events)")

    validate = sub.add_parser("validate", help="lint playbook, rule, agent config and train config files")
    validate.add_argument("paths", nargs="*", type=Path,
                          help="files or folders (default: the stock playbooks/ and rules/)")
    history = sub.add_parser("history", help="list the agent's executions, newest last (or one plan's transitions)")
    history.add_argument("--config", required=True, type=Path, help="the agent's config file (finds its journal)")
    history.add_argument("--plan", help="show every transition of this plan")
    history.add_argument("--limit", type=_count, default=50,
                         help="how many plans to list, the most recently updated (default 50)")
    history.add_argument("--format", choices=("text", "json"), default="text")

    approve = sub.add_parser("approve", help="approve a plan waiting in awaiting_approval")
    approve.add_argument("plan", help="the plan id (see `aiops history`)")
    approve.add_argument("--config", required=True, type=Path, help="the agent's config file (finds its journal)")
    approve.add_argument("--approver", help="record this name as the approver (default: the OS user running "
                                            "the command, who is recorded beside any other name)")

    train = sub.add_parser("train", help="fit (and tune) the workload detectors from a train config")
    train.add_argument("--config", required=True, type=Path, help="train config (YAML; see docs/lifecycle.md)")
    train.add_argument("--format", choices=("text", "json"), default="text")
    train.add_argument("--report", type=Path, help="also write the report as JSON to this file")

    models = sub.add_parser("models", help="the model registry: list, show, promote, rollback")
    where = models.add_mutually_exclusive_group()
    where.add_argument("--models-dir", type=Path, help="registry folder (default: the config's models_dir)")
    where.add_argument("--config", type=Path, help="agent config file whose models_dir to use")
    models.add_argument("--format", choices=("text", "json"), default="text")
    verbs = models.add_subparsers(dest="verb", required=True, parser_class=_Parser)
    verbs.add_parser("list", help="every model with its current version")
    show = verbs.add_parser("show", help="every version of one model, with metrics and training window")
    show.add_argument("name")
    show.add_argument("--version", type=int, help="only this version")
    promote = verbs.add_parser("promote", help="make a version the current one")
    promote.add_argument("name")
    promote.add_argument("version", type=int)
    rollback = verbs.add_parser("rollback", help="go back to the version current before (or --to VERSION)")
    rollback.add_argument("name")
    rollback.add_argument("--to", type=int, help="this version instead of the previous one")

    completion = sub.add_parser("completion", help="print the shell completion script (source it, or install it "
                                                   "where your shell loads completions)")
    completion.add_argument("shell", choices=("bash", "zsh"))
    completion.set_defaults(parser=parser)  # the script is generated from this very parser
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = getattr(commands, args.command)
    try:
        code = handler(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the try, not in the interpreter's flush at exit
        return code
    except InputError as exc:
        print(f"aiops: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:
        # The reader went away (`aiops diagnose ... | head -1`): say so once, and keep the interpreter's own flush
        # of stdout at exit from raising a second time.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        print("aiops: error: the output was closed before it was all written (broken pipe)", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
