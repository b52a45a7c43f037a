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


@pytest.mark.parametrize("prompts", ["tomlab", "released"])
def test_tom_topics_follow_the_action(prompts):
    def reply(prompt: str) -> str:
        if "Answer yes or no." in prompt or prompt.rstrip().endswith("?") and "next action?" not in prompt[-30:]:
            return "yes"
        if prompts == "released":  # the last observation answers the agent's previous action (round 0: the start)
            now = prompt.rsplit("Your observation is: ", 1)[-1]
            return {"Round: 0.": "Inspect Bomb", "Round: 1.": "Apply Red Tool"}.get(now[:9], "Move to Room 0")
        now = prompt.rsplit("Now:\n", 1)[-1]
        if "Round: 1." in now:
            return "Inspect Bomb"
        if "Round: 2." in now:
            return "Apply Red Tool"
        return "Move to Room 0"

    (ep,) = play_llm_episodes(ScriptedLM(reply), TeamConfig(max_rounds=3), [1], LLMAgentConfig(prompts=prompts),
                              progress=False)
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


# --- the released text interface (team.prompts: released, the default) ----------------------------------
# Expected strings are written out here from the release's behaviour (multi_LLM_comm, read, not copied); the
# long fixed prompts are pinned by the SHA-256 of the release's own text for the same agent and start.
_RELEASED_SHA = {
    "background alpha": "6d2b1318c91df34fbcd98e00a8772eeed2be55ef37965a95affbb901f33e9328",
    "background no comm bravo": "8fc082b3fb842c0814d5826402ea38ed914407590791c7a8664a3339e8440877",
    "initial belief alpha room 3 bomb 5 + request": "c552727bc07d14659288d903038e9566041a582548c9193b8b0874ef4d0d5fb4",
    "initial belief no comm charlie room 3 bomb 5": "178d34c09146e2ca0bfc6a673864b481d62a6f15c601c97596def10de08e5ce2",
    "update request": "12b397bf434cb69974f4ef03663f3dfc42cad4c600874bf13cc3b113322b791b",
}


def _sha(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _released_play(replies, belief: bool = False, rounds: int = 2, **llm):
    """Seed 0 of the default game: everyone starts in room 3 (bomb 5: red-blue-green); room 0 holds bomb 4."""
    it = iter(replies)
    (ep,) = play_llm_episodes(ScriptedLM(lambda p: next(it, "Move to Room 3")), TeamConfig(max_rounds=rounds), [0],
                              LLMAgentConfig(belief=belief, tom=False, **llm), progress=False)
    assert ep.record["start_rooms"] == {"Alpha": 3, "Bravo": 3, "Charlie": 3}
    return ep


def test_released_fixed_prompts_are_the_releases_bytes():
    from tomlab.team import released as rel

    assert rel.SYSTEM == "You are playing a text game with the user."
    assert _sha(rel.background("Alpha")) == _RELEASED_SHA["background alpha"]
    assert _sha(rel.background("Bravo", communication=False)) == _RELEASED_SHA["background no comm bravo"]
    assert _sha(rel.initial_belief("Alpha", 3, 5) + rel.BELIEF_ACTION_REQUEST) == _RELEASED_SHA[
        "initial belief alpha room 3 bomb 5 + request"]
    assert _sha(rel.initial_belief("Charlie", 3, 5, communication=False)) == _RELEASED_SHA[
        "initial belief no comm charlie room 3 bomb 5"]
    assert _sha(rel.UPDATE_REQUEST) == _RELEASED_SHA["update request"]
    # the release's inconsistent map is kept in its words (the game keeps the true map)
    assert "Room 3 is linked to room 8." in rel.background("Alpha")
    assert "Room 3 is connected to room 0. " in rel.initial_belief("Alpha", 3, 5)


def test_released_conversation_first_prompts_and_observations():
    ep = _released_play(['Action selection: Move to Room 0. Message to Team: "going to 0"', "Apply Blue Tool",
                         'Move to Room 5. Message to Team: "x"', "Apply Blue Tool", "I wait.", "Inspect Bomb"],
                        rounds=3)
    acts = [r for r in ep.transcript if r["kind"] == "action"]
    first = acts[0]["prompt"]
    assert [m["role"] for m in first] == ["system", "user", "user"]
    assert first[0]["content"] == "You are playing a text game with the user."
    assert _sha(first[1]["content"]) == _RELEASED_SHA["background alpha"]
    tail = " Given the above observation, what is your next action?"
    assert first[2]["content"] == (
        "Your observation is: Round: 0. Total team score: 0. Results: You moved to Room 3. In the new room you found "
        "alpha and bravo and charlie, Bomb 5. Room contents: You are currently in Room 3. Contents of this room "
        "include bravo and charlie and alpha, Bomb 5. Communication messages sent by your teammates: Player alpha: "
        '"None". Player bravo: "None". Player charlie: "None".' + tail)
    # bravo's round 0 comes after alpha's first action, as in the release: alpha has gone, and its message is in
    assert acts[1]["prompt"][2]["content"] == (
        "Your observation is: Round: 0. Total team score: 0. Results: You moved to Room 3. In the new room you found "
        "bravo and charlie, Bomb 5. Room contents: You are currently in Room 3. Contents of this room include "
        'charlie and bravo, Bomb 5. Communication messages sent by your teammates: Player alpha: "going to 0". '
        'Player bravo: "None". Player charlie: "None".' + tail)
    # alpha's next prompt: the whole conversation, its reply kept, the observation that answers it
    second = acts[3]["prompt"]
    assert [m["role"] for m in second] == ["system", "user", "user", "assistant", "user"]
    assert second[3]["content"] == 'Action selection: Move to Room 0. Message to Team: "going to 0"'
    assert second[4]["content"] == (
        "Your observation is: Round: 1. Total team score: 0. Results: You moved to Room 0. In the new room you found "
        ", Bomb 4. Room contents: You are currently in Room 0. Contents of this room include alpha, Bomb 4. "
        'Communication messages sent by your teammates: Player alpha: "going to 0". Player bravo: "None". '
        'Player charlie: "None".' + tail)  # written right after alpha acted, before its teammates replied
    # bravo's wrong colour, charlie's room not next to its own, alpha's tool it lacks, bravo's unreadable reply
    assert ("Results: You can not apply Tool Blue to Bomb 5 because the sequence of this bomb is (<Color.red: 0>, "
            "<Color.blue: 2>, <Color.green: 1>). You will need to apply other color tool first. ") in \
        acts[4]["prompt"][-1]["content"]
    assert ("Results: You can not directly move to Room 5 because it is not adjacent to your current location, "
            "Room 3. Consider taking a detour to another room first and then move to your destination. ") in \
        acts[5]["prompt"][-1]["content"]
    assert acts[5]["prompt"][-1]["content"].endswith('Player bravo: "". Player charlie: "x".' + tail)
    assert ("Results: You do not have Blue. Consider asking your teammates who have this tool to help you defuse the "
            "bomb. Room contents: ") in acts[6]["prompt"][-1]["content"]
    assert "Results: Invalid action. Room contents: " in acts[7]["prompt"][-1]["content"]


def test_released_result_sentences_keep_the_releases_quirks():
    from tomlab.team import released as rel

    assert rel.nothing_to_inspect(6) == "There is no bomb in the current current location, Room 6, for you to inspect."
    assert rel.nothing_to_defuse(6) == "There is no bomb in your current location, room 6, for you to defuse."
    assert rel.no_such_tool("blue") == ("You do not have Blue. Consider asking your teammates who have this tool to "
                                        "help you defuse the bomb.")
    assert rel.inspected(2, 3, ("green", "blue")) == ("You inspected Bomb 2. This bomb is a 3-stage bomb and its "
                                                      "remaining sequence is Green-Blue.")
    assert rel.applied("red", 2, ("blue",)) == ("You applied Tool Red to Bomb 2. This bomb is active and its "
                                                "remaining sequence is Blue.")
    assert rel.applied("blue", 2, ()) == "You applied Tool Blue to Bomb 2. This bomb is defused successfully."
    assert rel.wrong_colour("red", 1, ("green",)) == ("You can not apply Tool Red to Bomb 1 because the sequence of "
                                                      "this bomb is (<Color.green: 1>,). You will need to apply other "
                                                      "color tool first.")
    assert rel.moved(8, [], []) == "You moved to Room 8. In the new room you found , ."
    assert rel.INVALID == "Invalid action."
    assert rel.reply_message('Action selection: Inspect Bomb. Message to Team: "hi there".') == "hi there"
    assert rel.reply_message("Action selection: Inspect Bomb.") == ""
    assert rel.reply_message("Message to Team: \u201ccurly\u201d") == ""  # the release reads straight quotes only


def test_released_tom_questions_three_wordings_per_topic():
    from tomlab.team.released import tom_questions

    lead = "Based on the observation and previous history, is player bravo aware of the fact that you"
    assert tom_questions("room", "Bravo", 5) == {
        "introspection": "Do you know the current contents of room 5?",
        "first_order": "Does player bravo know the current contents of room 5?",
        "second_order": f"{lead} know the current contents of room 5?"}
    assert tom_questions("bomb_change", "Bravo", 2) == {
        "introspection": "Do you know the state and remaining sequence of bomb 2 has been changed?",
        "first_order": "Does player bravo know the state and remaining sequence of bomb 2 has been changed?",
        "second_order": f"{lead} have changed the state and remaining sequence of bomb 2?"}
    assert tom_questions("bomb_defused", "Bravo") == {
        "introspection": "Do you know a bomb phase has just been defused?",
        "first_order": "Does player bravo know a bomb phase has just been defused?",
        "second_order": f"{lead} know a bomb phase has just been defused?"}
    assert tom_questions("sequence", "Bravo", 4) == {
        "introspection": "Do you know the sequence of bomb 4?",
        "first_order": "Does player bravo know the sequence of bomb 4?",
        "second_order": f"{lead} know the sequence of bomb 4?"}


def test_released_tom_question_is_the_observation_then_the_question_as_a_temporary_message():
    it = iter(["Action selection: Inspect Bomb.", "Move to Room 3", "Apply Red Tool"])

    def reply(prompt: str) -> str:
        return "yes" if not prompt.rstrip().endswith("next action?") else next(it, "Move to Room 3")

    (ep,) = play_llm_episodes(ScriptedLM(reply), TeamConfig(max_rounds=1), [0], LLMAgentConfig(), progress=False)
    toms = [r for r in ep.transcript if r["kind"].startswith("tom:") and r["agent"] == "Alpha"]
    action_next = [r for r in ep.transcript if r["kind"] == "action" and r["agent"] == "Alpha"]
    obs = ("Your observation is: Round: 1. Total team score: 0. Results: You inspected Bomb 5. This bomb is a 3-stage "
           "bomb and its remaining sequence is Red-Blue-Green. Room contents: You are currently in Room 3. Contents "
           "of this room include bravo and charlie and alpha, Bomb 5. Communication messages sent by your "
           'teammates: Player alpha: "". Player bravo: "None". Player charlie: "None". ')
    assert len(toms) == 3 and len(action_next) == 1
    for row in toms:  # the conversation so far, the observation + action request, then observation + question
        prompt = row["prompt"]
        assert prompt[-2]["content"] == obs + "Given the above observation, what is your next action?"
        assert prompt[-1]["role"] == "user" and prompt[-1]["content"].startswith(obs)
    assert toms[0]["prompt"][-1]["content"] == obs + "Do you know the sequence of bomb 5?"
    # the teammate is drawn among the other two; the ToM answers are recorded with the release's wording
    assert {t["teammate"] for t in ep.tom if t["agent"] == "Alpha"} <= {"Bravo", "Charlie"}
    assert all(t["question"].endswith("?") for t in ep.tom)


def test_released_belief_state_conversation():
    def reply(prompt: str) -> str:
        if prompt.rstrip().endswith("'Below is your current belief'"):
            return "Below is your current belief about game state: alpha is in room 0."
        return "Move to Room 0"

    (ep,) = play_llm_episodes(ScriptedLM(reply), TeamConfig(max_rounds=2), [0], LLMAgentConfig(belief=True, tom=False),
                              progress=False)
    alpha = [r for r in ep.transcript if r["agent"] == "Alpha"]
    first = alpha[0]["prompt"]
    assert [r["kind"] for r in alpha[:3]] == ["action", "belief", "action"]
    assert [m["role"] for m in first] == ["system", "user", "user"]  # no round-0 step with a belief state
    assert _sha(first[2]["content"]) == _RELEASED_SHA["initial belief alpha room 3 bomb 5 + request"]
    update = alpha[1]["prompt"][-1]["content"]
    assert update.startswith("Your observation is: Round: 1. Total team score: 0. Results: You moved to Room 0. ")
    assert update.endswith('". ' + "Please update your belief state based on the above observation, and send me your "
                           "results in the same format as previously. DO NOT add additional explanations. Return "
                           "your answer begining with: 'Below is your current belief'")
    nxt = alpha[2]["prompt"]  # the belief replaces the observation; the conversation keeps every belief and reply
    assert [m["role"] for m in nxt] == ["system", "user", "user", "assistant", "user"]
    assert nxt[-1]["content"] == ("Below is your current belief about game state: alpha is in room 0."
                                  "Given the above belief state, what is your next action?")


def test_prompts_tomlab_gives_todays_text_and_history_window_applies_to_released():
    (tom,) = play_llm_episodes(ScriptedLM(lambda p: "Move to Room 0"), TeamConfig(max_rounds=1), [0],
                               LLMAgentConfig(prompts="tomlab", tom=False), progress=False)
    first = tom.transcript[0]["prompt"]
    assert first[0]["content"].startswith("This is a text game. You are Alpha, one of 3 specialists")
    assert first[1]["content"].startswith("Now:\nRound: 1. Team score: 0.\nResult of your last action: ")
    ep = _released_play(["Move to Room 0"] * 6, history_rounds=1)
    alpha = [r["prompt"] for r in ep.transcript if r["kind"] == "action" and r["agent"] == "Alpha"]
    assert [m["role"] for m in alpha[1]] == ["system", "user", "user", "assistant", "user"]
    whole = _released_play(["Move to Room 0"] * 6)
    assert len([r for r in whole.transcript if r["agent"] == "Alpha"][1]["prompt"]) == 5
    with pytest.raises(ValueError, match="team.prompts must be released or tomlab"):
        LLMAgentConfig.from_dict({"prompts": "paraphrase"})


@pytest.mark.parametrize("shown", [True, False])
def test_released_observation_shows_no_teammate_rooms_so_the_truth_does_not_assume_it(shown):
    game = BombGame(TeamConfig(), seed=0)  # everyone in room 3
    game.log.teammates_shown = shown
    game.act("Alpha", Action("move", room=0))
    game.observe("Alpha")
    game.observe("Bravo")  # Bravo, in room 3, is shown Alpha in room 0 only if teammates' rooms are shown
    assert knows_room(game.log, "Alpha", 0)
    assert knows_that_knows_room(game.log, "Bravo", "Alpha", 0) is shown
