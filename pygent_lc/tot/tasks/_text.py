"""Small text helpers shared by the tasks."""

from __future__ import annotations

import re

# A list marker is only a marker when whitespace follows it: "1.5 + 2" keeps its "1.".
_BULLET = re.compile(r"^\s*(?:[-*•]+|\(?\d{1,3}[.):]|step\s*\d+\s*[:.)-])\s+", re.IGNORECASE)


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
