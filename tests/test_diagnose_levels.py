"""Absolute rule tests (level, rise within a span), the pod behind a rise, and rule parameters."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

from aiops.diagnose.levels import culprit_pod, increase, level
from aiops.diagnose.rule_schema import RuleSet
from aiops.domain.errors import InputError
from aiops.domain.observations import Series

TS = np.arange(0.0, 601.0, 60.0)  # 11 points, one a minute


def test_level_is_the_median_of_the_last_three_points():
    s = Series("gpu_util", {}, TS, np.r_[np.full(8, 50.0), 90.0, 20.0, 95.0])
    assert level(s) == 90.0            # one low scrape does not pull it down
    assert level(s, end=480.0) == 50.0
    assert level(Series("x", {}, TS[:0], np.empty(0))) is None


def test_increase_is_the_latest_level_over_the_lowest_within_the_span():
    rising = Series("process_memory", {}, TS, np.linspace(100.0, 150.0, TS.size))
    # 100, 105, ... 150: the first three points have median 105, the last three 145.
    assert increase(rising, 600.0, 600.0) == pytest.approx(145.0 / 105.0 - 1.0)
    assert increase(rising, 600.0, 120.0) is None   # three points in the span: too few to tell
    flat = Series("process_memory", {}, TS, np.full(TS.size, 100.0))
    assert increase(flat, 600.0, 600.0) == 0.0


def test_the_culprit_is_the_pod_that_rose_the_most():
    grow = Series("process_resident_memory_bytes", {"pod": "llm-a-1", "workload": "llm"}, TS,
                  np.linspace(4e9, 6e9, TS.size))
    calm = Series("process_resident_memory_bytes", {"pod": "llm-a-2", "workload": "llm"}, TS, np.full(TS.size, 4e9))
    other = Series("process_resident_memory_bytes", {"pod": "db-1", "workload": "db"}, TS,
                   np.linspace(1e9, 9e9, TS.size))
    assert culprit_pod([calm, grow, other], "llm", "process_memory", 600.0, 600.0) == "llm-a-1"
    assert culprit_pod([calm, grow], "llm", "cpu", 600.0, 600.0) is None


RULE = """\
rules:
  - name: hot
    fault: model_overload
    playbook: degrade-model
    confidence: 0.9
    params: {limit: 0.2}
    when:
      - signal: inference_latency_p99
        above: "$limit"
"""


def test_parameters_substitute_and_override(tmp_path):
    (tmp_path / "r.yaml").write_text(RULE)
    assert RuleSet.load(tmp_path).rules[0].when[0].above == 0.2
    assert RuleSet.load(tmp_path, params={"hot": {"limit": 0.5}}).rules[0].when[0].above == 0.5
    with pytest.raises(InputError) as err:
        RuleSet.load(tmp_path, params={"hot": {"limit": "fast"}})
    assert "must be a number" in err.value.reason


@pytest.mark.parametrize("body, where, reason", [
    (RULE.replace('"$limit"', '"$missing"'), "rules[0].when[0].above", "unknown parameter '$missing'"),
    (RULE.replace("{limit: 0.2}", "{limit: high}"), "rules[0].params", "must map parameter names to numbers"),
    (RULE.replace('"$limit"', '"limit"'), "rules[0].when[0].above", "valid number"),
])
def test_bad_parameters_name_file_and_key(tmp_path, body, where, reason):
    (tmp_path / "r.yaml").write_text(textwrap.dedent(body))
    with pytest.raises(InputError) as err:
        RuleSet.load(tmp_path)
    assert err.value.where.endswith(where) and reason in err.value.reason
