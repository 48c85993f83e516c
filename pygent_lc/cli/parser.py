"""The ``pygent-lc`` command line's arguments and the prompt to read. Only the standard
library and :mod:`pygent_lc.errors`, so ``--help`` imports no LangChain: the provider and
task names are spelt here, and a test holds them equal to the registry's and the agents'."""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any

from pygent_lc._cli_start import EXIT_INTERRUPTED
from pygent_lc.errors import InvalidInputError

EXIT_OK = 0
EXIT_FAILED = 1  # a provider failed, or `doctor` found a problem
EXIT_USAGE = 2  # bad usage or configuration (`usage` without a shared state store too)
EXIT_NO_ANSWER = 3  # `solve` found nothing to answer with
#: The providers, in the registry's order (``pygent_lc.providers.registry.PROVIDERS``).
PROVIDER_NAMES = ("openrouter", "ollama", "local")
#: ``--provider``'s choices: a provider, or the configured chain.
PROVIDER_CHOICES = (*PROVIDER_NAMES, "auto")
#: ``solve --task``'s choices (``pygent_lc.agents.spec.TASK_NAMES``).
TASK_NAMES = ("generic", "game24")

_NAMES = ", ".join(PROVIDER_NAMES)
#: The commands that read a prompt, and the name of its argument.
PROMPT_ARGUMENT = {"solve": "problem", "chat": "prompt"}


def _arg(text: str | None = None, **keywords: Any) -> dict[str, Any]:
    return {"help": text, **keywords}


def _number(dest: str, text: str | None = None, kind: type = int, **more: Any) -> dict[str, Any]:
    return _arg(text, type=kind, dest=dest, **more)


#: ``solve``'s and ``chat``'s agent: a ``dest`` is the agent setting the flag sets.
_CHAIN = {
    "--provider": _arg(
        f"provider to use (default: auto, the configured chain: {_NAMES})",
        choices=PROVIDER_CHOICES,
        default="auto",
        dest="provider",
    ),
    "--fallback": _arg(
        "provider to fall back to, in order (repeatable)",
        **{"action": "append", "choices": PROVIDER_NAMES, "default": [], "dest": "fallbacks"},
    ),
    "--model": _arg(
        "model name (a GGUF file for --provider local)", dest="model_name", metavar="MODEL"
    ),
}
_JSON = {"--json": _arg(action="store_true")}
_VERBOSE = _arg("show the library's log on stderr: retries, circuit breakers", action="store_true")
#: Each command's options (flag: ``add_argument``'s keywords).
OPTIONS: dict[str, dict[str, dict[str, Any]]] = {
    "solve": _CHAIN
    | {
        "--task": {"choices": TASK_NAMES, "default": "generic", "dest": "task"},
        "--depth": _number("max_depth", "thought steps (default: generic 2, game24 4)"),
        "--breadth": _number("n_select_sample", "states kept per level (default: 2 / 5)"),
        "--samples": _number("n_evaluate_sample", "value samples per state (default: 1 / 3)"),
        "--search": {"choices": ("bfs", "dfs"), "default": "bfs", "dest": "search_method"},
        "--max-tokens": _number("max_tokens", "per call (default: 160 / 256)"),
        "--max-calls": _number("max_llm_calls", "stop after this many LLM calls"),
        "--max-cost": _number("max_cost_usd", "stop after this much spend in USD", float),
        "--json": _arg("print the full result as JSON", action="store_true"),
        "--mermaid": _arg("write the tree as a Mermaid flowchart", metavar="FILE"),
        "--no-progress": _arg("no live progress line", action="store_true"),
    },
    "chat": _CHAIN
    | {
        "--system": _arg("system prompt", dest="system_prompt", metavar="SYSTEM"),
        "--max-tokens": _number("max_tokens", default=256),
        "--temperature": _number("temperature", kind=float, default=0.7),
        "--json": _arg(
            "print the answer, providers, usage and fallbacks as one JSON object",
            action="store_true",
        ),
    },
    "models": {
        "--provider": _arg(
            "default: the first configured provider of the chain (PYGENT_PROVIDERS): "
            "OpenRouter with a key, Ollama whose server answers, else local",
            choices=PROVIDER_NAMES,
        ),
        "--search": _arg("only models whose id contains this text"),
        "--free": _arg("only free OpenRouter models", action="store_true"),
    }
    | _JSON,
    "doctor": {
        "--provider": _arg("only these providers", action="append", choices=PROVIDER_NAMES),
        "--probe": _arg("also ask each for a few tokens", action="store_true"),
    }
    | _JSON,
    "usage": _JSON,
}
#: The flag that sets each agent setting, by command: how errors name them.
FLAG_OF_FIELD: dict[str, dict[str, str]] = {
    command: {o["dest"]: flag for flag, o in OPTIONS[command].items() if "dest" in o}
    for command in PROMPT_ARGUMENT
}
_HELPS = {
    "solve": "solve a problem with a Tree-of-Thought search",
    "chat": "stream the answer to one prompt",
    "models": "list the models a provider offers",
    "doctor": "check every provider: key, server, model",
    "usage": "calls, tokens, cost and latency per provider and model, fleet-wide "
    "(from the shared state store, PYGENT_STATE_URL)",
}


def name_flags(message: str, command: str) -> str:
    """``message`` with each setting a flag of ``command`` sets named as that flag
    (``invalid ToTConfig: max_depth: ...``: ``invalid option --depth: ...``). A setting
    spelt like a word (``provider``) only after ``custom_config`` or as the first word.
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


def read_prompt(args: argparse.Namespace, name: str) -> str:
    """The prompt from the argument, standard input (``-``) or ``--file``, checked; the
    length limit holds while reading, so ``/dev/zero`` never fills the memory."""
    from pygent_lc.validation import MAX_PROMPT_CHARS, validate_prompt  # not for ``--help``

    given: str | None = getattr(args, name)
    if (given is None) == (args.file is None):
        raise InvalidInputError(f"give the {name} as an argument, as '-' (stdin) or with --file")
    where = args.file or ("standard input" if given == "-" else f"the {name}")
    try:
        if args.file is not None:
            with open(args.file, encoding="utf-8") as handle:
                text = handle.read(MAX_PROMPT_CHARS + 1)  # until then or EOF
        else:
            text = sys.stdin.read(MAX_PROMPT_CHARS + 1) if given == "-" else str(given)
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"cannot read {where} (UTF-8 text): {exc}") from None
    if len(text) > MAX_PROMPT_CHARS:
        raise InvalidInputError(
            f"{where} has more than {MAX_PROMPT_CHARS} characters (the prompt limit)"
        )
    return validate_prompt(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pygent-lc",
        description="PyGent's LLM layer: Tree-of-Thought solving and chat over "
        "OpenRouter, Ollama and an embedded llama.cpp model.",
        epilog=f"exit codes: {EXIT_OK} ok, {EXIT_FAILED} provider failure, "
        f"{EXIT_USAGE} usage/configuration, {EXIT_NO_ANSWER} no answer, "
        f"{EXIT_INTERRUPTED} interrupted",
    )
    parser.add_argument("-v", "--verbose", **_VERBOSE)
    parser.add_argument(
        "--otel",
        action="store_true",
        help="export this run's spans to the OTLP endpoint (OTEL_EXPORTER_OTLP_ENDPOINT); "
        "needs opentelemetry-exporter-otlp-proto-http",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, text in _HELPS.items():
        command = commands.add_parser(name, help=text)
        if prompt := PROMPT_ARGUMENT.get(name):
            command.add_argument(
                prompt, nargs="?", help=f"the {prompt}; '-' reads it from standard input"
            )
            command.add_argument(
                "--file", metavar="PATH", help=f"read the {prompt} from a file (UTF-8)"
            )
        for flag, options in OPTIONS[name].items():
            if "type" in options:  # named by the flag, not by the setting it sets
                options = {"metavar": flag[2:].upper().replace("-", "_"), **options}
            command.add_argument(flag, **options)
        # SUPPRESS: a subcommand without -v keeps the value given before it
        command.add_argument("-v", "--verbose", **_VERBOSE, default=argparse.SUPPRESS)
    return parser
