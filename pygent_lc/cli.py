"""The ``pygent-lc`` command line."""

from __future__ import annotations

import argparse
import asyncio
import sys
import warnings
from collections.abc import Sequence

from pygent_lc.chain import build_chat_model, validate_provider_names
from pygent_lc.errors import ConfigurationError, InvalidInputError, PygentError
from pygent_lc.langchain_backend import LangChainBackend
from pygent_lc.settings import Settings

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pygent-lc", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    chat = commands.add_parser("chat", help="stream the answer to one prompt")
    chat.add_argument("prompt")
    chat.add_argument("--provider", action="append", help="provider(s) to use, in order")
    chat.add_argument("--max-tokens", type=int, default=256)
    chat.add_argument("--temperature", type=float, default=0.7)
    return parser


async def _chat(args: argparse.Namespace) -> int:
    providers = validate_provider_names(args.provider) if args.provider else None
    backend = LangChainBackend(build_chat_model(Settings(), providers))
    async for text in backend.stream(
        args.prompt, max_tokens=args.max_tokens, temperature=args.temperature
    ):
        print(text, end="", flush=True)
    print()
    for entry in backend.usage.summary().values():
        print(
            f"[{entry.provider}/{entry.model}: {entry.calls} call(s), "
            f"{entry.input_tokens}+{entry.output_tokens} tokens, ${entry.cost_usd:.6f}]",
            file=sys.stderr,
        )
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command; errors print one line and a hint, never a traceback."""
    args = _parser().parse_args(argv)
    warnings.simplefilter("ignore")  # skipped providers are reported by errors, not noise
    try:
        return asyncio.run(_chat(args))
    except (ConfigurationError, InvalidInputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except PygentError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
