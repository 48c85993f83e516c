"""Static catalogs: OpenRouter ``/models`` entries and Ollama ``/api/tags`` entries."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

SUPPORTED_PARAMETERS: list[str] = [
    "max_tokens",
    "temperature",
    "top_p",
    "stop",
    "seed",
    "frequency_penalty",
    "presence_penalty",
    "response_format",
    "structured_outputs",
    "tools",
    "tool_choice",
]

LOOPBACK_MODEL_ID = "loopback/echo"


def default_openrouter_catalog(price_in: float, price_out: float) -> list[dict[str, Any]]:
    """A few entries, one ``:free``; ``loopback/echo`` is priced like the server bills."""
    return [
        {
            "id": LOOPBACK_MODEL_ID,
            "name": "Loopback: Echo",
            "context_length": 8192,
            "pricing": {"prompt": _price(price_in), "completion": _price(price_out)},
            "top_provider": {"max_completion_tokens": 4096},
        },
        {
            "id": "openai/gpt-4o-mini",
            "canonical_slug": "openai/gpt-4o-mini-2024-07-18",
            "name": "OpenAI: GPT-4o-mini",
            "context_length": 128000,
            "pricing": {"prompt": "0.00000015", "completion": "0.0000006"},
            "top_provider": {"max_completion_tokens": 16384, "is_moderated": True},
        },
        {
            "id": "anthropic/claude-3.5-haiku",
            "name": "Anthropic: Claude 3.5 Haiku",
            "context_length": 200000,
            "pricing": {"prompt": "0.0000008", "completion": "0.000004"},
            "top_provider": {"max_completion_tokens": 8192, "is_moderated": True},
        },
        {
            "id": "meta-llama/llama-3.3-70b-instruct:free",
            "canonical_slug": "meta-llama/llama-3.3-70b-instruct",
            "name": "Meta: Llama 3.3 70B Instruct (free)",
            "context_length": 131072,
            "pricing": {"prompt": "0", "completion": "0"},
            "top_provider": {"max_completion_tokens": 2048},
        },
    ]


def _price(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        # Plain decimal notation, as OpenRouter sends ("0.000001", not "1e-06").
        text = f"{float(value):.12f}".rstrip("0").rstrip(".")
        return text or "0"
    return "0"


def normalize_openrouter_entry(entry: Mapping[str, Any]) -> dict[str, Any]:
    """Fill every documented field of a ``/models`` entry; prices become strings."""
    model_id = str(entry["id"])
    context_length = int(entry.get("context_length", 8192))
    pricing_in: Mapping[str, Any] = entry.get("pricing") or {}
    top_in: Mapping[str, Any] = entry.get("top_provider") or {}
    out: dict[str, Any] = {
        "id": model_id,
        "canonical_slug": entry.get("canonical_slug", model_id.split(":")[0]),
        "name": entry.get("name", model_id),
        "created": int(entry.get("created", 1_700_000_000)),
        "description": entry.get("description", f"{model_id} served by the loopback server"),
        "context_length": context_length,
        "architecture": entry.get(
            "architecture",
            {
                "modality": "text->text",
                "input_modalities": ["text"],
                "output_modalities": ["text"],
                "tokenizer": "Other",
                "instruct_type": None,
            },
        ),
        "pricing": {
            "prompt": _price(pricing_in.get("prompt", "0")),
            "completion": _price(pricing_in.get("completion", "0")),
            "request": _price(pricing_in.get("request", "0")),
            "image": _price(pricing_in.get("image", "0")),
        },
        "top_provider": {
            "context_length": int(top_in.get("context_length", context_length)),
            "max_completion_tokens": top_in.get("max_completion_tokens"),
            "is_moderated": bool(top_in.get("is_moderated", False)),
        },
        "per_request_limits": entry.get("per_request_limits"),
        "supported_parameters": list(entry.get("supported_parameters", SUPPORTED_PARAMETERS)),
    }
    for key, value in entry.items():
        out.setdefault(key, value)
    return out


def ollama_full_name(name: str) -> str:
    """``llama3.2`` -> ``llama3.2:latest``; names with a tag are unchanged."""
    last = name.rsplit("/", 1)[-1]
    return name if ":" in last else f"{name}:latest"


def ollama_details(name: str) -> dict[str, Any]:
    base = name.rsplit("/", 1)[-1].split(":")[0]
    tag = ollama_full_name(name).rsplit(":", 1)[-1]
    match = re.match(r"[A-Za-z]+", base)
    family = match.group(0).lower() if match else base
    size_match = re.fullmatch(r"(\d+(?:\.\d+)?)[bB]", tag) or re.search(
        r"(\d+(?:\.\d+)?)[bB]\b", base
    )
    parameter_size = f"{size_match.group(1)}B" if size_match else "1B"
    return {
        "parent_model": "",
        "format": "gguf",
        "family": family,
        "families": [family],
        "parameter_size": parameter_size,
        "quantization_level": "Q4_K_M",
    }


def ollama_tag_entry(name: str) -> dict[str, Any]:
    full = ollama_full_name(name)
    digest = hashlib.sha256(full.encode()).hexdigest()
    return {
        "name": full,
        "model": full,
        "modified_at": "2025-01-01T00:00:00.000000000Z",
        "size": 1_000_000_000 + int(digest[:6], 16),
        "digest": digest,
        "details": ollama_details(full),
    }
