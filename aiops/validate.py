"""``aiops validate``: lint playbook, rule, agent config and train config files, reporting every problem as one
``file[:line]: key: reason`` line.

Each file is checked with the code that reads it for real: a playbook or rule file as ``aiops serve`` loads it, an
agent config as ``aiops serve`` would start with it (its ``playbooks_dir`` and ``rules_dir`` loaded with its
``rule_params`` and cross-checked, by the agent's own loader), a train config as ``aiops train`` reads it.

Rule files given without a config are checked against the playbooks given in the same run *plus* the stock ones:
given alone, rule files are usually a subset of what the agent will load (say, one new playbook beside the stock
rules), and the stock playbooks are what it loads by default. What one particular agent loads is exactly what its
config names, so give the config file to check that.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import yaml

from aiops.clients.kube import api_client_from_settings
from aiops.clients.llm import read_api_key
from aiops.diagnose.calibration import CALIBRATION_FILE, Calibration
from aiops.diagnose.rules import RuleSet
from aiops.domain.errors import InputError
from aiops.remediate.playbooks import load_playbooks, read_playbook
from aiops.serve.approvers import load_approvers, read_webhook_token
from aiops.serve.knowledge import check_playbooks_and_rules
from aiops.serve.train_config import load_train_config
from aiops.settings import STOCK_ROOT, Settings, load_settings

YAML_SUFFIXES = (".yaml", ".yml")
# Folder names that say what a file holds when its content cannot (an empty or unparsable file).
_FOLDER_KINDS = {"playbooks": "playbook", "rules": "rules"}


def _kind(path: Path) -> str:
    """``playbook``, ``rules``, ``train`` or ``config``, from what the file holds (folder names are only a hint)."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError):  # the loader that reads it says what
        raw = None
    if isinstance(raw, dict):
        if "rules" in raw:
            return "rules"
        if "action" in raw:
            return "playbook"
        if "source" in raw:  # required in a train config, unknown to every other kind
            return "train"
        return "config"
    return _FOLDER_KINDS.get(path.parent.name, "config")


def _files(paths: Sequence[Path]) -> list[Path]:
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out += sorted(p for p in path.rglob("*") if p.suffix in YAML_SUFFIXES and p.is_file())
        else:
            out.append(path)
    return out


def validate_paths(paths: Sequence[Path], warnings: list[str] | None = None) -> tuple[list[str], int]:
    """Check ``paths`` (default: the stock playbooks and rules). Returns (problems, number of files checked);
    what is allowed but unsafe or unverifiable here is appended to ``warnings``."""
    paths = list(paths) or [STOCK_ROOT / "playbooks", STOCK_ROOT / "rules"]
    missing = [p for p in paths if not p.exists()]
    if missing:
        raise InputError(str(missing[0]), "no such file or folder")
    warnings = warnings if warnings is not None else []
    problems: list[str] = []
    playbook_names: set[str] = set()
    rule_sets: list[RuleSet] = []
    files = _files(paths)
    for path in files:
        kind = _kind(path)
        try:
            if kind == "playbook":
                playbook_names.add(read_playbook(path).name)
            elif kind == "rules":
                rule_sets.append(RuleSet.load(path))
            elif kind == "train":
                problems += _train_config_problems(path)
            else:
                problems += _config_problems(path, warnings)
        except InputError as exc:
            problems.append(str(exc))
    if rule_sets:
        try:
            playbook_names |= set(load_playbooks(STOCK_ROOT / "playbooks"))
        except InputError as exc:
            problems.append(str(exc))
        for rules in rule_sets:
            problems += rules.validate(sorted(playbook_names))
    # A file given twice (or a folder also named by a config given with it) reports each problem once.
    return list(dict.fromkeys(problems)), len(files)


def _config_problems(path: Path, warnings: list[str]) -> list[str]:
    """The problems of an agent config: whatever would stop ``aiops serve`` from starting with it."""
    settings = load_settings(path)
    problems: list[str] = []
    if (refusal := settings.refusal_to_serve()) is not None:
        problems.append(f"{path}: {refusal}")
    elif (warning := settings.open_intake_warning()) is not None:
        warnings.append(f"{path}: {warning}")
    missing = settings.missing_paths()
    for key, named in missing:
        where = f"{settings.where(*key.split('.'))}: {named} does not exist"
        # An in-cluster config describes a pod: its paths are that pod's Secret and ConfigMap mounts, which this
        # machine need not have, so they cannot be checked here. Anywhere else serve would refuse to start.
        if settings.kubernetes.in_cluster:
            warnings.append(f"{where} here (kubernetes.in_cluster: the pod must mount it)")
        else:
            problems.append(where)
    problems += _startup_problems(settings, {key for key, _ in missing})
    unchecked = [key for key, _ in missing if key in ("playbooks_dir", "rules_dir")]
    if unchecked:
        if settings.kubernetes.in_cluster:
            warnings.append(f"{path}: rule_params, policy.second_playbook and the rules' playbooks were not "
                            f"checked ({' and '.join(unchecked)} not on this machine)")
        return problems
    try:
        _, _, cross = check_playbooks_and_rules(settings)
    except InputError as exc:
        cross = [str(exc)]
    return problems + cross


def _startup_problems(settings: Settings, missing: set[str]) -> list[str]:
    """The secrets, kubeconfig and calibration ``aiops serve`` reads as it starts, read by the same code: each one
    it would refuse to start with, as a problem naming the config's line and key (the approvers' and calibration
    files name themselves). Files reported missing already are not read again."""
    problems: list[str] = []

    def check(key: str, read: Callable[[], object]) -> object:
        if key in missing:
            return None
        try:
            return read()
        except InputError as exc:
            where = settings.where(*key.split(".")) if exc.where == key else exc.where
            problems.append(f"{where}: {exc.reason}")
            return None

    token = check("webhook.token_file", lambda: read_webhook_token(settings.webhook.token_file))
    check("approvals.token_file", lambda: load_approvers(settings.approvals.token_file, webhook_token=token))
    if settings.glm.backend == "openai" and settings.glm.api_key_file is not None:
        check("glm.api_key_file", lambda: read_api_key(settings.glm.api_key_file))
    check("models_dir", lambda: Calibration.load(settings.models_dir / CALIBRATION_FILE))
    kube = settings.kubernetes
    if kube.kubeconfig is not None and not kube.host and not kube.in_cluster:  # the one kubernetes reads then
        check("kubernetes.kubeconfig", lambda: api_client_from_settings(kube).close())
    return problems


def _train_config_problems(path: Path) -> list[str]:
    """The problems of an ``aiops train`` config, read by ``aiops train``'s own loader; the case folders it names
    must exist (Prometheus, the other source, can only be asked when training)."""
    config = load_train_config(path)
    return [f"{path}: source.cases[{i}]: {case} is not a folder" for i, case in enumerate(config.source.cases)
            if not case.is_dir()]
