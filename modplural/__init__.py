"""modplural: pluralistic alignment in health through multi-LLM collaboration."""

from modplural.errors import ModPluralError

__version__ = "0.1.0"
__all__ = ["ModPluralError", "__version__"]
