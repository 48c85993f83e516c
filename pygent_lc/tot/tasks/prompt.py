"""Prompts with a static prefix, so providers can cache the part that repeats.

A task's prompt is a plain ``str`` everywhere (identical prompts are still
cached by their text, budgets estimate from it); a :class:`SplitPrompt` also
knows how much of its start stays the same across the calls of a search
(the few-shot examples of Game of 24, the problem statement of the generic
task). The engine hands that start to backends that can ask the provider to
cache it.
"""

from __future__ import annotations


class SplitPrompt(str):
    """The text ``static + dynamic``, remembering ``static``.

    ``static`` must come first and be byte-identical on every call it is
    meant to be cached for; ``dynamic`` is the rest (the state asked about).
    String operations return plain ``str``: build the prompt last.
    """

    static: str

    def __new__(cls, static: str, dynamic: str) -> SplitPrompt:
        prompt = super().__new__(cls, static + dynamic)
        prompt.static = static
        return prompt

    @property
    def dynamic(self) -> str:
        return str(self)[len(self.static) :]


def static_prefix(prompt: str) -> str:
    """The cacheable start of ``prompt`` (``""`` for a plain string)."""
    return prompt.static if isinstance(prompt, SplitPrompt) else ""


def split_template(template: str, **values: object) -> SplitPrompt:
    """``template.format(**values)``, split before the line of the first brace.

    The lines before it hold no field, so they are the same for every value:
    the static prefix (a few-shot prompt's examples).
    """
    brace = template.find("{")
    if brace < 0:
        return SplitPrompt(template.format(**values), "")
    cut = template.rfind("\n", 0, brace) + 1
    return SplitPrompt(template[:cut], template[cut:].format(**values))


__all__ = ["SplitPrompt", "split_template", "static_prefix"]
