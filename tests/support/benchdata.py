"""The public benchmark data sets a few tests read, found by the one rule in ``bench.datasets`` (``AIOPS_BENCH_DATA``,
else ``bench/data`` from ``make bench-data``, else ``../shared/data`` beside the clone). Absent, such a test is
skipped with the reason; under CI it fails, so the run that is meant to have the data never skips quietly."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench import datasets


def data_dir(name: str) -> Path:
    """Where the data set ``name`` (``nab``, ``loghub_2k``) is expected."""
    return datasets.path(name)


def require(name: str, marker: str = "") -> Path:
    """``data_dir(name)`` when it (and ``marker`` inside it) exists; otherwise skip, or fail under CI."""
    folder = data_dir(name)
    why = datasets.missing(name)
    if why is None and not (folder / marker).exists():
        why = f"{name} data at {folder} has no {marker}"
    if why:
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    return folder
