"""Log-template anomalies: a never-seen error template in the recent window is an anomaly on its workload."""

from aiops.detect.logs import LogAnomalyDetector
from aiops.domain.observations import LogLine


def line(ts, workload, text):
    return LogLine(ts=ts, namespace="shop", pod=f"{workload}-7d4b9c8f6-x2k9p", container="app", workload=workload,
                   line=text)


def baseline_lines():
    return [line(1000 + i, wl, f"GET /api/{wl}/{i} 200 {i % 7 + 3}ms") for i in range(200) for wl in ("cart", "web")]


def test_new_error_template_is_an_anomaly_with_a_readable_summary():
    recent = [line(1300 + i, "cart", f"ERROR upstream request failed: NullPointerException at Cart.java:{140 + i % 3}")
              for i in range(12)]
    recent += [line(1300 + i, "web", f"GET /api/web/{i} 200 4ms") for i in range(12)]
    found = LogAnomalyDetector().detect(baseline_lines() + recent, 1000, 1300, 1400)
    assert [a.target.name for a in found] == ["cart"]
    anomaly = found[0]
    assert anomaly.detector == "logtemplates" and anomaly.signal == "log"
    assert anomaly.severity >= 1 and anomaly.start == 1300
    assert "never-seen error template" in anomaly.summary and "cart" in anomaly.summary
    assert "NullPointerException" in anomaly.summary


def test_known_templates_and_empty_recent_windows_are_quiet():
    recent = [line(1300 + i, wl, f"GET /api/{wl}/{i} 200 5ms") for i in range(12) for wl in ("cart", "web")]
    assert LogAnomalyDetector().detect(baseline_lines() + recent, 1000, 1300, 1400) == []
    assert LogAnomalyDetector().detect(baseline_lines(), 1000, 1300, 1400) == []
