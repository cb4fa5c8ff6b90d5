"""Benchmarks that measure aiops against public data sets with published results (NAB, Loghub)."""
