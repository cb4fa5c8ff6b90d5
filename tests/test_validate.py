"""``aiops validate`` checks every kind of file with the code that reads it for real, and says what the agent would
say: one line per problem naming the file, the line and the key, exit 1 (issue #16, item 6)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from aiops.cli import main
from aiops.domain.errors import InputError
from aiops.remediate.playbooks import load_playbooks
from aiops.serve.agent import load_knowledge
from aiops.settings import STOCK_ROOT, load_settings

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
RULE = """\
rules:
  - name: {name}
    fault: memory_leak
    playbook: {playbook}
    confidence: 0.9
    when:
      - signal: memory
        trend: rising
"""


def validate(capsys, *paths) -> tuple[int, list[str], list[str]]:
    """Exit code, problem lines and warning lines of ``aiops validate PATHS``."""
    code = main(["validate", *map(str, paths)])
    out = capsys.readouterr().out.splitlines()
    assert out[-1].endswith("problem(s)"), out
    return code, [l for l in out[:-1] if not l.startswith("warning: ")], [l for l in out if l.startswith("warning: ")]


def job_train_config(folder: Path) -> Path:
    """The train config the retrain-detector Job ships (in its ConfigMap), as a file."""
    docs = {d["kind"]: d for d in yaml.safe_load_all((DEPLOY / "jobs" / "retrain-detector-job.yaml").read_text())}
    path = folder / "train.yaml"
    path.write_text(docs["ConfigMap"]["data"]["train.yaml"])
    return path


# -- what ships validates ------------------------------------------------------------------------------------

def test_the_stock_files_and_every_deploy_example_validate(tmp_path, capsys):
    kustomize = DEPLOY / "kustomize"
    code, problems, warnings = validate(
        capsys, STOCK_ROOT / "playbooks", STOCK_ROOT / "rules", DEPLOY / "config.example.yaml",
        kustomize / "base" / "config.yaml", kustomize / "base" / "playbooks", kustomize / "base" / "rules",
        kustomize / "overlays" / "act" / "config.yaml", job_train_config(tmp_path))
    assert code == 0 and problems == []
    # The kustomize configs run in a pod: its mounts are not on this machine, which is said, not failed.
    assert any("base/config.yaml:15: playbooks_dir: /etc/aiops/playbooks does not exist here" in w for w in warnings)


# -- train configs -------------------------------------------------------------------------------------------

def test_a_train_config_is_recognised_and_checked_by_the_loader_aiops_train_uses(tmp_path, capsys):
    path = job_train_config(tmp_path)
    assert validate(capsys, path)[:2] == (0, [])
    path.write_text(path.read_text().replace("tuning: {enabled: true,", "tuning: {enabled: true, window: [0],"))
    code, problems, _ = validate(capsys, path)
    assert code == 1 and len(problems) == 1
    assert problems[0].startswith(f"{path}:7: tuning.window: ") and "every value must be >= 1" in problems[0]


def test_a_train_config_naming_a_missing_case_folder_is_a_problem(tmp_path, capsys):
    (tmp_path / "monday").mkdir()
    path = tmp_path / "train.yaml"
    path.write_text("name: shop\nsource:\n  cases: [monday, tuesday]\n")
    code, problems, _ = validate(capsys, path)
    assert code == 1 and problems == [f"{path}: source.cases[1]: {tmp_path / 'tuesday'} is not a folder"]


# -- an agent config: the cross-checks serve runs, by serve's own loader ---------------------------------------

def serve_error(config: Path) -> str:
    """What the agent's own loader (``aiops serve`` and ``diagnose --config``) says about ``config``."""
    with pytest.raises(InputError) as info:
        load_knowledge(load_settings(config))
    return str(info.value)


@pytest.mark.parametrize("body, line, key, reason", [
    ("rule_params:\n  no-such-rule: {growth: 0.5}\n", 2, "rule_params.no-such-rule",
     f"no rule named no-such-rule in {STOCK_ROOT / 'rules'}"),
    ("rule_params:\n  model-overload:\n    latency: 0.3\n", 3, "rule_params.model-overload.latency",
     "rule 'model-overload' ("),
    ("mode: dry-run\npolicy:\n  second_playbook: {memory_leak: reboot-node}\n", 3,
     "policy.second_playbook.memory_leak", f"no playbook named 'reboot-node' in {STOCK_ROOT / 'playbooks'}"),
])
def test_a_config_setting_naming_no_rule_or_playbook_fails_validate_exactly_as_it_fails_serve(
        tmp_path, capsys, body, line, key, reason):
    config = tmp_path / "config.yaml"
    config.write_text(body)
    code, problems, _ = validate(capsys, config)
    assert code == 1 and len(problems) == 1
    assert problems[0].startswith(f"{config}:{line}: {key}: {reason}")
    assert serve_error(config) == problems[0]


def test_serve_refuses_a_second_playbook_that_is_not_loaded_in_one_line(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("policy:\n  second_playbook:\n    memory_leak: reboot-node\n")
    done = subprocess.run([sys.executable, "-m", "aiops.cli", "serve", "--config", str(config)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"aiops: error: {config}:3: policy.second_playbook.memory_leak: no playbook named 'reboot-node' in "
        f"{STOCK_ROOT / 'playbooks'}; choose from degrade-model, escalate, isolate-pod, restart-workload, "
        "retrain-detector, rollback-deploy, scale-up, shift-traffic"]


def test_a_second_playbook_for_a_fault_that_does_not_exist_is_a_problem(tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text("policy:\n  second_playbook: {memory_leek: scale-up}\n")
    code, problems, _ = validate(capsys, config)
    assert code == 1 and len(problems) == 1
    assert problems[0].startswith(f"{config}:2: policy.second_playbook:") and "'memory_leek'" in problems[0]


def test_a_config_whose_rules_name_a_playbook_its_playbooks_dir_lacks_is_a_problem(tmp_path, capsys):
    shutil.copytree(STOCK_ROOT / "playbooks", tmp_path / "playbooks")
    (tmp_path / "playbooks" / "rollback-deploy.yaml").unlink()
    config = tmp_path / "config.yaml"
    config.write_text("playbooks_dir: playbooks\n")
    code, problems, _ = validate(capsys, config)
    assert code == 1 and problems and all("unknown playbook 'rollback-deploy'" in p for p in problems)
    assert problems[0].startswith(f"{STOCK_ROOT / 'rules' / 'crashes.yaml'}:6: rules[0].playbook: ")


@pytest.mark.parametrize("key, text", [
    ("playbooks_dir", "playbooks_dir: no-playbooks\n"),
    ("rules_dir", "rules_dir: no-rules\n"),
    ("webhook.token_file", "webhook:\n  token_file: no-token\n"),
    ("approvals.token_file", "approvals:\n  token_file: no-approvers.yaml\n"),
    ("kubernetes.kubeconfig", "kubernetes:\n  kubeconfig: no-kubeconfig\n"),
])
def test_a_path_the_config_names_that_does_not_exist_is_a_problem_naming_key_and_path(tmp_path, capsys, key, text):
    config = tmp_path / "config.yaml"
    config.write_text("mode: dry-run\n" + text)
    code, problems, _ = validate(capsys, config)
    named = text.rsplit(": ", 1)[1].strip()
    line = text.count("\n") + 1
    assert code == 1 and problems == [f"{config}:{line}: {key}: {tmp_path / named} does not exist"]


def test_in_an_in_cluster_config_a_missing_path_is_a_warning_saying_why(tmp_path, capsys):
    # The pod's Secret and ConfigMap mounts are not on the machine that validates the file.
    config = tmp_path / "config.yaml"
    config.write_text("kubernetes: {in_cluster: true}\nwebhook: {token_file: /var/run/secrets/aiops/token}\n"
                      "playbooks_dir: /etc/aiops/playbooks\n")
    code, problems, warnings = validate(capsys, config)
    assert code == 0 and problems == []
    assert (f"warning: {config}:2: webhook.token_file: /var/run/secrets/aiops/token does not exist here "
            "(kubernetes.in_cluster: the pod must mount it)") in warnings
    assert any(f"{config}:3: playbooks_dir: /etc/aiops/playbooks does not exist here" in w for w in warnings)
    assert any("rule_params, policy.second_playbook and the rules' playbooks were not checked" in w
               for w in warnings)


def test_a_config_given_with_its_own_folders_reports_each_problem_once(tmp_path, capsys):
    shutil.copytree(STOCK_ROOT / "playbooks", tmp_path / "playbooks")
    (tmp_path / "playbooks" / "scale-up.yaml").write_text("name: scale-up\naction: explode\n")
    config = tmp_path / "config.yaml"
    config.write_text("playbooks_dir: playbooks\n")
    code, problems, _ = validate(capsys, config, tmp_path / "playbooks")
    assert code == 1 and len(problems) == 1 and problems[0].startswith(f"{tmp_path / 'playbooks' / 'scale-up.yaml'}:2")


# -- line numbers in rule and playbook files -----------------------------------------------------------------

def test_every_rule_file_error_names_file_line_and_key(tmp_path, capsys):
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "a.yaml").write_text(RULE.format(name="leak", playbook="restart-workload").replace(
        "      - signal: memory\n        trend: rising\n",
        "      - any_of:\n          - signal: memory\n            trend: rising\n          - signal: memry\n"
        "            trend: rising\n"))
    (rules / "b.yaml").write_text(RULE.format(name="other", playbook="reboot-node"))
    (rules / "c.yaml").write_text("# thresholds\nrules:\n  - name: p\n    fault: memory_leak\n    playbook: escalate\n"
                                  "    confidence: 0.5\n    params: {limit: 2}\n    when:\n"
                                  "      - signal: memory\n        above: \"$limt\"\n")
    code, problems, _ = validate(capsys, rules)
    assert code == 1
    assert [p.split(": ", 2)[:2] for p in problems] == [
        [f"{rules / 'a.yaml'}:10", "rules[0].when[0].any_of[1].signal"],
        [f"{rules / 'c.yaml'}:10", "rules[0].when[0].above"],
        [f"{rules / 'b.yaml'}:4", "rules[0].playbook"],
    ]


def test_duplicate_names_are_refused_at_the_line_of_the_second(tmp_path):
    for name in ("a.yaml", "b.yaml"):
        (tmp_path / name).write_text("# a copy\n" + (STOCK_ROOT / "playbooks" / "escalate.yaml").read_text())
    with pytest.raises(InputError) as info:
        load_playbooks(tmp_path)
    assert str(info.value).startswith(f"{tmp_path / 'b.yaml'}:2: name: duplicate playbook name 'escalate'")


def test_a_playbook_params_error_names_the_line_of_the_bad_param(tmp_path, capsys):
    path = tmp_path / "scale-up.yaml"
    path.write_text((STOCK_ROOT / "playbooks" / "scale-up.yaml").read_text().replace("step_min: 1", "step_min: -1"))
    code, problems, _ = validate(capsys, path)
    assert code == 1 and len(problems) == 1 and problems[0].startswith(f"{path}:9: params.step_min:")


# -- loose rule files: the playbooks given plus the stock ones --------------------------------------------------

def test_one_new_playbook_beside_the_stock_rules_validates(tmp_path, capsys):
    playbooks = tmp_path / "playbooks"
    playbooks.mkdir()
    (playbooks / "drain.yaml").write_text((STOCK_ROOT / "playbooks" / "escalate.yaml").read_text()
                                          .replace("name: escalate", "name: drain-node"))
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "drain.yaml").write_text(RULE.format(name="drain", playbook="drain-node"))
    assert validate(capsys, playbooks, STOCK_ROOT / "rules")[:2] == (0, [])
    assert validate(capsys, playbooks, rules, STOCK_ROOT / "rules")[:2] == (0, [])
    # A playbook neither given nor stock is still a problem.
    (rules / "drain.yaml").write_text(RULE.format(name="drain", playbook="reboot-node"))
    code, problems, _ = validate(capsys, playbooks, rules)
    assert code == 1 and len(problems) == 1 and "unknown playbook 'reboot-node'" in problems[0]


# -- empty files -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("folder, what", [("playbooks", "playbook"), ("rules", "rule file"), ("etc", "config file")])
@pytest.mark.parametrize("text", ["", "\n\n", "# nothing yet\n# still nothing\n"])
def test_an_empty_file_is_a_problem_naming_it(tmp_path, capsys, folder, what, text):
    path = tmp_path / folder / "empty.yaml"
    path.parent.mkdir()
    path.write_text(text)
    code, problems, _ = validate(capsys, path)
    assert code == 1 and len(problems) == 1
    assert problems[0].startswith(f"{path}: {what}") and problems[0].endswith("is empty (nothing but blank lines "
                                                                              "or comments)")


def test_serve_refuses_an_empty_config(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("# all defaults, I thought\n")
    with pytest.raises(InputError, match="config file is empty") as info:
        load_settings(config)
    assert info.value.where == str(config)


# -- the files serve reads when it starts ------------------------------------------------------------------

@pytest.mark.parametrize("files, text, key, reason", [
    ({"token": ""}, "webhook:\n  token_file: token\n", "webhook.token_file", "is empty"),
    ({"token": b"\xff\xfe\n"}, "webhook:\n  token_file: token\n", "webhook.token_file", "cannot read"),
    ({"token/": None}, "webhook:\n  token_file: token\n", "webhook.token_file", "cannot read"),
    ({"approvers.yaml": "alice: short\n"}, "approvals:\n  token_file: approvers.yaml\n", "approvers.yaml:1",
     "the token of alice is shorter than 16 characters"),
    ({"token": "0123456789abcdef0123\n", "approvers.yaml": "alice: '0123456789abcdef0123'\n"},
     "webhook:\n  token_file: token\napprovals:\n  token_file: approvers.yaml\n", "approvers.yaml:1",
     "the token of alice is the webhook's"),
    ({"models/calibration.json": "{not json"}, "models_dir: models\n", "calibration.json",
     "not a readable calibration JSON file"),
    ({"key": ""}, "glm:\n  backend: openai\n  endpoint: http://127.0.0.1:9/v1\n  api_key_file: key\n",
     "glm.api_key_file", "is empty"),
    ({"kubeconfig": "{{{\n"}, "kubernetes:\n  kubeconfig: kubeconfig\n", "kubernetes.kubeconfig",
     "cannot load kubeconfig"),
])
def test_a_file_serve_cannot_start_with_is_a_problem_as_serve_says_it(tmp_path, capsys, files, text, key, reason):
    # serve reads these when it starts and refuses to (exit 2); validate must not pass them.
    for name, content in files.items():
        path = tmp_path / name.rstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith("/"):
            path.mkdir()
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    config = tmp_path / "config.yaml"
    config.write_text("mode: dry-run\n" + text)
    code, problems, _ = validate(capsys, config)
    assert code == 1 and len(problems) == 1, problems
    assert key in problems[0] and reason in problems[0] and "\n" not in problems[0]
    if key.endswith("_file"):  # a config setting: named by the config's file and line
        assert problems[0].startswith(f"{config}:")


def test_a_webhook_token_serve_cannot_decode_is_one_line_not_a_traceback(tmp_path):
    from aiops.serve.approvers import read_webhook_token

    (tmp_path / "token").write_bytes(b"\xff\xfe")
    with pytest.raises(InputError, match="cannot read"):
        read_webhook_token(tmp_path / "token")
    (tmp_path / "token").write_text(" s3cret-0123456789abcdef \n")
    assert read_webhook_token(tmp_path / "token") == "s3cret-0123456789abcdef"
    assert read_webhook_token(None) is None


# -- duplicate keys ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("folder, text, line, key", [
    ("etc", "mode: act\nwebhook:\n  listen: 127.0.0.1:8080\nmode: dry-run\n", 4, "mode"),
    ("etc", "policy:\n  min_confidence: 0.9\n  max_actions_per_hour: 2\n  min_confidence: 0.1\n", 4,
     "policy.min_confidence"),
    ("playbooks", "name: scale-up\naction: scale\nfaults: [cpu_saturation]\nparams:\n  factor: 2\n  factor: 20\n", 6,
     "params.factor"),
    ("rules", RULE.format(name="leak", playbook="restart-workload") + "        trend: falling\n", 9,
     "rules[0].when[0].trend"),
])
def test_a_key_written_twice_is_a_problem_at_the_second(tmp_path, capsys, folder, text, line, key):
    # YAML keeps the last of two equal keys without a word: a setting read as the first one says would be wrong.
    path = tmp_path / folder / "file.yaml"
    path.parent.mkdir()
    path.write_text(text)
    code, problems, _ = validate(capsys, path)
    assert code == 1 and len(problems) == 1, problems
    assert problems[0].startswith(f"{path}:{line}: {key}: written twice (first on line ")
    if folder == "etc":  # and serve refuses the config the same way
        with pytest.raises(InputError, match="written twice"):
            load_settings(path)


def test_equal_keys_in_different_mappings_and_merged_anchors_are_not_duplicates(tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text("mode: dry-run\nwebhook: &w {listen: 127.0.0.1:8080}\nloop: {interval_seconds: 60}\n"
                      "prometheus: {timeout_seconds: 5}\nkubernetes: {namespaces: [shop]}\n")
    assert validate(capsys, config)[:2] == (0, [])
    approvers = tmp_path / "approvers.yaml"
    approvers.write_text("base: &b {a: 1}\nother:\n  <<: *b\n  a: 2\n")
    from aiops.yamlfile import read_yaml_mapping

    raw, _ = read_yaml_mapping(approvers, "test")
    assert raw["other"] == {"a": 2}


# Brackets past what PyYAML's composer reads; anchors each nested in the one before (deep only once aliases are
# followed, as every reader after the parser does); an anchor inside itself (endless).
CHAINED = "".join(f"a{i}: &a{i} " + "[" * 60 + (f"*a{i - 1}" if i else "") + "]" * 60 + "\n" for i in range(4))


@pytest.mark.parametrize("text", ["rules: " + "[" * 3000 + "]" * 3000 + "\n", CHAINED + "rules: *a3\n",
                                  "rules: &loop [*loop]\n"])
def test_a_file_nested_deeper_than_the_reader_goes_is_one_line(tmp_path, capsys, text):
    path = tmp_path / "rules" / "deep.yaml"
    path.parent.mkdir()
    path.write_text(text)
    code, problems, _ = validate(capsys, path)
    assert code == 1 and problems == [f"{path}: rule file (a mapping with a 'rules' list) is nested too deeply to "
                                      "read (over 100 levels)"]
