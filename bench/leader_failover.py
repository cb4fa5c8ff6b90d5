"""How long a follower takes to lead when the leader dies (no release) or steps down cleanly (release).

    python -m bench.leader_failover [--backend real|sim] [--runs 10] [--lease 2] [--renew 1.5] [--retry 0.2]
                                    [--out FILE.json]

Each run uses a fresh Lease and two ``LeaseElector`` threads with their own clients. Once one leads, the bench waits
a random part of a retry period (so the death falls anywhere between two renewals), then either stops the leader
without releasing (a crash: the follower must wait out the lease) or with release (a clean shutdown), and times
until the follower's ``is_leader`` turns true. ``real`` starts kube-apiserver v1.20 (needs ``make kube``).
"""

from __future__ import annotations

import argparse
import logging
import random
import statistics
import time
import uuid
from pathlib import Path

from aiops.serve.leader import LeaseElector
from bench.report import write_json


def _wait(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return False


def one_run(stack, namespace: str, release: bool, lease: int, renew: float, retry: float) -> float:
    """Seconds from the leader's end until the follower leads."""
    name = f"bench-{uuid.uuid4().hex[:8]}"
    clients = [stack.client(), stack.client()]
    electors = [LeaseElector(c, namespace, name, f"bench-{i}", lease_duration=lease, renew_deadline=renew,
                             retry_period=retry) for i, c in enumerate(clients)]
    try:
        electors[0].start()
        if not _wait(lambda: electors[0].is_leader, 10 * lease):
            raise RuntimeError("no leader")
        electors[1].start()
        if not _wait(lambda: electors[1].status().holder == electors[0].identity, 10 * lease):
            raise RuntimeError("the follower never saw the leader")
        time.sleep(random.uniform(0, retry))
        ended = time.monotonic()
        electors[0].stop(release=release)
        if not _wait(lambda: electors[1].is_leader, 10 * lease):
            raise RuntimeError("no takeover")
        return time.monotonic() - ended
    finally:
        for e in electors:
            e.stop(release=False)
        for c in clients:
            c.close()


def summary(values: list[float]) -> dict:
    return {"runs": len(values), "min": round(min(values), 3), "median": round(statistics.median(values), 3),
            "max": round(max(values), 3)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("real", "sim"), default="real")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--lease", type=int, default=2)
    parser.add_argument("--renew", type=float, default=1.5)
    parser.add_argument("--retry", type=float, default=0.2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    logging.getLogger("aiops").setLevel(logging.ERROR)  # every run ends a leadership: that is the point here
    from tests.support import kubestack  # the test harness starts either backend behind one interface

    stack = kubestack.start_kube() if args.backend == "real" else kubestack.SimKube()
    try:
        namespace = f"bench-{uuid.uuid4().hex[:6]}"
        stack.create_namespace(namespace)
        result = {"backend": args.backend, "lease_seconds": args.lease, "renew_deadline_seconds": args.renew,
                  "retry_seconds": args.retry}
        for mode, release in (("crash", False), ("release", True)):
            times = [one_run(stack, namespace, release, args.lease, args.renew, args.retry) for _ in range(args.runs)]
            result[mode] = summary(times)
            print(f"{args.backend} {mode:8s} takeover seconds: {result[mode]}")
    finally:
        stack.stop()
    if args.out:
        write_json(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
