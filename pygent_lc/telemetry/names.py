"""Attribute and instrument names: the OpenTelemetry GenAI conventions, then ours.

The ``gen_ai.*`` names follow the GenAI semantic conventions (the
``gen_ai.provider.name`` generation; older tools read ``gen_ai.system``).
Everything the conventions have no name for is under ``pygent.*``. Kept as
plain strings so that importing them needs no OpenTelemetry package.
"""

from __future__ import annotations

from typing import Final

# GenAI semantic conventions ------------------------------------------------
OPERATION_NAME: Final = "gen_ai.operation.name"
PROVIDER_NAME: Final = "gen_ai.provider.name"
REQUEST_MODEL: Final = "gen_ai.request.model"
REQUEST_MAX_TOKENS: Final = "gen_ai.request.max_tokens"
REQUEST_TEMPERATURE: Final = "gen_ai.request.temperature"
RESPONSE_MODEL: Final = "gen_ai.response.model"
RESPONSE_ID: Final = "gen_ai.response.id"
RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
TOKEN_TYPE: Final = "gen_ai.token.type"
INPUT_MESSAGES: Final = "gen_ai.input.messages"
OUTPUT_MESSAGES: Final = "gen_ai.output.messages"
ERROR_TYPE: Final = "error.type"

CHAT: Final = "chat"

OPERATION_DURATION: Final = "gen_ai.client.operation.duration"
TOKEN_USAGE: Final = "gen_ai.client.token.usage"

# The conventions' advisory bucket boundaries for the two histograms.
DURATION_BUCKETS: Final = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip
TOKEN_BUCKETS: Final = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)  # fmt: skip

# Project attributes ---------------------------------------------------------
COST_USD: Final = "pygent.cost_usd"
"""What the provider billed for this attempt, in US dollars (OpenRouter reports it)."""
RETRY_ATTEMPT: Final = "pygent.retry.attempt"
"""1 for the first try of a provider within a call, 2 for its first retry, ..."""
FALLBACK_INDEX: Final = "pygent.fallback.index"
"""0 for the chain's primary, 1 for the first fallback, ..."""
UPSTREAM_PROVIDER: Final = "pygent.openrouter.provider"
"""The provider OpenRouter routed the request to (e.g. ``Together``)."""
GENERATION_ID: Final = "pygent.openrouter.generation_id"

CHAIN_SPAN: Final = "pygent.chain"
CHAIN_ATTEMPTS: Final = "pygent.chain.attempts"
CHAIN_RETRIES: Final = "pygent.chain.retries"
CHAIN_PROVIDERS: Final = "pygent.chain.providers"
"""The providers that were tried, in order."""
CHAIN_FALLBACKS: Final = "pygent.chain.fallbacks"
"""How many providers after the primary ran."""

COST: Final = "pygent.client.cost"
FAILURES: Final = "pygent.client.failures"
BREAKER_STATE: Final = "pygent.breaker.state"
BREAKER_STATES: Final = {"closed": 0, "half_open": 1, "open": 2}

# Tree-of-Thought -------------------------------------------------------------
TOT_SOLVE: Final = "tot.solve"
TOT_LEVEL: Final = "tot.level"
TOT_TASK: Final = "tot.task"
TOT_METHOD: Final = "tot.search_method"
TOT_PROBLEM: Final = "tot.problem"
TOT_DEPTH: Final = "tot.depth"
TOT_EXPANDED: Final = "tot.states.expanded"
TOT_GENERATED: Final = "tot.states.generated"
TOT_VALUED: Final = "tot.states.valued"
TOT_KEPT: Final = "tot.states.kept"
TOT_CACHE_HITS: Final = "tot.cache_hits"
TOT_LLM_CALLS: Final = "tot.llm_calls"
TOT_NODES: Final = "tot.nodes"
TOT_DEPTH_REACHED: Final = "tot.depth_reached"
TOT_SOLVED: Final = "tot.solved"
