"""The names (methods, engines) and defaults a user picks from on the command line and in configs, without importing
what they name: reading a finished run needs the names, not the generation stack."""

METHOD_NAMES = ("modular", "vanilla", "prompting", "moe", "ethos")  # methods/registry.py's METHODS, in its order
ENGINES = ("batched", "sequential")  # ours, and the original's one-prompt-at-a-time pattern (for measurement)
ETHOS_PERSPECTIVES = 4  # perspectives per question the ethos method asks the main LLM for, unless told otherwise
