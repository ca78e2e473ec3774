"""The names (methods, engines) and defaults a user picks from on the command line and in configs, without importing
what they name: reading a finished run needs the names, not the generation stack."""

from modplural.errors import ModPluralError

METHOD_NAMES = ("modular", "vanilla", "prompting", "moe", "ethos")  # methods/registry.py's METHODS, in its order
ENGINES = ("batched", "sequential")  # ours, and the original's one-prompt-at-a-time pattern (for measurement)
ETHOS_PERSPECTIVES = 4  # perspectives per question the ethos method asks the main LLM for, unless told otherwise
DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("auto", "float32", "bfloat16", "float16")
WEIGHT_FORMATS = ("auto", "float", "int8")  # how weights are stored: as ``dtype`` says, or int8 (``backends.int8_weights``, CPU only); auto: int8 on a CPU in float32 with fast int8 products


def check_engine(engine: str) -> str:
    """``engine`` if it is a local engine's name, else a one-line error."""
    if engine not in ENGINES:
        raise ModPluralError(f"unknown engine {engine!r}: choose {' or '.join(ENGINES)}")
    return engine
