"""Ctrl-C while ``pygent-lc`` imports (seconds) exits 130 with one line, not a traceback,
until :func:`pygent_lc.cli.main` hands SIGINT back. Built-in modules only: runs first."""

from __future__ import annotations

# Built in, so nothing to import first (``signal``'s enums take ~30 ms, ``typing`` more,
# longer on a busy machine: a Ctrl-C then would end in a traceback).
import _signal  # type: ignore[import-not-found]
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
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
    if _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler:  # not ignored
        _signal.signal(_signal.SIGINT, _exit_interrupted)


def interrupt_as_exception() -> None:
    """SIGINT raises KeyboardInterrupt again (the command handles it)."""
    if _signal.getsignal(_signal.SIGINT) is _exit_interrupted:
        _signal.signal(_signal.SIGINT, _signal.default_int_handler)
