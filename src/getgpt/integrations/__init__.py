"""Providers for other frameworks, each an optional extra, each imported only when used.

- :mod:`getgpt.integrations.g4f`: ``GetGpt``, a provider for today's gpt4free (``getgpt[g4f]``);
- :mod:`getgpt.integrations.litellm`: a LiteLLM custom provider, ``register()`` (``getgpt[litellm]``);
- :mod:`getgpt.integrations.langchain`: ``ChatGetGpt``, a LangChain chat model (``getgpt[langchain]``).

All of them speak the GetGpt protocol through the package's own :class:`~getgpt.Client` and
:class:`~getgpt.AsyncClient`, and find the server as the rest of the package does: an explicit
base URL, else ``GETGPT_BASE_URL``, else the seed's address.
"""
