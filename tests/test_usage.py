"""UsageTracker's arithmetic."""

from __future__ import annotations

from pygent_lc.usage import _percentile


def test_p95_is_nearest_rank() -> None:
    samples = [float(i) for i in range(1, 101)]
    assert _percentile(samples, 0.95) == 95.0
    assert _percentile([3.0], 0.95) == 3.0
    assert _percentile([1.0, 2.0], 0.95) == 2.0
