"""What :class:`~pygent_lc.settings.Settings` checks beyond pydantic's types: values as
written, misspelt names, the lines of a ``.env`` file (pydantic-settings reads one
leniently and cannot say on which line a value is: python-dotenv's parser can), errors.
"""

from __future__ import annotations

import difflib
import io
import ipaddress
import json
import os
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from dotenv.parser import parse_stream
from pydantic import ValidationError

from pygent_lc.errors import ConfigurationError
from pygent_lc.redaction import shown_value


def http_url(value: str, where: str = "") -> str:
    if not value.startswith(("http://", "https://")):
        got = f"got {shown_value(value)}"
        raise ValueError(f"{where}expected a URL starting with http:// or https://, {got}")
    return value.rstrip("/")


def http_urls(value: str) -> str:
    """One URL or several, comma-separated: each checked like one, none twice."""
    urls = [part.strip() for part in value.split(",")] if "," in value else [value]
    checked: list[str] = []
    for number, url in enumerate(urls, start=1):
        where = f"URL {number} of {len(urls)} " if len(urls) > 1 else ""
        if not url and where:
            raise ValueError(f"{where}is empty")
        checked.append(http_url(url, where))
        if checked[-1] in checked[:-1]:
            raise ValueError(f"{where}is listed twice ({shown_value(checked[-1])})")
    return ",".join(checked)


def is_loopback_url(url: str) -> bool:
    host = (urlsplit(url).hostname or "").rstrip(".").lower()
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host == "localhost"
    return (getattr(address, "ipv4_mapped", None) or address).is_loopback


def from_json(value: object) -> object:
    """A JSON text parsed, for an error that names the setting and none of the value."""
    try:
        return json.loads(value) if isinstance(value, str) else value
    except json.JSONDecodeError as exc:  # its message has no part of the value
        raise ValueError(f"not valid JSON ({exc.msg} at character {exc.pos})") from None


def comma_list(value: object) -> object:
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",")]
        if not all(value):
            raise ValueError("empty name in a comma-separated list")
    return value


def unique_provider_names(names: list[str]) -> list[str]:
    if not names:
        raise ValueError("at least one provider is required")
    for index, name in enumerate(names):
        if name in names[:index]:
            raise ValueError(f"provider {shown_value(name)} is listed twice")
    return names


class Setting(NamedTuple):
    keyword: str
    variable: str
    loc: tuple[str, ...]  # ("request_timeout",), or in a section ("ollama", "num_ctx")


class MisspeltSettingWarning(UserWarning):
    """A variable meant as a setting, and ignored (``PYGENT_MAX_COST=0.01``: no budget)."""


# Read by this package outside Settings, by its tests, or by Ollama's own server and CLI.
_OLLAMA_OWN = """HOST MODELS KEEP_ALIVE ORIGINS DEBUG FLASH_ATTENTION KV_CACHE_TYPE LLM_LIBRARY
MAX_LOADED_MODELS MAX_QUEUE NUM_PARALLEL NOPRUNE SCHED_SPREAD TMPDIR GPU_OVERHEAD LOAD_TIMEOUT
MULTIUSER_CACHE CONTEXT_LENGTH NEW_ENGINE INTEL_GPU RUNNERS_DIR NOHISTORY API_KEY"""
KNOWN_OTHER_VARIABLES = frozenset(
    ["PYGENT_DEBUG", "PYGENT_OTEL", "PYGENT_OTEL_CAPTURE_CONTENT", "PYGENT_SOAK"]
    + [f"OLLAMA_{name}" for name in _OLLAMA_OWN.split()]
)


def warn_misspelt(places: Mapping[str, str], settings: frozenset[str]) -> None:
    """A :class:`MisspeltSettingWarning` for each of ``places`` (name: where it is set)
    meant for one of ``settings``: any other ``PYGENT_`` name (``PYGENT_TEST_*`` aside),
    an ``OPENROUTER_`` or ``OLLAMA_`` one only when close, as other tools read those."""
    for name, place in places.items():
        upper = name.upper()
        if (
            not upper.startswith(("PYGENT_", "OPENROUTER_", "OLLAMA_"))
            or upper in settings | KNOWN_OTHER_VARIABLES
            or upper.startswith("PYGENT_TEST_")
        ):
            continue
        close = difflib.get_close_matches(upper, sorted(settings), n=1, cutoff=0.8)
        if close or upper.startswith("PYGENT_"):
            warnings.warn(
                f"{name} (in {place.split(' line ')[0]}) is not a pygent_lc setting "
                f"and is ignored{f'; did you mean {close[0]}?' if close else ''}",
                MisspeltSettingWarning,
                stacklevel=3,
            )


def check_known(names: Iterable[str], accepted: list[str]) -> None:
    """Refuse the first of ``names`` not ``accepted``, naming the closest accepted one
    (``OLLAMA_MODEL``: ``ollama_model``)."""
    for name in names:
        if name not in accepted:
            known = {name.lower(): name for name in accepted}
            close = difflib.get_close_matches(name.lower(), list(known), n=1, cutoff=0.6)
            hint = f"; did you mean {known[close[0]]!r}?" if close else ""
            raise ConfigurationError(f"unknown setting {name!r}{hint}", field=name)


def dotenv_places(env_file: object, encoding: str) -> dict[str, str]:
    """Each variable of the existing ``.env`` files ``env_file`` (later files win) and
    where it is set (``path line N``). A byte not ``encoding``, a line that does not
    parse, an unreadable file, and ``PYGENT_ALLOW_INSECURE_HTTP`` (a file comes with a
    checkout or a download) are errors naming the file and line, never the line's text.
    """
    files = [env_file] if isinstance(env_file, str | os.PathLike) else env_file or []
    found: dict[str, str] = {}
    for path in (Path(os.fspath(item)).expanduser() for item in files):  # type: ignore[attr-defined]
        if not path.is_file():
            continue
        try:
            raw = path.read_bytes()
            text = raw.decode(encoding)
        except OSError as exc:
            raise ConfigurationError(f"cannot read {path}: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            raise ConfigurationError(
                f"{path} line {line}: not valid {encoding} text (byte {exc.start})"
            ) from None
        except LookupError:
            raise ConfigurationError(f"{path}: unknown encoding {encoding!r}") from None
        for binding in parse_stream(io.StringIO(text)):
            statement = binding.original.string  # starts with the blank lines before it
            leading = len(statement) - len(statement.lstrip())
            line = binding.original.line + statement[:leading].count("\n")
            where = f"{path} line {line}"
            if binding.error:
                raise ConfigurationError(
                    f"{where}: cannot parse this line (an unterminated quote? expected NAME=value)"
                )
            if (binding.key or "").upper() == "PYGENT_ALLOW_INSECURE_HTTP":
                raise ConfigurationError(
                    f"{where}: PYGENT_ALLOW_INSECURE_HTTP may not be set in a .env file (it "
                    "allows sending the key over plain http); set it in the process "
                    "environment or pass Settings(allow_insecure_http=True)",
                    field="allow_insecure_http",
                )
            if binding.key is not None:
                found[binding.key.upper()] = where
    return found


def settings_error(
    exc: ValidationError,
    settings: Iterable[Setting],
    given: Mapping[str, Any],
    places: Mapping[str, str],
) -> ConfigurationError:
    """One error naming each setting (``keyword (VARIABLE)``) and, unless the caller
    passed it (``given``), where its value came from: the environment or one of ``places``."""
    by_loc = {setting.loc: setting for setting in settings}
    by_keyword = {setting.keyword: setting for setting in by_loc.values()}
    environ = {name.upper() for name in os.environ}
    labels: list[str] = []
    messages: list[str] = []
    for err in exc.errors(include_url=False):
        loc = tuple(str(part) for part in err["loc"]) or ("settings",)
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, ConfigurationError) and cause.field in by_keyword:  # across fields
            loc, message = by_keyword[cause.field].loc, str(cause)
        else:
            message = err["msg"]  # pydantic quotes no input here; ours quote as shown_value does
        setting = by_loc.get(loc[:2]) or by_loc.get(loc[:1])
        label, source, rest = loc[0], "", loc[1:]
        if setting is not None:
            label, rest = f"{setting.keyword} ({setting.variable})", loc[len(setting.loc) :]
            if setting.keyword not in given and setting.loc[0] not in given:
                if setting.variable in environ:
                    source = f" from the environment variable {setting.variable}"
                elif setting.variable in places:
                    source = f" from {places[setting.variable]}"
        labels.append(label)
        path = "".join(f".{shown_value(part)[1:-1]}" for part in rest)  # a JSON key, cut
        messages.append(f"{label}{path}{source}: {message}")
    return ConfigurationError(f"invalid setting {'; '.join(messages)}", field=labels[0])
