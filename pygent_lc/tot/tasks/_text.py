"""Small text helpers shared by the tasks."""

from __future__ import annotations

import re

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


def unique_lines(text: str, *, limit: int | None = None) -> list[str]:
    """Non-empty, de-bulleted, distinct lines of ``text`` in order."""
    seen: set[str] = set()
    lines: list[str] = []
    for raw in text.splitlines():
        line = strip_bullet(raw)
        if not line or line in seen:
            continue
        seen.add(line)
        lines.append(line)
        if limit is not None and len(lines) >= limit:
            break
    return lines
