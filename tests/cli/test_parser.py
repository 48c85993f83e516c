"""``pygent_lc.cli.parser``: the names it spells like the library, errors in the flags' words."""

from __future__ import annotations

import pytest

from pygent_lc.agents import spec
from pygent_lc.cli import main
from pygent_lc.cli.parser import (
    FLAG_OF_FIELD,
    PROVIDER_CHOICES,
    PROVIDER_NAMES,
    TASK_NAMES,
    build_parser,
    name_flags,
)
from pygent_lc.providers.registry import PROVIDERS
from pygent_lc.tot.config import ToTConfig


def test_the_parser_spells_the_names_as_the_library_does() -> None:
    """Spelt in the parser so that ``--help`` imports no registry: they must not drift."""
    assert tuple(PROVIDERS) == PROVIDER_NAMES
    assert PROVIDER_CHOICES == spec.PROVIDER_CHOICES
    assert TASK_NAMES == spec.TASK_NAMES


def test_every_flag_maps_a_setting_that_exists() -> None:
    settings = {*ToTConfig.model_fields, *spec.AgentSpec.model_fields}
    for command, flags in FLAG_OF_FIELD.items():
        parser_flags = _flags_of(command)
        for field, flag in flags.items():
            assert field in settings, (command, field)
            assert flag in parser_flags, (command, flag)


def _flags_of(command: str) -> set[str]:
    parser = build_parser()
    [commands] = [a for a in parser._actions if a.dest == "command"]
    sub = commands.choices[command]  # type: ignore[index]
    return {option for action in sub._actions for option in action.option_strings}


def test_name_flags_replaces_whole_setting_names_only() -> None:
    assert (
        name_flags("invalid ToTConfig: max_depth: Input should be >= 1", "solve")
        == "invalid option --depth: Input should be >= 1"
    )
    # evaluation_temperature is no flag's setting; temperature alone is chat's
    text = "more than 1 sample with evaluation_temperature 0"
    assert name_flags(text, "solve") == text
    assert name_flags("temperature must be between 0.0 and 2.0", "chat") == (
        "--temperature must be between 0.0 and 2.0"
    )
    assert name_flags("custom_config model_name: needs a provider", "chat") == (
        "--model: needs a provider"
    )
    assert name_flags("max_depth: too small", "models") == "max_depth: too small"
    assert name_flags("custom_config fallbacks: provider 'ollama' is listed twice", "chat") == (
        "--fallback: provider 'ollama' is listed twice"
    )
    assert name_flags("x. custom_config task: applies to reasoning agents only", "solve") == (
        "x. --task: applies to reasoning agents only"
    )


@pytest.mark.parametrize(
    ("argv", "named", "hidden"),
    [
        (["solve", "x", "--depth", "0"], ["--depth"], ["max_depth"]),
        (
            ["solve", "x", "--breadth", "0", "--samples", "0", "--max-cost", "-1"],
            ["--breadth", "--samples", "--max-cost"],
            ["n_select_sample", "n_evaluate_sample", "max_cost_usd", "ToTConfig"],
        ),
        (["solve", "x", "--max-calls", "0"], ["--max-calls"], ["max_llm_calls"]),
        (["solve", "x", "--max-tokens", "0"], ["--max-tokens"], ["max_tokens"]),
        (["chat", "x", "--temperature", "9"], ["--temperature"], []),
        (["chat", "x", "--max-tokens", "0"], ["--max-tokens"], ["max_tokens"]),
        (["chat", "x", "--model", "m"], ["--model"], ["model_name", "custom_config"]),
        (["solve", "x", "--model", "m"], ["--model"], ["model_name", "custom_config"]),
        (["chat", "x", "--fallback", "local"], ["--fallback: provider 'local'"], ["fallbacks"]),
        (["chat", "x", "--system", " "], ["--system: must not be empty"], ["system_prompt"]),
    ],
)
def test_a_bad_option_is_named_as_the_user_typed_it(
    capsys: pytest.CaptureFixture[str], argv: list[str], named: list[str], hidden: list[str]
) -> None:
    """Checked before anything is asked: no provider, no network."""
    provider = [] if "--model" in argv else ["--provider", "local"]
    assert main([*argv, *provider]) == 2
    error = capsys.readouterr().err.splitlines()[0]
    assert error.startswith("error: AgentError: ")
    for flag in named:
        assert flag in error
    for word in hidden:
        assert word not in error
