"""The NAB-benchmarked ``StreamingDetector`` on the agent's own series: one detector per (namespace, workload,
signal), kept between scheduled cycles and fed each cycle only the samples it has not seen.

The window detectors refit on every cycle's baseline, so a slow change that fills the baseline stops looking
unusual; a streaming detector remembers what the series did over its whole ``history`` and scores each sample once,
from the past only. A stream with no new sample for ``forget_after`` seconds (against the newest sample the bank
was fed, from any namespace) is forgotten, and at most
``max_series`` streams are kept, so memory stays bounded: past that, new series wait for room (``skipped`` counts
them) rather than push out streams that have learned something.

A record is cheap: on pure noise one in about a thousand samples beats the series' own record by 22 % (score
0.55), several a day per series at a 15 s step. So a finding opens an incident on its own only from
``open_threshold``; below it, it is evidence for a workload another detector or an alert already flagged
(``corroborated``). The first ``settle`` samples of a stream only teach it: its first records are records against
an almost empty memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from aiops.detect.streaming import StreamingDetector
from aiops.domain.incident import Anomaly
from aiops.domain.observations import Series
from aiops.domain.target import Target

StreamKey = tuple[str, str, str]  # (namespace, workload, signal)


@dataclass
class _Stream:
    detector: StreamingDetector
    last_ts: float = float("-inf")
    seen: int = 0


class StreamingBank:
    """Streaming detectors for the workload signals named in ``signals``; ``update`` turns new samples into
    ``Anomaly`` findings (``detector="streaming"``) where a score reaches ``threshold``.

    ``detector_config`` goes to every ``StreamingDetector`` (one configuration for every series, like the NAB run).
    """

    name = "streaming"

    def __init__(self, signals: Sequence[str], threshold: float = 0.55, detector_config: dict | None = None,
                 max_series: int = 2000, forget_after: float = 3600.0, settle: int = 300,
                 open_threshold: float = 0.8) -> None:
        self.signals = frozenset(signals)
        self.threshold = threshold
        self.open_threshold = open_threshold
        self.settle = settle
        self.detector_config = dict(detector_config or {})
        StreamingDetector(**self.detector_config)  # a bad configuration fails here, not on the first sample
        self.max_series = max_series
        self.forget_after = forget_after
        self._streams: dict[StreamKey, _Stream] = {}
        self._newest = float("-inf")  # the newest sample fed, any stream
        self.skipped = 0  # series of the last ``update`` not watched for want of room

    @classmethod
    def from_settings(cls, watch) -> "StreamingBank":
        """The bank ``loop.streaming`` (``StreamingLoopSettings``) describes."""
        return cls(watch.signals, watch.threshold, {"history": watch.history}, watch.max_series,
                   settle=watch.settle, open_threshold=watch.open_threshold)

    def __len__(self) -> int:
        return len(self._streams)

    def update(self, signals: Sequence[Series]) -> list[Anomaly]:
        """Feed every watched series its samples newer than the last one fed; one finding per series whose new
        samples scored at or above ``threshold`` (the highest score, from the first such sample). The loop calls
        it once per namespace and cycle."""
        self.skipped = 0
        found = []
        for series in signals:
            if series.name not in self.signals or not series.workload:
                continue
            key = (series.namespace, series.workload, series.name)
            stream = self._stream(key)
            if stream is None:
                self.skipped += 1
                continue
            new = series.timestamps > stream.last_ts
            if not new.any():
                continue
            times, scores = series.timestamps[new], stream.detector.score_series(None, series.values[new])
            stream.last_ts = float(times[-1])
            self._newest = max(self._newest, stream.last_ts)
            settled = np.arange(stream.seen, stream.seen + len(scores)) >= self.settle
            stream.seen += len(scores)
            hits = np.flatnonzero((scores >= self.threshold) & settled)
            if hits.size:
                found.append(self._finding(key, float(times[hits[0]]), float(scores[hits].max())))
        self._forget()
        return found

    def corroborated(self, found: Sequence[Anomaly], flagged: Iterable[Target]) -> list[Anomaly]:
        """The findings worth passing on: those about a workload in ``flagged`` (another detector's finding or an
        open incident), and those at or above ``open_threshold`` anywhere."""
        flagged = {(t.namespace, t.name) for t in flagged}
        return [a for a in found
                if (a.target.namespace, a.target.name) in flagged or a.score >= self.open_threshold]

    def _stream(self, key: StreamKey) -> _Stream | None:
        stream = self._streams.get(key)
        if stream is None:
            if len(self._streams) >= self.max_series:
                return None
            stream = self._streams[key] = _Stream(StreamingDetector(**self.detector_config))
        return stream

    def _forget(self) -> None:
        stale = [key for key, s in self._streams.items() if s.last_ts < self._newest - self.forget_after]
        for key in stale:
            del self._streams[key]

    def _finding(self, key: StreamKey, start: float, score: float) -> Anomaly:
        namespace, workload, signal = key
        # score = x / (1 + x) with x the ratio to the series' own record: say it in those terms
        ratio = score / (1.0 - score) if score < 1.0 else float("inf")
        return Anomaly(target=Target.deployment(namespace, workload), signal=signal, score=score,
                       threshold=self.threshold, start=start, contributors=((signal, 1.0),), detector=self.name,
                       summary=f"{signal} of {workload} broke its own record of unusual behaviour "
                               f"({ratio:.2f}x the record, streaming detector)")
