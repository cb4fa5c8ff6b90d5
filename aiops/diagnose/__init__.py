"""Diagnose: statistical ranking, the rule engine and (optionally) a GLM, combined into one Diagnosis."""
