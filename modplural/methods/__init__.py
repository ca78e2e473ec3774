"""Methods: Modular Pluralism, ethos and the baselines, over any backend. Importing this package loads no torch."""

from modplural.methods.base import Method
from modplural.methods.baselines import MixtureOfExperts, Prompting, Vanilla
from modplural.methods.ethos import Ethos
from modplural.methods.modular import ModularPluralism
from modplural.methods.registry import METHODS, NEEDS_POOL, USES_POOL, build_method, check_method

__all__ = ["METHODS", "NEEDS_POOL", "USES_POOL", "Ethos", "Method", "MixtureOfExperts", "ModularPluralism", "Prompting", "Vanilla", "build_method", "check_method"]
