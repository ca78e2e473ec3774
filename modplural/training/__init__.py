"""Training community LMs: corpus builders and the LoRA training recipe."""
