"""Training community LMs: corpus builders, their token blocks, the LoRA training recipe and its config (evaluating
and publishing adapters is ``modplural.adapters``)."""
