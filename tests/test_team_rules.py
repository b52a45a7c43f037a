"""The paper's rules (``team.rules: paper``, the default), pinned one by one against ``assisted``."""

from __future__ import annotations

import numpy as np
import pytest

from tomlab.backends.lm import ScriptedLM
from tomlab.team.agents import LLMAgentConfig, play_llm_episodes, rules_text, tom_frame
from tomlab.team.env import (
    BombDefusalEnv,
    observation_text,
    parse_reply_original,
    reply_parser,
)
from tomlab.team.epistemic import (
    knows,
    knows_change,
    knows_room,
    knows_that_knows,
    knows_that_knows_change,
    knows_that_knows_room,
)
from tomlab.team.game import Action, BombGame, TeamConfig, action_to_index

PAPER, ASSISTED = TeamConfig(), TeamConfig(rules="assisted")


def _placed(config, positions, bombs):
    game = BombGame(config, seed=0)
    game.positions = dict(zip(config.agents, positions))
    for bomb, (room, seq) in zip(game.bombs, bombs.items()):
        bomb.room, bomb.sequence = room, tuple(seq)
    return game


def test_the_paper_is_the_default_and_a_bad_variant_is_refused():
    assert PAPER.rules == "paper" and PAPER.deadlock_rounds == 3 and PAPER.stall_rounds is None
    with pytest.raises(ValueError, match="team.rules"):
        TeamConfig(rules="house")
    with pytest.raises(ValueError, match="at most 3 phases"):
        TeamConfig(bomb_phases=(1, 4))
    TeamConfig(bomb_phases=(1, 4), rules="assisted")  # colours may repeat there


def test_phase_colours_never_repeat_so_the_three_phase_bomb_needs_two_agents():
    needs_two = {"paper": 0, "assisted": 0}
    for seed in range(100):
        for cfg in (PAPER, ASSISTED):
            game = BombGame(cfg, seed=seed)
            for bomb in game.bombs:
                if cfg.rules == "paper":
                    assert len(set(bomb.sequence)) == len(bomb.sequence)
                if not any(set(bomb.sequence) <= set(cfg.holds(a)) for a in cfg.agents):
                    needs_two[cfg.rules] += 1
    # every three-phase bomb needs all three colours, and nobody holds three: >= 1 hand-off per layout
    assert needs_two["paper"] >= 100 > needs_two["assisted"]


def test_the_team_starts_together_in_one_random_room():
    starts = set()
    for seed in range(30):
        game = BombGame(PAPER, seed=seed)
        assert len(set(game.positions.values())) == 1
        starts.add(game.positions["Alpha"])
    assert len(starts) > 1  # the room is drawn, not fixed
    assert any(len(set(BombGame(ASSISTED, seed=s).positions.values())) > 1 for s in range(10))


def test_the_paper_observation_holds_what_the_paper_lists_and_nothing_more():
    game = _placed(PAPER, [5, 5, 0], {5: ["red", "green"], 0: ["blue"], 8: ["green"], 3: ["red"], 6: ["blue", "green", "red"]})
    game.act("Alpha", Action("inspect"), message="going nowhere")
    game.act("Bravo", Action("cut", colour="green"))  # refused: red comes first
    obs = game.observe("Charlie")
    text = observation_text(obs)
    assert "Round: 1. Team score: 0." in text and "Result of your last action: The game has started." in text
    assert "you are in room 0, with none of your teammates; bomb 2." in text
    assert "Alpha is in room 5; Bravo is in room 5." in text and 'Alpha: "going nowhere".' in text
    alpha = observation_text(game.observe("Alpha"))
    assert "with Bravo; bomb 1" in alpha and "inspected bomb 1: its remaining phases are red, green" in alpha
    for assisted_only in ("Actions you can take", "Your cutters", "You saw", "Rooms next to it", "in order:"):
        assert assisted_only not in text + alpha
    assert obs["legal"] is None and obs["witnessed"] is None and obs["cutters"] is None
    # the map, the tools and the reply format are in the initial prompt only
    system = rules_text(PAPER, "Charlie")
    assert "room 0 to rooms 3, 5, 6, 8" in system and "Bravo holds green and blue" in system
    assert 'Message to Team: "<your message>"' in system and "'Move to Room X'" in system
    assert "holds" not in text and "Hallways" not in text


def test_a_cut_shows_the_cutter_what_remains_and_the_log_counts_it():
    game = _placed(PAPER, [0, 0, 3], {0: ["red", "green", "blue"], 3: ["green"], 5: ["red"], 6: ["blue"], 8: ["red", "blue"]})
    refused = game.act("Bravo", Action("cut", colour="green"))
    assert refused.valid and refused.shaping == -1 and "remaining phases are red, green, blue" in refused.feedback
    assert knows(game.log, "Bravo", 1) and not knows(game.log, "Alpha", 1)  # Alpha stood there, was not told
    right = game.act("Alpha", Action("cut", colour="red"))
    assert "remaining phases are green, blue" in right.feedback and knows(game.log, "Alpha", 1)
    assert not knows(game.log, "Charlie", 1)
    old = _placed(ASSISTED, [0, 0, 3], {0: ["red", "green", "blue"], 3: ["green"], 5: ["red"], 6: ["blue"], 8: ["red", "blue"]})
    assert "remaining" not in old.act("Bravo", Action("cut", colour="green")).feedback
    assert not knows(old.log, "Bravo", 1)


def test_moving_to_ones_own_room_is_a_valid_no_op():
    game = _placed(PAPER, [5, 0, 0], {5: ["red"], 0: ["blue"], 8: ["green"], 3: ["red", "green"], 6: ["blue", "green", "red"]})
    stay = game.act("Alpha", Action("move", room=5))
    assert stay.valid and not stay.changed and game.positions["Alpha"] == 5 and "stayed in room 5" in stay.feedback
    assert not game.act("Alpha", Action("move", room=3)).valid  # not next to room 5
    old = _placed(ASSISTED, [5, 0, 0], {5: ["red"], 0: ["blue"], 8: ["green"], 3: ["red", "green"], 6: ["blue", "green", "red"]})
    assert not old.act("Alpha", Action("move", room=5)).valid


@pytest.mark.parametrize("reply, action, message", [
    ('Action selection: Move to Room 5. Message to Team: "I will inspect room 5"', Action("move", room=5), "I will inspect room 5"),
    ("I could move to room 6, but first I inspect the bomb.", Action("inspect"), None),  # inspect wins anywhere
    ("Apply Green and Red tools", Action("cut", colour="red"), None),  # red, blue, green: red first
    ("Defuse it with blue and green", Action("cut", colour="blue"), None),
    ("move to room X", None, None),  # the released code would raise here
    ("move to room 12", None, None),  # one character after the space: room 1, not on the map (as released)
    ("move to room 3, then 0", Action("move", room=3), None),
    ("go_to_node_8 please", Action("move", room=8), None),
    ("Move to Room 3. Message to Team: “curly quotes are not read”", Action("move", room=3), None),
    ('Message to Team: "apply red"', None, "apply red"),  # the message is cut out before the action is read
    ("I will wait here.", None, None),
])
def test_the_released_reply_parser_and_its_order(reply, action, message):
    assert parse_reply_original(reply, rooms=PAPER.rooms) == (action, message)


def test_the_rules_pick_their_parser_and_a_switch_overrides_it():
    assert reply_parser("paper") is parse_reply_original
    assert reply_parser("paper", rooms=(0, 3))("Move to Room 5") == (None, None)
    assert reply_parser("paper", "lenient") is not parse_reply_original
    with pytest.raises(ValueError, match="team.llm.parser"):
        reply_parser("paper", "clever")


def _script(reply: str):
    return ScriptedLM(lambda p: "no" if "Answer yes or no." in p else reply)


def test_a_deadlock_ends_the_episode_and_is_recorded_at_the_round_limit():
    cfg = TeamConfig(deadlock_rounds=3)
    (stuck,) = play_llm_episodes(_script("Inspect Bomb"), cfg, [0], LLMAgentConfig(tom=False), progress=False)
    # round 1 inspects (new knowledge); rounds 2, 3, 4 repeat it and change nothing
    assert stuck.deadlocked and stuck.rounds_played == 4 and stuck.summary(30)["rounds"] == 30
    (silent,) = play_llm_episodes(_script("..."), cfg, [0], LLMAgentConfig(tom=False), progress=False)
    assert silent.deadlocked and silent.rounds_played == 4 and silent.valid_actions == 0  # "no action", repeated
    game = BombGame(cfg, seed=0)  # agents that walk back and forth never repeat their action
    here = game.positions["Alpha"]
    there = cfg.neighbours[here][0]
    for r in range(10):
        for agent in cfg.agents:
            game.act(agent, Action("move", room=there if r % 2 == 0 else here))
        game.end_round()
    assert not game.over and not game.deadlocked
    assert not BombGame(TeamConfig(deadlock_rounds=None), seed=0).deadlocked


def test_tom_topics_follow_the_action():
    def reply(prompt: str) -> str:
        if "Answer yes or no." in prompt:
            return "yes"
        now = prompt.rsplit("Now:\n", 1)[-1]
        if "Round: 1." in now:
            return "Inspect Bomb"
        if "Round: 2." in now:
            return "Apply Red Tool"
        return "Move to Room 0"

    (ep,) = play_llm_episodes(ScriptedLM(reply), TeamConfig(max_rounds=3), [1], LLMAgentConfig(), progress=False)
    tom = tom_frame([ep])
    assert set(tom["topic"]) == {"sequence", "bomb_change", "room"}
    rooms = tom[tom["topic"] == "room"]
    assert rooms["question"].str.contains("current contents of room").all()
    assert rooms.loc[rooms["order"] == "introspection", "truth"].all()  # the mover is in the room
    seq = tom[(tom["topic"] == "sequence") & (tom["order"] == "introspection")]
    assert seq["truth"].all()  # an inspection always teaches the inspector


def test_mappo_env_shares_one_team_reward_and_shuffles_the_order():
    cfg = TeamConfig(rooms=(0, 3), corridors=((0, 3),), bomb_phases=(1,))
    env = BombDefusalEnv(cfg)
    env.reset(seed=0)
    g = env.game
    g.positions = {"Alpha": 0, "Bravo": 0, "Charlie": 3}
    g.bombs[0].room, g.bombs[0].sequence = 0, ("green",)
    idx = {"Alpha": action_to_index(cfg, Action("cut", colour="red")),
           "Bravo": action_to_index(cfg, Action("cut", colour="green")),
           "Charlie": action_to_index(cfg, Action("move", room=0))}
    _, rew, term, _, _ = env.step(idx)
    # one team reward: the cuts' shaping (+1 right, -1 wrong, or only +1 when green went first and red
    # then found nothing to cut) plus the score gain of 10 points / 10
    assert len(set(rew.values())) == 1 and all(term.values())
    assert rew["Alpha"] in (pytest.approx(1.0), pytest.approx(2.0))
    orders = set()
    env = BombDefusalEnv(TeamConfig())
    env.reset(seed=3)
    for _ in range(12):
        start = len(env.game.log.events)
        env.step({a: action_to_index(env.config, Action("inspect")) for a in env.agents})
        orders.add(tuple(e.agent for e in env.game.log.events[start:]))
        if not env.agents:
            break
    assert len(orders) > 1  # the acting order changes from round to round
    assert np.isfinite(env.state()).all()


# ---------------------------------------------------------------- ToM ground truth, by hand


_LAYOUT = {5: ["red", "green"], 0: ["blue"], 8: ["green"], 3: ["red"], 6: ["blue", "green", "red"]}


def test_a_silent_inspection_is_known_only_to_the_inspector_under_the_paper():
    for cfg, seen in ((PAPER, False), (ASSISTED, True)):
        game = _placed(cfg, [5, 5, 8], _LAYOUT)
        game.act("Alpha", Action("inspect"))
        log = game.log
        assert knows(log, "Alpha", 1) and not knows(log, "Bravo", 1)
        # the paper's agents "do not know your actions unless you tell them"; assisted ones see the room
        assert knows_that_knows(log, "Bravo", "Alpha", 1) is seen, cfg.rules


def test_a_message_counts_once_its_recipient_has_read_it():
    game = _placed(PAPER, [5, 0, 8], _LAYOUT)
    game.act("Alpha", Action("inspect"), message="bomb 1 is red, green")
    log = game.log
    assert knows(log, "Alpha", 1) and not knows(log, "Bravo", 1)  # sent, not yet read
    assert not knows_that_knows(log, "Alpha", "Bravo", 1)
    game.observe("Bravo")
    assert knows(log, "Bravo", 1) and knows_that_knows(log, "Bravo", "Alpha", 1)
    assert knows_that_knows(log, "Alpha", "Bravo", 1) and not knows(log, "Charlie", 1)
    old = _placed(ASSISTED, [5, 0, 8], _LAYOUT)
    old.act("Alpha", Action("inspect"), message="bomb 1 is red, green")
    assert knows(old.log, "Bravo", 1)  # assisted: counted when sent


def test_room_contents_are_known_from_what_was_shown_until_someone_comes_or_goes():
    game = _placed(PAPER, [0, 5, 8], _LAYOUT)
    game.observe("Alpha")
    game.observe("Charlie")
    assert knows_room(game.log, "Alpha", 0) and not knows_room(game.log, "Alpha", 5)
    game.act("Bravo", Action("move", room=0))  # Bravo comes into room 0: its move lists the room
    log = game.log
    assert knows_room(log, "Bravo", 0) and not knows_room(log, "Alpha", 0)  # Alpha has not looked since
    assert not knows_that_knows_room(log, "Charlie", "Bravo", 0)  # Charlie last saw Bravo in room 5
    game.observe("Charlie")
    assert knows_that_knows_room(game.log, "Charlie", "Bravo", 0)  # now it has seen Bravo there
    game.observe("Alpha")
    assert knows_room(game.log, "Alpha", 0)
    stay = _placed(PAPER, [0, 5, 8], _LAYOUT)
    stay.observe("Alpha")
    stay.act("Bravo", Action("move", room=5))  # a stay changes nothing anyone sees
    assert knows_room(stay.log, "Alpha", 0) and knows_room(stay.log, "Bravo", 5)


def test_a_cut_is_known_to_the_cutter_and_under_assisted_to_those_who_saw_it():
    for cfg, seen in ((PAPER, False), (ASSISTED, True)):
        game = _placed(cfg, [5, 5, 8], _LAYOUT)
        game.act("Alpha", Action("cut", colour="red"))
        cut = len(game.log.events) - 1
        assert knows_change(game.log, "Alpha", cut) and knows_that_knows_change(game.log, "Alpha", "Alpha", cut)
        assert knows_change(game.log, "Bravo", cut) is seen and knows_that_knows_change(game.log, "Bravo", "Alpha", cut) is seen
        assert not knows_change(game.log, "Charlie", cut)
        game.act("Bravo", Action("cut", colour="blue"))  # refused: nothing changed, nothing to know
        refused = len(game.log.events) - 1
        assert not knows_change(game.log, "Bravo", refused)


def test_repeating_a_refused_cut_changes_nothing_and_deadlocks():
    game = _placed(PAPER, [5, 5, 5], _LAYOUT)
    first = game.act("Bravo", Action("cut", colour="blue"))
    assert first.changed  # it showed Bravo the sequence
    again = game.act("Bravo", Action("cut", colour="blue"))
    assert not again.changed
    game.end_round()
    for r in range(4):  # round 2 sets the pattern; rounds 3, 4 and 5 repeat it with no change
        assert not game.over, r
        for agent in PAPER.agents:
            game.act(agent, Action("cut", colour="blue") if agent == "Bravo" else Action("move", room=5))
        game.end_round()
    assert game.deadlocked and game.over and game.round == 6


def test_a_message_that_tells_someone_something_new_is_a_change():
    game = _placed(PAPER, [5, 0, 8], _LAYOUT)
    game.act("Alpha", Action("inspect"))
    game.end_round()
    game.act("Alpha", Action("inspect"), message="bomb 1 is red, green")
    assert game.changed_this_round
