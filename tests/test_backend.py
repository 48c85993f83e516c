"""``pygent_lc.backend``: the usage record, ``UsageTotals``."""

from __future__ import annotations

import pytest

from pygent_lc import UsageTotals


def test_usage_records_add_subtract_and_merge() -> None:
    a = UsageTotals(calls=2, failures=1, input_tokens=10, output_tokens=4, cost_usd=0.5)
    b = UsageTotals(calls=1, input_tokens=5, cached_input_tokens=3, cache_discount_usd=0.1)
    total = a + b
    assert total == UsageTotals(
        calls=3,
        failures=1,
        input_tokens=15,
        output_tokens=4,
        cost_usd=0.5,
        cached_input_tokens=3,
        cache_discount_usd=0.1,
    )
    assert total - b == a
    assert total.total_tokens == 19
    assert UsageTotals.merge([a, b]) == total
    assert UsageTotals.merge([]) == UsageTotals()
    with pytest.raises(AttributeError):
        a.calls = 5  # type: ignore[misc]  # frozen: records combine, never change
