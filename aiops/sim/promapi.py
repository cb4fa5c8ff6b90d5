"""A Prometheus-like endpoint over the simulator's samples: ``/metrics`` plus a minimal HTTP query API.

``/api/v1/query`` and ``/api/v1/query_range`` answer plain vector selectors with Prometheus' evaluation rules (at
each step, the newest sample within the 5-minute lookback, unless the series went stale); anything else is a 400
``bad_data``, like Prometheus answers a query it cannot parse.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

from aiops.domain.signals import COUNTERS, RAW_DURATION, SERVING_COUNTERS
from aiops.sim.httpserver import BackgroundHttpServer
from aiops.sim.promql import QueryError, parse_selector
from aiops.sim.tsdb import SampleStore, format_value

MAX_POINTS = 11_000
SUMMARIES = frozenset({RAW_DURATION})
BUILD_INFO = {"version": "2.42.0", "revision": "aiops-sim", "branch": "HEAD", "buildUser": "aiops@sim",
              "buildDate": "20230131-00:00:00", "goVersion": "go1.19.8"}


class BadData(ValueError):
    """A request Prometheus would answer with 400 ``bad_data``."""


class MetricsServer(BackgroundHttpServer):
    """Serves ``runtime.store`` (a ``SampleStore``) with ``runtime.clock`` as "now", from a background thread."""

    thread_name = "sim-metrics"

    def __init__(self, runtime, host: str = "127.0.0.1", port: int = 0) -> None:
        self.store: SampleStore = runtime.store
        self.clock = runtime.clock
        super().__init__(_make_handler(self), host, port)

    # --- endpoints ----------------------------------------------------------------------------------------
    def exposition(self) -> str:
        """The current values in the Prometheus text format (one ``# TYPE`` per family)."""
        families: dict[str, list[str]] = {}
        for name, labels, value in self.store.current():
            rendered = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
            families.setdefault(name, []).append(f"{name}{{{rendered}}} {format_value(value)}")
        out = []
        for name in sorted(families):
            kind = "counter" if name in COUNTERS else "summary" if name in SUMMARIES else "gauge"
            family = name
            if name in SERVING_COUNTERS:  # histogram buckets: the family is named without the _bucket suffix
                family, kind = name.removesuffix("_bucket"), "histogram"
            out += [f"# HELP {family} {family} (aiops simulator)", f"# TYPE {family} {kind}", *families[name]]
        return "\n".join(out) + "\n"

    def query(self, params: dict) -> dict:
        """``/api/v1/query``: an instant vector at ``time`` (default: now)."""
        selector = self._selector(params)
        t = _time(params["time"], "time") if params.get("time") else self.clock.now()
        result = []
        for name, labels in self.store.select(selector.matches):
            v = self.store.value_at(name, labels, t)
            if v is not None:
                result.append({"metric": {"__name__": name, **labels}, "value": [_ts(t), format_value(v)]})
        return {"resultType": "vector", "result": result}

    def query_range(self, params: dict) -> dict:
        """``/api/v1/query_range``: a matrix from ``start`` to ``end`` every ``step``."""
        selector = self._selector(params)
        for key in ("start", "end", "step"):
            if not params.get(key):
                raise BadData(f'invalid parameter "{key}": missing')
        start, end = _time(params["start"], "start"), _time(params["end"], "end")
        step = _duration(params["step"])
        if end < start:
            raise BadData('invalid parameter "end": end timestamp must not be before start time')
        if step <= 0:
            raise BadData('invalid parameter "step": zero or negative query resolution step widths are not '
                          "accepted. Try a positive integer")
        if (end - start) / step > MAX_POINTS:
            raise BadData("exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query "
                          "resolution (?step=XX)")
        steps = [start + i * step for i in range(int(math.floor((end - start) / step + 1e-9)) + 1)]
        result = []
        for name, labels in self.store.select(selector.matches):
            values = [[_ts(t), format_value(v)] for t in steps
                      if (v := self.store.value_at(name, labels, t)) is not None]
            if values:
                result.append({"metric": {"__name__": name, **labels}, "values": values})
        return {"resultType": "matrix", "result": result}

    @staticmethod
    def _selector(params: dict):
        if not params.get("query"):
            raise BadData('invalid parameter "query": unknown position: parse error: no expression found in input')
        try:
            return parse_selector(params["query"])
        except QueryError as exc:
            raise BadData(f'invalid parameter "query": {exc}') from None


def _make_handler(server: MetricsServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # else every small response waits ~40 ms for the delayed ACK

        def _serve(self) -> None:
            url = urlsplit(self.path)
            params = {k: v[-1] for k, v in parse_qs(url.query).items()}
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                body = self.rfile.read(length).decode()
                if "x-www-form-urlencoded" in (self.headers.get("Content-Type") or ""):
                    params.update({k: v[-1] for k, v in parse_qs(body).items()})
            code, ctype, payload = _dispatch(server, self.command, url.path, params)
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = _serve

        def log_message(self, format, *args) -> None:  # noqa: A002 - the stdlib's signature
            pass

    return Handler


def _dispatch(server: MetricsServer, method: str, path: str, params: dict) -> tuple[int, str, bytes]:
    if path == "/metrics" and method == "GET":
        return 200, "text/plain; version=0.0.4; charset=utf-8", server.exposition().encode()
    if path == "/-/ready":
        return 200, "text/plain; charset=utf-8", b"Prometheus Server is Ready.\n"
    if path == "/-/healthy":
        return 200, "text/plain; charset=utf-8", b"Prometheus Server is Healthy.\n"
    if path == "/api/v1/status/buildinfo":
        return _ok(BUILD_INFO)
    handlers = {"/api/v1/query": server.query, "/api/v1/query_range": server.query_range}
    if path not in handlers:
        return 404, "text/plain; charset=utf-8", b"404 page not found\n"
    try:
        return _ok(handlers[path](params))
    except BadData as exc:
        body = {"status": "error", "errorType": "bad_data", "error": str(exc)}
        return 400, "application/json", json.dumps(body).encode()


def _ok(data: dict) -> tuple[int, str, bytes]:
    return 200, "application/json", json.dumps({"status": "success", "data": data}).encode()


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _ts(t: float) -> float | int:
    t = round(t, 3)
    return int(t) if float(t).is_integer() else t


def _time(raw: str, what: str) -> float:
    try:
        return float(raw)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise BadData(f'invalid parameter "{what}": cannot parse "{raw}" to a valid timestamp') from None


_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?$")


def _duration(raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        pass
    if raw.endswith("s") and re.fullmatch(r"\d+\.\d+", raw[:-1]):
        return float(raw[:-1])  # prometheus-api-client may send "0.5s"
    m = _DURATION.match(raw)
    if not m or not any(m.groups()):
        raise BadData(f'invalid parameter "step": cannot parse "{raw}" to a valid duration')
    h, mi, s, ms = (int(g or 0) for g in m.groups())
    return h * 3600 + mi * 60 + s + ms / 1000
