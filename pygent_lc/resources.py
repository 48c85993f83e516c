"""The old name of :mod:`pygent_lc.closing`, kept for code written against it."""

from pygent_lc.closing import *  # noqa: F403
