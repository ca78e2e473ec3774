"""modplural: pluralistic alignment in health through multi-LLM collaboration.

``modplural.load()`` returns a ready method (``modplural.assembly.load``); importing the package loads no torch.
"""

from modplural.errors import ModPluralError
from modplural.version import __version__

__all__ = ["ModPluralError", "__version__", "load"]


def __getattr__(name: str):
    if name == "load":  # imported on first use: the stack's modules stay out of ``import modplural``
        from modplural.assembly import load

        return load
    raise AttributeError(f"module 'modplural' has no attribute {name!r}")
