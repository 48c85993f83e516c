"""Settings: env names, defaults, and ConfigurationError naming the field."""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

from pygent_lc import Settings
from pygent_lc.errors import ConfigurationError
from pygent_lc.settings import (
    KEYWORDS,
    VARIABLES,
    LocalSettings,
    MisspeltSettingWarning,
    OllamaSettings,
    OpenRouterSettings,
)
from tests.helpers import ROOT


def test_defaults() -> None:
    settings = Settings()
    assert settings.openrouter.api_key is None
    assert settings.openrouter.base_url == "https://openrouter.ai/api/v1"
    assert settings.openrouter.model == "anthropic/claude-3.5-sonnet"
    assert settings.ollama.base_url == "http://localhost:11434"
    assert settings.providers == ["openrouter", "ollama", "local"]
    assert (settings.request_timeout, settings.max_retries) == (60.0, 2)


def test_reads_documented_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "OPENROUTER_API_KEY": "sk-or-v1-abc",
        "OPENROUTER_BASE_URL": "http://127.0.0.1:9/api/v1/",
        "OPENROUTER_MODEL": "openai/gpt-4o",
        "OPENROUTER_APP_URL": "https://example.org",
        "OPENROUTER_APP_TITLE": "My App",
        "OLLAMA_BASE_URL": "http://127.0.0.1:11434",
        "OLLAMA_MODEL": "llama3.2",
        "PYGENT_PROVIDERS": "ollama, OpenRouter",
        "PYGENT_REQUEST_TIMEOUT": "5",
        "PYGENT_MAX_RETRIES": "0",
        "PYGENT_RETRY_MAX_WAIT": "3",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.openrouter.api_key is not None
    assert settings.openrouter.api_key.get_secret_value() == "sk-or-v1-abc"
    assert settings.openrouter.base_url == "http://127.0.0.1:9/api/v1"
    assert settings.openrouter.app_url == "https://example.org"
    assert settings.openrouter.app_title == "My App"
    assert settings.ollama.model == "llama3.2"
    assert settings.providers == ["ollama", "openrouter"]
    assert (settings.request_timeout, settings.max_retries, settings.retry_max_wait) == (5, 0, 3)


def test_reads_dotenv_file_only_when_asked(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("OLLAMA_MODEL=qwen2.5:7b\nPYGENT_PROVIDERS=ollama\n")
    assert Settings().ollama.model is None  # the working directory's .env is not read
    for settings in (Settings.from_env_file(), Settings(_env_file=tmp_path / ".env")):
        assert (settings.ollama.model, settings.providers) == ("qwen2.5:7b", ["ollama"])
    other = tmp_path / "other.env"
    other.write_text("OLLAMA_MODEL=llama3.2\n")
    assert Settings.from_env_file(other, providers="ollama").ollama.model == "llama3.2"
    assert Settings.from_env_file(tmp_path / "missing.env").ollama.model is None


def test_environment_and_keywords_win_over_the_dotenv_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text("OLLAMA_MODEL=from-file\nPYGENT_MAX_RETRIES=5\n")
    monkeypatch.setenv("OLLAMA_MODEL", "from-env")
    settings = Settings.from_env_file(max_retries=1)
    assert (settings.ollama.model, settings.max_retries) == ("from-env", 1)


@pytest.mark.parametrize(
    ("env", "value", "field"),
    [
        ("PYGENT_PROVIDERS", "openrouter,bogus", "providers"),
        ("PYGENT_PROVIDERS", "openrouter,,ollama", "providers"),
        ("PYGENT_PROVIDERS", "ollama,ollama", "providers"),
        ("PYGENT_REQUEST_TIMEOUT", "-1", "request_timeout"),
        ("PYGENT_REQUEST_TIMEOUT", "soon", "request_timeout"),
        ("PYGENT_MAX_RETRIES", "-2", "max_retries"),
        ("OPENROUTER_BASE_URL", "openrouter.ai", "openrouter_base_url"),
        ("OLLAMA_BASE_URL", "localhost:11434", "ollama_base_url"),
        ("PYGENT_REQUEST_TIMEOUT", "0", "request_timeout"),
        ("PYGENT_REQUEST_TIMEOUT", "inf", "request_timeout"),
        ("PYGENT_MAX_RETRIES", "11", "max_retries"),
        ("PYGENT_MAX_RETRIES", "1.5", "max_retries"),
        ("PYGENT_RETRY_MAX_WAIT", "-1", "retry_max_wait"),
        ("PYGENT_RETRY_INITIAL_WAIT", "-0.5", "retry_initial_wait"),
        ("OLLAMA_NUM_CTX", "0", "ollama_num_ctx"),
        ("OPENROUTER_MODEL", "   ", "openrouter_model"),
        ("PYGENT_BREAKER_FAILURES", "-1", "breaker_failures"),
        ("PYGENT_BREAKER_FAILURES", "three", "breaker_failures"),
        ("PYGENT_BREAKER_COOLDOWN", "-5", "breaker_cooldown"),
        ("PYGENT_BREAKER_COOLDOWN", "soon", "breaker_cooldown"),
    ],
)
def test_invalid_values_name_the_field(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, field: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigurationError) as caught:
        Settings()
    assert caught.value.field is not None
    assert caught.value.field.split()[0] == field
    assert field in str(caught.value)


def test_key_never_in_repr_or_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-v1-supersecret")
    settings = Settings()
    assert "supersecret" not in repr(settings)
    assert "supersecret" not in str(settings.model_dump())
    monkeypatch.setenv("PYGENT_MAX_RETRIES", "many")
    with pytest.raises(ConfigurationError) as caught:
        Settings()
    assert "supersecret" not in str(caught.value)


# --- sections and flat keywords -----------------------------------------------------


def test_a_section_reads_its_own_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYGENT_LOCAL_MODEL", "/models/m.gguf")
    monkeypatch.setenv("OLLAMA_NUM_CTX", "4096")
    monkeypatch.setenv("MAX_RETRIES", "7")  # not a PYGENT_ name: ignored
    monkeypatch.setenv("PYGENT_OLLAMA", "not a section")  # nor is a section's own name
    settings = Settings()
    assert isinstance(settings.local, LocalSettings)
    assert settings.local.model == Path("/models/m.gguf")
    assert settings.ollama.num_ctx == 4096
    assert settings.max_retries == 2
    assert OllamaSettings().num_ctx == 4096  # a section on its own reads the environment too


def test_a_whole_section_as_a_mapping_or_a_model_and_flat_keywords_win() -> None:
    settings = Settings(ollama={"model": "llama3.2", "num_ctx": 2048}, ollama_num_ctx=1024)
    assert (settings.ollama.model, settings.ollama.num_ctx) == ("llama3.2", 1024)
    section = OpenRouterSettings(model="openai/gpt-4o")
    assert Settings(openrouter=section).openrouter.model == "openai/gpt-4o"
    with pytest.raises(ConfigurationError, match=r"unknown setting 'ollama.modle'; did you mean"):
        Settings(ollama={"modle": "x"})
    with pytest.raises(ConfigurationError) as caught:
        Settings(ollama={"num_ctx": 0})
    assert caught.value.field == "ollama_num_ctx (OLLAMA_NUM_CTX)"


def test_a_whole_section_still_reads_the_dotenv_file_and_the_options(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("OLLAMA_MODEL=from-file\n")
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "pygent_local_threads").write_text("3")
    settings = Settings.from_env_file(ollama={"num_ctx": 5}, _secrets_dir=tmp_path / "secrets")
    assert (settings.ollama.model, settings.ollama.num_ctx) == ("from-file", 5)
    assert settings.local.threads == 3


def test_the_settings_know_the_provider_names_without_the_providers() -> None:
    """The names come from the sections: no provider module is imported for them."""
    code = (
        "import json, sys, pygent_lc.settings as s\n"
        "print(json.dumps([[*s.SECTIONS], [*sys.modules]]))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    names, modules = json.loads(run.stdout)
    assert names == ["openrouter", "ollama", "local"]
    providers = {name for name in modules if name.startswith("pygent_lc.providers.")}
    assert providers == {"pygent_lc.providers.openrouter", "pygent_lc.providers.openrouter.options"}


def test_a_section_given_whole_is_copied_not_shared() -> None:
    section = OpenRouterSettings(model="openai/gpt-4o")
    settings = Settings(openrouter=section)
    assert settings.openrouter is not section
    assert settings.openrouter == section
    assert settings.updated(ollama_model="x").openrouter is not settings.openrouter


def test_updated_keeps_every_value_and_validates_the_changes() -> None:
    base = Settings(openrouter_api_key="sk-or-v1-x", ollama_model="qwen2.5", request_timeout=7)
    changed = base.updated(ollama_model="llama3.2", providers=["ollama"])
    assert changed.openrouter.api_key == base.openrouter.api_key
    assert (changed.ollama.model, changed.request_timeout) == ("llama3.2", 7)
    assert changed.providers == ["ollama"]
    assert base.ollama.model == "qwen2.5"
    with pytest.raises(ConfigurationError, match="openrouter_base_url"):
        base.updated(openrouter_base_url="http://example.com/v1")


# --- unknown keywords ------------------------------------------------------------


@pytest.mark.parametrize(
    ("keyword", "suggestion"),
    [
        ("request_timout", "'request_timeout'"),
        ("openrouter_key", "'openrouter_api_key'"),
        ("PYGENT_REQUEST_TIMEOUT", "'request_timeout'"),  # a variable's name: its keyword
        ("OLLAMA_MODEL", "'ollama_model'"),
        ("_env_fil", "'_env_file'"),
    ],
)
def test_unknown_keyword_names_itself_and_the_closest_field(keyword: str, suggestion: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings(**{keyword: 5})
    assert str(caught.value) == f"unknown setting {keyword!r}; did you mean {suggestion}?"
    assert caught.value.field == keyword


@pytest.mark.parametrize("keyword", sorted(key for key in KEYWORDS if "." not in key))
def test_a_value_of_the_wrong_type_names_the_setting(keyword: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings(**{keyword: object()})
    assert caught.value.field is not None
    assert caught.value.field.split()[0] == keyword


def test_unknown_keyword_without_a_close_field() -> None:
    with pytest.raises(ConfigurationError, match=r"^unknown setting 'zzz'$"):
        Settings(zzz=1)


def test_keywords_and_settings_options_are_accepted(tmp_path: Path) -> None:
    settings = Settings(
        request_timeout=5,
        max_retries=1,
        ollama_model="llama3.2",
        _env_file=None,
        _env_file_encoding="utf-8",
        _case_sensitive=False,
        _secrets_dir=None,
    )
    assert (settings.request_timeout, settings.max_retries) == (5, 1)
    assert settings.ollama.model == "llama3.2"


def test_unrelated_environment_and_dotenv_variables_are_ignored(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgres://x")
    monkeypatch.setenv("PYGENT_SOMETHING_ELSE", "1")
    (tmp_path / ".env").write_text("SECRET_KEY=abc\nDEBUG=1\nOLLAMA_MODEL=llama3.2\n")
    assert Settings.from_env_file().ollama.model == "llama3.2"


# --- malformed sources -------------------------------------------------------------


def test_dotenv_with_a_byte_that_is_not_utf8_names_the_file_and_line(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_bytes(b"OLLAMA_MODEL=llama3.2\nAPP_NAME=caf\xe9\n")
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env_file(env_file)
    assert str(caught.value).startswith(f"{env_file} line 2: not valid utf-8 text")


def test_dotenv_with_an_unterminated_quote_names_the_file_and_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("OLLAMA_MODEL=llama3.2\n\nOPENROUTER_API_KEY='sk-or-v1-secret\nX=1\n")
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env_file(env_file)
    assert str(caught.value).startswith(f"{env_file} line 3: cannot parse this line")
    assert "sk-or-v1-secret" not in str(caught.value)
    assert not caplog.records  # python-dotenv's own warning never comes: the file is refused


def test_unreadable_dotenv_names_the_file(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("OLLAMA_MODEL=llama3.2\n")
    with pytest.raises(ConfigurationError, match=r"unknown encoding 'no-such-codec'"):
        Settings.from_env_file(env_file, _env_file_encoding="no-such-codec")
    with pytest.raises(ConfigurationError, match=rf"cannot read {re.escape(str(env_file))}: .*8"):
        Settings.from_env_file(env_file, _env_file_encoding=8)  # not a name: no TypeError


def test_only_the_options_about_reading_are_accepted(tmp_path: Path) -> None:
    """pydantic-settings' other options (a prefix, CLI parsing) would not reach the sections."""
    (tmp_path / ".env").write_text("OLLAMA_MODEL=llama3.2\n")
    settings = Settings(_env_file=tmp_path / ".env", _env_file_encoding="")  # the default, utf-8
    assert settings.ollama.model == "llama3.2"
    with pytest.raises(ConfigurationError, match=r"^unknown setting '_env_prefix'"):
        Settings(_env_prefix="MY_")


def test_invalid_values_name_their_source(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text('# app\nPYGENT_MAX_RETRIES=many\nOPENROUTER_PROVIDER={"sort": \n')
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env_file(env_file)
    message = str(caught.value)
    assert f"max_retries (PYGENT_MAX_RETRIES) from {env_file} line 2:" in message
    assert f"openrouter_provider (OPENROUTER_PROVIDER) from {env_file} line 3:" in message
    assert "not valid JSON" in message
    monkeypatch.setenv("OPENROUTER_REASONING", "{effort: low}")
    with pytest.raises(ConfigurationError) as caught:
        Settings()
    assert "from the environment variable OPENROUTER_REASONING: " in str(caught.value)
    assert "effort" not in str(caught.value)
    with pytest.raises(ConfigurationError) as caught:
        Settings(openrouter_reasoning="{")
    assert "openrouter_reasoning (OPENROUTER_REASONING): " in str(caught.value)


def test_json_settings_parse_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENROUTER_PROVIDER", '{"sort": "throughput"}')
    monkeypatch.setenv("OPENROUTER_REASONING", '{"effort": "low"}')
    settings = Settings()
    assert settings.openrouter.provider is not None
    assert settings.openrouter.provider.sort == "throughput"
    assert settings.openrouter.reasoning is not None
    assert settings.openrouter.reasoning.effort == "low"


# --- the key over plain http ---------------------------------------------------------


def test_key_over_plain_http_to_a_remote_host_is_refused(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        "OPENROUTER_API_KEY=sk-or-v1-supersecret\nOPENROUTER_BASE_URL=http://example.com/api/v1\n"
    )
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env_file(env_file)
    assert caught.value.field == "openrouter_base_url (OPENROUTER_BASE_URL)"
    assert "plain http to example.com" in str(caught.value)
    assert "PYGENT_ALLOW_INSECURE_HTTP" in str(caught.value)
    assert "supersecret" not in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/api/v1",
        "http://10.0.0.1:8080/v1",
        "http://user:pass@openrouter.ai/api/v1",
        "http://localhost.example.com/v1",
        "http://[::ffff:10.0.0.1]/v1",
    ],
)
def test_key_over_plain_http_from_the_environment_is_refused(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-v1-supersecret")
    monkeypatch.setenv("OPENROUTER_BASE_URL", url)
    with pytest.raises(ConfigurationError) as caught:
        Settings()
    assert "from the environment variable OPENROUTER_BASE_URL" in str(caught.value)
    assert "pass" not in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/api/v1",
        "http://127.3.2.1/v1",
        "http://localhost:11434/v1",
        "http://LOCALHOST/v1",
        "http://[::1]:8080/v1",
        "http://[::ffff:127.0.0.1]/v1",  # loopback as IPv6 (Python < 3.13 does not say so)
        "https://example.com/api/v1",
    ],
)
def test_key_over_loopback_http_or_https_is_fine(url: str) -> None:
    settings = Settings(openrouter_api_key="sk-or-v1-abc", openrouter_base_url=url)
    assert settings.openrouter.base_url == url.rstrip("/")


def test_plain_http_is_fine_without_a_key_or_when_allowed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENROUTER_BASE_URL", "http://example.com/api/v1")
    assert Settings().allow_insecure_http is False
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-v1-abc")
    monkeypatch.setenv("PYGENT_ALLOW_INSECURE_HTTP", "true")
    settings = Settings()
    assert settings.allow_insecure_http is True
    assert settings.openrouter.base_url == "http://example.com/api/v1"


@pytest.mark.parametrize("value", ["1", "true", "0"])
def test_a_dotenv_may_not_allow_plain_http(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, value: str
) -> None:
    """A checked-out .env would otherwise send the environment's key in clear."""
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-v1-abc")
    env_file = tmp_path / ".env"
    env_file.write_text(
        f"OPENROUTER_BASE_URL=http://example.com/v1\npygent_allow_insecure_http={value}\n"
    )
    with pytest.raises(ConfigurationError, match=r"\.env line 2: PYGENT_ALLOW_INSECURE_HTTP"):
        Settings.from_env_file(env_file)


def test_plain_http_allowed_by_the_environment_with_a_url_from_dotenv(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-v1-abc")
    monkeypatch.setenv("PYGENT_ALLOW_INSECURE_HTTP", "1")
    env_file = tmp_path / ".env"
    env_file.write_text("OPENROUTER_BASE_URL=http://example.com/v1\n")
    assert Settings.from_env_file(env_file).openrouter.base_url == "http://example.com/v1"
    monkeypatch.delenv("PYGENT_ALLOW_INSECURE_HTTP")
    assert Settings.from_env_file(env_file, allow_insecure_http=True).allow_insecure_http


# --- malformed PYGENT_PROVIDERS ----------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "",
        " ",
        ",",
        "openrouter;ollama",
        '["openrouter", "ollama"]',
        "openrouter ollama",
        "open router",
    ],
)
def test_malformed_pygent_providers(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("PYGENT_PROVIDERS", value)
    with pytest.raises(ConfigurationError) as caught:
        Settings()
    assert caught.value.field is not None
    assert caught.value.field.startswith("providers")


# --- values never printed back ---------------------------------------------------------

PASTED_KEY = "sk-or-v1-" + "5f3c9a0e7b1d2468" * 4


def every_variable() -> list[str]:
    return sorted(VARIABLES)


def settings_error() -> str | None:
    """What the environment's settings error shows (message, repr, field), if any."""
    try:
        Settings()
    except ConfigurationError as exc:
        return f"{exc} {exc!r} {exc.field}"
    return None


@pytest.mark.parametrize("variable", every_variable())
@pytest.mark.parametrize(
    "value",
    [
        PASTED_KEY,
        f'{{"{PASTED_KEY}": 1}}',
        f'{{"order": "{PASTED_KEY}"}}',
        f"openrouter={PASTED_KEY}",
        f"http://a.example,{PASTED_KEY}",
    ],
    ids=["key", "json-key", "json-value", "pair", "second-url"],
)
def test_a_key_pasted_into_any_setting_is_not_printed_back(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    shown = settings_error()
    if shown is not None:  # some settings take any text (a model name)
        assert PASTED_KEY not in shown
        assert PASTED_KEY[9:25] not in shown
        assert variable in shown  # names the variable


@pytest.mark.parametrize("variable", every_variable())
@pytest.mark.parametrize("value", ["not-a-valid-value " * 500, f'{{"{"a" * 500}": 1}}'])
def test_a_long_value_of_any_setting_is_not_printed_whole(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    shown = settings_error()
    if shown is not None:
        assert len(shown) < 600
        assert variable in shown


def test_an_invalid_url_names_what_was_expected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_BASE_URL", PASTED_KEY)
    with pytest.raises(ConfigurationError, match=r"OLLAMA_BASE_URL.*expected a URL") as caught:
        Settings()
    assert "sk-or-…" in str(caught.value)


# --- misspelt variables ------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "meant"),
    [
        ("PYGENT_REQUEST_TIMOUT", "PYGENT_REQUEST_TIMEOUT"),
        ("PYGENT_MAX_COST", "PYGENT_MAX_COST_USD"),
        ("pygent_max_retry", "PYGENT_MAX_RETRIES"),
        ("OPENROUTER_APIKEY", "OPENROUTER_API_KEY"),
        ("OLLAMA_MODLE", "OLLAMA_MODEL"),
        ("PYGENT_LOCAL_MODLE", "PYGENT_LOCAL_MODEL"),
    ],
)
def test_a_misspelt_variable_is_a_warning_naming_the_closest(
    monkeypatch: pytest.MonkeyPatch, variable: str, meant: str
) -> None:
    monkeypatch.setenv(variable, "5")
    with pytest.warns(MisspeltSettingWarning, match=f"{variable}.*did you mean {meant}"):
        Settings()


def test_a_misspelt_variable_in_dotenv_names_the_file(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("PYGENT_MAX_COST=0.0001\n")
    with pytest.warns(MisspeltSettingWarning, match=r"PYGENT_MAX_COST \(in .*\.env\)"):
        Settings.from_env_file(env_file)


@pytest.mark.parametrize(
    "variable",
    [
        "OLLAMA_HOST",
        "OLLAMA_MODELS",
        "OLLAMA_KEEP_ALIVE",
        "OLLAMA_NUM_PARALLEL",
        "OPENROUTER_API_KEY",
        "PYGENT_DEBUG",
        "PYGENT_SOAK",
        "PYGENT_OTEL_CAPTURE_CONTENT",
        "PYGENT_TEST_REDIS_URL",
        "PYGENT_MAX_COST_USD",
        "OPENROUTER_SITE_NAME",
    ],
)
def test_variables_of_other_tools_and_of_this_project_are_not_reported(
    monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, "1")
    with warnings.catch_warnings():
        warnings.simplefilter("error", MisspeltSettingWarning)
        with contextlib.suppress(ConfigurationError):  # a value "1" may be invalid: not checked
            Settings()


# --- the contract: every variable, its default and its keyword ---------------------------

# (variable, where it is read, default, a value to set, what that value reads as, keyword)
EVERY_SETTING: list[tuple[str, str, object, str, object, str]] = [
    ("OPENROUTER_API_KEY", "openrouter.api_key", None, "sk-or-v1-abc", "sk-or-v1-abc",
     "openrouter_api_key"),
    ("OPENROUTER_BASE_URL", "openrouter.base_url", "https://openrouter.ai/api/v1",
     "https://example.org/v1/", "https://example.org/v1", "openrouter_base_url"),
    ("OPENROUTER_MODEL", "openrouter.model", "anthropic/claude-3.5-sonnet", "openai/gpt-4o",
     "openai/gpt-4o", "openrouter_model"),
    ("OPENROUTER_MODELS", "openrouter.models", [], "a/b, c/d", ["a/b", "c/d"],
     "openrouter_models"),
    ("OPENROUTER_PROVIDER", "openrouter.provider", None, '{"sort": "price"}', {"sort": "price"},
     "openrouter_provider"),
    ("OPENROUTER_REASONING", "openrouter.reasoning", None, '{"effort": "low"}',
     {"effort": "low"}, "openrouter_reasoning"),
    ("OPENROUTER_APP_URL", "openrouter.app_url", None, "https://example.org",
     "https://example.org", "app_url"),
    ("OPENROUTER_APP_TITLE", "openrouter.app_title", "pygent_lc", "Mine", "Mine", "app_title"),
    ("OLLAMA_BASE_URL", "ollama.base_url", "http://localhost:11434", "http://a:1,http://b:2/",
     "http://a:1,http://b:2", "ollama_base_url"),
    ("OLLAMA_MODEL", "ollama.model", None, "llama3.2", "llama3.2", "ollama_model"),
    ("OLLAMA_NUM_CTX", "ollama.num_ctx", 8192, "4096", 4096, "ollama_num_ctx"),
    ("PYGENT_LOCAL_MODEL", "local.model", None, "m.gguf", Path("m.gguf"), "local_model_path"),
    ("PYGENT_LOCAL_THREADS", "local.threads", None, "3", 3, "local_threads"),
    ("PYGENT_LOCAL_STARTUP_TIMEOUT", "local.startup_timeout", 120.0, "5", 5.0,
     "local_startup_timeout"),
    ("PYGENT_ALLOW_INSECURE_HTTP", "allow_insecure_http", False, "1", True,
     "allow_insecure_http"),
    ("PYGENT_PROVIDERS", "providers", ["openrouter", "ollama", "local"], "Local, ollama",
     ["local", "ollama"], "providers"),
    ("PYGENT_REQUEST_TIMEOUT", "request_timeout", 60.0, "5", 5.0, "request_timeout"),
    ("PYGENT_MAX_RETRIES", "max_retries", 2, "0", 0, "max_retries"),
    ("PYGENT_RETRY_MAX_WAIT", "retry_max_wait", 20.0, "3", 3.0, "retry_max_wait"),
    ("PYGENT_RETRY_INITIAL_WAIT", "retry_initial_wait", 0.5, "0.1", 0.1, "retry_initial_wait"),
    ("PYGENT_BREAKER_FAILURES", "breaker_failures", 3, "0", 0, "breaker_failures"),
    ("PYGENT_BREAKER_COOLDOWN", "breaker_cooldown", 30.0, "1", 1.0, "breaker_cooldown"),
    ("PYGENT_STATE_URL", "state_url", None, "redis://127.0.0.1:1/0", "redis://127.0.0.1:1/0",
     "state_url"),
    ("PYGENT_RATE_LIMITS", "rate_limits", {}, "ollama=10/s", {"ollama": "10/1s"}, "rate_limits"),
    ("PYGENT_RATE_LIMIT_MODE", "rate_limit_mode", "wait", "raise", "raise", "rate_limit_mode"),
    ("PYGENT_MAX_COST_USD", "max_cost_usd", None, "0.5", 0.5, "max_cost_usd"),
    ("PYGENT_BUDGET_KEY", "budget_key", "default", "team", "team", "budget_key"),
    ("PYGENT_BUDGET_WINDOW", "budget_window", None, "1h", "1h", "budget_window"),
]  # fmt: skip


def _read(settings: Settings, path: str) -> object:
    value: object = settings
    for part in path.split("."):
        value = getattr(value, part)
    if hasattr(value, "get_secret_value"):
        return value.get_secret_value()
    if hasattr(value, "model_dump"):
        return value.model_dump(exclude_none=True)
    if isinstance(value, dict):  # rate limits: compared by the rate as written
        return {key: str(rate) for key, rate in value.items()}
    return value


def _variables_of(model: type[BaseSettings]) -> set[str]:
    prefix = str(model.model_config.get("env_prefix") or "")
    return {
        f"{prefix}{name}".upper()
        for name, info in model.model_fields.items()
        if not (isinstance(info.annotation, type) and issubclass(info.annotation, BaseSettings))
    }


def test_every_variable_is_listed_here() -> None:
    """A variable added, renamed or dropped is a change of this list (and of the README)."""
    models: list[type[BaseSettings]] = [Settings, OpenRouterSettings, OllamaSettings, LocalSettings]
    read = {variable for model in models for variable in _variables_of(model)}
    assert read == {variable for variable, *_ in EVERY_SETTING}


def _documented_defaults() -> dict[str, str]:
    """Each variable of docs/configuration.md's table and its default cell, as written."""
    page = (ROOT / "docs" / "configuration.md").read_text("utf-8")
    found: dict[str, str] = {}
    for row in (line for line in page.splitlines() if line.startswith("| `")):
        names, defaults = (cell.strip() for cell in row.split(" | ")[:2])
        variables = re.findall(r"`([A-Z_]+)`", names)
        cells = defaults.split(" / ") if len(variables) > 1 else [defaults]
        cells = cells * len(variables) if len(cells) == 1 else cells  # one for all
        found.update(zip(variables, cells, strict=True))
    return found


def _as_documented(default: object) -> str | None:
    """``default`` as the table writes it (``60`` for 60.0, ``false``), None when unset."""
    if default in (None, [], {}):
        return None
    if isinstance(default, bool):
        return str(default).lower()
    if isinstance(default, float) and default.is_integer():
        return str(int(default))
    return ",".join(default) if isinstance(default, list) else str(default)


@pytest.mark.parametrize(("variable", "default"), [(row[0], row[2]) for row in EVERY_SETTING])
def test_every_variable_and_default_is_the_documented_one(variable: str, default: object) -> None:
    """This list, the code (the test below) and the table of docs/configuration.md agree."""
    documented = _documented_defaults()
    assert variable in documented, f"{variable} is not in docs/configuration.md's table"
    expected = _as_documented(default)
    if expected is None:  # unset: a dash, or words saying what is used instead
        assert not re.fullmatch(r"`[^`]*`", documented[variable])
    else:
        assert documented[variable] == f"`{expected}`"


def test_a_keyword_is_its_variable_in_lower_case_but_three_older_names() -> None:
    """As docs/configuration.md says."""
    older = {"PYGENT_LOCAL_MODEL": "local_model_path"}
    older |= {"OPENROUTER_APP_URL": "app_url", "OPENROUTER_APP_TITLE": "app_title"}
    for variable, *_, keyword in EVERY_SETTING:
        assert keyword == older.get(variable, variable.lower().removeprefix("pygent_"))


def test_the_documented_table_has_no_variable_the_settings_do_not_read() -> None:
    others = {"PYGENT_OTEL", "PYGENT_OTEL_CAPTURE_CONTENT", "PYGENT_DEBUG", "PYGENT_SOAK"}
    assert set(_documented_defaults()) - others - {"PYGENT_TEST_REDIS_URL"} == VARIABLES


@pytest.mark.parametrize(("variable", "path", "default", "raw", "value", "keyword"), EVERY_SETTING)
def test_every_variable_default_and_keyword(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    variable: str,
    path: str,
    default: object,
    raw: str,
    value: object,
    keyword: str,
) -> None:
    assert _read(Settings(), path) == default
    assert _read(Settings(**{keyword: raw}), path) == value
    if variable != "PYGENT_ALLOW_INSECURE_HTTP":  # refused in a .env file (tested above)
        (tmp_path / "x.env").write_text(f"{variable}='{raw}'\n")
        assert _read(Settings.from_env_file(tmp_path / "x.env"), path) == value
    monkeypatch.setenv(variable, raw)
    assert _read(Settings(), path) == value
