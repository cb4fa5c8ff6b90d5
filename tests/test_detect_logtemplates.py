"""The drain3 template miner, its event batching, and the template series and evidence the agent uses."""

from __future__ import annotations

import numpy as np

from aiops.detect.logtemplates import (
    TEMPLATE_COUNT_METRIC,
    LogTemplateMiner,
    is_error_template,
    mine_events,
    new_templates,
    strip_header,
    surging_templates,
    template_counts,
    template_key,
)
from aiops.domain.observations import LogLine

T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC


def line(ts: float, workload: str, text: str, namespace: str = "shop") -> LogLine:
    return LogLine(ts=ts, namespace=namespace, pod=f"{workload}-7d9f-x2", container="main", workload=workload,
                   line=text)


def test_lines_differing_only_in_masked_tokens_share_one_template():
    miner = LogTemplateMiner()
    variants = [
        "Accepted connection from 10.0.3.17:51234 for session 3f2b9c1e-8d4a-4c7e-9f00-1a2b3c4d5e6f in 12ms",
        "Accepted connection from 192.168.1.2:80 for session 00000000-1111-2222-3333-444444444444 in 3.5s",
        "Accepted connection from 172.16.0.254:443 for session aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee in 250ms",
    ]
    ids = {miner.add(v)[0] for v in variants}
    assert len(ids) == 1
    (template,) = {t.template for t in miner.templates()}
    assert template == "Accepted connection from <*>:<*> for session <*> in <*>"
    assert miner.templates()[0].size == 3


def test_hex_paths_and_numbers_are_masked():
    miner = LogTemplateMiner()
    a = miner.add("opened /var/lib/data/shard-01/index.db at offset 0x1f40 size 4096")
    b = miner.add("opened /srv/cache/tmp/x.db at offset 0xdeadbeef size 17")
    assert a == b
    assert a[1] == "opened <*> at offset <*> size <*>"


def test_different_events_stay_apart():
    miner = LogTemplateMiner()
    ok = miner.add("user alice logged in from 10.0.0.1")
    failed = miner.add("payment declined for order 1234: card expired")
    timeout = miner.add("upstream request timed out after 30s")
    assert len({ok[0], failed[0], timeout[0]}) == 3


def test_full_container_lines_lose_timestamp_and_level():
    assert strip_header("2024-05-01T10:02:03.123456Z ERROR cannot reach db") == "cannot reach db"
    assert strip_header("2024-05-01 10:02:03,123 [warn] slow query") == "slow query"
    assert strip_header("plain message 42") == "plain message 42"
    miner = LogTemplateMiner()
    full = miner.add("2024-05-01T10:02:03+02:00 INFO cache warmed in 120ms")
    bare = miner.add("cache warmed in 80ms")
    assert full[0] == bare[0]


def test_match_finds_known_templates_without_learning():
    miner = LogTemplateMiner()
    known = miner.add("worker 3 finished job 881")
    assert miner.match("worker 7 finished job 12") == known
    assert miner.match("completely unrelated message here") is None
    assert len(miner.templates()) == 1


def test_template_key_joins_parameters_of_varying_length():
    short = "<*>:<*> close, <*> bytes sent, <*> bytes received, lifetime <*>"
    long = "<*>:<*> close, <*> bytes (<*>) sent, <*> bytes received, lifetime <*>"
    assert template_key(short) == template_key(long)
    assert template_key("<*> <*> <*> done in <*>") == template_key("<*> done in <*>")
    assert template_key("lock <*> acquired") != template_key("lock <*> released")
    assert template_key("uid=<*> user=<*>") != template_key("uid=<*>")


def test_batch_events_split_a_slot_that_only_holds_a_few_words():
    messages = [f"host{i}.example.org:443 open through proxy proxy.corp.org:8080 HTTPS" for i in range(20)]
    messages += ["host99.example.org:22 open through proxy socks.corp.org:1080 SOCKS5"] * 2
    events = mine_events(messages)
    assert len({e.event_id for e in events[:20]}) == 1
    assert events[0].event_id != events[-1].event_id
    assert events[-1].template.endswith("SOCKS5")


def test_error_templates_are_recognised():
    assert is_error_template("connection refused to <*>")
    assert is_error_template("java.lang.NullPointerException at <*>")
    assert not is_error_template("GET <*> 200 in <*>")


def test_template_counts_are_per_workload_and_template_on_the_grid():
    logs = [line(T0 + 5, "cart", "GET /cart/1 200 in 3ms"), line(T0 + 50, "cart", "GET /cart/2 200 in 4ms"),
            line(T0 + 70, "cart", "GET /cart/3 200 in 9ms"), line(T0 + 70, "cart", "redis error: connection refused"),
            line(T0 + 65, "web", "GET /cart/3 200 in 9ms"), line(T0 + 500, "cart", "GET /cart/4 200 in 1ms")]
    series = template_counts(logs, step=60, start=T0, end=T0 + 120)
    assert all(s.name == TEMPLATE_COUNT_METRIC for s in series)
    by = {(s.workload, s.labels["template"]): s for s in series}
    get = by[("cart", "GET <*> <*> in <*>")]
    np.testing.assert_array_equal(get.timestamps, [T0, T0 + 60, T0 + 120])
    # (t - 60, t]: T0+5 and T0+50 fall in the T0+60 slot, T0+70 in T0+120; T0+500 is past the end
    np.testing.assert_array_equal(get.values, [0, 2, 1])
    np.testing.assert_array_equal(by[("cart", "redis error: connection refused")].values, [0, 0, 1])
    np.testing.assert_array_equal(by[("web", "GET <*> <*> in <*>")].values, [0, 0, 1])
    assert get.labels["namespace"] == "shop"
    assert get.labels["template_id"] == by[("web", "GET <*> <*> in <*>")].labels["template_id"]


def baseline_logs() -> list[LogLine]:
    logs = [line(T0 + i * 10, "cart", f"GET /cart/{i} 200 in {i % 7}ms") for i in range(60)]
    logs += [line(T0 + i * 60, "cart", f"retrying call to payment after timeout of {i}s") for i in range(10)]
    logs += [line(T0 + i * 30, "web", f"rendered page /home in {i}ms") for i in range(20)]
    return logs


def test_new_error_template_becomes_evidence_with_count_and_first_seen():
    recent = [line(T0 + 3600 + i, "cart", f"GET /cart/{i} 200 in {i % 5}ms") for i in range(30)]
    recent += [line(T0 + 3720 + i, "cart", f"FATAL: could not connect to redis at 10.0.0.{i}:6379")
               for i in range(5)]
    evidence = new_templates(baseline_logs(), recent)
    assert len(evidence) == 1
    (ev,) = evidence
    assert ev.kind == "log" and ev.workload == "cart"
    assert ev.ts == T0 + 3720 and ev.data["first_seen"] == T0 + 3720
    assert ev.data["count"] == 5
    assert "never-seen error template appeared in cart at 23:15" in ev.summary
    assert "redis" in ev.data["template"]


def test_known_error_template_is_not_new():
    recent = [line(T0 + 3600 + i, "cart", f"retrying call to payment after timeout of {i + 100}s") for i in range(8)]
    assert new_templates(baseline_logs(), recent) == []


def test_new_non_error_template_only_when_asked():
    recent = [line(T0 + 3600, "web", "feature flag dark-mode enabled for tenant 42")]
    assert new_templates(baseline_logs(), recent) == []
    (ev,) = new_templates(baseline_logs(), recent, errors_only=False)
    assert ev.data["error"] is False and ev.workload == "web"


def test_surging_known_template_becomes_evidence_and_steady_one_does_not():
    base = baseline_logs()  # 10 retries in ~10 min
    burst = [line(T0 + 3600 + i, "cart", f"retrying call to payment after timeout of {i}s") for i in range(60)]
    steady = [line(T0 + 3600 + i * 10, "cart", f"GET /cart/{i} 200 in 2ms") for i in range(60)]
    evidence = surging_templates(base, burst + steady, baseline_span=(T0, T0 + 600),
                                 recent_span=(T0 + 3600, T0 + 4200))
    assert [e.data["template"] for e in evidence] == ["retrying call to payment after timeout of <*>"]
    (ev,) = evidence
    assert ev.kind == "log" and ev.workload == "cart"
    assert ev.data["count"] == 60 and ev.data["baseline_count"] == 10
    assert ev.data["ratio"] >= 5.0 and ev.data["error"] is True


def test_error_line_one_word_away_from_a_known_line_is_still_new():
    base = [line(T0 + i, "checkout", f"payment succeeded for order {1000 + i}") for i in range(30)]
    recent = [line(T0 + 600 + i, "checkout", f"payment failed for order {2000 + i}") for i in range(3)]
    (ev,) = new_templates(base, recent)
    assert ev.data["template"] == "payment failed for order <*>" and ev.data["count"] == 3
