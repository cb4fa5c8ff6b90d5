"""Record generated scenarios as case folders, through the same collectors ``aiops record`` uses.

    python -m bench.casegen --out DIR --count N --seed S

``aiops.sim.casegen`` plans and drives each scenario; this module (outside the ``aiops`` layers, which keep the
simulator and the collectors apart) reads the running simulator back through ``PrometheusCollector`` over its
Prometheus API and ``KubeCollector`` over its Kubernetes API, and writes the folder with ``write_case``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from aiops.clients.kube import KubeClient
from aiops.clients.prometheus import PrometheusClient
from aiops.collect.casefolder import write_case
from aiops.collect.kube import KubeCollector
from aiops.collect.observations import ObservationCollector
from aiops.collect.prometheus import PrometheusCollector
from aiops.sim.casegen import GeneratedCase, generate


def record(case: GeneratedCase, folder: Path) -> Path:
    """Write ``case`` (its simulator still running) as a case folder at ``folder`` (replacing one there)."""
    runtime = case.runtime
    kube = KubeClient.for_host(runtime.kube_url)
    try:
        collector = ObservationCollector(PrometheusCollector(PrometheusClient(runtime.prom_url), runtime.step),
                                         KubeCollector(kube, clock=runtime.clock.now), case.topology)
        observations = collector.collect(case.spec.namespace, case.start, case.end)
    finally:
        kube.close()
    return write_case(folder, observations, case.alert_payload, case.truth, overwrite=True)


def generate_cases(out: str | Path, count: int, seed: int, progress=None) -> list[Path]:
    """Generate and record ``count`` cases of set ``seed`` under ``out`` (one folder per case, named by case)."""
    root = Path(out)
    folders = []
    for case in generate(count, seed):
        folders.append(record(case, root / case.spec.name))
        if progress:
            progress(case)
    return folders


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.casegen", description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="folder to write the case folders into")
    parser.add_argument("--count", type=int, default=80)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    started = time.monotonic()
    folders = generate_cases(args.out, args.count, args.seed,
                             progress=lambda c: print(f"  {c.spec.name}: {len(c.spec.models)} workloads, "
                                                      f"truth {c.truth['workload'] or '-'}/{c.truth['fault']}",
                                                      file=sys.stderr))
    print(f"wrote {len(folders)} cases to {args.out} in {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
