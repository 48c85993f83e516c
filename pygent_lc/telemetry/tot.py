"""``tot.solve`` and ``tot.level`` spans: the search observer telemetry installs.

Each level span is the current span while its calls run, so their chain and
``chat`` spans nest under it. What a level did is read off the tree (the
nodes it added) and the caller's counters, before and after.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry.trace import Tracer

from pygent_lc.telemetry import names
from pygent_lc.tot.search import SearchContext


class TracingSearchObserver:
    def __init__(self, tracer: Tracer, *, capture_content: bool) -> None:
        self.tracer = tracer
        self.capture_content = capture_content

    @contextmanager
    def solving(self, ctx: SearchContext) -> Iterator[object]:
        attributes: dict[str, str | int] = {
            names.TOT_TASK: ctx.task.name,
            names.TOT_METHOD: ctx.config.search_method,
        }
        if self.capture_content:
            attributes[names.TOT_PROBLEM] = ctx.problem
        with self.tracer.start_as_current_span(names.TOT_SOLVE, attributes=attributes) as span:
            try:
                yield span
            finally:
                counters = ctx.caller.counters
                nodes = ctx.tree.nodes
                span.set_attributes(
                    {
                        names.TOT_LLM_CALLS: counters.llm_calls,
                        names.TOT_CACHE_HITS: counters.cache_hits,
                        names.TOT_NODES: len(nodes),
                        names.TOT_DEPTH_REACHED: max(node.depth for node in nodes),
                        names.TOT_SOLVED: any(n.final and n.correct is not False for n in nodes),
                    }
                )

    @contextmanager
    def level(self, ctx: SearchContext, depth: int) -> Iterator[object]:
        counters = ctx.caller.counters
        first_new = len(ctx.tree.nodes)
        calls, hits = counters.llm_calls, counters.cache_hits
        with self.tracer.start_as_current_span(
            names.TOT_LEVEL, attributes={names.TOT_DEPTH: depth}
        ) as span:
            try:
                yield span
            finally:
                new = ctx.tree.nodes[first_new:]
                span.set_attributes(
                    {
                        names.TOT_EXPANDED: len({n.parent for n in new}),
                        names.TOT_GENERATED: len(new),
                        names.TOT_VALUED: sum(n.value is not None for n in new),
                        # Kept: in the beam (BFS), or above the threshold (DFS).
                        names.TOT_KEPT: sum(
                            not n.pruned and (n.selected or n.value is not None) for n in new
                        ),
                        names.TOT_CACHE_HITS: counters.cache_hits - hits,
                        names.TOT_LLM_CALLS: counters.llm_calls - calls,
                    }
                )
