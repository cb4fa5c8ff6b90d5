"""Render the deploy/ manifests with the real tools: ``helm template`` and ``kubectl kustomize``.

The binaries are the official releases cached by ``tests/support/kube/render_tools.sh`` (``make kube``). ``same``
reduces a rendering to what matters for comparing Helm with kustomize: objects keyed by kind, namespace and name,
without the labels and annotations only one tool writes.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CHART = DEPLOY / "helm" / "aiops"
KUSTOMIZE = DEPLOY / "kustomize"
TOOLS_SCRIPT = Path(__file__).parent / "kube" / "render_tools.sh"
# Labels Helm adds by convention and kustomize has no reason to write.
HELM_ONLY_LABELS = ("helm.sh/chart", "app.kubernetes.io/managed-by")
# kustomize names generated ConfigMaps <name>-<10-character content hash>; Helm rolls pods with checksum/ annotations.
_HASHED = re.compile(r"^(?P<base>.+)-[a-z0-9]{10}$")


def tools_dir() -> Path:
    """Where render_tools.sh caches helm and kubectl (the same knob as the script)."""
    cache = os.environ.get("AIOPS_RENDER_TOOLS_CACHE") or str(Path.home() / ".cache/aiops/render-tools")
    return Path(cache) / "bin"


def available() -> bool:
    """True when both helm and kubectl are cached."""
    return all(os.access(tools_dir() / name, os.X_OK) for name in ("helm", "kubectl"))


def _run(argv: list[str]) -> list[dict]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise RenderError(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stderr}")
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


class RenderError(Exception):
    """A renderer refused the input (its stderr is the message)."""


def helm_template(release: str = "aiops", namespace: str = "aiops-system", values: dict[str, str] | None = None,
                  chart: Path = CHART) -> list[dict]:
    """``helm template RELEASE CHART --namespace NS --set k=v ...`` as a list of objects."""
    argv = [str(tools_dir() / "helm"), "template", release, str(chart), "--namespace", namespace]
    for key, value in (values or {}).items():
        argv += ["--set", f"{key}={value}"]
    return _run(argv)


def kustomize(path: Path) -> list[dict]:
    """``kubectl kustomize PATH`` as a list of objects."""
    return _run([str(tools_dir() / "kubectl"), "kustomize", str(path)])


def key(obj: dict) -> tuple[str, str, str]:
    """``(kind, namespace, name)`` of an object."""
    meta = obj.get("metadata") or {}
    return obj["kind"], meta.get("namespace", ""), meta["name"]


def same(objects: list[dict], hashed_configmaps: bool = False) -> dict[tuple[str, str, str], dict]:
    """Objects keyed by ``key`` after removing what differs by tool only: Helm's own labels, ``checksum/``
    annotations, kustomize's ConfigMap name hashes (``hashed_configmaps``: in names and every reference), and the
    formatting of YAML documents held in ConfigMaps (compared parsed)."""
    renames = {}
    for obj in objects:
        match = _HASHED.match(obj["metadata"]["name"]) if hashed_configmaps and obj["kind"] == "ConfigMap" else None
        if match:
            renames[obj["metadata"]["name"]] = match["base"]
    out = {}
    for obj in objects:
        obj = _strip(_rename(obj, renames))
        if obj["kind"] == "ConfigMap":
            obj["data"] = {k: yaml.safe_load(v) if k.endswith((".yaml", ".yml")) else v
                           for k, v in (obj.get("data") or {}).items()}
        out[key(obj)] = obj
    return out


def _rename(node, renames: dict[str, str]):
    if isinstance(node, dict):
        return {k: _rename(v, renames) for k, v in node.items()}
    if isinstance(node, list):
        return [_rename(v, renames) for v in node]
    return renames.get(node, node) if isinstance(node, str) else node


def _strip(node):
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k == "labels" and isinstance(v, dict):
                v = {lk: lv for lk, lv in v.items() if lk not in HELM_ONLY_LABELS}
            if k == "annotations" and isinstance(v, dict):
                v = {ak: av for ak, av in v.items() if not ak.startswith("checksum/")}
                if not v:
                    continue
            out[k] = _strip(v)
        return out
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node
