"""The team game: rules, the PettingZoo API, the epistemic log, the planner, the text interface."""

from __future__ import annotations

import copy
import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tomlab.team.env import BombDefusalEnv, observation_text, parse_action, parse_reply
from tomlab.team.game import (
    Action,
    BombGame,
    TeamConfig,
    action_from_index,
    action_space_size,
    action_to_index,
    knows,
    knows_that_knows,
    message_reveals,
)
from tomlab.team.planner import plan_from, plan_game


def _game(positions, bombs, config=None):
    """A game with hand-placed agents and bombs: ``bombs`` maps room -> phase colours."""
    config = config or TeamConfig(bomb_phases=tuple(len(s) for s in bombs.values()))
    game = BombGame(config, seed=0)
    game.positions = dict(zip(config.agents, positions))
    for bomb, (room, seq) in zip(game.bombs, bombs.items()):
        bomb.room, bomb.sequence, bomb.cut, bomb.exploded = room, tuple(seq), 0, False
    return game


# ------------------------------------------------------------------------------------------ rules


def test_config_validation_names_the_problem():
    with pytest.raises(ValueError, match="corridor 0-9"):
        TeamConfig(corridors=((0, 9),))
    with pytest.raises(ValueError, match="connect every room"):
        TeamConfig(rooms=(0, 1, 2), corridors=((0, 1),), bomb_phases=(1,))
    with pytest.raises(ValueError, match="at most one bomb per room"):
        TeamConfig(rooms=(0, 1), corridors=((0, 1),), bomb_phases=(1, 1, 1))
    with pytest.raises(ValueError, match="team.agents.Alpha: unknown cutter"):
        TeamConfig.from_dict({"agents": {"Alpha": ["purple"]}})
    with pytest.raises(ValueError, match="wrong_cutter"):
        TeamConfig(wrong_cutter="maybe")  # type: ignore[arg-type]


def test_default_map_adjacency_and_legal_moves():
    cfg = TeamConfig()
    assert cfg.neighbours[0] == (3, 5, 6, 8) and cfg.neighbours[5] == (0, 6) and cfg.neighbours[3] == (0, 8)
    game = _game([5, 0, 8], {3: ["red"], 6: ["blue"], 8: ["green"], 0: ["red", "blue"], 5: ["green", "red", "blue"]})
    moves = {a.room for a in game.legal_actions("Alpha") if a.kind == "move"}
    assert moves == {0, 5, 6}  # the paper's rules: staying in one's room is a valid move
    assisted = _game([5, 0, 8], {3: ["red"], 6: ["blue"], 8: ["green"], 0: ["red", "blue"], 5: ["green", "red", "blue"]},
                     TeamConfig(rules="assisted"))
    assert {a.room for a in assisted.legal_actions("Alpha") if a.kind == "move"} == {0, 6}
    bad = game.act("Alpha", Action("move", room=3))
    assert not bad.valid and "not next to room 5" in bad.feedback and game.positions["Alpha"] == 5
    ok = game.act("Alpha", Action("move", room=6))
    assert ok.valid and game.positions["Alpha"] == 6


def test_phases_must_be_cut_in_order_and_score_counts_phases():
    game = _game([0, 0, 3], {0: ["green", "blue"], 3: ["red"]},
                 TeamConfig(rooms=(0, 3), corridors=((0, 3),), bomb_phases=(2, 1)))
    # Bravo holds green and blue; blue first is the wrong order and is refused
    wrong = game.act("Bravo", Action("cut", colour="blue"))
    assert wrong.valid and wrong.shaping == -1 and game.bombs[0].cut == 0 and game.score == 0
    first = game.act("Bravo", Action("cut", colour="green"))
    assert first.shaping == 1 and game.bombs[0].cut == 1 and game.score == 0  # not defused yet: no points
    second = game.act("Alpha", Action("cut", colour="blue"))  # Alpha holds red and green
    assert not second.valid and "only the red and green" in second.feedback
    game.act("Bravo", Action("cut", colour="blue"))
    assert game.bombs[0].defused and game.score == 20
    assert game.act("Charlie", Action("cut", colour="red")).score_delta == 10 and game.done and game.over


def test_wrong_cutter_can_explode_the_bomb():
    cfg = TeamConfig(rooms=(0, 3), corridors=((0, 3),), bomb_phases=(1, 1), wrong_cutter="explode")
    game = _game([0, 3, 3], {0: ["blue"], 3: ["red"]}, cfg)
    res = game.act("Alpha", Action("cut", colour="red"))
    assert res.shaping == -1 and game.bombs[0].exploded and game.bomb_in(0) is None
    assert not game.act("Alpha", Action("inspect")).valid  # nothing left in the room


def test_termination_at_round_limit_and_on_stall():
    cfg = TeamConfig(max_rounds=4, stall_rounds=None)
    game = BombGame(cfg, seed=1)
    for _ in range(4):
        assert not game.over
        game.end_round()
    assert game.over and not game.stalled
    stall = BombGame(TeamConfig(stall_rounds=2), seed=1)
    stall.act("Alpha", None)
    stall.end_round()
    assert not stall.over
    stall.end_round()
    assert stall.over and stall.stalled
    moving = BombGame(TeamConfig(stall_rounds=2), seed=1)
    for _ in range(3):
        here = moving.positions["Alpha"]
        moving.act("Alpha", Action("move", room=moving.config.neighbours[here][0]))
        moving.end_round()
    assert not moving.over  # a team that keeps changing something does not stall


def test_seeded_layouts_are_reproducible_and_differ_across_seeds():
    a, b, c = BombGame(TeamConfig(), seed=3), BombGame(TeamConfig(), seed=3), BombGame(TeamConfig(), seed=4)
    assert [(x.room, x.sequence) for x in a.bombs] == [(x.room, x.sequence) for x in b.bombs]
    assert a.positions == b.positions
    assert ([(x.room, x.sequence) for x in a.bombs], a.positions) != ([(x.room, x.sequence) for x in c.bombs], c.positions)
    assert sorted(len(x.sequence) for x in a.bombs) == [1, 1, 2, 2, 3]
    assert len({x.room for x in a.bombs}) == 5


def test_assisted_observation_is_partial():
    game = _game([5, 0, 8], {5: ["red"], 0: ["blue"], 8: ["green"], 3: ["red", "red"], 6: ["blue", "green", "red"]},
                 TeamConfig(rules="assisted"))
    obs = game.observation("Alpha")
    assert obs["bomb"] == {"id": 1, "remaining": None}  # not inspected: sequence hidden
    game.act("Alpha", Action("inspect"))
    assert game.observation("Alpha")["bomb"]["remaining"] == ["red"]
    assert game.observation("Bravo")["bomb"]["remaining"] is None  # Bravo's own room, not inspected
    text = observation_text(game.observation("Alpha"))
    assert "remaining phases, in order: red" in text and "Bravo is in room 0" in text
    assert "blue" not in text.split("Your cutters")[0]  # other rooms' bombs are not shown


# ------------------------------------------------------------------------------------- PettingZoo


def test_parallel_api_test_passes():
    from pettingzoo.test import parallel_api_test

    env = BombDefusalEnv(TeamConfig())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        parallel_api_test(env, num_cycles=200)


def test_env_step_rewards_and_state_assisted():
    cfg = TeamConfig(rooms=(0, 3), corridors=((0, 3),), bomb_phases=(1,), rules="assisted")
    env = BombDefusalEnv(cfg)
    obs, _ = env.reset(seed=0)
    g = env.game
    g.positions = {"Alpha": 0, "Bravo": 0, "Charlie": 3}
    g.bombs[0].room, g.bombs[0].sequence = 0, ("green",)
    # Alpha (red, green) applies red (wrong), Bravo (green, blue) applies green (right)
    idx = {a: action_to_index(cfg, act) for a, act in
           {"Alpha": Action("cut", colour="red"), "Bravo": Action("cut", colour="green"),
            "Charlie": Action("move", room=0)}.items()}
    obs, rew, term, trunc, info = env.step(idx)
    assert rew["Alpha"] == pytest.approx(-1 + 1.0) and rew["Bravo"] == pytest.approx(1 + 1.0)
    assert rew["Charlie"] == pytest.approx(1.0)  # the shared score gain: 10 points / 10
    assert all(term.values()) and env.agents == []
    assert env.state().shape == env.state_space.shape and obs["Alpha"].shape == (env.obs_dim,)
    assert all(env.observation_space(a).contains(o) for a, o in obs.items())


def test_action_indices_round_trip():
    cfg = TeamConfig()
    for i in range(action_space_size(cfg)):
        assert action_to_index(cfg, action_from_index(cfg, i)) == i
    with pytest.raises(ValueError):
        action_from_index(cfg, action_space_size(cfg))


# ------------------------------------------------------------------------------- epistemic log


def test_tom_ground_truth_on_a_scripted_episode_assisted():
    """Under ``assisted`` an agent sees what happens in its room (the paper's rules: tests/test_team_rules.py)."""
    game = _game([5, 5, 8], {5: ["red", "blue"], 8: ["green"], 0: ["blue"], 3: ["red"], 6: ["green", "red", "blue"]},
                 TeamConfig(bomb_phases=(2, 1, 1, 1, 3), rules="assisted"))
    b5 = game.bomb_in(5).id
    b8 = game.bomb_in(8).id
    # Alpha inspects bomb in room 5 while Bravo watches; Charlie is elsewhere
    game.act("Alpha", Action("inspect"))
    t = len(game.log.events) - 1
    assert knows(game.log, "Alpha", b5, t) and not knows(game.log, "Bravo", b5, t)
    assert knows_that_knows(game.log, "Bravo", "Alpha", b5, t)  # Bravo saw it
    assert not knows_that_knows(game.log, "Charlie", "Alpha", b5, t)
    assert not knows_that_knows(game.log, "Alpha", "Bravo", b5, t)  # Bravo does not know it at all
    # Charlie inspects bomb in room 8 alone, then tells the team
    game.act("Charlie", Action("inspect"))
    assert not knows_that_knows(game.log, "Alpha", "Charlie", b8)
    before = len(game.log.events) - 1
    game.act("Charlie", Action("move", room=0), message=f"Bomb {b8} in room 8 has one phase: green.")
    assert knows(game.log, "Alpha", b8) and knows(game.log, "Bravo", b8)
    assert knows_that_knows(game.log, "Alpha", "Charlie", b8)  # the message went to everyone
    assert knows_that_knows(game.log, "Charlie", "Bravo", b8)
    assert not knows(game.log, "Alpha", b8, before)  # ... but not before the message
    # a message that gets the sequence wrong tells nothing
    game.act("Bravo", Action("move", room=0), message=f"bomb {b5} is green then red")
    assert not knows(game.log, "Charlie", b5)
    # nor does a correct one from somebody who never learnt it (a guess)
    game.act("Bravo", None, message=f"bomb {b5}: red, blue")
    assert not knows(game.log, "Charlie", b5)
    game.act("Alpha", None, message="Room 5: red, blue.")
    assert knows(game.log, "Charlie", b5) and knows_that_knows(game.log, "Charlie", "Bravo", b5)


def test_message_reveals_is_strict():
    game = _game([0, 0, 0], {5: ["red", "blue"], 8: ["green"], 0: ["blue"], 3: ["red"], 6: ["green", "red", "blue"]})
    bomb = game.bomb_in(5)
    assert message_reveals(f"bomb {bomb.id} needs red then blue", bomb)
    assert message_reveals("room 5: red, blue. room 8 is empty", bomb)
    assert not message_reveals(f"bomb {bomb.id} needs red", bomb)
    assert not message_reveals("red then blue", bomb)
    assert not message_reveals(f"bomb {bomb.id} needs blue then red", bomb)


# ------------------------------------------------------------------------------------------ planner


def _brute_force_rounds(game: BombGame, limit: int) -> int | None:
    """Fewest rounds to defuse everything, by trying every joint sequence of legal actions (and
    waiting) on copies of the real game: no pruning, no shared code with the planner's search."""
    agents = game.config.agents
    frontier = [game]
    for rnd in range(1, limit + 1):
        nxt = []
        for g in frontier:
            # agents act in order, so expand one agent at a time on copies
            partial = [g]
            for agent in agents:
                grown = []
                for p in partial:
                    for act in p.legal_actions(agent) + [Action("wait")]:
                        q = copy.deepcopy(p)
                        q.act(agent, act)
                        grown.append(q)
                partial = grown
            for p in partial:
                if p.done:
                    return rnd
                p.end_round()
                nxt.append(p)
        frontier = nxt
    return None


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_planner_is_optimal_against_brute_force_on_small_maps(seed):
    cfg = TeamConfig(rooms=(0, 1), corridors=((0, 1),), bomb_phases=(1, 2), agents=("Alpha", "Bravo"),
                     cutters=(("red", "green"), ("green", "blue")), stall_rounds=None)
    game = BombGame(cfg, seed=seed)
    plan = plan_game(game)
    brute = _brute_force_rounds(game, limit=4)
    assert plan.complete and plan.rounds == brute


def test_planner_plan_plays_out_and_beats_nothing_worse():
    cfg = TeamConfig()
    for seed in range(3):
        game = BombGame(cfg, seed=seed)
        plan = plan_game(game)
        assert plan.complete and plan.score == cfg.max_score and 1 <= plan.rounds <= cfg.max_rounds
        for joint in plan.actions:
            for agent, act in zip(cfg.agents, joint):
                assert game.act(agent, act).valid
            game.end_round()
        assert game.done and game.score == cfg.max_score


def test_planner_falls_back_to_the_best_score_when_a_colour_is_missing():
    cfg = TeamConfig(rooms=(0, 1), corridors=((0, 1),), bomb_phases=(1, 1), agents=("Alpha",),
                     cutters=(("red",),), stall_rounds=None, max_rounds=5)
    plan = plan_from(cfg, [0], [0, 1], [("blue",), ("red",)])
    assert not plan.complete and plan.score == 10 and plan.rounds == 2  # move to room 1, cut red


# ------------------------------------------------------------------------------------------- parser


def test_parse_reply_reads_actions_and_messages():
    assert parse_reply("Action: move to room 5\nMessage: heading to 5") == (Action("move", room=5), "heading to 5")
    assert parse_reply("I will inspect the bomb.")[0] == Action("inspect")
    assert parse_reply("Action: apply the blue cutter")[0] == Action("cut", colour="blue")
    assert parse_reply("Use green now")[0] == Action("cut", colour="green")
    # the Action line wins over earlier chatter; the first mention within it wins
    text = "I could go to room 3.\nAction: inspect the bomb, then go to room 8\nMessage: none"
    assert parse_reply(text) == (Action("inspect"), None)
    assert parse_reply("Hello team!") == (None, None)
    # an echo of the observation or of past feedback names no action
    assert parse_reply("Bomb 2 is here. You have not inspected it.")[0] is None
    assert parse_reply("You moved from room 5 to room 0. I applied red before.")[0] is None



def test_a_room_number_is_read_whole_never_as_its_first_digits():
    # issue 26, item 10b: a room was read as its first six digits ("0000005" as room 0)
    assert parse_reply("Action: move to room 0000005")[0] == Action("move", room=5)
    assert parse_reply("Action: move to room 1234567")[0] == Action("move", room=1234567)
    # a number no map has names no action (and its digits are never read as a shorter one)
    assert parse_reply("Action: move to room " + "9" * 40)[0] is None
    assert parse_reply("Action: move to room " + "9" * 40 + ", then inspect")[0] is None

def test_parse_action_refuses_illegal_actions():
    legal = [Action("move", room=0), Action("move", room=6), Action("inspect"), Action("cut", colour="red")]
    assert parse_action("Action: move to room 6", legal) == Action("move", room=6)
    assert parse_action("Action: move to room 3", legal) is None  # not adjacent
    assert parse_action("Action: apply the blue cutter", legal) is None  # not held
    assert parse_action("", legal) is None


_WORDS = st.sampled_from(["move", "go", "to", "room", "inspect", "apply", "the", "red", "green", "blue",
                          "cutter", "Action:", "Message:", "3", "5", "99", "\n", ",", ".", "bomb", "wire", "use"])


@settings(max_examples=300, deadline=None)
@given(words=st.lists(_WORDS, max_size=25), noise=st.text(max_size=40), seed=st.integers(0, 50))
def test_parser_never_crashes_and_only_returns_legal_actions(words, noise, seed):
    game = BombGame(TeamConfig(), seed=seed)
    agent = game.config.agents[seed % 3]
    legal = game.legal_actions(agent)
    text = " ".join(words) + noise
    action = parse_action(text, legal)
    assert action is None or action in legal
    named, message = parse_reply(text)
    assert named is None or named.kind in ("move", "inspect", "cut")
    assert message is None or isinstance(message, str)
