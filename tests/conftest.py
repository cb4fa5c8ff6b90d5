"""Shared fixtures: a Kubernetes API to test against, real (kube-apiserver v1.20) or simulated, with one interface.

``kube`` runs a test once per backend; ``ns`` gives that test its own namespace. The real stack starts once per
session (~8 s) and needs the binaries from ``tests/support/kube/build.sh`` (``make kube``).
"""

from __future__ import annotations

import uuid

import pytest

from tests.support import kubestack


def pytest_configure(config):
    config.addinivalue_line("markers", "kube: needs the real kube-apiserver built by tests/support/kube/build.sh")
    # The test apiserver's certificate is self-signed; clients skip verification on purpose.
    config.addinivalue_line("filterwarnings", "ignore::urllib3.exceptions.InsecureRequestWarning")


@pytest.fixture(scope="session")
def kube_real():
    """The real control plane (etcd + kube-apiserver + kube-controller-manager + fake kubelet)."""
    if not kubestack.available():
        pytest.fail(f"kube-apiserver v1.20.2 is not built in {kubestack.bin_dir()}: "
                    f"run `make kube` / {kubestack.BUILD_SCRIPT}", pytrace=False)
    stack = kubestack.start_kube()
    yield stack
    stack.stop()


@pytest.fixture(scope="session")
def kube_sim():
    """The simulator's Kubernetes API on the wall clock, rollouts progressing in real time."""
    sim = kubestack.SimKube()
    yield sim
    sim.stop()


@pytest.fixture(params=["sim", pytest.param("real", marks=pytest.mark.kube)])
def kube(request):
    """``KubeStack`` or ``SimKube``: ``.client()``, ``.create_namespace``, ``.create_app``, ``.name``."""
    return request.getfixturevalue(f"kube_{request.param}")


@pytest.fixture
def ns(kube):
    """A fresh namespace; deleted afterwards without waiting (the real deletion takes ~10 s)."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    kube.create_namespace(name)
    yield name
    kube.delete_namespace(name)
