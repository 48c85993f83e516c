"""Benchmarks of pygent_lc; run each from the repository root: ``python -m benchmarks.<name>``.

Figures and the commands that produced them are in BENCHMARKS.md.
"""
