"""The public benchmark data sets a few tests read: ``AIOPS_BENCH_DATA`` if set, else ``../shared/data`` beside the
repository (CI has it; a user's clone does not). Absent, such a test is skipped with the reason; under CI it fails,
so the run that is meant to have the data never skips quietly."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def data_dir(name: str) -> Path:
    """Where the data set ``name`` (``nab``, ``loghub_2k``) is expected."""
    base = os.environ.get("AIOPS_BENCH_DATA")
    return (Path(base) if base else ROOT.parent / "shared" / "data") / name


def require(name: str, marker: str = "") -> Path:
    """``data_dir(name)`` when it (and ``marker`` inside it) exists; otherwise skip, or fail under CI."""
    folder = data_dir(name)
    if not (folder / marker).exists():
        why = (f"{name} data not found at {folder}: set AIOPS_BENCH_DATA to the folder holding {name}/ "
               "(CI has it in ../shared/data)")
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    return folder
