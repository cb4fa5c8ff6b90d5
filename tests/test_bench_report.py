"""The one JSON writer every benchmark uses."""

import json
from datetime import datetime, timezone

import numpy as np

from bench.report import write_json


def test_write_json_creates_parents_and_turns_numpy_and_other_values_into_plain_json(tmp_path):
    path = tmp_path / "a" / "b" / "result.json"
    write_json(path, {"score": np.float64(66.52), "counts": np.array([1, 2]), "n": np.int64(3),
                      "at": datetime(2026, 11, 28, tzinfo=timezone.utc)})
    text = path.read_text(encoding="utf-8")
    assert text.endswith("}\n")
    assert json.loads(text) == {"score": 66.52, "counts": [1, 2], "n": 3, "at": "2026-11-28 00:00:00+00:00"}


def test_quiet_logs_puts_the_level_back_for_the_tests_that_follow():
    import logging

    from bench.report import quiet_logs

    log = logging.getLogger("aiops")
    before = log.level
    with quiet_logs(logging.CRITICAL):
        assert log.level == logging.CRITICAL
    assert log.level == before
