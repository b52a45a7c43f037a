"""Playing the team game: LLM agents over a scripted backend, baselines, MAPPO, tables, CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tests.layout import layout_manifest
from tomlab.backends.lm import CachedLM, ScriptedLM
from tomlab.cli.main import main
from tomlab.report.team import team_commentary
from tomlab.team.agents import (
    LLMAgentConfig,
    episodes_frame,
    parse_yes_no,
    play_llm_episodes,
    play_planner,
    play_policy,
    random_policy,
    tom_frame,
)
from tomlab.team.game import Action, BombGame, TeamConfig, knows
from tomlab.team.tables import summary_table, tom_table


def _reply(prompt: str) -> str:
    """A scripted agent: inspect a bomb it has not inspected, then answer yes/no by a fixed rule,
    else walk to room 0 or 5."""
    if "Answer yes or no." in prompt:
        return "Yes." if "Do you know" in prompt else "no"
    if "Rewrite your belief state" in prompt:
        return "I am somewhere."
    now = prompt.rsplit("Now:\n", 1)[-1]
    if "You have not inspected it." in now:
        return "Action: inspect the bomb\nMessage: none"
    return "Action: move to room 0\nMessage: on my way" if "You are in room 0." not in now else "Action: go to room 5"


ASSISTED = {"rules": "assisted"}  # the scripted agent reads the assisted observation ("You have not inspected it.")


def test_llm_episode_plays_records_and_asks_tom_questions():
    cfg = TeamConfig(max_rounds=4, **ASSISTED)
    lm = ScriptedLM(_reply)
    (ep,) = play_llm_episodes(lm, cfg, [0], LLMAgentConfig(), progress=False)
    assert ep.actions == len([r for r in ep.transcript if r["kind"] == "action"]) > 0
    actions = [r for r in ep.transcript if r["kind"] == "action"]
    assert all({"prompt", "completion", "parsed", "valid", "reward", "score"} <= set(r) for r in actions)
    assert ep.valid_actions == sum(r["valid"] for r in actions)
    assert ep.calls == lm.usage.completions and ep.prompt_tokens == lm.usage.prompt_tokens > 0
    tom = tom_frame([ep])
    valid_moves = sum(1 for r in actions if r["valid"])
    assert len(tom) == 3 * valid_moves and set(tom["order"]) == {"introspection", "first_order", "second_order"}
    intro = tom[tom["order"] == "introspection"]
    assert intro["parsed"].all()  # the script always says yes to "Do you know"
    assert (intro["correct"] == intro["truth"]).all()
    # every inspection the script made shows up as a true introspective answer for that bomb
    inspected = [r for r in actions if r["action"] == "inspect the bomb" and r["valid"]]
    assert inspected and intro["truth"].sum() >= len(inspected)


def test_history_window_and_belief_state_shape_the_prompt():
    cfg = TeamConfig(max_rounds=4, **ASSISTED)
    (plain,) = play_llm_episodes(ScriptedLM(_reply), cfg, [1], LLMAgentConfig(history_rounds=1, tom=False),
                                 progress=False)
    last = [r for r in plain.transcript if r["kind"] == "action" and r["agent"] == "Alpha"][-1]
    user = last["prompt"][-1]["content"]
    assert user.count("You replied:") == 1 and "Now:" in user
    (belief,) = play_llm_episodes(ScriptedLM(_reply), cfg, [1], LLMAgentConfig(belief=True, tom=False),
                                  progress=False)
    kinds = [r["kind"] for r in belief.transcript]
    assert kinds[:2] == ["belief", "action"]
    user = [r for r in belief.transcript if r["kind"] == "action"][-1]["prompt"][-1]["content"]
    assert "Your belief state:\nI am somewhere." in user and "You replied:" not in user


def test_lockstep_batching_matches_one_at_a_time_and_the_cache_replays(tmp_path):
    cfg = TeamConfig(max_rounds=3, **ASSISTED)
    batched = ScriptedLM(_reply)
    together = play_llm_episodes(batched, cfg, [0, 1, 2], LLMAgentConfig(), progress=False)
    alone = [play_llm_episodes(ScriptedLM(_reply), cfg, [s], LLMAgentConfig(), progress=False)[0] for s in (0, 1, 2)]
    assert [e.summary(3) for e in together] == [e.summary(3) for e in alone]
    # prompts of several seeds go together: at most one call per step and generation setting
    # (actions, ToM questions) of the longest episode, not one per episode
    steps = max(e.actions + len(e.tom) // 3 for e in together)
    assert batched.usage.calls <= 2 * steps < sum(e.actions + len(e.tom) // 3 for e in together)
    inner = ScriptedLM(_reply)
    cached = CachedLM(inner, tmp_path / "cache")
    first = play_llm_episodes(cached, cfg, [0], LLMAgentConfig(), progress=False)
    again = play_llm_episodes(CachedLM(ScriptedLM(lambda p: "garbage"), tmp_path / "cache"), cfg, [0],
                              LLMAgentConfig(), progress=False)
    assert first[0].transcript == again[0].transcript  # nothing was asked of the second model


def test_unparseable_replies_are_invalid_and_the_team_stalls():
    cfg = TeamConfig(stall_rounds=3, deadlock_rounds=None)
    (ep,) = play_llm_episodes(ScriptedLM(lambda p: "I am thinking about it."), cfg, [0], LLMAgentConfig(),
                              progress=False)
    assert ep.valid_actions == 0 and ep.stalled and ep.rounds_played == 3 and ep.tom == []
    assert ep.summary(cfg.max_rounds)["rounds"] == cfg.max_rounds  # unfinished counts as the round limit


def test_parse_yes_no():
    assert parse_yes_no("Yes, I do.") is True and parse_yes_no("no") is False
    assert parse_yes_no("I know") is None and parse_yes_no("Nothing yet") is None


def test_baselines_random_and_planner():
    cfg = TeamConfig()
    rand = [play_policy(cfg, s, random_policy, "random") for s in range(8)]
    plan = [play_planner(cfg, s) for s in range(8)]
    assert all(p.complete and p.score == 90 for p in plan)
    assert all(p.rounds_played <= r.rounds_played for p, r in zip(plan, rand))
    assert np.mean([r.score for r in rand]) < 90
    assert 0 < np.mean([r.valid_actions / r.actions for r in rand]) < 1  # illegal picks lose the turn
    again = play_policy(cfg, 3, random_policy, "random")
    assert again.summary(30) == rand[3].summary(30)


def test_tables_and_commentary(tmp_path):
    cfg = TeamConfig(max_rounds=4, **ASSISTED)
    eps = [play_policy(cfg, s, random_policy, "random") for s in range(3)]
    eps += [play_planner(cfg, s) for s in range(3)]
    eps += play_llm_episodes(ScriptedLM(_reply), cfg, [0, 1, 2], LLMAgentConfig(), progress=False)
    frame = episodes_frame(eps, cfg.max_rounds)
    table = summary_table(frame)
    assert list(table["agent_type"]) == ["random", "planner", "llm"]
    assert table.loc[table["agent_type"] == "planner", "valid actions"].item() == "100.0%"
    tom = tom_table(tom_frame(eps), n_boot=200)
    intro = tom[tom["order"] == "introspection"].iloc[0]
    assert intro["said_yes"] == 1.0 and intro["ci_low"] <= intro["accuracy"] <= intro["ci_high"]
    assert intro["majority_baseline"] >= 0.5
    (tmp_path / "team").mkdir()
    frame.to_parquet(tmp_path / "team" / "episodes.parquet")
    tom.to_parquet(tmp_path / "team" / "tom_accuracy.parquet")
    from tomlab.report.team import ours_vs_paper, tom_vs_paper

    both = ours_vs_paper(layout_manifest(tmp_path))
    assert list(both["source"]).count("Li et al.") == 6 and "centralised planner" in set(both["agents"])
    assert both.loc[both["agents"] == "CBS planner", "rounds"].item() == "6.0 ± 0.0"
    tvp = tom_vs_paper(layout_manifest(tmp_path))
    assert tvp.loc[tvp["agents"] == "GPT-4 + belief", "second-order"].item() == "69.4%"
    assert tvp.loc[tvp["agents"] == "LLM", "introspection"].item().endswith("]")
    text = team_commentary(layout_manifest(tmp_path))
    assert "**Planner.**" in text and "LLM** agents score" in text and "majority answer" in text


def test_mappo_trains_briefly_and_plays(tmp_path):
    pytest.importorskip("skrl")
    from tomlab.team.mappo import (
        MAPPOConfig,
        load_policies,
        mappo_policy,
        save_policies,
        train_mappo,
    )

    cfg = TeamConfig(max_rounds=6)
    mcfg = MAPPOConfig(timesteps=120, rollouts=24, mini_batches=2, learning_epochs=1, hidden=8)
    policies, curve = train_mappo(cfg, mcfg, progress=False)
    assert len(curve) >= 120 // 6 - 1 and curve["timestep"].is_monotonic_increasing
    assert curve["rounds"].between(1, 6).all()
    before = {a: [p.detach().clone() for p in net.parameters()] for a, net in policies.items()}
    save_policies(tmp_path / "p.pt", policies, mcfg)
    loaded = load_policies(tmp_path / "p.pt", cfg)
    for a, net in loaded.items():
        assert all(torch_equal(x, y) for x, y in zip(net.parameters(), before[a]))
    ep = play_policy(cfg, 0, mappo_policy(loaded, cfg), "mappo")
    assert ep.actions > 0 and ep.rounds_played <= 6
    # training changed the weights away from a fresh initialisation with the same seed
    import torch

    torch.manual_seed(mcfg.seed)
    fresh, _ = train_mappo(cfg, MAPPOConfig(timesteps=1, rollouts=24, hidden=8), progress=False)
    assert any(not torch_equal(x, y) for x, y in zip(fresh["Alpha"].parameters(), before["Alpha"]))


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))


def test_cli_team_play_and_tables(tmp_path, capsys):
    team = json.dumps({"max_rounds": 5})
    for kind in ("random", "planner"):
        rc = main(["team-play", "--agent-type", kind, "--team-json", team, "--seeds", "2",
                   "--out-episodes", str(tmp_path / kind / "ep.parquet"), "--out-tom", str(tmp_path / kind / "tom.parquet"),
                   "--transcripts", str(tmp_path / kind / "tr")])
        assert rc == 0
        lines = (tmp_path / kind / "tr" / "seed1.jsonl").read_text().splitlines()
        assert json.loads(lines[0])["kind"] == "episode" and json.loads(lines[-1])["kind"] == "summary"
    rc = main(["team-tables", "--episodes", str(tmp_path / "random/ep.parquet"), str(tmp_path / "planner/ep.parquet"),
               "--tom", str(tmp_path / "random/tom.parquet"), str(tmp_path / "planner/tom.parquet"),
               "--out-episodes", str(tmp_path / "all.parquet"), "--out-summary", str(tmp_path / "sum.parquet"),
               "--out-tom", str(tmp_path / "tom.parquet")])
    assert rc == 0
    assert len(pd.read_parquet(tmp_path / "all.parquet")) == 4
    rc = main(["team-play", "--agent-type", "mappo", "--seeds", "1", "--out-episodes", str(tmp_path / "x.parquet"),
               "--out-tom", str(tmp_path / "y.parquet"), "--transcripts", str(tmp_path / "z")])
    assert rc == 1 and "--policies" in capsys.readouterr().err
    assert not (tmp_path / "x.parquet").exists()
    rc = main(["team-play", "--agent-type", "random", "--team-json", '{"map": {"rooms": [0, 1], "corridors": [[0, 7]]}}',
               "--out-episodes", str(tmp_path / "x.parquet"), "--out-tom", str(tmp_path / "y.parquet"),
               "--transcripts", str(tmp_path / "z")])
    assert rc == 1 and "corridor 0-7" in capsys.readouterr().err
    rc = main(["team-play", "--agent-type", "llm", "--llm-json", '{"prompts": "paraphrase"}',
               "--out-episodes", str(tmp_path / "x.parquet"), "--out-tom", str(tmp_path / "y.parquet"),
               "--transcripts", str(tmp_path / "z")])
    err = capsys.readouterr().err
    assert rc == 1 and "--llm-json: team.prompts must be released or tomlab, got 'paraphrase'" in err
    assert "Traceback" not in err


def test_knows_is_monotone_over_a_random_episode():
    game = BombGame(TeamConfig(), seed=5)
    rng = np.random.default_rng(0)
    while not game.over:
        for agent in game.config.agents:
            game.act(agent, random_policy(game, agent, rng), message="bomb 1 is red" if rng.random() < 0.2 else None)
        game.end_round()
    n = len(game.log.events)
    for agent in game.config.agents:
        for bomb in game.bombs:
            seq = [knows(game.log, agent, bomb.id, t) for t in range(n)]
            assert seq == sorted(seq)  # once known, always known


def test_transcript_opens_with_a_record_that_replays_the_episode(tmp_path):
    """The first line of every transcript is the episode's record; rebuilding the game from it alone and
    replaying the transcript's actions gives the same score and rounds as the episode's summary."""
    assert main(["team-play", "--agent-type", "planner", "--team-json", json.dumps({"max_rounds": 12}),
                 "--seeds", "3", "--out-episodes", str(tmp_path / "ep.parquet"), "--out-tom",
                 str(tmp_path / "tom.parquet"), "--transcripts", str(tmp_path / "tr")]) == 0
    for seed in range(3):
        rows = [json.loads(line) for line in (tmp_path / "tr" / f"seed{seed}.jsonl").read_text().splitlines()]
        record, summary = rows[0], rows[-1]
        assert record["kind"] == "episode" and record["rules"] == "paper" and record["seed"] == seed
        assert set(record) >= {"map", "agents", "start_rooms", "bombs"}
        original = BombGame(TeamConfig(max_rounds=12), seed=seed)
        assert record["start_rooms"] == original.positions
        assert [(b["room"], tuple(b["sequence"])) for b in record["bombs"]] == [(b.room, b.sequence) for b in original.bombs]
        game = BombGame.from_record(record)
        actions = [r for r in rows if r["kind"] == "action"]
        for r in actions:
            result = game.act(r["agent"], None if r["action"] is None else Action.from_description(r["action"]))
            assert result.valid == r["valid"] and game.score == r["score"]
            if r is actions[-1] or actions[actions.index(r) + 1]["round"] != r["round"]:
                game.end_round()
        assert game.score == summary["score"] and game.round - 1 == summary["rounds_played"]


def test_a_record_from_another_rules_variant_or_incomplete_is_refused():
    record = BombGame(TeamConfig(), seed=1).record()
    with pytest.raises(ValueError, match="rules"):
        BombGame.from_record({**record, "rules": "paper-2099"})
    with pytest.raises(ValueError, match="start_rooms"):
        BombGame.from_record({k: v for k, v in record.items() if k != "start_rooms"})
    for action in (Action("move", room=5), Action("inspect"), Action("wait"), Action("cut", colour="red")):
        assert Action.from_description(action.describe()) == action
    with pytest.raises(ValueError, match="not an action"):
        Action.from_description("dance")
    # a record is a snapshot: playing the game does not change it
    game = BombGame(TeamConfig(), seed=1)
    first = game.record()
    agent = game.config.agents[0]
    game.act(agent, game.legal_actions(agent)[0])
    assert game.record() == first


def _with(record: dict, path: str, value: object) -> dict:
    """A copy of ``record`` with the value at ``path`` ("bombs.0.room", "start_rooms.Alpha") replaced."""
    out = json.loads(json.dumps(record))
    *parents, last = path.split(".")
    node = out
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return out


@pytest.mark.parametrize(("path", "value", "message"), [
    ("bombs.0.room", 99, "bombs[0].room: 99 is not a room of the map"),
    ("bombs.1.sequence.0", "purple", "bombs[1].sequence[0]: 'purple' is not a colour of the game"),
    ("bombs.1.id", 1, "bombs[1].id: 1 is also the id of bombs[0]"),
    ("start_rooms.Alpha", 42, "start_rooms.Alpha: 42 is not a room of the map"),
    ("kind", "tournament", "kind: 'tournament' is not an episode record"),
    ("seed", "one", "seed: expected an integer, got 'one'"),
    ("bombs.0.sequence", [], "bombs[0].sequence: a bomb has at least one phase"),
    ("agents.Alpha", ["red", "mauve"], "agents.Alpha: cutter 'mauve' is not a colour of the game"),
    ("max_rounds", 0, "max_rounds: must be at least 1, got 0"),
    ("start_rooms.Zulu", 0, "start_rooms.Zulu: 'Zulu' is not an agent of the record"),
])
def test_an_impossible_record_is_refused_naming_the_field_and_value(path, value, message):
    record = BombGame(TeamConfig(), seed=1).record()
    assert BombGame.from_record(record).record() == record  # the record as written replays
    with pytest.raises(ValueError) as err:
        BombGame.from_record(_with(record, path, value))
    assert str(err.value).startswith("episode record: ") and message in str(err.value), str(err.value)


def test_a_record_with_two_bombs_in_one_room_or_a_split_paper_team_is_refused():
    record = BombGame(TeamConfig(), seed=1).record()
    with pytest.raises(ValueError, match=r"bombs\[1\]\.room: \d+ already holds bombs\[0\]"):
        BombGame.from_record(_with(record, "bombs.1.room", record["bombs"][0]["room"]))
    rooms = record["map"]["rooms"]
    split = {a: rooms[i % len(rooms)] for i, a in enumerate(record["start_rooms"])}
    with pytest.raises(ValueError, match="under the paper's rules the team starts in one"):
        BombGame.from_record({**record, "start_rooms": split})
    assisted = BombGame(TeamConfig(rules="assisted"), seed=1).record()
    assert BombGame.from_record({**assisted, "start_rooms": split}).positions == split  # assisted: separate rooms
    with pytest.raises(ValueError, match=r"repeats a colour"):
        BombGame.from_record(_with(record, "bombs.4.sequence", ["red", "red", "blue"]))


def test_each_agent_can_play_its_own_model():
    """team.agent_models: every prompt of an agent goes to its own backend, the others to the default, and
    agents that share a backend share its batches."""
    def named(tag):
        return ScriptedLM(lambda p: f"{tag}: Move to Room 0" if "Answer yes or no." not in p else "no")

    alpha, rest = named("alpha"), named("rest")
    cfg = TeamConfig(max_rounds=3)
    (ep,) = play_llm_episodes({"Alpha": alpha, "default": rest}, cfg, [0], LLMAgentConfig(), progress=False)
    replies = [(r["agent"], r["completion"]) for r in ep.transcript if r["kind"] == "action"]
    assert replies and all(text.startswith("alpha" if agent == "Alpha" else "rest") for agent, text in replies)
    assert alpha.usage.completions > 0 and rest.usage.completions > alpha.usage.completions
    with pytest.raises(ValueError, match="no agent named"):
        play_llm_episodes({"Zulu": alpha, "default": rest}, cfg, [0], LLMAgentConfig(), progress=False)
    with pytest.raises(ValueError, match="no model for agent"):
        play_llm_episodes({"Alpha": alpha}, cfg, [0], LLMAgentConfig(), progress=False)


def test_history_rounds_all_keeps_the_whole_episode_and_null_is_the_prompts_own():
    cfg = TeamConfig(max_rounds=5, **ASSISTED)
    seen = {}
    for rounds in ("all", None):
        (ep,) = play_llm_episodes(ScriptedLM(_reply), cfg, [1], LLMAgentConfig(history_rounds=rounds, tom=False),
                                  progress=False)
        alpha = [r for r in ep.transcript if r["kind"] == "action" and r["agent"] == "Alpha"]
        assert len(alpha) == 5
        seen[rounds] = alpha[-1]["prompt"][-1]["content"].count("You replied:")
    assert seen == {"all": 4, None: 2}  # tomlab's text keeps 2 rounds unless told otherwise
