"""Providers with the module face of gpt4free's freegpt-webui era."""

from . import GetGpt

__all__ = ["GetGpt"]
