"""``tot.solve`` and ``tot.level`` spans: the search observer telemetry installs.

Each level span is the current span while its calls run, so their chain and
``chat`` spans nest under it. What a level did is read off the tree (the nodes it
added) and the caller's counters, before and after.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry.trace import Tracer

from pygent_lc.tot.search import SearchContext


class TracingSearchObserver:
    def __init__(self, tracer: Tracer, *, capture_content: bool) -> None:
        self.tracer = tracer
        self.capture_content = capture_content

    @contextmanager
    def solving(self, ctx: SearchContext) -> Iterator[object]:
        attributes = {"tot.task": ctx.task.name, "tot.search_method": ctx.config.search_method}
        if self.capture_content:
            attributes["tot.problem"] = ctx.problem
        with self.tracer.start_as_current_span("tot.solve", attributes=attributes) as span:
            try:
                yield span
            finally:
                nodes = ctx.tree.nodes
                span.set_attributes(
                    {
                        "tot.llm_calls": ctx.caller.counters.llm_calls,
                        "tot.cache_hits": ctx.caller.counters.cache_hits,
                        "tot.nodes": len(nodes),
                        "tot.depth_reached": max(node.depth for node in nodes),
                        "tot.solved": any(n.final and n.correct is not False for n in nodes),
                    }
                )

    @contextmanager
    def level(self, ctx: SearchContext, depth: int) -> Iterator[object]:
        counters = ctx.caller.counters
        first_new = len(ctx.tree.nodes)
        calls, hits = counters.llm_calls, counters.cache_hits
        with self.tracer.start_as_current_span(
            "tot.level", attributes={"tot.depth": depth}
        ) as span:
            try:
                yield span
            finally:
                new = ctx.tree.nodes[first_new:]
                span.set_attributes(
                    {
                        "tot.states.expanded": len({n.parent for n in new}),
                        "tot.states.generated": len(new),
                        "tot.states.valued": sum(n.value is not None for n in new),
                        # Kept: in the beam (BFS), or above the threshold (DFS).
                        "tot.states.kept": sum(
                            not n.pruned and (n.selected or n.value is not None) for n in new
                        ),
                        "tot.cache_hits": counters.cache_hits - hits,
                        "tot.llm_calls": counters.llm_calls - calls,
                    }
                )
