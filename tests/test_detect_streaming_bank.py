"""StreamingBank: the streaming detector kept between the loop's cycles, fed each sample once."""

from __future__ import annotations

import numpy as np
import pytest

from aiops.detect.streaming import StreamingDetector
from aiops.detect.streaming_bank import StreamingBank
from aiops.domain.errors import InputError
from aiops.domain.incident import Anomaly
from aiops.domain.observations import Series
from aiops.domain.target import Target

STEP = 15.0


def series(values: np.ndarray, t0: float = 0.0, signal: str = "latency_p99", workload: str = "cart") -> Series:
    times = t0 + STEP * np.arange(len(values))
    return Series(signal, {"namespace": "shop", "workload": workload}, times, np.asarray(values, dtype=float))


def sliding_windows(values: np.ndarray, width: int, stride: int):
    """What the loop collects: each cycle the last ``width`` samples, ``stride`` new ones since the last cycle."""
    for end in range(width, len(values) + 1, stride):
        yield series(values[end - width:end], t0=STEP * (end - width))


def noisy_with_spike(n: int = 2400, at: int = 2000) -> np.ndarray:
    values = 0.2 + 0.01 * np.random.default_rng(5).normal(size=n)
    values[at:at + 3] += 0.3
    return values


def test_overlapping_windows_score_each_sample_once_exactly_as_one_pass_would():
    values = noisy_with_spike()
    bank = StreamingBank(["latency_p99"], threshold=0.55, detector_config={"history": 1000})
    found = [a for window in sliding_windows(values, width=240, stride=40) for a in bank.update([window])]
    whole = StreamingDetector(history=1000).score_series(None, values)
    # the same samples, cut the way the cycles cut them (the first cycle takes 240, each later one 40 new ones)
    expected = []
    settled = np.arange(len(values)) >= bank.settle
    for start, end in [(0, 240)] + [(e - 40, e) for e in range(280, len(values) + 1, 40)]:
        hits = np.flatnonzero((whole[start:end] >= 0.55) & settled[start:end])
        if hits.size:
            expected.append((STEP * (start + hits[0]), whole[start:end][hits].max()))
    assert len(found) == len(expected)
    assert np.allclose([(a.start, a.score) for a in found], expected, rtol=0, atol=1e-12)
    assert any(a.start == STEP * 2000 for a in found)  # the spike
    spike = next(a for a in found if a.start == STEP * 2000)
    assert spike.detector == "streaming" and spike.signal == "latency_p99" and spike.threshold == 0.55
    assert spike.target.namespace == "shop" and spike.target.name == "cart" and spike.severity >= 1
    assert "latency_p99 of cart" in spike.summary and len(bank) == 1


def test_the_first_samples_of_a_stream_only_teach_it():
    values = noisy_with_spike()
    early = np.flatnonzero(StreamingDetector(history=1000).score_series(None, values)[:300] >= 0.55)
    assert early.size  # right after the warm-up, records against an almost empty memory are common
    quiet = StreamingBank(["latency_p99"], settle=300, detector_config={"history": 1000})
    eager = StreamingBank(["latency_p99"], settle=0, detector_config={"history": 1000})
    head = series(values[:300])
    assert quiet.update([head]) == []
    assert [a.start for a in eager.update([head])] == [STEP * early[0]]


def test_a_weak_finding_only_joins_a_workload_something_else_flagged():
    bank = StreamingBank(["latency_p99"], threshold=0.55, open_threshold=0.8)

    def finding(workload: str, score: float) -> Anomaly:
        return Anomaly(Target.deployment("shop", workload), "latency_p99", score, 0.55, 0.0, detector="streaming")

    weak_cart, weak_web, strong_web = finding("cart", 0.6), finding("web", 0.6), finding("web", 0.85)
    kept = bank.corroborated([weak_cart, weak_web, strong_web], [Target.deployment("shop", "cart")])
    assert kept == [weak_cart, strong_web]


def test_only_the_watched_signals_of_workloads_are_fed():
    bank = StreamingBank(["error_ratio"])
    values = noisy_with_spike(600, 500)
    assert bank.update([series(values), series(values, signal="error_ratio", workload="")]) == []
    assert len(bank) == 0
    bank.update([series(values, signal="error_ratio")])
    assert len(bank) == 1


def test_the_bank_is_bounded_and_streams_that_stop_arriving_make_room():
    bank = StreamingBank(["latency_p99"], max_series=2, forget_after=500)
    values = 0.2 + 0.01 * np.random.default_rng(1).normal(size=20)  # 300 s of samples per update
    bank.update([series(values, workload=w) for w in ("a", "b", "c")])
    assert len(bank) == 2 and bank.skipped == 1  # "c" waits: "a" and "b" keep what they learned
    assert set(bank._streams) == {("shop", "a", "latency_p99"), ("shop", "b", "latency_p99")}
    for cycle in range(2):  # only "a" and "c" keep arriving: "b" falls 600 s behind
        bank.update([series(values, t0=STEP * 20 * (cycle + 1), workload=w) for w in ("a", "c")])
    assert set(bank._streams) == {("shop", "a", "latency_p99")}  # "b" forgotten, so "c" gets its room next
    bank.update([series(values, t0=STEP * 60, workload=w) for w in ("a", "c")])
    assert set(bank._streams) == {("shop", "a", "latency_p99"), ("shop", "c", "latency_p99")} and bank.skipped == 0


def test_many_namespaces_fed_one_after_another_do_not_forget_each_other():
    """The loop feeds the bank once per namespace: streams of one must outlive any number of the others' updates."""
    bank = StreamingBank(["latency_p99"], forget_after=600)
    values = 0.2 + 0.01 * np.random.default_rng(2).normal(size=20)
    for cycle in range(3):
        for namespace in [f"ns{i}" for i in range(30)]:
            s = series(values, t0=STEP * 20 * cycle)
            bank.update([Series(s.name, {**s.labels, "namespace": namespace}, s.timestamps, s.values)])
    assert len(bank) == 30
    assert all(stream.seen == 60 for stream in bank._streams.values())


def test_a_bad_detector_configuration_is_refused_before_any_sample():
    with pytest.raises(InputError, match="history"):
        StreamingBank(["latency_p99"], detector_config={"history": 0})
