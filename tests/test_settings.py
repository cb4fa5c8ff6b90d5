"""The config file: typed, validated once, and every error names the file, the key and the reason."""

import os
from pathlib import Path

import pytest
import yaml

from aiops.domain import InputError, Mode
from aiops.settings import load_settings, parse_settings


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_defaults_are_safe():
    settings = parse_settings({})
    assert settings.mode is Mode.DRY_RUN
    assert settings.kubernetes.namespaces == ()


def test_full_file_and_relative_paths(tmp_path):
    path = write(tmp_path, """
mode: act
webhook: {listen: "127.0.0.1:9000", token_file: secret/token}
approvals: {token_file: secret/approvers.yaml}
prometheus: {url: "http://127.0.0.1:9090"}
kubernetes: {kubeconfig: kube.yaml, namespaces: [shop, pay]}
playbooks_dir: pb
rules_dir: /abs/rules
""")
    settings = load_settings(path)
    assert settings.mode is Mode.ACT
    assert settings.webhook.port == 9000 and settings.webhook.host == "127.0.0.1"
    assert settings.webhook.token_file == tmp_path / "secret/token"
    assert settings.approvals.token_file == tmp_path / "secret/approvers.yaml"
    assert settings.kubernetes.kubeconfig == tmp_path / "kube.yaml"
    assert settings.kubernetes.namespaces == ("shop", "pay")
    assert settings.playbooks_dir == tmp_path / "pb"
    assert settings.rules_dir == Path("/abs/rules")


@pytest.mark.parametrize("text, where, reason", [
    ("mode: yolo\n", "config.yaml", "mode:"),
    ("webhook: {listen: nope}\n", "config.yaml", "webhook.listen: Value error, must be HOST:PORT"),
    ("prometheus: {url: localhost:9090}\n", "config.yaml", "prometheus.url: Value error, must start with http"),
    ("kubernetes: {namespacez: [a]}\n", "config.yaml", "kubernetes.namespacez: unknown key"),
    ("approvals: {token: abc}\n", "config.yaml", "approvals.token: unknown key"),
    ("- a\n- b\n", "config.yaml", "must be a mapping"),
    ("mode: [unclosed\n", "config.yaml:", "not valid YAML"),
    ("kubernetes: {in_cluster: true, kubeconfig: x}\n", "config.yaml", "in_cluster cannot be combined"),
])
def test_bad_config_names_file_key_and_reason(tmp_path, text, where, reason):
    path = write(tmp_path, text)
    with pytest.raises(InputError) as info:
        load_settings(path)
    assert where in str(info.value)
    assert reason in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="config file not found"):
        load_settings(tmp_path / "absent.yaml")


def test_leader_election_is_off_by_default_with_a_per_process_identity():
    le = parse_settings({}).leader_election
    assert le.enabled is False and le.lease_name == "aiops-leader"
    assert le.identity.endswith(f"-{os.getpid()}")
    assert le.lease_duration_seconds > le.renew_deadline_seconds > le.retry_period_seconds


@pytest.mark.parametrize("section, reason", [
    ({"lease_duration_seconds": 5, "renew_deadline_seconds": 5}, "lease_duration_seconds > renew_deadline_seconds"),
    ({"retry_period_seconds": 0}, "retry_period_seconds"),
    ({"lease_name": "Not_A_Name"}, "leader_election.lease_name: Value error, must be a lowercase DNS name"),
    ({"namespace": ""}, "leader_election.namespace"),
    ({"identity": ""}, "leader_election.identity"),
    ({"leases": 1}, "leader_election.leases: unknown key"),
])
def test_bad_leader_election_settings_name_the_key(tmp_path, section, reason):
    path = write(tmp_path, yaml.safe_dump({"leader_election": {"enabled": True, **section}}))
    with pytest.raises(InputError) as err:
        load_settings(path)
    assert str(path) in str(err.value) and reason in str(err.value)


def test_the_journal_is_sqlite_by_default_and_kubernetes_defaults_to_the_lease_namespace():
    settings = parse_settings({})
    assert settings.journal.backend == "sqlite" and settings.journal.retention_days == 30
    shared = parse_settings({"journal": {"backend": "kubernetes"}, "leader_election": {"namespace": "ops"}})
    assert shared.journal_namespace == "ops"
    assert parse_settings({"journal": {"backend": "kubernetes", "namespace": "j"}}).journal_namespace == "j"


@pytest.mark.parametrize("section, reason", [
    ({"backend": "etcd"}, "journal.backend"),
    ({"namespace": "Bad_NS"}, "journal.namespace: Value error, must be a lowercase DNS name"),
    ({"retention_days": -1}, "journal.retention_days"),
    ({"path": "x"}, "journal.path: unknown key"),
])
def test_bad_journal_settings_name_the_key(tmp_path, section, reason):
    path = write(tmp_path, yaml.safe_dump({"journal": section}))
    with pytest.raises(InputError) as err:
        load_settings(path)
    assert str(path) in str(err.value) and reason in str(err.value)


def test_advertise_url_is_set_per_replica_and_a_bad_one_names_the_flag():
    from aiops.settings import Settings, with_advertise_url

    base = Settings(leader_election={"enabled": True, "identity": "agent-a"})
    set_ = with_advertise_url(base, "http://10.0.0.5:8080")
    assert set_.leader_election.advertise_url == "http://10.0.0.5:8080"
    assert set_.leader_election.identity == "agent-a" and set_.leader_election.enabled  # the rest kept
    assert base.leader_election.advertise_url is None
    with pytest.raises(InputError, match=r"--advertise-url.*advertise_url.*http://"):
        with_advertise_url(base, "10.0.0.5:8080")


def test_streaming_loop_settings_name_the_bad_field():
    with pytest.raises(InputError, match=r"loop.streaming.signals.*unknown signal.*latency"):
        parse_settings({"loop": {"streaming": {"signals": ["latency"]}}})
    with pytest.raises(InputError, match=r"open_threshold \(0.5\) must be >= threshold \(0.55\)"):
        parse_settings({"loop": {"streaming": {"open_threshold": 0.5}}})
    assert parse_settings({"loop": {"streaming": {"enabled": False}}}).loop.streaming.enabled is False


def test_api_calls_are_bounded_by_default_and_the_bound_fits_the_leader_fence():
    """Issue #13 (10): every Kubernetes call has a timeout, and with leader election on a fenced write (and the
    journal snapshot a new leader reads) must fit in the gap between the old leader stopping and a new one starting."""
    settings = parse_settings({"leader_election": {"enabled": True}, "journal": {"backend": "kubernetes"}})
    gap = settings.leader_election.lease_duration_seconds - settings.leader_election.renew_deadline_seconds
    assert 0 < settings.kubernetes.request_timeout_seconds < gap
    assert 0 < settings.journal.read_cache_seconds < gap
    with pytest.raises(InputError, match=r"kubernetes.request_timeout_seconds \(5\) must be shorter than "
                                         r"leader_election.lease_duration_seconds - renew_deadline_seconds \(5\)"):
        parse_settings({"leader_election": {"enabled": True}, "kubernetes": {"request_timeout_seconds": 5}})
    with pytest.raises(InputError, match=r"journal.read_cache_seconds \(6\) must be shorter"):
        parse_settings({"leader_election": {"enabled": True, "lease_duration_seconds": 16},
                        "journal": {"backend": "kubernetes", "read_cache_seconds": 6}})
    # Longer calls are fine with a longer lease, or without leader election (nothing to fence).
    assert parse_settings({"leader_election": {"enabled": True, "lease_duration_seconds": 30},
                           "kubernetes": {"request_timeout_seconds": 15}}).kubernetes.request_timeout_seconds == 15
    assert parse_settings({"kubernetes": {"request_timeout_seconds": 60}}).kubernetes.request_timeout_seconds == 60
    with pytest.raises(InputError, match=r"kubernetes.request_timeout_seconds: Input should be greater than 0"):
        parse_settings({"kubernetes": {"request_timeout_seconds": 0}})
    with pytest.raises(InputError, match=r"glm.max_response_bytes"):
        parse_settings({"glm": {"max_response_bytes": 10}})
    with pytest.raises(InputError, match=r"journal.compact_bytes"):
        parse_settings({"journal": {"compact_bytes": 2 * 1024 * 1024}})
