"""Values fit for an error message, credentials masked and long values cut: a key pasted
into the wrong variable must not be printed back (errors end up in CI logs). Every
ConfigurationError and everything the CLI prints passes :func:`redact_text`."""

from __future__ import annotations

import re

MAX_SHOWN_CHARS = 60  # longer values are cut in a message

# Credentials by their documented prefixes: OpenAI/OpenRouter/Anthropic (sk-),
# GitHub, GitLab, Hugging Face, Slack, AWS, Google; then JSON Web Tokens.
_PREFIXED = (
    r"(?P<prefix>sk-or-|sk-ant-|sk-proj-|sk-|rk-|pk-|ghp_|gho_|ghu_|ghs_|ghr_|github_pat_|"
    r"glpat-|hf_|xox[abposr]-|AKIA|ASIA|AIza)[A-Za-z0-9_\-]{8,}"
)
_JWT = r"eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]*"
# Anything else that looks random: a run of 16+ letters and digits, mixed, inside
# a token (words joined by - and _, like model names, do not have such runs;
# path and URL parts are split at / and .).
_TOKEN = r"[A-Za-z0-9_\-+=]{16,}"
_RANDOM_RUN = re.compile(r"[A-Za-z0-9+=]{16,}")
_CREDENTIAL = re.compile(
    rf"(?<![A-Za-z0-9_\-+=])(?:{_PREFIXED}|{_JWT}|{_TOKEN})(?![A-Za-z0-9_\-+=])"
)
# pydantic's ValidationError text quotes each input: ``input_value='...'``.
_INPUT_VALUE = re.compile(r"input_value=('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[^,\]\s]+)")


def _masked(match: re.Match[str]) -> str:
    token, prefix = match.group(0), match.group("prefix") or ""
    runs = [run.group(0) for run in _RANDOM_RUN.finditer(token)]
    mixed = any(any(c.isdigit() for c in run) and any(c.isalpha() for c in run) for run in runs)
    if prefix or token.startswith("eyJ") or mixed:
        return f"{prefix}…(masked, {len(token)} chars)"
    return token


def mask_credentials(text: str) -> str:
    """``text`` with every part that looks like a credential masked (``sk-or-…``)."""
    return _CREDENTIAL.sub(_masked, text)


def shown_value(value: object, limit: int = MAX_SHOWN_CHARS) -> str:
    """``repr(value)`` for a message: credentials masked, cut after ``limit`` characters."""
    text = mask_credentials(str(value))
    if len(text) > limit:
        text = f"{text[:limit]}…(cut, {len(str(value))} chars)"
    return repr(text)


def redact_text(text: str) -> str:
    """A message without credentials, and without long quoted inputs whole."""
    text = _INPUT_VALUE.sub(lambda m: f"input_value={shown_value(_unquoted(m.group(1)))}", text)
    return mask_credentials(text)


def _unquoted(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text
