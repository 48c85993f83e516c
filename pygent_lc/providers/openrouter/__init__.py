"""OpenRouter: the chat model (``model``), its request options (``options``) and its
model catalog, health check and model checks (``catalog``)."""
