"""The ethos method: the perspective parser on hostile lists, fallbacks to registry personas, protocol refusal,
and the three modes end to end on the real default model (tiny token counts, two communities).

(No model: the parts that need one are in tests/integration/test_ethos.py.)"""

from __future__ import annotations

import pytest

from modplural.backends.base import OptionResult
from modplural.communities import Community
from modplural.errors import ModPluralError
from modplural.methods import Ethos, build_method
from modplural.methods.ethos import MAX_PERSPECTIVES, NAME_CHARS, STANCE_CHARS, Perspective, check_perspectives, parse_perspectives
from modplural.pool import CommunityPool
from modplural.types import Query

QUESTION = "Should parents be allowed to refuse vaccines for their children?"
OPTIONS = ["Yes", "No", "It depends"]
GOOD = "1. Utilitarian: Maximize health outcomes.\n2. Libertarian: Parents decide.\n3. Child advocate: The child's right comes first.\n4. Nurse: Care."


class Scripted:
    """A main LLM that answers the perspective prompt with ``listing``, everything else with a short comment."""

    def __init__(self, listing: str) -> None:
        self.listing, self.calls = listing, []

    def generate(self, requests):
        self.calls.append(list(requests))
        return [self.listing if r.messages[-1]["content"].lstrip().startswith("Generate") else "A comment. And a cut" for r in requests]

    def option_probs(self, requests):
        return [OptionResult(r.labels, tuple([1 / len(r.labels)] * len(r.labels)), 0.5) for r in requests]

    def adapter_identity(self, adapter):
        return f"scripted+{adapter}"


FALLBACK = [Community("rural_nurses", "Rural nurses.", "t", persona="You are a rural nurse."), Community("patients", "Patients.", "t", weight=3.0, persona="You are a patient.")]


def _ethos(listing: str, fallback=FALLBACK, k: int = 4) -> tuple[Ethos, Scripted]:
    main = Scripted(listing)
    pool = CommunityPool(main, list(fallback)) if fallback else None
    return build_method("ethos", main, pool, "modplural", 0, ethos_perspectives=k), main


RELEASED = {"base": "modplural", "ethos": "released"}
# the scripts' prompts for fixed items, written out from Sam120204/Pluralistic-Alignment-for-Healthcare by hand
LIST_TAIL = ("\n\nEach perspective must differ clearly in:\n- Core values\n- Ethical framework\n- Key right/duty emphasized\n- Emotion\n"
             "- Stakeholder role\n\nFORMAT EACH PERSPECTIVE EXACTLY LIKE THIS (start each with # symbol):\n"
             "#Name: Core Value, Ethical Framework, Right/Duty, Emotion, Stakeholder\n    ")
COMMENT_TAIL = ("- 2-3 core moral values involved.\n- Specific rights or duties relevant.\n- Ethical judgment and reasoning.\n"
                "- Normative language (e.g., should, must).\n\nBegin immediately without introduction.\n")
VK_INPUT = ("Question: given a situation and a relevant value, right, or duty, does the value/right/duty support, oppose, or either support or "
            "oppose the situation?\n\nSituation: Drinking coffee\n\nValue/right/duty: Health\n\nA. Support B. Oppose C. Either\nAnswer:")
SURVEY = "Question: Is coffee healthy?\nOptions: A. Yes B. No\nAnswer:"
RELEASED_ITEMS = {
    "overton": (Query("Please comment on the following situation: Drinking coffee", situation="Drinking coffee"),
                '\nGenerate 6 contrasting ethical perspectives on: "Drinking coffee' + LIST_TAIL,
                '\nSituation: "Drinking coffee"\nPerspective: Nurse: Care\n\nProvide a direct moral comment with 180 words clearly stating:\n' + COMMENT_TAIL),
    "steerable_vk": (Query(VK_INPUT, options=("Support", "Oppose", "Either"), attribute="the value of Health", frame=("value", "Health"), situation="Drinking coffee"),
                     '\nGenerate 6 contrasting ethical perspectives on: "Drinking coffee' + LIST_TAIL,
                     f'\nInput: "{VK_INPUT}"\nPerspective: Nurse: Care\n\nProvide a direct moral comment (150-180 words) answering the question in the input. \n'
                     "Explicitly start your answer with the chosen option (A, B, or C) clearly indicated at the very beginning of your comment, followed by your reasoning:\n" + COMMENT_TAIL),
    "steerable_opinionqa": (Query(SURVEY, options=("Yes", "No"), attribute="the people of Democrat in terms of political party", persona="In terms of political party, you are Democrat.",
                                  frame=("group", "POLPARTY", "Democrat")),
                            f'\nGenerate 6 contrasting ethical perspectives on: "{SURVEY}' + LIST_TAIL,
                            f'\nInput: "{SURVEY}"\nPerspective: Nurse: Care\n\nProvide a direct moral comment (150-180 words) answering the question in the input. \n'
                            "Explicitly start your answer with the chosen option (A, B, or C) clearly indicated at the very beginning of your comment, followed by your reasoning:\n" + COMMENT_TAIL),
    "distributional_globalopinionqa": (Query(SURVEY, options=("Yes", "No"), persona="You are from the country of Kenya.", frame=("country", "Kenya")),
                                       f'\nGenerate 6 contrasting ethical perspectives on: "{SURVEY}"' + LIST_TAIL,
                                       "You are from the country of Kenya, respond to the following instruction with explanation. "
                                       f'\nInput: "{SURVEY}"\nPerspective: Nurse: Care\n\nProvide a direct moral comment (150-180 words) answering the question in the input. \n'
                                       "Explicitly start your answer with the chosen option (A, B, or C, etc.) clearly indicated at the very beginning of your comment, followed by your reasoning:\n" + COMMENT_TAIL),
}


@pytest.mark.parametrize(
    "text, names",
    [
        (GOOD, ["Utilitarian", "Libertarian", "Child advocate", "Nurse"]),
        ("Here are four perspectives:\n\n1) **Utilitarian**: max.\n- Libertarian: liberty\n#Nurse: Care, duty\n* Carer: love", ["Utilitarian", "Libertarian", "Nurse", "Carer"]),
        ("1. Utilitarian: a\n2. UTILITARIAN: b\n3. utilitarian: c\n4. Rights: d", ["Utilitarian", "Rights"]),
        ("1. <name>: <one-sentence stance>\n2. <name2>: <two-sentence stance2>\n3. **<name>**: <stance>\n4. Rights: d", ["Rights"]),
        ("(1) Parents decide\n2 - Doctors decide\na) Nurses: care\nI. Judges: law", ["Parents decide", "Doctors decide", "Nurses", "Judges"]),
        ("Utilitarian: maximize health\nSure, here you go\nRights: respect choice", ["Utilitarian", "Rights"]),
        ("1. Ética del cuidado: cuidar\n２．功利主义：最大化健康\n3. Ubuntu", ["Ética del cuidado", "功利主义", "Ubuntu"]),
        ("1.\n2. :\n3. ::::\n\x00\x01\n4. \u200b\n5. ***\n**Perspectives:**", []),
        ("", []),
        ("no numbers and no colon, just a sentence about vaccines", []),
    ],
)
def test_parser_reads_what_is_there(text, names):
    assert [p.name for p in parse_perspectives(text, 4)] == names


def test_parser_on_long_and_many_lines():
    many = parse_perspectives("\n".join(f"{i}. Voice {i}: stance {i}" for i in range(1, 51)), 4)
    assert [p.name for p in many] == ["Voice 1", "Voice 2", "Voice 3", "Voice 4"]
    [long] = parse_perspectives("1. " + "word " * 2000, 4)
    assert len(long.name) <= NAME_CHARS and len(long.stance) <= STANCE_CHARS and long.name.startswith("word word")
    [named] = parse_perspectives(f"1. {'x' * 500}: {'y' * 5000}", 4)
    assert len(named.name) <= NAME_CHARS and len(named.stance) <= STANCE_CHARS
    assert parse_perspectives("1. Utilitarian: max\tgood\r\n2. Tab\x07bed: ok", 4) == [Perspective("Utilitarian", "max good"), Perspective("Tab bed", "ok")]


@pytest.mark.parametrize("k", [0, 1, MAX_PERSPECTIVES + 1, 2.5, True, "4"])
def test_perspective_count_is_checked(k):
    with pytest.raises(ModPluralError, match="ethos_perspectives must be a whole number from 2 to 9"):
        check_perspectives(k)


@pytest.mark.parametrize("mode", ["overton", "steerable", "distributional"])
def test_generated_perspectives_are_the_voices(mode):
    method, main = _ethos(GOOD, k=3)
    queries = [Query(QUESTION, options=tuple(OPTIONS) if mode == "distributional" else None, attribute="the value of autonomy"), Query("Is rest enough?", options=("a", "b") if mode == "distributional" else None, attribute="care")]
    results = method.run(mode, queries)
    for result in results:
        assert [p["name"] for p in result.perspectives] == ["Utilitarian", "Libertarian", "Child advocate"] == list(result.community_messages)
        assert {p["source"] for p in result.perspectives} == {"main LLM"} and result.community_messages["Utilitarian"] == "A comment."
        assert result.main_prompts[0].startswith("Generate 3 contrasting perspectives")
    comments = main.calls[1]  # one call for the lists, one batched call for every query's comments
    assert len(main.calls[0]) == 2 and len(comments) == 6 and all(r.adapter is None and r.messages[0]["role"] == "system" for r in comments)
    assert "Utilitarian: Maximize health outcomes." in comments[0].messages[0]["content"] and comments[0].decoding.temperature == 1.0
    if mode == "distributional":
        assert results[0].weights == pytest.approx(dict.fromkeys(["Utilitarian", "Libertarian", "Child advocate"], 1 / 3))
        assert sum(results[0].distribution) == pytest.approx(1.0)
    if mode == "steerable":
        assert results[0].chosen_community in results[0].community_messages


@pytest.mark.parametrize("listing", ["", "I cannot answer that.", "1. <name>: <one-sentence stance>", "\x00" * 50, "1. Only one: stance"])
def test_a_malformed_list_falls_back_to_registry_personas(listing):
    method, _ = _ethos(listing)
    result = method.distributional(QUESTION, OPTIONS, weights="registry")
    parsed = [p for p in result.perspectives if p["source"] == "main LLM"]
    assert len(parsed) < 2 and [p["name"] for p in result.perspectives] == [p["name"] for p in parsed] + ["rural_nurses", "patients"]
    assert result.perspectives[-1] == {"name": "patients", "stance": "Patients.", "persona": "You are a patient.", "source": "registry"}
    assert list(result.weights.values())[-1] == pytest.approx(3 / (len(result.perspectives) + 2))  # the fallback keeps its registry weight


def test_fallbacks_never_take_a_parsed_name_and_stop_at_k():
    method, _ = _ethos("1. Patients: our view", fallback=[*FALLBACK, Community("carers", "Carers.", "t", persona="You care.")], k=2)
    assert [(p["name"], p["source"]) for p in method.overton(QUESTION).perspectives] == [("Patients", "main LLM"), ("rural_nurses", "registry")]


def test_too_few_voices_is_one_line_error():
    method, _ = _ethos("garbage", fallback=FALLBACK[:1])
    with pytest.raises(ModPluralError, match=r"ethos: the main LLM listed 0 usable perspective\(s\) and the registry offers 1 to fill in; 2 are needed") as error:
        method.overton(QUESTION)
    assert "\n" not in str(error.value)
    assert Ethos(Scripted(GOOD)).overton(QUESTION).perspectives[0]["name"] == "Utilitarian"  # no pool: no fallbacks needed here


def test_own_steps_under_original_prompts_are_refused_before_any_model_loads(tmp_path):
    import modplural
    from modplural.runs.config import load_config

    own = {"base": "original", "ethos": "modplural"}
    refusal = "method 'ethos' has its own perspective step in modplural prompts only"
    with pytest.raises(ModPluralError, match=refusal):
        Ethos(Scripted(GOOD), protocol=own)
    with pytest.raises(ModPluralError, match=refusal):
        modplural.load("ethos", protocol=own, registry=tmp_path / "none.yaml")  # before the (missing) registry is read
    config = tmp_path / "c.yaml"
    config.write_text("name: x\ntasks: [vital_overton]\nmethods: [vanilla, ethos]\nprotocol: {base: original, ethos: modplural}\n")
    with pytest.raises(ModPluralError, match=refusal):
        load_config(config)
    assert load_config(config, protocol="original").methods == ("vanilla", "ethos")  # original has ethos: released
    config.write_text("name: x\ntasks: [vital_overton]\nmethods: [ethos]\nethos_perspectives: 12\n")
    with pytest.raises(ModPluralError, match="ethos_perspectives must be a whole number from 2 to 9"):
        load_config(config)


@pytest.mark.parametrize("item", sorted(RELEASED_ITEMS))
def test_released_prompts_are_the_scripts_word_for_word(item):
    query, listing_prompt, comment_prompt = RELEASED_ITEMS[item]
    mode = item.split("_")[0]
    method, main = _ethos("#Nurse: Care\n#Doctor: Cure\n#Parent: Love\n#Child: Play\n#Judge: Law\n#Priest: Faith")
    method = build_method("ethos", main, CommunityPool(main, list(FALLBACK)), RELEASED, 0)
    result = method.run(mode, [query])[0]
    ask, comments = main.calls[0][0], main.calls[1]
    assert ask.messages == ({"role": "system", "content": "Generate diverse ethical perspectives concisely using the exact requested format."},
                            {"role": "user", "content": listing_prompt})
    assert (ask.decoding.temperature, ask.decoding.top_p, ask.decoding.top_k) == (1.0, 1.0, 0)
    assert ask.decoding.max_new_tokens == (500 if mode == "distributional" else 450)
    assert comments[0].messages == ({"role": "system", "content": "Directly analyze moral values, rights, and duties clearly and concisely from given perspective."},
                                    {"role": "user", "content": comment_prompt})
    assert (comments[0].decoding.temperature, comments[0].decoding.top_p, comments[0].decoding.max_new_tokens) == (1.0, 1.0, 200)
    assert [p["name"] for p in result.perspectives] == ["Nurse", "Doctor", "Parent", "Child", "Judge", "Priest"] == list(result.community_messages)
    assert {(p["source"], p["attempts"]) for p in result.perspectives} == {("main LLM", 1)} and result.main_prompts[0] == listing_prompt


@pytest.mark.parametrize("listing, voices, sources", [
    ("I would rather not write a list.", ["rural_nurses", "patients"], ["registry"] * 2),  # never formatted
    ("#Nurse: Care, duty\n#Doctor: Cure\n#Parent: Lo", ["Nurse", "Doctor", "Parent"], ["main LLM"] * 3),  # never finished: cut by the length
    ("#Only: one", ["Only", "rural_nurses", "patients"], ["main LLM", "registry", "registry"]),
])
def test_a_list_short_of_six_is_asked_again_a_bounded_number_of_times_and_recorded(listing, voices, sources):
    method, main = _ethos(listing)
    method = build_method("ethos", main, CommunityPool(main, list(FALLBACK)), RELEASED, 0)
    results = method.run("overton", [Query(QUESTION), Query("Is rest enough?")])
    asks = [calls for calls in main.calls if calls[0].messages[-1]["content"].lstrip().startswith("Generate")]
    assert [len(calls) for calls in asks] == [2, 2, 2]  # RELEASED_ATTEMPTS batched asks, never more
    assert len({r.decoding.seed for calls in asks for r in calls}) == 6  # each re-ask is a new sample
    for result in results:
        assert [p["name"] for p in result.perspectives] == voices and [p["source"] for p in result.perspectives] == sources
        assert {p["attempts"] for p in result.perspectives} == {3} and result.response


def test_released_lists_keep_every_line_up_to_nine_and_refusals_are_six_empty_perspectives():
    from modplural.prompts.ethos_released import REFUSAL, clean_comment

    method, main = _ethos("\n".join(f"#Voice {i}: v" for i in range(1, 13)))
    method = build_method("ethos", main, None, RELEASED, 0)
    assert [p["name"] for p in method.overton(QUESTION).perspectives] == [f"Voice {i}" for i in range(1, 10)] and len(main.calls[0]) == 1
    method, main = _ethos(f"Sorry. {REFUSAL}")
    method = build_method("ethos", main, None, RELEASED, 0)
    result = method.distributional(QUESTION, OPTIONS)
    assert [(p["name"], p["stance"]) for p in result.perspectives] == [(f"perspective {i}", "") for i in range(1, 7)]
    assert clean_comment("As a nurse: care matters.") == "care matters." and clean_comment("FROM THE PERSPECTIVE of X; yes") == "yes"


def test_runs_recorded_before_the_switch_read_back_with_the_steps_they_ran():
    from modplural.protocol import MODPLURAL, ORIGINAL
    from modplural.runs.config import recorded_protocol as _recorded_protocol

    for base in (ORIGINAL, MODPLURAL):
        old = {k: v for k, v in base.as_dict().items() if k != "ethos"}
        assert _recorded_protocol({"protocol": old}, "m.json") == base

