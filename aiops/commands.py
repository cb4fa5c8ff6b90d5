"""What each ``aiops`` sub-command does. ``cli.py`` parses flags; these functions return the exit code.

Heavy modules (pandas, pyod, the clients) are imported inside each command so ``aiops --help`` stays fast.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

import json

from aiops.domain.errors import InputError
from aiops.settings import Settings, load_settings, with_advertise_url

log = logging.getLogger("aiops")

EXIT_OK, EXIT_PROBLEM, EXIT_BAD_INPUT = 0, 1, 2


def emit(data: object, fmt: str, text: str) -> None:
    """Print ``text`` or ``data`` as JSON, per ``--format``."""
    if fmt == "json":
        print(json.dumps(data, indent=2, default=str))
    else:
        print(text)


def demo(args: argparse.Namespace) -> int:
    from aiops.demo import LivePrinter, run_demo, verdict

    if args.format == "json":  # one document, at the end
        outcome = run_demo(args.scenario, seed=args.seed)
        emit(outcome.as_dict(), args.format, "")
    else:  # the timeline as it happens
        printer = LivePrinter()
        outcome = run_demo(args.scenario, seed=args.seed, echo=printer)
        printer("")
        printer(verdict(outcome))
        printer.check()
    # 1 unless the service recovered: an escalation leaves the fault to a person.
    return EXIT_OK if outcome.recovered else EXIT_PROBLEM


def sim(args: argparse.Namespace) -> int:
    from aiops.sim.runtime import RETENTION_SECONDS, SimRuntime

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    if args.history > RETENTION_SECONDS:
        raise InputError("--history", f"{args.history / 3600:g}h is more than the simulator keeps "
                                      f"({RETENTION_SECONDS / 3600:g}h)")
    try:
        runtime = SimRuntime(args.scenario, realtime=True, host=args.host, kube_port=args.kube_port,
                             metrics_port=args.metrics_port).start()
    except OSError as exc:  # a port in use, an address this host does not have
        raise InputError("--kube-port/--metrics-port", f"cannot listen on {args.host} ports {args.kube_port} and "
                                                       f"{args.metrics_port}: {exc.strerror or exc}") from None
    with runtime:
        # At least one round of samples now: otherwise /metrics is empty until the first step, a whole step away.
        runtime.prefill(max(args.history, runtime.step))
        print(f"simulated cluster running (scenario {args.scenario}, namespace {runtime.scenario.namespace})")
        if args.history:
            print(f"  history:        {args.history / 60:g} min of healthy metrics before now (on its query API)")
        print(f"  Kubernetes API: {runtime.kube_url}   (kubectl --server {runtime.kube_url} get deploy,pods -A)")
        print(f"  metrics:        {runtime.prom_url}/metrics   (Prometheus scrape target)")
        if args.inject_after is not None:
            timer = threading.Timer(args.inject_after, runtime.inject)
            timer.daemon = True
            timer.start()
            print(f"  fault {args.scenario} will be injected in {args.inject_after:.0f}s")
        sys.stdout.flush()
        runtime.run_forever(stop)
    return EXIT_OK


def serve(args: argparse.Namespace) -> int:
    from aiops.serve.agent import Agent, build_parts
    from aiops.serve.logging import configure_logging

    settings = load_settings(args.config)
    if args.advertise_url:
        settings = with_advertise_url(settings, args.advertise_url)
    if (refusal := settings.refusal_to_serve()) is not None:
        raise InputError(str(args.config), refusal)  # before anything starts: exit 2, one line
    configure_logging(settings.log_format)
    agent = Agent(build_parts(settings)).start()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    agent.stop()
    return EXIT_OK


def _settings(path: Path | None) -> Settings:
    return load_settings(path) if path else Settings()


def diagnose(args: argparse.Namespace) -> int:
    from aiops.collect.casefolder import read_case
    from aiops.serve.agent import load_knowledge
    from aiops.serve.offline import OfflineDiagnostician

    settings = _settings(args.config)
    knowledge = load_knowledge(settings)
    diagnostician = OfflineDiagnostician(knowledge.diagnoser, knowledge.playbooks, settings.loop.recent_seconds,
                                         knowledge.rule_engine)
    if args.case is not None:
        case = read_case(args.case, settings.loop.step_seconds)
        report = diagnostician.run(case.observations, case.alerts, explain=args.explain, truth=case.truth)
    else:
        if not args.namespace:
            raise InputError("--namespace", "required with --prometheus")
        observations = _live_observations(args, settings)
        report = diagnostician.run(observations, explain=args.explain)
    emit(report.as_dict(), args.format, report.render())
    return EXIT_PROBLEM if report.found_problem else EXIT_OK


def _live_observations(args: argparse.Namespace, settings: Settings):
    """Metrics from ``--prometheus``; logs and events too when ``--config`` gives Kubernetes access (what was not
    read is recorded as not collected, so diagnosis treats it as unknown)."""
    from aiops.clients.prometheus import PrometheusClient, PrometheusError
    from aiops.collect.observations import ObservationCollector
    from aiops.collect.prometheus import PrometheusCollector

    if not args.prometheus.startswith(("http://", "https://")):
        raise InputError("--prometheus", f"{args.prometheus!r} must start with http:// or https://")
    end = time.time()
    kube = None
    if args.config is not None:
        from aiops.clients.kube import KubeClient
        from aiops.collect.kube import KubeCollector

        kube = KubeCollector(KubeClient.from_settings(settings.kubernetes))
    collector = ObservationCollector(PrometheusCollector(PrometheusClient(args.prometheus), settings.loop.step_seconds),
                                     kube, without_kube="no --config with Kubernetes access",
                                     kube_failures_as_gaps=True)
    try:
        return collector.collect(args.namespace, end - args.since, end)
    except PrometheusError as exc:
        raise InputError("--prometheus", str(exc)) from None


def record(args: argparse.Namespace) -> int:
    from aiops.collect.casefolder import check_writable, write_case

    check_writable(args.out)  # before minutes of collecting, not after
    observations = _live_observations(args, _settings(args.config))
    try:
        write_case(args.out, observations)
    except OSError as exc:  # a file where the folder should go, a path that cannot be created
        raise InputError("--out", f"cannot write the case folder {args.out}: {exc.strerror or exc}") from None
    print(f"wrote {args.out}: {len(observations.series)} series, {len(observations.logs)} log lines, "
          f"{len(observations.events)} events")
    if observations.not_collected:
        from aiops.domain.observations import describe_gaps

        print(f"not recorded: {describe_gaps(observations.not_collected)}")
    return EXIT_OK


def validate(args: argparse.Namespace) -> int:
    from aiops.validate import validate_paths

    warnings: list[str] = []
    problems, checked = validate_paths(args.paths, warnings)
    for problem in problems:
        print(problem)
    for warning in warnings:
        print(f"warning: {warning}")
    print(f"{checked} file(s) checked, {len(problems)} problem(s)")
    return EXIT_PROBLEM if problems else EXIT_OK


def _journal(settings: Settings):
    """The agent's journal, for reading or approving; never created here (a typo'd config must not make one)."""
    from aiops.remediate.sqlite_journal import SqliteJournal
    from aiops.serve.agent import journal_path

    if settings.journal.backend == "kubernetes":
        return _kube_journal(settings)
    path = journal_path(settings)
    if not path.exists():
        raise InputError(str(path), "no execution journal here: has the agent run with this config (state_dir)?")
    return SqliteJournal(path)


def _kube_journal(settings: Settings):
    """The journal the agents share in the Kubernetes API, reached with the ``kubernetes`` settings."""
    from aiops.clients.kube import KubeClient
    from aiops.remediate.kube_journal import KubeJournal

    kube = KubeClient.from_settings(settings.kubernetes)
    return KubeJournal.from_settings(kube, settings)


def history(args: argparse.Namespace) -> int:
    from aiops.serve.plans_api import summaries

    journal = _journal(load_settings(args.config))
    if args.plan:
        records = journal.history(args.plan)
        if not records:
            raise InputError(args.plan, "no such plan in the journal")
        lines = [f"{_when(r['ts'])}  {r['state']:<17} {r['note']}" for r in records]
        emit(records, args.format, "\n".join(lines))
        return EXIT_OK
    rows = summaries(journal)[-args.limit:]  # oldest first, so the newest are the ones kept and shown last
    text = "\n".join(f"{_when(r['ts'])}  {r['plan']}  {r['state']:<17} {r['mode'] or '':<7} {r['playbook'] or '':<18}"
                     f" {r['target'] or ''}" for r in rows) or "no executions yet"
    emit(rows, args.format, text)
    return EXIT_OK


def os_user() -> str:
    """The account running this process, from its uid (``USER``/``LOGNAME`` are whatever the caller set)."""
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):  # no pwd module (Windows) or a uid without an account (some containers)
        import getpass

        try:
            return getpass.getuser()
        except (KeyError, OSError):
            return f"uid-{os.getuid()}" if hasattr(os, "getuid") else "unknown"


def approver_name(told: str | None) -> str:
    """Who ``aiops approve`` records: the OS user, or the name it was told with the OS user beside it, since a
    typed name alone proves nothing."""
    user = os_user()
    return user if not told or told == user else f"{told} (os user {user})"


def approve(args: argparse.Namespace) -> int:
    from aiops.remediate.runner import approve as approve_plan

    journal = _journal(load_settings(args.config))
    record = approve_plan(journal, args.plan, approver_name(args.approver), time.time())
    print(f"approved {args.plan} (by {record['data'].get('approved_by')}); the agent acts on it at its next poll")
    return EXIT_OK


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))
def train(args: argparse.Namespace) -> int:
    from aiops.serve.train_config import load_train_config
    from aiops.serve.training import Trainer

    config = load_train_config(args.config)
    report = Trainer(config).run()
    if args.report is not None:
        try:
            args.report.write_text(json.dumps(report.as_dict(), indent=2, default=str) + "\n", encoding="utf-8")
        except OSError as exc:
            raise InputError("--report", f"cannot write {args.report}: {exc.strerror or exc}") from None
    emit(report.as_dict(), args.format, report.render())
    # 1: the job ran, but the new version was not good enough to replace the current one.
    return EXIT_OK if report.promoted or config.promote == "never" else EXIT_PROBLEM


def models(args: argparse.Namespace) -> int:
    from aiops.detect.store import ModelStore
    from aiops.serve.registry_view import render_list, render_versions

    directory = args.models_dir or _settings(args.config).models_dir
    if not directory.is_dir():  # a typo'd path is bad input, not an empty registry
        flag = "--models-dir" if args.models_dir else f"models_dir of {args.config}" if args.config else "models_dir"
        raise InputError(flag, f"{directory} is a file, not a model registry folder" if directory.exists()
                         else f"no model registry folder at {directory} (it does not exist)")
    store = ModelStore(directory)
    if args.verb == "list":
        rows = [(r, len(store.versions(r.name))) for r in store.list()]
        emit([dict(r.as_dict(), versions=n) for r, n in rows], args.format, render_list(rows, directory))
        return EXIT_OK
    if args.verb == "show":
        if not store.versions(args.name):
            raise InputError(str(directory / args.name), f"no saved model named {args.name!r}")
        records = [store.record(args.name, args.version)] if args.version else store.records(args.name)
        current = store.current_version(args.name)
        emit({"name": args.name, "current": current, "versions": [r.as_dict() for r in records]}, args.format,
             render_versions(records, current))
        return EXIT_OK
    if args.verb == "promote":
        before = store.current_version(args.name)
        record = store.promote(args.name, args.version)
        text = f"{args.name}: v{record.version} is current (was v{before})"
    else:
        before = store.current_version(args.name)
        record = store.rollback(args.name, args.to)
        text = f"{args.name}: rolled back from v{before} to v{record.version}"
    emit({"name": args.name, "current": record.version, "previous": before}, args.format, text)
    return EXIT_OK


# Path arguments that name a folder: completed with folder names (every other Path argument with file names).
_FOLDER_ARGUMENTS = frozenset({"case", "out", "models_dir"})


def completion(args: argparse.Namespace) -> int:
    """Print a completion script for ``args.shell``, generated by shtab from the parser itself."""
    try:
        import shtab
    except ImportError:
        raise InputError("completion", "needs the shtab package (pip install shtab)") from None
    _complete_paths(args.parser, shtab)
    print(shtab.complete(args.parser, shell=args.shell))
    return EXIT_OK


def _complete_paths(parser: argparse.ArgumentParser, shtab) -> None:
    """Tell shtab which arguments take a file or a folder (the ``Path``-typed ones), in every sub-command."""
    for action in parser._actions:  # argparse keeps no public list of them; shtab walks the same one
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _complete_paths(sub, shtab)
        elif action.type is Path:
            action.complete = shtab.DIRECTORY if action.dest in _FOLDER_ARGUMENTS else shtab.FILE
