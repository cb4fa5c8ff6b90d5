"""Detect: PyOD detectors on windowed workload features, and the model store."""
