"""The unit layer builds no model and starts no ``python -m modplural``: a test that needs either belongs in
tests/integration (a real model, in this process) or tests/cli (the command line in a fresh interpreter)."""

from __future__ import annotations

import subprocess

import pytest


@pytest.fixture(autouse=True)
def _no_model_and_no_cli_process(monkeypatch):
    from transformers import PreTrainedModel

    def no_model(self, *args, **kwargs):
        raise AssertionError(f"a unit test built a model ({type(self).__name__}): move it to tests/integration")

    popen = subprocess.Popen.__init__

    def no_cli_process(self, args, *rest, **kwargs):
        if not isinstance(args, (str, bytes)) and "modplural" in [str(a) for a in list(args)[1:3]]:
            raise AssertionError(f"a unit test started {' '.join(map(str, args[:4]))}: call tests.helpers.run_cli, or move it to tests/cli")
        return popen(self, args, *rest, **kwargs)

    monkeypatch.setattr(PreTrainedModel, "__init__", no_model)
    monkeypatch.setattr(subprocess.Popen, "__init__", no_cli_process)
