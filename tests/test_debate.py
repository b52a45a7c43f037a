"""Debate: adaptive break, the extractive judge, the JSON judge parser, roles and baselines."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tomlab.backends.lm import GenerationConfig, ScriptedLM
from tomlab.backends.lockstep import run_lockstep
from tomlab.debate.protocol import (
    DebateConfig,
    chain_of_thought,
    debate,
    direct,
    majority,
    parse_judge,
    self_consistency,
    self_reflection,
)


def _debater(prompt: str) -> str:
    side = "affirmative" if "You are the affirmative side" in prompt else "negative"
    return f"I am {side}. Answer: {'10' if side == 'affirmative' else '5'}"


def _judge_accepting_at(round_no: int):
    def judge(prompt: str) -> str:
        if "reached its round limit" in prompt:
            return '{"answer": "7", "preference": "negative", "reason": "limit"}'
        last = max(int(r) for r in re.findall(r"\[Round (\d+),", prompt))
        if last >= round_no:
            return 'Sure! ```json\n{"preference": "negative", "answer": "5", "reason": "it is right"}\n```'
        return '{"preference": "none", "answer": "", "reason": "not yet"}'
    return judge


def _models(judge):
    return {"affirmative": ScriptedLM(_debater), "negative": ScriptedLM(_debater), "judge": ScriptedLM(judge)}


def test_adaptive_break_stops_at_the_first_round_the_judge_accepts():
    models = _models(_judge_accepting_at(2))
    (res,) = run_lockstep([debate("q1", "What is 2 + 3?", DebateConfig(rounds=3))], models)
    assert res.rounds_run == 2 and res.stopped_early and res.final_source == "discriminative"
    assert res.final_answer == "5" and res.preference == "negative"
    assert [j["mode"] for j in res.judge] == ["discriminative", "discriminative"]
    assert len(res.turns) == 4 and models["judge"].usage.completions == 2


def test_extractive_judge_runs_only_at_the_limit():
    models = _models(_judge_accepting_at(99))
    (res,) = run_lockstep([debate("q", "What is 2 + 3?", DebateConfig(rounds=3))], models)
    assert res.rounds_run == 3 and not res.stopped_early
    assert [j["mode"] for j in res.judge] == ["discriminative"] * 3 + ["extractive"]
    assert res.final_source == "extractive" and res.final_answer == "7"
    forced = _models(_judge_accepting_at(1))
    (res,) = run_lockstep([debate("q", "What is 2 + 3?", DebateConfig(rounds=3, adaptive_break=False))], forced)
    assert [j["mode"] for j in res.judge] == ["extractive"] and res.rounds_run == 3 and len(res.turns) == 6


def test_roles_tit_for_tat_and_heterogeneous_models():
    seen: dict[str, list[str]] = {"affirmative": [], "negative": [], "judge": []}

    def record(role):
        def f(prompt):
            seen[role].append(prompt)
            return _debater(prompt) if role != "judge" else '{"preference": "none"}'
        return f

    models = {r: ScriptedLM(record(r), model_id=f"model-{r}") for r in seen}
    cfg = DebateConfig(n_debaters=3, rounds=2, tit_for_tat="always")
    (res,) = run_lockstep([debate("q", "Q?", cfg)], models)
    assert len(seen["affirmative"]) == 2 and len(seen["negative"]) == 4 and len(seen["judge"]) == 3
    assert all("You are the affirmative side" in p for p in seen["affirmative"])
    assert all("must disagree" in p for p in seen["negative"])
    assert [t["speaker"] for t in res.turns[:3]] == ["affirmative", "negative", "negative 2"]
    assert res.round_answers() == [[10.0, 5.0, 5.0], [10.0, 5.0, 5.0]]
    # later speakers see the earlier turns of the same round
    assert "[Round 1, affirmative]" in seen["negative"][0]
    with pytest.raises(ValueError, match="n_debaters"):
        DebateConfig(n_debaters=1)
    with pytest.raises(ValueError, match="tit_for_tat"):
        DebateConfig(tit_for_tat="sometimes")  # type: ignore[arg-type]


def test_unparseable_judge_output_is_recorded_not_fatal():
    models = _models(lambda p: "I think the negative side wins, clearly.")
    (res,) = run_lockstep([debate("q", "Q?", DebateConfig(rounds=2))], models)
    assert all(not j["parsed"] and "no JSON" in j["error"] for j in res.judge)
    assert res.final_source == "none" and res.final_answer == "" and res.rounds_run == 2


def test_parse_judge_on_malformed_and_adversarial_output():
    assert parse_judge('{"preference": "affirmative", "answer": 5}').data == {"preference": "affirmative", "answer": 5}
    r = parse_judge('Here you go:\n```json\n{"Preference": "negative", "answer": "12"}\n```\nThanks!')
    assert r.ok and r.data["preference"] == "negative" and r.data["answer"] == "12"
    r = parse_judge("{'preference': 'negative', 'answer': '3'}")  # Python-style quotes
    assert r.ok and r.data == {"preference": "negative", "answer": "3"} and "key: value" in r.error
    r = parse_judge('{"answer": "a } brace", "preference": "none"} trailing {')
    assert r.ok and r.data["answer"] == "a } brace"
    r = parse_judge('{"answer": __import__("os").system("echo pwned")}')
    assert isinstance(r.data.get("answer", ""), str)  # read as text, never run
    assert not parse_judge("no braces at all").ok
    assert not parse_judge("").ok
    nested = "{" * 5000 + "}" * 5000
    parse_judge(nested)  # deep nesting neither crashes nor recurses without bound
    assert parse_judge('[1, 2, {"answer": "9"}]').data["answer"] == "9"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_parse_judge_never_raises(text):
    r = parse_judge(text)
    assert isinstance(r.data, dict) and (r.ok or r.error)


def test_baselines():
    gen = GenerationConfig(max_new_tokens=16)
    lm = ScriptedLM(lambda p: "Answer: 4")
    out = run_lockstep([direct("a", "2+2?", gen), chain_of_thought("b", "2+2?", gen)], lm)
    assert [o.method for o in out] == ["direct", "cot"] and all(o.final_answer == "Answer: 4" for o in out)
    assert "step by step" not in lm.prompts_seen[0] and "step by step" in lm.prompts_seen[1]
    votes = iter(["Answer: 3", "Answer: 4", "so 4", "Answer: 3", "Answer: 4"])
    sc_lm = ScriptedLM(lambda p: next(votes))
    (sc,) = run_lockstep([self_consistency("c", "2+2?", gen, k=5)], sc_lm)
    assert sc.final_answer == "Answer: 4" and len(sc.steps) == 5
    assert sc_lm.usage.calls == 5  # different seeds are different settings: one call each
    assert majority(["x", "y"]) == "x" and majority(["3", "4", "3"]) == "Answer: 3"
    replies = iter(["Answer: 5", "It should be 4.", "Answer: 4", "Looks right.", "Answer: 4"])
    sr_lm = ScriptedLM(lambda p: next(replies))
    (sr,) = run_lockstep([self_reflection("d", "2+2?", gen, iterations=2)], sr_lm)
    assert [s["kind"] for s in sr.steps] == ["answer", "feedback", "revision", "feedback", "revision"]
    assert sr.final_answer == "Answer: 4" and sr.prompt_tokens > 0


def test_lockstep_batches_questions_together():
    lm = ScriptedLM(lambda p: "Answer: 1")
    gen = GenerationConfig(max_new_tokens=4)
    run_lockstep([chain_of_thought(str(i), f"Q{i}?", gen) for i in range(6)], lm)
    assert lm.usage.calls == 1 and lm.usage.completions == 6
    with pytest.raises(KeyError, match="judge"):
        run_lockstep([debate("q", "Q?", DebateConfig())], {"affirmative": lm, "negative": lm})


def _translation_rows(source_language: str = "Chinese", target_language: str = "English"):
    import pandas as pd

    return pd.DataFrame([{"id": "mt-0", "source": "我们打车去机场吧。", "reference": "Let's take a taxi to the airport.",
                          "wrong_reference": "Let's hit a car to the airport.", "source_language": source_language,
                          "target_language": target_language}])


@pytest.mark.parametrize("method", ["direct", "cot", "self_consistency", "self_reflection", "debate", "debate_forced"])
def test_a_translation_items_language_pair_reaches_every_prompt(method):
    from tomlab.debate.run import conversations

    lm = ScriptedLM(lambda p: '{"preference": "affirmative", "answer": "Translation: Let\'s take a taxi."}'
                    if "You are the judge" in p else "Translation: Let's take a taxi to the airport.")
    settings = {"rounds": 2, "sc_samples": 2}
    run_lockstep(conversations("translation", method, _translation_rows(), settings),
                 {"default": lm, "affirmative": lm, "negative": lm, "judge": lm} if method.startswith("debate") else lm)
    assert lm.prompts_seen
    for prompt in lm.prompts_seen:
        assert "Chinese" in prompt and "English" in prompt and "French" not in prompt, prompt
    speakers = [p for p in lm.prompts_seen if "You are the judge" not in p]
    assert speakers and all("Translate this Chinese sentence into English" in p for p in lm.prompts_seen)
    assert all("your English translation" in p for p in speakers[:1] + speakers[-1:])


def test_each_item_keeps_its_own_pair_and_an_item_without_one_is_an_error():
    import pandas as pd

    from tomlab.debate.run import conversations

    rows = pd.concat([_translation_rows(), _translation_rows("German", "Italian").assign(id="mt-1")], ignore_index=True)
    lm = ScriptedLM(lambda p: "Translation: x")
    run_lockstep(conversations("translation", "cot", rows, {}), lm)
    assert "Translate this Chinese sentence into English" in lm.prompts_seen[0]
    assert "Translate this German sentence into Italian" in lm.prompts_seen[1]
    assert "your Italian translation" in lm.prompts_seen[1]
    with pytest.raises(ValueError, match="'mt-0' has no source_language/target_language"):
        conversations("translation", "cot", rows.drop(columns=["source_language", "target_language"]).head(1), {})
