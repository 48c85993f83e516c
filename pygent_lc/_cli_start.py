"""Ctrl-C while ``pygent-lc`` imports (seconds) exits 130 with one line, not a traceback,
until :func:`pygent_lc.cli.main` hands SIGINT back. Standard library only: runs first."""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType

EXIT_INTERRUPTED = 130
_COMMAND_NAMES = ("pygent-lc", "pygent-lc.exe", "pygent-lc-script.py")


def started_as_command() -> bool:
    """Whether this process is ``pygent-lc`` or ``python -m pygent_lc.cli``."""
    if sys.argv and os.path.basename(sys.argv[0]) in _COMMAND_NAMES:
        return True
    arguments: list[str] = getattr(sys, "orig_argv", [])
    if "-m" not in arguments[:-1]:
        return False
    return arguments[arguments.index("-m") + 1] in ("pygent_lc.cli", "pygent_lc.cli.__main__")


def _exit_interrupted(signum: int, frame: FrameType | None) -> None:
    os.write(2, b"\ninterrupted\n")
    os._exit(EXIT_INTERRUPTED)  # nothing to clean up yet: only imports ran


def exit_quietly_on_interrupt() -> None:
    """SIGINT exits 130 at once, without a traceback (while the command starts)."""
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not ignored
        signal.signal(signal.SIGINT, _exit_interrupted)


def interrupt_as_exception() -> None:
    """SIGINT raises KeyboardInterrupt again (the command handles it)."""
    if signal.getsignal(signal.SIGINT) is _exit_interrupted:
        signal.signal(signal.SIGINT, signal.default_int_handler)
