"""Protocol cards: one row per point of difference, computed from the run's config and model."""

from __future__ import annotations

import copy

import pytest
from snakemake.utils import validate

from tomlab.report.protocol import (
    CARD_COLUMNS,
    TEAM_CARD_COLUMNS,
    debate_card,
    probing_card,
    steering_card,
    team_card,
)
from tomlab.schema import SCHEMA_PATH


def _setup(config: dict, model: dict | None = None, data: dict | None = None) -> dict:
    config = copy.deepcopy(config)
    validate(config, schema=str(SCHEMA_PATH), set_default=True)
    return {"config": config, "model": model or {"name": config["model"]["name"], "dtype": "float32"},
            "data": data or {"source": config["stories"]["source"], "n_stories": 200, "raw_file": "bigtom.csv"}}


PAPER = {"model": {"name": "mistralai/Mistral-7B-Instruct-v0.2"}, "stories": {"source": "bigtom"},
         "bigtom_csv": "bigtom.csv"}


def _status(card, aspect: str) -> str:
    rows = card[card["aspect"] == aspect]
    assert len(rows) == 1, f"{aspect!r} not in the card: {list(card['aspect'])}"
    return rows["status"].iloc[0]


@pytest.mark.parametrize("build", [probing_card, steering_card, team_card, debate_card])
def test_cards_have_the_columns_and_known_statuses(build):
    card = build(_setup(PAPER))
    assert tuple(card.columns) == (TEAM_CARD_COLUMNS if build is team_card else CARD_COLUMNS) and len(card) >= 5
    assert set(card["status"]) <= {"same", "differs", "addition"}
    assert card["aspect"].is_unique


def test_defaults_follow_the_original_where_a_switch_exists():
    setup = _setup(PAPER)
    probing, steering = probing_card(setup), steering_card(setup)
    for aspect in ("model", "precision", "stories", "statements", "train / validation split",
                   "stored activation precision", "activation site"):
        assert _status(probing, aspect) == "same", aspect
    for aspect in ("prompt", "chat template", "option order", "decoding", "answer parser (headline)",
                   "heads and strength", "directions", "intervention site"):
        assert _status(steering, aspect) == "same", aspect
    assert _status(steering, "conditions") == "addition"


def test_switches_show_up_as_differences():
    config = copy.deepcopy(PAPER)
    config["evaluation"] = {"protocol": "tomlab", "max_new_tokens": 32}
    config["split"] = {"mode": "by_story"}
    config["activations"] = {"dtype": "float16", "sites": ["attn_out", "head_z"]}
    config["steering"] = {"site": "head_z"}
    setup = _setup(config, model={"name": "embedded:smollm2-135m-instruct", "dtype": "bfloat16"},
                   data={"source": "generated", "n_stories": 40})
    steering = steering_card(setup)
    for aspect in ("model", "precision", "stories", "prompt", "chat template", "option order", "decoding",
                   "answer parser (headline)", "intervention site"):
        assert _status(steering, aspect) == "differs", aspect
    assert "bfloat16" in steering.loc[steering["aspect"] == "precision", "this run"].iloc[0]
    probing = probing_card(setup)
    assert _status(probing, "train / validation split") == "differs"
    assert _status(probing, "stored activation precision") == "differs"
    assert _status(probing, "other capture sites") == "addition"
    assert _status(steering, "other intervention sites") == "addition"
    # an explicit chat-template switch overrides the protocol's choice
    config["evaluation"]["chat_template"] = False
    assert _status(steering_card(_setup(config)), "chat template") == "same"


def test_cards_name_a_served_model():
    config = copy.deepcopy(PAPER)
    spec = {"base_url": "http://127.0.0.1:8000/v1", "model": "meta-llama/Llama-3.1-8B-Instruct", "api_key_env": None}
    config["team"] = {"model": spec}
    config["debate"] = {"models": {"default": spec}}
    setup = _setup(config)
    for card in (team_card(setup), debate_card(setup)):
        assert card.loc[card["aspect"] == "model", "this run"].iloc[0].startswith("meta-llama/Llama-3.1-8B-Instruct (served")


def test_team_card_follows_the_rules_variant():
    card = team_card(_setup(PAPER))
    for aspect in ("rules variant", "bomb phases", "start", "a cut's result", "moving to one's own room",
                   "reading a reply", "episode end", "ToM questions"):
        assert _status(card, aspect) == "same", aspect
    config = copy.deepcopy(PAPER)
    config["team"] = {"rules": "assisted", "deadlock_rounds": None, "stall_rounds": 5}
    assisted = team_card(_setup(config))
    for aspect in ("rules variant", "bomb phases", "start", "observation", "a cut's result", "moving to one's own room",
                   "reading a reply", "episode end", "ToM questions"):
        assert _status(assisted, aspect) == "differs", aspect
    config["team"] = {"llm": {"parser": "lenient"}}
    assert _status(team_card(_setup(config)), "reading a reply") == "differs"


def test_debate_scale_note_says_when_the_run_is_below_paper_scale():
    from tomlab.report.debate import scale_note

    setup = _setup({**PAPER, "debate": {"arithmetic": {"n": 50}}})
    note = scale_note(setup)
    assert note.startswith("**Below paper scale.**") and "50 generated arithmetic instances" in note
    assert "Common MT" in note and "debate.translation.file" in note
    both = _setup({**PAPER, "debate": {"arithmetic": {"file": "CIAR.json"}, "translation": {"file": "mt.json"}}})
    assert scale_note(both) == ""
    one = scale_note(_setup({**PAPER, "debate": {"arithmetic": {"file": "CIAR.json"}}}))
    assert "arithmetic" not in one and "Common MT" in one


def test_model_rows_state_precision_revision_and_the_memory_plan():
    card = steering_card(_setup({**PAPER, "model": {"name": PAPER["model"]["name"], "matmul_precision": "high",
                                                     "revision": "abc123", "memory_budget_gb": 20}}))
    rows = dict(zip(card["aspect"], card["this run"]))
    assert rows["float32 matrix products (model.matmul_precision)"].startswith("TF32")
    assert rows["model revision (model.revision)"] == "abc123 (pinned)"
    assert "20 GiB per pass" in rows["batching"]
    plain = dict(zip(*[steering_card(_setup(PAPER))[c] for c in ("aspect", "this run")]))
    assert plain["float32 matrix products (model.matmul_precision)"] == "full float32"
    assert "25% of the device's free memory" in plain["batching"]


def test_team_card_says_which_strings_are_the_releases():
    released = team_card(_setup(PAPER))  # team.prompts: released, the default
    for aspect in ("initial prompt", "observation and result text", "agent ids in the text", "first round",
                   "belief state", "when an agent observes", "history in the prompt"):
        assert _status(released, aspect) == "same", aspect
    rows = dict(zip(released["aspect"], released["this run"]))
    assert "byte for byte" in rows["initial prompt"] and rows["history in the prompt"].startswith("the whole conversation")
    assert _status(released, "observation") == "differs"  # the release shows no teammates' positions, the paper does
    assert "links room 3 to room 8" in dict(zip(released["aspect"], released["released code"]))["map in the prompts"]
    config = copy.deepcopy(PAPER)
    config["team"] = {"prompts": "tomlab"}
    tomlab = team_card(_setup(config))
    for aspect in ("initial prompt", "observation and result text", "agent ids in the text", "first round"):
        assert _status(tomlab, aspect) == "differs", aspect
    assert _status(tomlab, "observation") == "same"
    assert dict(zip(tomlab["aspect"], tomlab["this run"]))["history in the prompt"].startswith("the last 2 rounds")
