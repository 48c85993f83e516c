"""The tasks' text: prompts with a static prefix, and readers of the model's replies."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable


class SplitPrompt(str):
    """The text ``static + dynamic``, a plain ``str`` everywhere, remembering ``static``:
    the start that is byte-identical on every call of a search (few-shot examples, the
    problem), which the engine hands to backends that can have it cached. String
    operations return plain ``str``: build the prompt last."""

    static: str

    def __new__(cls, static: str, dynamic: str) -> SplitPrompt:
        prompt = super().__new__(cls, static + dynamic)
        prompt.static = static
        return prompt

    @property
    def dynamic(self) -> str:
        return str(self)[len(self.static) :]


def prompt_version(*parts: str) -> str:
    """A short hash of prompts and a tag for how replies are read: stored values and
    proposals are kept per version, so a new prompt never reuses old ones."""
    return hashlib.sha256("".join(parts).encode()).hexdigest()[:16]


def static_prefix(prompt: str) -> str:
    """The cacheable start of ``prompt`` (``""`` for a plain string)."""
    return prompt.static if isinstance(prompt, SplitPrompt) else ""


def split_template(template: str, **values: object) -> SplitPrompt:
    """``template.format(**values)``, split before the line of the first brace: the
    lines before it hold no field, so they are the static prefix."""
    brace = template.find("{")
    if brace < 0:
        return SplitPrompt(template.format(**values), "")
    cut = template.rfind("\n", 0, brace) + 1
    return SplitPrompt(template[:cut], template[cut:].format(**values))


# A list marker is only a marker when whitespace follows it: "1.5 + 2" keeps its "1.".
_BULLET = re.compile(r"^\s*(?:[-*•]+|\(?\d{1,3}[.):]|step\s*\d+\s*[:.)-])\s+", re.IGNORECASE)
# "The best choice is 2" (the paper's wording) or "the best candidate/option is #2".
_VOTE = re.compile(r"best (?:choice|candidate|option) is\s*#?\s*(\d+)", re.IGNORECASE)


def parse_vote(output: str, n_candidates: int) -> int | None:
    """The 0-based index of the last vote in ``output``, or ``None`` if there is no valid one."""
    found = _VOTE.findall(output)
    if not found:
        return None
    index = int(found[-1]) - 1
    return index if 0 <= index < n_candidates else None


def strip_bullet(line: str) -> str:
    """``"2. foo"``, ``"- foo"`` or ``"Step 2: foo"`` -> ``"foo"``."""
    return _BULLET.sub("", line, count=1).strip()


def unique_lines(text: str) -> list[str]:
    """Non-empty, de-bulleted, distinct lines of ``text`` in order."""
    return list(dict.fromkeys(line for raw in text.splitlines() if (line := strip_bullet(raw))))


_WORD = re.compile(r"[a-z]+")
_NEGATIONS = frozenset({"not", "no", "never", "hardly", "barely"})


def last_line_label(output: str, labels: Iterable[str]) -> str | None:
    """The label the completion ends with, read as the paper reads it: the last word of
    the last non-empty line, whole ("unlikely" is not "likely") and not negated ("not
    sure" is not "sure"); markdown and punctuation around it are ignored."""
    lines = [line for line in output.strip().lower().splitlines() if line.strip()]
    if not lines:
        return None
    words: list[str] = _WORD.findall(lines[-1])
    if not words or words[-1] not in set(labels):
        return None
    if len(words) > 1 and words[-2] in _NEGATIONS:
        return None
    return words[-1]


def normalise_text(text: str) -> str:
    """Case-folded, with runs of whitespace made one space: for comparing free text."""
    return " ".join(text.casefold().split())
