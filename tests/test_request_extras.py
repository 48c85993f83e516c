"""OpenRouter's body extras built from settings."""

from __future__ import annotations

from pygent_lc import Settings
from pygent_lc.providers.openrouter import request_extras


def test_models_list_each_model_once_primary_first() -> None:
    settings = Settings(
        openrouter_model="m",
        openrouter_models=["m", "other", "third", "other", "m"],
    )
    assert request_extras(settings)["models"] == ["m", "other", "third"]


def test_models_left_out_when_only_the_primary_remains() -> None:
    assert "models" not in request_extras(Settings(openrouter_model="m", openrouter_models=["m"]))
    assert "models" not in request_extras(Settings(openrouter_model="m"))
