"""Trained community adapters, evaluated and published: perplexity distinctness, stances on contested health questions
and their report, and model cards. Training itself (``modplural.training``) knows nothing of these."""
