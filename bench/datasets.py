"""Where the public benchmark data sets live, and `make bench-data`, which puts them there.

One rule for the benchmarks and the tests that read them: ``$AIOPS_BENCH_DATA`` when set, else ``bench/data`` (what
``make bench-data`` links), else ``../shared/data`` beside the clone (the project's CI has it there). Nothing is ever
downloaded at test or benchmark time: ``make bench-data`` only links a folder you already have and checks its layout.

    python -m bench.datasets link [SOURCE]   # link bench/data -> SOURCE (default ../shared/data), check the layout
    python -m bench.datasets check           # say which data sets are found where, exit 1 if one is missing
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINK = ROOT / "bench" / "data"
SHARED = ROOT.parent / "shared" / "data"


@dataclass(frozen=True)
class Dataset:
    """A public data set the benchmarks read: its folder name, a file that proves the layout, and where it is from."""

    name: str
    marker: str
    origin: str


# The pinned public snapshots the published figures in docs/benchmarks.md were measured on. Their licences travel
# with them (Loghub: research use with citation; keep its LICENSE beside every copy).
DATASETS = {
    d.name: d for d in (
        Dataset("nab", "labels/combined_windows.json",
                "the Numenta Anomaly Benchmark, repository numenta/NAB at commit ea702d75cc22 (MIT)"),
        Dataset("loghub_2k", "HDFS/HDFS_2k.log_structured.csv",
                "Loghub 2k samples, repository logpai/loghub at commit dd61d0952749 (research use, cite Loghub)"),
        Dataset("loghub2_2k", "HDFS/HDFS_2k.log_structured.csv",
                "Loghub-2.0's 2k samples, repository logpai/loghub-2.0 at commit 8046b1406c27 (research use)"),
        Dataset("pyrca", "LICENSE",
                "PyRCA's test data, repository salesforce/PyRCA at commit d85512b2f7f8 (BSD-3-Clause)"),
    )
}


def root(environ: dict[str, str] | None = None) -> Path:
    """The folder holding the data sets, by the rule in this module's docstring (the first that exists wins)."""
    env = (os.environ if environ is None else environ).get("AIOPS_BENCH_DATA")
    if env:
        return Path(env)
    return LINK if LINK.exists() else SHARED


def path(name: str, environ: dict[str, str] | None = None) -> Path:
    """Where the data set ``name`` is expected (it may not be there; see ``missing``)."""
    return root(environ) / DATASETS[name].name


def missing(name: str, environ: dict[str, str] | None = None) -> str | None:
    """``None`` when ``name`` is in place, else one line saying where it was looked for and how to get it."""
    data = DATASETS[name]
    folder = path(name, environ)
    if (folder / data.marker).exists():
        return None
    return (f"{name} data not found at {folder} (no {data.marker}): get {data.origin}, then run "
            f"`make bench-data BENCH_DATA_SRC=<folder holding {name}/>` or set AIOPS_BENCH_DATA to that folder")


def link(source: Path, dest: Path = LINK) -> int:
    """Point ``dest`` (``bench/data``) at ``source`` after checking it holds at least one data set; report each."""
    if not source.is_dir():
        print(f"bench-data: {source} is not a folder: give BENCH_DATA_SRC=<folder holding nab/, loghub_2k/ ...>",
              file=sys.stderr)
        return 2
    found = [d.name for d in DATASETS.values() if (source / d.name / d.marker).exists()]
    if not found:
        print(f"bench-data: {source} holds none of {', '.join(DATASETS)} (checked for each one's "
              f"{', '.join(d.marker for d in DATASETS.values())})", file=sys.stderr)
        return 2
    if dest.exists() and not dest.is_symlink():
        print(f"bench-data: {dest} exists and is not a link; remove it first", file=sys.stderr)
        return 2
    dest.unlink(missing_ok=True)
    dest.symlink_to(source.resolve(), target_is_directory=True)
    print(f"bench-data: {dest} -> {source.resolve()}")
    return check({"AIOPS_BENCH_DATA": str(dest)})


def check(environ: dict[str, str] | None = None) -> int:
    """Print where each data set is found (or what is missing); 1 when any is missing."""
    status = 0
    for name in DATASETS:
        why = missing(name, environ)
        print(f"  {name:<11} {'ok  ' + str(path(name, environ)) if why is None else 'MISSING: ' + why}")
        status = status or (1 if why else 0)
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.datasets", description=__doc__.splitlines()[0])
    verbs = parser.add_subparsers(dest="verb", required=True)
    verbs.add_parser("check", help="say where each data set is found")
    how = verbs.add_parser("link", help="link bench/data to a folder of data sets")
    how.add_argument("source", nargs="?", type=Path, default=SHARED)
    args = parser.parse_args(argv)
    return link(args.source) if args.verb == "link" else check()


if __name__ == "__main__":
    sys.exit(main())
