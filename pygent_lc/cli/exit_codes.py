"""The exit codes of ``pygent-lc`` (the epilog of ``--help`` lists them)."""

from pygent_lc._cli_start import EXIT_INTERRUPTED

EXIT_OK = 0
EXIT_FAILED = 1
"""A provider failed, or ``doctor`` found a problem."""
EXIT_USAGE = 2
"""Bad usage or configuration (``usage`` without a shared state store too)."""
EXIT_NO_ANSWER = 3
"""``solve`` found nothing to answer with."""

__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_NO_ANSWER", "EXIT_OK", "EXIT_USAGE"]
