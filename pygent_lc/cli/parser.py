"""The ``pygent-lc`` command line's arguments: commands, options, the prompt to read.

Built from the standard library and :mod:`pygent_lc.errors` only, so that
``pygent-lc --help`` (and a usage error) answers without importing LangChain:
the provider and task names are spelt here, and a test holds them equal to the
registry's (:data:`~pygent_lc.providers.registry.PROVIDERS`) and the agents'.
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import TextIO

from pygent_lc._cli_start import EXIT_INTERRUPTED
from pygent_lc.errors import InvalidInputError

EXIT_OK = 0
EXIT_FAILED = 1
"""A provider failed, or ``doctor`` found a problem."""
EXIT_USAGE = 2
"""Bad usage or configuration (``usage`` without a shared state store too)."""
EXIT_NO_ANSWER = 3
"""``solve`` found nothing to answer with."""
#: The providers, in the registry's order (``pygent_lc.providers.registry.PROVIDERS``).
PROVIDER_NAMES = ("openrouter", "ollama", "local")
#: ``--provider``'s choices: a provider, or the configured chain.
PROVIDER_CHOICES = (*PROVIDER_NAMES, "auto")
#: ``solve --task``'s choices (``pygent_lc.agents.spec.TASK_NAMES``).
TASK_NAMES = ("generic", "game24")

#: The option (its ``dest``) that sets each ToT setting of ``solve``.
SOLVE_OPTIONS = {
    "depth": "max_depth",
    "breadth": "n_select_sample",
    "samples": "n_evaluate_sample",
    "max_tokens": "max_tokens",
    "max_calls": "max_llm_calls",
    "max_cost": "max_cost_usd",
}
_CHAIN_FLAGS = {"provider": "--provider", "fallbacks": "--fallback", "model_name": "--model"}
#: The flag that sets each agent setting, by command: how errors name them.
FLAG_OF_FIELD: dict[str, dict[str, str]] = {
    "solve": {
        **{field: "--" + option.replace("_", "-") for option, field in SOLVE_OPTIONS.items()},
        "task": "--task",
        "search_method": "--search",
        **_CHAIN_FLAGS,
    },
    "chat": {
        "max_tokens": "--max-tokens",
        "temperature": "--temperature",
        "system_prompt": "--system",
        **_CHAIN_FLAGS,
    },
}


def name_flags(message: str, command: str) -> str:
    """``message`` with each setting a flag of ``command`` sets named as that flag.

    ``invalid ToTConfig: max_depth: ...`` becomes ``invalid option --depth: ...``
    and ``custom_config model_name: ...`` becomes ``--model: ...``: what the user
    typed, not the library's field names. A setting spelt like an English word
    (``provider``, ``temperature``) is replaced only after ``custom_config`` or
    as the message's first word, so "provider 'ollama' is listed twice" stays.
    """
    flags = FLAG_OF_FIELD.get(command, {})
    if not flags:
        return message
    fields = "|".join(sorted(map(re.escape, flags), key=len, reverse=True))
    pattern = re.compile(rf"(?:custom_config )?\b({fields})\b")

    def flag(match: re.Match[str]) -> str:
        field = match.group(1)
        named = "_" in field or match.group(0) != field or match.start() == 0
        return flags[field] if named else match.group(0)

    named = pattern.sub(flag, message)
    if named != message:
        named = named.replace("invalid ToTConfig: --", "invalid option --")
    return named


def _provider_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--provider",
        choices=PROVIDER_CHOICES,
        default="auto",
        help=f"provider to use (default: auto, the configured chain: {', '.join(PROVIDER_NAMES)})",
    )
    parser.add_argument(
        "--fallback",
        action="append",
        choices=PROVIDER_NAMES,
        default=[],
        help="provider to fall back to, in order (repeatable)",
    )
    parser.add_argument("--model", help="model name (a GGUF file for --provider local)")


def _prompt_options(parser: argparse.ArgumentParser, name: str) -> None:
    parser.add_argument(name, nargs="?", help=f"the {name}; '-' reads it from standard input")
    parser.add_argument("--file", metavar="PATH", help=f"read the {name} from a file (UTF-8)")


def read_prompt(args: argparse.Namespace, name: str) -> str:
    """The prompt from the argument, standard input (``-``) or ``--file``, checked.

    One limit for every command: :data:`~pygent_lc.validation.MAX_PROMPT_CHARS`,
    enforced while reading (``/dev/zero`` or ``yes`` never fill the memory).
    """
    from pygent_lc.validation import validate_prompt  # pydantic: not for ``--help``

    given: str | None = getattr(args, name)
    if (given is None) == (args.file is None):
        raise InvalidInputError(f"give the {name} as an argument, as '-' (stdin) or with --file")
    if args.file is not None:
        try:
            with open(args.file, encoding="utf-8") as handle:
                text = _read_bounded(handle, args.file)
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInputError(f"cannot read {args.file}: {exc}") from None
    elif given == "-":
        try:
            text = _read_bounded(sys.stdin, "standard input")
        except UnicodeDecodeError as exc:
            raise InvalidInputError(f"standard input is not UTF-8 text: {exc}") from None
    else:
        text = str(given)
    return validate_prompt(text)


def _read_bounded(stream: TextIO, where: str) -> str:
    """At most :data:`MAX_PROMPT_CHARS` characters of ``stream``; a longer text is an
    :class:`InvalidInputError` naming the limit, raised once one more was read."""
    from pygent_lc.validation import MAX_PROMPT_CHARS

    text = stream.read(MAX_PROMPT_CHARS + 1)  # a text stream reads until then or EOF
    if len(text) > MAX_PROMPT_CHARS:
        raise InvalidInputError(
            f"{where} has more than {MAX_PROMPT_CHARS} characters (the prompt limit)"
        )
    return text


def _verbose_option(parser: argparse.ArgumentParser, *, default: object) -> None:
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=default,
        help="show the library's log on stderr: retries, circuit breakers",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pygent-lc",
        description="PyGent's LLM layer: Tree-of-Thought solving and chat over "
        "OpenRouter, Ollama and an embedded llama.cpp model.",
        epilog=f"exit codes: {EXIT_OK} ok, {EXIT_FAILED} provider failure, "
        f"{EXIT_USAGE} usage/configuration, {EXIT_NO_ANSWER} no answer, "
        f"{EXIT_INTERRUPTED} interrupted",
    )
    _verbose_option(parser, default=False)
    parser.add_argument(
        "--otel",
        action="store_true",
        help="export this run's spans to the OTLP endpoint (OTEL_EXPORTER_OTLP_ENDPOINT); "
        "needs opentelemetry-exporter-otlp-proto-http",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    solve = commands.add_parser("solve", help="solve a problem with a Tree-of-Thought search")
    _prompt_options(solve, "problem")
    solve.add_argument("--task", choices=TASK_NAMES, default="generic")
    _provider_options(solve)
    solve.add_argument("--depth", type=int, help="thought steps (default: generic 2, game24 4)")
    solve.add_argument("--breadth", type=int, help="states kept per level (default: 2 / 5)")
    solve.add_argument("--samples", type=int, help="value samples per state (default: 1 / 3)")
    solve.add_argument("--search", choices=("bfs", "dfs"), default="bfs")
    solve.add_argument("--max-tokens", type=int, help="per call (default: 160 / 256)")
    solve.add_argument("--max-calls", type=int, help="stop after this many LLM calls")
    solve.add_argument("--max-cost", type=float, help="stop after this much spend in USD")
    solve.add_argument("--json", action="store_true", help="print the full result as JSON")
    solve.add_argument("--mermaid", metavar="FILE", help="write the tree as a Mermaid flowchart")
    solve.add_argument("--no-progress", action="store_true", help="no live progress line")

    chat = commands.add_parser("chat", help="stream the answer to one prompt")
    _prompt_options(chat, "prompt")
    _provider_options(chat)
    chat.add_argument("--system", help="system prompt")
    chat.add_argument("--max-tokens", type=int, default=256)
    chat.add_argument("--temperature", type=float, default=0.7)
    chat.add_argument(
        "--json",
        action="store_true",
        help="print the answer, providers, usage and fallbacks as one JSON object",
    )

    models = commands.add_parser("models", help="list the models a provider offers")
    models.add_argument(
        "--provider",
        choices=PROVIDER_NAMES,
        help="default: the first configured provider of the chain (PYGENT_PROVIDERS): "
        "OpenRouter with a key, Ollama whose server answers, else local",
    )
    models.add_argument("--search", help="only models whose id contains this text")
    models.add_argument("--free", action="store_true", help="only free OpenRouter models")
    models.add_argument("--json", action="store_true")

    doctor = commands.add_parser("doctor", help="check every provider: key, server, model")
    doctor.add_argument(
        "--provider", action="append", choices=PROVIDER_NAMES, help="only these providers"
    )
    doctor.add_argument("--probe", action="store_true", help="also ask each for a few tokens")
    doctor.add_argument("--json", action="store_true")

    usage = commands.add_parser(
        "usage",
        help="calls, tokens, cost and latency per provider and model, fleet-wide "
        "(from the shared state store, PYGENT_STATE_URL)",
    )
    usage.add_argument("--json", action="store_true")
    for command in (solve, chat, models, doctor, usage):
        # SUPPRESS: a subcommand without -v keeps the value given before it
        _verbose_option(command, default=argparse.SUPPRESS)
    return parser
