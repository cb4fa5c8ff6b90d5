"""Alertmanager webhook parsing against the real Alertmanager 0.25 payloads and against bad shapes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aiops.collect.alertmanager import fingerprint_of, parse_time, parse_webhook
from aiops.domain.errors import InputError

FIXTURES = Path(__file__).parent / "fixtures" / "alertmanager"
PAYLOADS = sorted(p for p in FIXTURES.glob("*.json") if "headers" not in p.name)


def _load(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


@pytest.mark.parametrize("path", PAYLOADS, ids=lambda p: p.stem)
def test_every_fixture_parses_into_one_alert_per_item(path: Path) -> None:
    payload = json.loads(path.read_text())
    alerts = parse_webhook(payload)
    assert len(alerts) == len(payload["alerts"])
    for alert, raw in zip(alerts, payload["alerts"]):
        assert alert.status == raw["status"]
        assert alert.fingerprint == raw["fingerprint"]
        assert alert.labels == raw["labels"]
        assert alert.name == raw["labels"]["alertname"]
        assert alert.starts_at > 1.7e9
        if raw["endsAt"].startswith("0001"):
            assert alert.ends_at is None
        else:
            assert alert.ends_at is not None and alert.ends_at >= alert.starts_at


def test_firing_alert_fields() -> None:
    (alert,) = parse_webhook(_load("alertmanager_HighErrorRate_firing.json"))
    assert alert.firing
    assert alert.ends_at is None
    assert alert.labels["deployment"] == "checkout"
    assert alert.annotations["runbook_url"].startswith("https://")
    assert alert.starts_at == pytest.approx(parse_time("2026-11-27T18:10:27.534Z"))
    assert alert.generator_url.startswith("http://vm:19090/graph")


def test_grouped_mixed_payload_keeps_each_status() -> None:
    alerts = parse_webhook(_load("alertmanager_grouped_mixed_firing_and_resolved.json"))
    assert [a.status for a in alerts] == ["resolved", "firing", "resolved"]
    assert len({a.fingerprint for a in alerts}) == 3


def test_parse_time_formats() -> None:
    assert parse_time(1795802819.5) == 1795802819.5
    assert parse_time("1795802819.5") == 1795802819.5
    assert parse_time("1970-01-01T00:00:01Z") == 1.0
    assert parse_time("1970-01-01T00:00:01.123456789Z") == pytest.approx(1.123456789, abs=1e-9)
    assert parse_time("1970-01-01T01:00:01+01:00") == 1.0
    assert parse_time("1970-01-01T00:00:00-00:30") == 1800.0
    with pytest.raises(InputError):
        parse_time("yesterday")
    with pytest.raises(InputError):
        parse_time(None)
    with pytest.raises(InputError):
        parse_time("2026-13-01T00:00:00Z")


def test_missing_fingerprint_is_derived_stably_from_labels() -> None:
    payload = {"status": "firing", "alerts": [
        {"status": "firing", "labels": {"b": "2", "alertname": "X"}, "startsAt": "2026-01-01T00:00:00Z"},
        {"status": "firing", "labels": {"alertname": "X", "b": "2"}, "startsAt": "2026-01-01T00:00:00Z"},
        {"status": "firing", "labels": {"alertname": "X", "b": "3"}, "startsAt": "2026-01-01T00:00:00Z"},
    ]}
    a, b, c = parse_webhook(payload)
    assert a.fingerprint == b.fingerprint == fingerprint_of({"alertname": "X", "b": "2"})
    assert a.fingerprint != c.fingerprint
    assert len(a.fingerprint) == 16


def test_alert_without_status_takes_the_group_status() -> None:
    (alert,) = parse_webhook({"status": "resolved", "alerts": [{"labels": {"alertname": "X"}}]})
    assert alert.status == "resolved"


@pytest.mark.parametrize("payload, where", [
    ([], "(body)"),
    ({"status": "firing"}, "alerts"),
    ({"alerts": {}}, "alerts"),
    ({"alerts": ["x"]}, "alerts[0]"),
    ({"alerts": [{"status": "firing", "labels": {"a": "1"}}, {"status": "firing"}]}, "alerts[1].labels"),
    ({"alerts": [{"status": "firing", "labels": ["a"]}]}, "alerts[0].labels"),
    ({"alerts": [{"status": "firing", "labels": {"a": 1}}]}, "alerts[0].labels.a"),
    ({"alerts": [{"status": "burning", "labels": {"a": "1"}}]}, "alerts[0].status"),
    ({"alerts": [{"status": "firing", "labels": {"a": "1"}, "startsAt": "soon"}]}, "alerts[0].startsAt"),
    ({"alerts": [{"status": "firing", "labels": {"a": "1"}, "endsAt": 5j}]}, "alerts[0].endsAt"),
    ({"alerts": [{"status": "firing", "labels": {"a": "1"}, "annotations": "x"}]}, "alerts[0].annotations"),
    ({"alerts": [{"status": "firing", "labels": {"a": "1"}, "fingerprint": 7}]}, "alerts[0].fingerprint"),
    ({"version": "3", "alerts": []}, "version"),
    ({"status": "weird", "alerts": []}, "status"),
])
def test_bad_shapes_name_where(payload: object, where: str) -> None:
    with pytest.raises(InputError) as info:
        parse_webhook(payload)
    assert info.value.where == where
    assert str(info.value).startswith(where)
