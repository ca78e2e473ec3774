"""Adapters to other frameworks (LangChain; inspect_ai: VITAL as inspect tasks)."""
