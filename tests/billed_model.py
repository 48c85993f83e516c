"""A scripted chat model that bills each call a scripted cost, for the budget tests.

``costs`` gives the cost each call reports (``response_metadata["cost"]``, as
OpenRouter's ``usage.cost``) in order, the last one repeating; each request
takes ``delay_s`` so calls admitted together really are in flight together.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from pygent_lc.testing import ScriptedChatModel


class BilledModel(ScriptedChatModel):
    """Replies ``"ok"``; call ``i`` reports ``costs[i]`` (the last one once they run out)."""

    costs: list[float] = Field(default_factory=lambda: [0.0])
    delay_s: float = 0.02

    def model_post_init(self, context: Any) -> None:
        super().model_post_init(context)
        self.cost_per_call, self.latency_s = self.costs, self.delay_s

    @property
    def peak(self) -> int:
        """The most requests that were in flight at once."""
        return self.peak_in_flight
