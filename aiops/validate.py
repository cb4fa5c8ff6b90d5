"""``aiops validate``: lint playbook, rule and config files, reporting every problem as ``where: reason``."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import yaml

from aiops.diagnose.rules import RuleSet
from aiops.domain.errors import InputError
from aiops.remediate.playbooks import load_playbooks, read_playbook
from aiops.settings import STOCK_ROOT, load_settings

YAML_SUFFIXES = (".yaml", ".yml")


def _kind(path: Path) -> str:
    """``playbook``, ``rules`` or ``config``, from what the file holds (folder names are only a hint)."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        raw = None
    if isinstance(raw, dict):
        if "rules" in raw:
            return "rules"
        if "action" in raw:
            return "playbook"
        return "config"
    return {"playbooks": "playbook", "rules": "rules"}.get(path.parent.name, "config")


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
    what is allowed but unsafe (a config without a webhook token) is appended to ``warnings``."""
    paths = list(paths) or [STOCK_ROOT / "playbooks", STOCK_ROOT / "rules"]
    missing = [p for p in paths if not p.exists()]
    if missing:
        raise InputError(str(missing[0]), "no such file or folder")
    problems: list[str] = []
    playbook_names: set[str] = set()
    rule_files: list[Path] = []
    files = _files(paths)
    for path in files:
        kind = _kind(path)
        try:
            if kind == "playbook":
                playbook_names.add(read_playbook(path).name)
            elif kind == "rules":
                rule_files.append(path)
            else:
                settings = load_settings(path)
                if (refusal := settings.refusal_to_serve()) is not None:
                    problems.append(f"{path}: {refusal}")
                elif (warning := settings.open_intake_warning()) is not None and warnings is not None:
                    warnings.append(f"{path}: {warning}")
        except InputError as exc:
            problems.append(str(exc))
    if rule_files:
        if not playbook_names:
            try:
                playbook_names = set(load_playbooks(STOCK_ROOT / "playbooks"))
            except InputError as exc:
                problems.append(str(exc))
        for path in rule_files:
            try:
                problems += RuleSet.load(path).validate(sorted(playbook_names))
            except InputError as exc:
                problems.append(str(exc))
    return problems, len(files)
