"""ToTConfig: PyGent names, defaults, and ConfigurationError for bad values."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from pygent_lc.errors import ConfigurationError
from pygent_lc.tot import CLOUD_MAX_CONCURRENCY, LOCAL_MAX_CONCURRENCY, ToTConfig


def test_defaults_follow_the_paper():
    config = ToTConfig()
    assert config.generation_strategy == "propose"
    assert config.evaluation_method == "value"
    assert config.search_method == "bfs"
    assert config.selection == "greedy"
    assert (config.n_generate_sample, config.n_evaluate_sample, config.n_select_sample) == (
        1,
        3,
        5,
    )
    assert config.max_concurrency == CLOUD_MAX_CONCURRENCY == 8
    assert config.max_llm_calls is None
    assert config.max_cost_usd is None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("generation_strategy", "guess"),
        ("evaluation_method", "score"),
        ("search_method", "astar"),
        ("selection", "random"),
        ("n_generate_sample", 0),
        ("n_evaluate_sample", -1),
        ("n_select_sample", 0),
        ("max_depth", 0),
        ("temperature", -0.1),
        ("evaluation_temperature", 3.0),
        ("max_tokens", 0),
        ("max_concurrency", 0),
        ("max_llm_calls", 0),
        ("max_cost_usd", 0.0),
        ("max_cost_usd", -1.0),
        ("n_select_sample", "many"),
    ],
)
def test_invalid_values_raise_configuration_error_naming_the_field(field, value):
    with pytest.raises(ConfigurationError) as caught:
        ToTConfig(**{field: value})
    assert caught.value.field == field
    assert field in str(caught.value)


def test_unknown_field_is_rejected():
    with pytest.raises(ConfigurationError) as caught:
        ToTConfig(beam_width=3)
    assert caught.value.field == "beam_width"


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"search_method": "dfs", "selection": "sample"}, "selection"),
        ({"n_evaluate_sample": 3, "evaluation_temperature": 0.0}, "n_evaluate_sample"),
        (
            {"generation_strategy": "sample", "n_generate_sample": 2, "temperature": 0.0},
            "n_generate_sample",
        ),
    ],
)
def test_invalid_combinations_raise_configuration_error(settings, field):
    with pytest.raises(ConfigurationError) as caught:
        ToTConfig(**settings)
    assert caught.value.field == field


def test_valid_deterministic_settings():
    config = ToTConfig(n_evaluate_sample=1, evaluation_temperature=0.0, temperature=0.0)
    assert config.temperature == 0.0


def test_model_validate_also_raises_configuration_error():
    with pytest.raises(ConfigurationError):
        ToTConfig.model_validate({"max_depth": -3})
    assert ToTConfig.model_validate({"max_depth": 4}).max_depth == 4


def test_config_is_frozen_and_updated_revalidates():
    config = ToTConfig()
    with pytest.raises(ValidationError, match="frozen"):
        config.max_depth = 9
    assert config.updated(max_depth=9).max_depth == 9
    with pytest.raises(ConfigurationError):
        config.updated(max_depth=0)


@pytest.mark.parametrize(
    ("provider", "expected"),
    [
        ("ollama", LOCAL_MAX_CONCURRENCY),
        ("local", LOCAL_MAX_CONCURRENCY),
        ("openrouter", CLOUD_MAX_CONCURRENCY),
    ],
)
def test_for_provider_picks_a_concurrency(provider, expected):
    assert ToTConfig.for_provider(provider).max_concurrency == expected
    assert LOCAL_MAX_CONCURRENCY < CLOUD_MAX_CONCURRENCY


def test_for_provider_overrides_win():
    assert ToTConfig.for_provider("ollama", max_concurrency=4, max_depth=2).max_concurrency == 4
