"""Benchmark scripts; ``python -m benchmarks.state_store`` runs one from the repository root."""
