"""The ``pygent-lc`` command line: ``solve``, ``chat``, ``models``, ``doctor``, ``usage``.

Settings come from the environment and ``./.env``. Exit codes: 0 success,
1 a provider failed (or ``doctor`` found a problem), 2 bad usage or
configuration (``usage`` without a shared state store too), 3 ``solve``
found nothing to answer with, 130 interrupted.
Errors print one line and a hint on stderr, never a traceback (unless
``PYGENT_DEBUG=1``) and never the key; with ``--json`` stdout also gets the
error as a JSON object. A fallback (a provider answered after another failed)
is always one WARNING line on stderr, and a ``fallbacks`` list under ``--json``;
the rest of the library's log (each failed attempt, retries, circuit breakers)
shows only with ``--verbose``.

This is a command-line entry point, so its imports are deferred, as is usual
for one: this module and :mod:`~pygent_lc.cli.parser` import only the standard
library and light modules of ours (errors, exit codes, the telemetry switch),
and the commands
(:mod:`~pygent_lc.cli.commands`: agents, the chain, providers, LangChain) are
imported once the arguments parse. ``pygent-lc --help`` and a usage error
answer in the time Python takes to start.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from pygent_lc._cli_start import interrupt_as_exception
from pygent_lc.cli.exit_codes import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_NO_ANSWER,
    EXIT_OK,
    EXIT_USAGE,
)
from pygent_lc.cli.parser import build_parser, read_prompt
from pygent_lc.errors import ConfigurationError, InvalidInputError, NoAnswerError
from pygent_lc.telemetry import instrument_from_env

if TYPE_CHECKING:
    from pygent_lc.cli.notices import FallbackRecorder

FALLBACK_LOGGER = "pygent_lc.fallbacks"


#: The commands that read a prompt, and the name of its argument.
_PROMPT_ARGUMENT = {"solve": "problem", "chat": "prompt"}


class _RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        from pygent_lc.cli.output import redact

        return redact(super().format(record))


def _configure_logging(*, verbose: bool) -> None:
    """The ``pygent_lc`` log on stderr from DEBUG with ``--verbose``; otherwise only
    its errors and the fallback warnings (a provider answered for a failed one).

    Python prints any warning record of a logger without handlers on stderr,
    which would put lines beside the ``error:``/``hint:`` pair.
    """
    logger = logging.getLogger("pygent_lc")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_RedactingFormatter("%(levelname)s %(name)s: %(message)s"))
    if not verbose:
        handler.addFilter(_errors_and_fallbacks)
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG if verbose else logging.WARNING)


def _errors_and_fallbacks(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.ERROR or record.name == FALLBACK_LOGGER


def _report(exc: Exception, args: argparse.Namespace | None, fallbacks: list[Any]) -> int:
    """The ``error:`` and ``hint:`` lines (and the JSON error object); the exit code."""
    from pygent_lc.cli.notices import error_json
    from pygent_lc.cli.output import error_line, redact

    print(redact(error_line(exc)), file=sys.stderr)
    if getattr(args, "json", False):
        print(json.dumps({**error_json(exc), "fallbacks": fallbacks}, indent=2))
    if isinstance(exc, ConfigurationError | InvalidInputError):
        return EXIT_USAGE
    if isinstance(exc, NoAnswerError):
        return EXIT_NO_ANSWER
    return EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command; errors print one line and a hint, never a traceback or the key."""
    debug = os.environ.get("PYGENT_DEBUG") == "1"
    stop_export: Callable[[], None] | None = None
    args: argparse.Namespace | None = None
    recorder: FallbackRecorder | None = None
    try:
        interrupt_as_exception()  # from here on, Ctrl-C is the KeyboardInterrupt below
        args = build_parser().parse_args(argv)
        _configure_logging(verbose=args.verbose)
        if args.command in _PROMPT_ARGUMENT:  # before the event loop: Ctrl-C stops a read
            args.text = read_prompt(args, _PROMPT_ARGUMENT[args.command])
        if args.otel:
            from pygent_lc.telemetry.export import start_otlp_export

            stop_export = start_otlp_export()
        else:
            instrument_from_env()  # PYGENT_OTEL=1: spans and metrics of this run
        from pygent_lc.cli import commands  # the heavy half: agents, chain, providers

        recorder = commands.FallbackRecorder()
        return commands.run(args, recorder)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK  # e.g. `pygent-lc models | head`
    except Exception as exc:
        if debug:
            raise
        return _report(exc, args, recorder.fallbacks if recorder is not None else [])
    finally:
        if stop_export is not None:
            stop_export()


__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_NO_ANSWER", "EXIT_OK", "EXIT_USAGE", "main"]
