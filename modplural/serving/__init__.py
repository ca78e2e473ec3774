"""Helpers to serve communities on external inference engines."""
