"""What the agent knows how to do: the playbooks and rules its config names, loaded and checked against each other.

``aiops serve`` (and ``diagnose``) load them here, and ``aiops validate`` runs the very same load on a config
file, so a config that validates is one the agent starts with.
"""

from __future__ import annotations

from aiops.diagnose.rule_schema import RuleSet
from aiops.domain.errors import InputError
from aiops.domain.playbook import Playbook
from aiops.remediate.playbooks import load_playbooks
from aiops.settings import Settings


def load_playbooks_and_rules(settings: Settings) -> tuple[dict[str, Playbook], RuleSet]:
    """``playbooks_dir`` and ``rules_dir`` (with ``rule_params`` applied), checked against each other; any problem
    is an ``InputError`` (see ``check_playbooks_and_rules``)."""
    playbooks, rules, problems = check_playbooks_and_rules(settings)
    if problems:
        raise InputError("", "; ".join(problems))
    return playbooks, rules


def check_playbooks_and_rules(settings: Settings) -> tuple[dict[str, Playbook], RuleSet, list[str]]:
    """Load ``playbooks_dir`` and ``rules_dir`` with ``rule_params`` applied: a bad file (naming itself) or a bad
    ``rule_params`` entry (naming the config file, line and key) is an ``InputError``. Returned with them, as
    ``where: reason`` lines: every rule and ``policy.second_playbook`` entry naming a playbook that is not loaded."""
    playbooks = load_playbooks(settings.playbooks_dir)
    rules = RuleSet.load(settings.rules_dir, params=settings.rule_params, where_params=settings.where)
    return playbooks, rules, rules.validate(list(playbooks)) + _second_playbook_problems(settings, playbooks)


def _second_playbook_problems(settings: Settings, playbooks: dict[str, Playbook]) -> list[str]:
    # Checked at start: the agent would otherwise find out only once a first playbook had failed.
    return [f"{settings.where('policy', 'second_playbook', fault)}: no playbook named {name!r} in "
            f"{settings.playbooks_dir}; choose from {', '.join(sorted(playbooks)) or '(none loaded)'}"
            for fault, name in settings.policy.second_playbook.items() if name not in playbooks]
