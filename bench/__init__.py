"""Benchmarks: figures are printed as ratios measured in one run, never used as pass/fail tests."""
