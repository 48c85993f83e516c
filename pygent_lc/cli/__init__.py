"""The ``pygent-lc`` command line. Only light imports here and in :mod:`.parser`: the
commands (agents, LangChain) load once the arguments parse, so ``--help`` is fast."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from typing import Any

from pygent_lc._cli_start import EXIT_INTERRUPTED, interrupt_as_exception
from pygent_lc.cli.parser import (
    EXIT_FAILED,
    EXIT_NO_ANSWER,
    EXIT_OK,
    EXIT_USAGE,
    PROMPT_ARGUMENT,
    build_parser,
    read_prompt,
)
from pygent_lc.errors import ConfigurationError, InvalidInputError, NoAnswerError
from pygent_lc.telemetry import instrument_from_env, start_otlp_export


class _RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        from pygent_lc.cli.output import redact

        return redact(super().format(record))


def _configure_logging(cleanup: ExitStack, *, verbose: bool) -> None:
    """The ``pygent_lc`` log on stderr: all with ``--verbose``, else errors and fallbacks
    only; ``cleanup`` puts the logger back (``main`` called in a program)."""
    logger = logging.getLogger("pygent_lc")
    cleanup.callback(logger.setLevel, logger.level)
    cleanup.callback(vars(logger).update, handlers=logger.handlers, propagate=logger.propagate)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_RedactingFormatter("%(levelname)s %(name)s: %(message)s"))
    if not verbose:
        handler.addFilter(lambda r: r.levelno >= logging.ERROR or r.name == "pygent_lc.fallbacks")
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG if verbose else logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command; an error is one line and a hint on stderr (and JSON with ``--json``),
    never a traceback (unless ``PYGENT_DEBUG=1``) nor a key."""
    as_json = False
    fallbacks: list[dict[str, Any]] = []
    with ExitStack() as cleanup:
        try:
            args = build_parser().parse_args(argv)
            as_json = getattr(args, "json", False)
            _configure_logging(cleanup, verbose=args.verbose)
            # The heavy half (agents, chain, providers) and the prompt's read, while Ctrl-C
            # still exits at once: raised inside a native module's import (pydantic-core),
            # KeyboardInterrupt becomes a Rust panic with a traceback.
            from pygent_lc.cli import commands

            if args.command in PROMPT_ARGUMENT:
                args.text = read_prompt(args, PROMPT_ARGUMENT[args.command])
            interrupt_as_exception()  # from here on, Ctrl-C is the KeyboardInterrupt below
            if args.otel:
                cleanup.callback(start_otlp_export())
            else:
                instrument_from_env()  # PYGENT_OTEL=1: spans and metrics of this run
            return commands.run(args, fallbacks)
        except KeyboardInterrupt:
            print("\ninterrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        except BrokenPipeError:
            return EXIT_OK  # e.g. `pygent-lc models | head`
        except Exception as exc:
            if os.environ.get("PYGENT_DEBUG") == "1":
                raise
            from pygent_lc.cli.output import error_json, error_line, redact

            print(redact(error_line(exc)), file=sys.stderr)
            if as_json:
                print(json.dumps({**error_json(exc), "fallbacks": fallbacks}, indent=2))
            if isinstance(exc, ConfigurationError | InvalidInputError):
                return EXIT_USAGE
            return EXIT_NO_ANSWER if isinstance(exc, NoAnswerError) else EXIT_FAILED


__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_NO_ANSWER", "EXIT_OK", "EXIT_USAGE", "main"]
