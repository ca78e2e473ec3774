"""Backends: the only code that touches a model."""

from modplural.backends.base import Backend, Decoding, GenerateRequest, OptionRequest, OptionResult

__all__ = ["Backend", "Decoding", "GenerateRequest", "OptionRequest", "OptionResult"]
