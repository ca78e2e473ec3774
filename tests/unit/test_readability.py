"""Readable answers on small models (protocol modplural): repetition control in both engines, messages trimmed to sentences.

(No model: the parts that need one are in tests/integration/test_readability.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from modplural.backends import Decoding, GenerateRequest
from modplural.backends.openai_compat import OpenAIBackend
from modplural.errors import ModPluralError
from modplural.protocol import resolve_protocol
from modplural.text import last_complete_sentence
from tests.helpers import run_cli


def test_decoding_checks_repetition_settings():
    with pytest.raises(ModPluralError, match="no_repeat_ngram must be 0 \\(off\\) or at least 2, got 1"):
        Decoding(no_repeat_ngram=1)
    with pytest.raises(ModPluralError, match="frequency_penalty must be a finite number"):
        Decoding(frequency_penalty=float("nan"))


def test_a_server_refuses_ngram_bans_and_gets_frequency_penalty():
    server = OpenAIBackend("http://127.0.0.1:9/v1", "m", {}, style="model")  # no server is asked anything
    with pytest.raises(ModPluralError, match="cannot ban repeated n-grams"):
        server.generate([GenerateRequest(prompt="Hi", decoding=Decoding(no_repeat_ngram=4))])
    _, body = server._generate_body(GenerateRequest(prompt="Hi", decoding=Decoding(frequency_penalty=0.5)))
    assert body["frequency_penalty"] == 0.5


@pytest.mark.parametrize(("text", "trimmed"), [
    ("Vaccines are safe. In 2021", "Vaccines are safe."),
    ("Dr. Smith agrees. But the", "Dr. Smith agrees."),
    ("It is \"settled.\" And then", "It is \"settled.\""),
    ("No", "No"),
    ("One whole sentence without an end", "One whole sentence without an end"),
    ("Ends well!", "Ends well!"),
    ("Vaccines work.  They are safe and  effective for", "Vaccines work."),  # the splitter collapses runs of spaces
    ("A claim. Then a list:\n- item one\n- item  two", "A claim. Then a list:\n- item one"),
])
def test_messages_are_trimmed_to_their_last_complete_sentence(text, trimmed):
    assert last_complete_sentence(text) == trimmed


def test_protocols_declare_the_switches():
    assert (resolve_protocol("modplural").repetition, resolve_protocol("modplural").message_trim) == ("ngram4", "sentence")
    assert (resolve_protocol("original").repetition, resolve_protocol("original").message_trim) == ("none", "none")


def test_one_switch_is_flipped_from_the_command_line():
    """With a server as main LLM, `--switch repetition=none` (no server bans n-grams); bad switches are one-line errors."""
    from modplural.cli.options import protocol_spec
    from tests.helpers import assert_one_line_error

    flipped = resolve_protocol(protocol_spec("modplural", ["repetition=none", "main_tokens=12"]))
    assert (flipped.repetition, flipped.main_tokens, flipped.message_trim) == ("none", 12, "sentence")
    assert_one_line_error(run_cli("ask", "Is it safe?", "--switch", "repetition"), "--switch needs NAME=VALUE, got 'repetition'")
    assert_one_line_error(run_cli("ask", "Is it safe?", "--switch", "repetition=sometimes"), "protocol switch repetition must be one of none, ngram4")


def test_answer_keys_hold_the_numerics_of_the_model_behind_a_router():
    from types import SimpleNamespace

    from modplural.backends.caching import _numerics
    from modplural.backends.routed import RoutedBackend

    local = SimpleNamespace(loaded=SimpleNamespace(device="cpu", dtype="bfloat16"))
    server = SimpleNamespace()
    router = RoutedBackend({"patients": (server, "patients"), "clinicians": (local, "clinicians")}, local)
    assert [_numerics(router, a) for a in (None, "clinicians", "patients")] == ["|cpu|bfloat16", "|cpu|bfloat16", ""]


def test_a_run_does_not_resume_under_another_protocol(tmp_path):
    """A run directory filled before the modplural protocol gained a switch is not continued under the new values."""
    import dataclasses
    import os

    from modplural.runs.config import ExperimentConfig
    from modplural.runs.directory import RunDir
    from modplural.runs.generation import Experiment
    from tests.helpers import SHARED_DATA

    config = ExperimentConfig(name="r", tasks=("vital_distributional_moralchoice",), methods=("vanilla",), limit=1)
    out = tmp_path / "run"
    experiment = Experiment(config, Path(os.environ.get("MODPLURAL_DATA", SHARED_DATA)), out)
    before = dataclasses.replace(experiment.protocol, repetition="none", message_trim="none")
    out.mkdir()
    RunDir(out).write_json("manifest.json", {"config": config.as_dict(), "protocol": before.as_dict()})
    with pytest.raises(ModPluralError, match=r"holds a run under another protocol \(repetition 'none' -> 'ngram4', message_trim 'none' -> 'sentence'"):
        experiment.run(progress=False)

