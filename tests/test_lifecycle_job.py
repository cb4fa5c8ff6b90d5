"""The retrain-detector Job template: a valid batch/v1 Job running ``aiops train`` on a config that validates."""

from __future__ import annotations

from pathlib import Path

import yaml

from aiops.cli import build_parser
from aiops.serve.train_config import parse_train_config

JOB = Path(__file__).resolve().parent.parent / "deploy" / "jobs" / "retrain-detector-job.yaml"


def test_job_template_runs_train_on_a_valid_config_with_the_registry_mounted():
    docs = {d["kind"]: d for d in yaml.safe_load_all(JOB.read_text())}
    assert set(docs) == {"ConfigMap", "Job"}
    job = docs["Job"]
    assert job["apiVersion"] == "batch/v1" and job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    [container] = job["spec"]["template"]["spec"]["containers"]
    args = build_parser().parse_args(container["args"])  # the CLI accepts exactly these flags
    assert args.command == "train" and args.format == "json"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    config = parse_train_config(yaml.safe_load(docs["ConfigMap"]["data"]["train.yaml"]))
    assert str(args.config) == f"{mounts['train-config']}/train.yaml"
    assert str(config.models_dir) == mounts["models"] and config.promote == "if-better"
    assert config.source.prometheus is not None and config.source.prometheus.since == 7 * 86400
    assert container["securityContext"]["readOnlyRootFilesystem"] and mounts["tmp"] == "/tmp"
    volumes = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
    assert volumes["train-config"]["configMap"]["name"] == docs["ConfigMap"]["metadata"]["name"]
    assert "persistentVolumeClaim" in volumes["models"]
