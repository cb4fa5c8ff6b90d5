"""Pod names and label sets -> owning workload."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aiops.collect.workloads import attach_workload, workload_of_pod, workload_of_pod_object, workload_of_replicaset


@pytest.mark.parametrize("pod, workload", [
    ("cart-7d4b9c8f6-x2k9p", "cart"),
    ("checkout-api-5f6d7c8b9d-abc12", "checkout-api"),
    ("web-84bfc-zq2mn", "web"),
    ("db-0", "db"),
    ("redis-cluster-12", "redis-cluster"),
    ("node-agent-x2k9p", "node-agent"),
    ("cart-service-redis", "cart-service-redis"),  # words, not hashes
    ("frontend", "frontend"),
])
def test_workload_of_pod(pod: str, workload: str) -> None:
    assert workload_of_pod(pod) == workload


def test_workload_of_replicaset() -> None:
    assert workload_of_replicaset("cart-7d4b9c8f6") == "cart"
    assert workload_of_replicaset("checkout-abc", "abc") == "checkout"
    assert workload_of_replicaset("plain") == "plain"


def test_pod_objects_from_the_real_apiserver() -> None:
    pods = json.loads((Path(__file__).parent / "fixtures" / "kube" / "pods_list.json").read_text())["items"]
    assert {workload_of_pod_object(p) for p in pods} == {"checkout"}  # hash label "abc" is used, not guessed
    owned = {"metadata": {"name": "db-0", "ownerReferences": [{"kind": "StatefulSet", "name": "db"}]}}
    assert workload_of_pod_object(owned) == "db"
    rs = {"metadata": {"name": "cart-5c9f8d7b6-x2k9p", "labels": {"pod-template-hash": "5c9f8d7b6"},
                       "ownerReferences": [{"kind": "ReplicaSet", "name": "cart-5c9f8d7b6"}]}}
    assert workload_of_pod_object(rs) == "cart"


def test_attach_workload_precedence() -> None:
    assert attach_workload({"workload": "a", "deployment": "b", "pod": "c-0"})["workload"] == "a"
    assert attach_workload({"deployment": "b", "pod": "c-0"})["workload"] == "b"
    assert attach_workload({"pod": "c-0"})["workload"] == "c"
    assert "workload" not in attach_workload({"namespace": "x"})
    labels = {"pod": "c-0"}
    attach_workload(labels)
    assert labels == {"pod": "c-0"}  # the input is not modified
