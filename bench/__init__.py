"""Benchmarks (`make bench`): figures for targets that tests must not time."""
