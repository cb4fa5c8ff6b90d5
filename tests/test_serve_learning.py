"""Cold start accounting: how much baseline a namespace has, when it is learning, what the agent says about it (one
log line when learning starts and one when it ends, metrics, /readyz) and the incidents it holds meanwhile."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from aiops.correlate.incidents import IncidentTracker
from aiops.domain.errors import InputError
from aiops.domain.incident import Anomaly
from aiops.domain.observations import Observations, Series
from aiops.domain.plans import Blocked
from aiops.domain.target import Target
from aiops.serve.learning import (LEARNING, BaselineLearning, BaselineProgress, baseline_progress,
                                  blocked_while_learning)
from aiops.serve.agent import build_parts
from aiops.serve.metrics import AgentMetrics
from aiops.settings import KubernetesSettings, LoopSettings, Settings, parse_settings

END = 10_000.0
STEP = 15.0


class FixedClock:
    def __init__(self, now: float = END) -> None:
        self.t = now

    def now(self) -> float:
        return self.t


def signal(workload: str, first: float, name: str = "cpu", end: float = END, nan_until: float | None = None,
           namespace: str = "shop") -> Series:
    ts = np.arange(first, end + STEP / 2, STEP)
    values = np.ones_like(ts)
    if nan_until is not None:
        values[ts < nan_until] = np.nan
    labels = {"namespace": namespace, "workload": workload} if workload else {"namespace": namespace}
    return Series(name, labels, ts, values)


def window(*signals: Series, start: float = END - 4200) -> Observations:
    return Observations("shop", start, END, signals=signals)


# --- how much baseline ---------------------------------------------------------------------------------------------

def test_the_baseline_runs_from_the_earliest_sample_to_the_split():
    split = END - 600
    observations = window(signal("cart", END - 900), signal("redis", END - 1200))
    assert baseline_progress(observations, split, 1800).have_seconds == 600  # redis, the longest-watched workload


def test_the_baseline_is_at_most_the_window_the_agent_reads():
    observations = window(signal("cart", END - 9000), start=END - 4200)
    assert baseline_progress(observations, END - 600, 1800).have_seconds == 3600


def test_gaps_before_the_first_value_and_series_of_no_workload_do_not_count():
    observations = window(signal("cart", END - 4200, nan_until=END - 900), signal("", END - 4200, name="up"))
    assert baseline_progress(observations, END - 600, 1800).have_seconds == 300


@pytest.mark.parametrize("signals", [(), (signal("cart", END - 300),)], ids=["no data", "only recent data"])
def test_no_history_before_the_split_is_no_baseline(signals):
    progress = baseline_progress(window(*signals), END - 600, 1800)
    assert progress.have_seconds == 0 and progress.learning


def test_learning_until_the_requirement_is_met_and_said_in_minutes():
    assert BaselineProgress("shop", 720, 1800).describe() == "learning: 12 of 30 minutes of baseline"
    # floored: a namespace still learning never reads as if it had all it needs
    assert BaselineProgress("shop", 1799, 1800).describe() == "learning: 29.9 of 30 minutes of baseline"
    done = BaselineProgress("shop", 1800, 1800)
    assert not done.learning and done.describe() == "learned: 30 of 30 minutes of baseline"
    assert BaselineProgress("shop", 4, 20).describe() == "learning: 0 of 0.3 minutes of baseline"
    assert not BaselineProgress("shop", 0, 0).learning  # min_baseline_seconds: 0 turns learning off


def test_the_decision_while_learning_acts_on_nothing_and_says_why():
    blocked = blocked_while_learning(BaselineProgress("shop", 720, 1800))
    assert isinstance(blocked, Blocked) and blocked.reason == LEARNING and blocked.plan is None
    assert blocked.detail.startswith("shop learning: 12 of 30 minutes of baseline: too little to act on")


# --- the setting ---------------------------------------------------------------------------------------------------

def test_the_requirement_defaults_to_half_the_baseline_window():
    assert LoopSettings().required_baseline_seconds == 1800
    assert LoopSettings(baseline_seconds=600).required_baseline_seconds == 300
    assert LoopSettings(min_baseline_seconds=0).required_baseline_seconds == 0
    assert LoopSettings(min_baseline_seconds=2400).required_baseline_seconds == 2400


@pytest.mark.parametrize("loop, words", [
    ({"baseline_seconds": 600, "min_baseline_seconds": 900}, "must not exceed baseline_seconds (600)"),
    ({"min_baseline_seconds": -1}, "loop.min_baseline_seconds"),
    ({"min_baseline_seconds": "an hour"}, "loop.min_baseline_seconds"),
])
def test_a_requirement_that_cannot_be_met_is_refused_naming_the_key(loop, words):
    with pytest.raises(InputError) as error:
        parse_settings({"loop": loop}, where="config.yaml")
    assert "config.yaml" in str(error.value) and words in str(error.value)
    assert "min_baseline_seconds" in str(error.value)


# --- the agent's view ----------------------------------------------------------------------------------------------

def gauge(metrics: AgentMetrics, name: str, **labels) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def learning_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "aiops.serve.learning"]


@pytest.fixture
def agent_view():
    tracker = IncidentTracker(FixedClock(), namespaces=("shop", "blog"))
    submitted: list = []
    metrics = AgentMetrics()
    learning = BaselineLearning(1800, tracker, lambda incident: submitted.append(incident) or True, metrics)
    return learning, tracker, submitted, metrics


def test_one_line_when_learning_starts_and_one_when_it_ends(agent_view, caplog):
    learning, _, _, metrics = agent_view
    caplog.set_level(logging.INFO, logger="aiops.serve.learning")
    for minutes in (0, 5, 10, 29):  # four loop cycles while learning
        learning.record(BaselineProgress("shop", minutes * 60, 1800))
    assert learning_lines(caplog) == [
        "shop learning: 0 of 30 minutes of baseline: no incident is opened from detection, and alerts are "
        "diagnosed but not acted on, until it has learned"]
    assert gauge(metrics, "aiops_learning", namespace="shop") == 1
    assert gauge(metrics, "aiops_baseline_seconds", namespace="shop") == 29 * 60
    assert gauge(metrics, "aiops_baseline_required_seconds") == 1800
    for minutes in (30, 31):
        learning.record(BaselineProgress("shop", minutes * 60, 1800))
    assert learning_lines(caplog)[1:] == ["shop learned: 30 of 30 minutes of baseline: detecting and acting"]
    assert gauge(metrics, "aiops_learning", namespace="shop") == 0
    record = [r for r in caplog.records if r.name == "aiops.serve.learning"][-1]
    assert (record.levelno, record.namespace, record.required_seconds) == (logging.INFO, "shop", 1800)


def test_a_namespace_with_history_says_once_that_it_is_ready(agent_view, caplog):
    learning, _, _, _ = agent_view
    caplog.set_level(logging.INFO, logger="aiops.serve.learning")
    learning.record(BaselineProgress("shop", 3600, 1800))
    learning.record(BaselineProgress("shop", 3600, 1800))
    assert learning_lines(caplog) == ["shop learned: 60 of 30 minutes of baseline: detecting and acting"]


def test_readyz_shows_every_namespace(agent_view):
    learning, _, _, _ = agent_view
    learning.record(BaselineProgress("shop", 720, 1800))
    learning.record(BaselineProgress("blog", 3600, 1800))
    status = learning.status()
    assert status["required_seconds"] == 1800 and status["held_incidents"] == 0
    assert status["namespaces"]["shop"] == {"state": "learning", "baseline_seconds": 720, "required_seconds": 1800,
                                            "detail": "learning: 12 of 30 minutes of baseline"}
    assert status["namespaces"]["blog"]["state"] == "learned"


def open_incident(tracker: IncidentTracker, namespace: str, workload: str):
    anomaly = Anomaly(Target.deployment(namespace, workload), "cpu", 2.0, 1.0, END - 60)
    return tracker.add_anomalies([anomaly])[0].incident


def test_incidents_refused_while_learning_are_handled_once_their_namespace_has_learned(agent_view):
    learning, tracker, submitted, _ = agent_view
    cart, redis, post = (open_incident(tracker, "shop", "cart"), open_incident(tracker, "shop", "redis"),
                         open_incident(tracker, "blog", "post"))
    refusal = blocked_while_learning(BaselineProgress("shop", 60, 1800))
    assert learning.hold(cart, refusal) and learning.hold(redis, refusal) and learning.hold(post, refusal)
    assert not learning.hold(cart, Blocked("cooldown", "too soon"))  # only a refusal for learning is kept
    assert learning.status()["held_incidents"] == 3
    tracker.resolve(redis.id, "the alert resolved")

    learning.record(BaselineProgress("shop", 600, 1800))  # still learning: nothing handed back
    assert submitted == []
    learning.record(BaselineProgress("shop", 1800, 1800))
    assert [i.id for i in submitted] == [cart.id]  # redis closed meanwhile; blog has not learned yet
    assert learning.status()["held_incidents"] == 1
    learning.record(BaselineProgress("shop", 1860, 1800))
    assert [i.id for i in submitted] == [cart.id]  # handed back once


def test_without_prometheus_no_namespace_waits_for_a_baseline_it_can_never_have(tmp_path):
    settings = Settings(kubernetes=KubernetesSettings(host="http://127.0.0.1:9", namespaces=("shop",)),
                        state_dir=tmp_path)
    pipeline = build_parts(settings).pipeline
    assert not pipeline.baseline(Observations("shop", END - 4200, END)).learning
    with_prometheus = build_parts(settings.model_copy(update={"prometheus": settings.prometheus.model_copy(
        update={"url": "http://127.0.0.1:9"})})).pipeline
    assert with_prometheus.baseline(Observations("shop", END - 4200, END)).learning
