"""Proof that the team game's measurement is right, through the very text interface the LLM agents use.

A scripted "model" writes the optimal planner's actions as natural-language replies (varied phrasing, a
message every turn) and answers the theory-of-mind questions from the game's own epistemic log. Played
through the LLM-agent episode loop (prompts, reply parser, legality check, ToM questions), it must reach
the planner's score and rounds on every seed and answer every ToM question right; an agent that always
says "no" must score exactly the share of questions whose true answer is no.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

import pandas as pd
import pytest

from tomlab.backends.lm import Completion, GenerationConfig, LanguageModel, Prompt
from tomlab.team.agents import (
    LLMAgentConfig,
    play_llm_episodes,
    play_planner,
    tom_frame,
)
from tomlab.team.env import reply_parser
from tomlab.team.epistemic import (
    knows,
    knows_change,
    knows_room,
    knows_that_knows,
    knows_that_knows_change,
    knows_that_knows_room,
)
from tomlab.team.game import Action, BombGame, TeamConfig
from tomlab.team import released
from tomlab.team.planner import plan_game
from tomlab.team.tables import tom_table

SEEDS = range(6)

# Phrasings the released parser reads (under the paper's rules): "inspect" anywhere inspects, "move to
# room N" moves, "apply"/"defuse" with a colour cuts; the message, in double quotes after "Message to
# Team:", is cut out first. Waiting is the paper's no-op: moving to the room one is in.
_MOVE = ("Action selection: Move to Room {room}.", "I'll move to room {room} now.",
         "Let me move to room {room} and look around there.", "Plan: move to room {room}")
_INSPECT = ("Action selection: Inspect Bomb.", "I am going to inspect the bomb in this room.", "Let me inspect it.")
_CUT = ("Action selection: Apply {Colour} Tool.", "I'll apply my {colour} cutter to it.", "Defuse it: {colour} cutter.")
_WAIT = ("I will move to room {room}, that is, stay where I am.", "Nothing useful to do: move to room {room} (here).")
_YES = ("Yes.", "yes, I am sure", "Yes, that is known.")
_NO = ("No.", "no, not yet", "No, that is not known.")


class PlannerInWords(LanguageModel):
    """Replies for one episode: the planner's joint plan in words, ToM answers from a shadow game's log.

    The shadow game is played with exactly what the episode will make of each reply (the same parser
    and legality check), so its log is the episode's log at every question.
    """

    def __init__(self, config: TeamConfig, seed: int, tom: str = "truth", policy: str = "planner",
                 prompts: str = "tomlab") -> None:
        super().__init__()
        self.config = config
        self.released = prompts == "released"
        self.ids = {a.lower(): a for a in config.agents}
        self.policy = policy
        self.shadow = BombGame(config, seed=seed)
        self.shadow.log.teammates_shown = not self.released  # as the episode's log
        self.plan = plan_game(BombGame(config, seed=seed)).actions
        self.rng = random.Random(seed)
        self.tom = tom
        self.parse = reply_parser(config.rules)

    def model_id(self) -> str:
        return "planner-in-words"

    def generate(self, prompts: Sequence[Prompt], config: GenerationConfig) -> list[Completion]:
        out = [Completion(self._reply(p), prompt_tokens=1, completion_tokens=1, finish_reason="stop") for p in prompts]
        self._record(out)
        return out

    def _reply(self, prompt: Prompt) -> str:
        assert isinstance(prompt, list)
        if self.released:
            return self._reply_released(prompt)
        agent = re.search(r"You are (\w+),", prompt[0]["content"]).group(1)
        user = prompt[-1]["content"]
        if user.rstrip().endswith("Answer yes or no."):
            return self._answer(agent, user.rstrip().splitlines()[-1])  # the question is the last line
        if "Rewrite your belief state" in user:
            return "I track the bombs I have seen and where my teammates are."
        return self._act(agent, int(re.findall(r"Round:? (\d+)", user)[-1]))

    def _reply_released(self, prompt: Prompt) -> str:
        """The released conversation: the agent from its background prompt, the round from its replies so far;
        a user message ending in the release's question (not an action or belief request) is a ToM question."""
        agent = self.ids[re.search(r"You will be playing as Player (\w+)\.", prompt[1]["content"]).group(1)]
        user = prompt[-1]["content"]
        if user.endswith(released.UPDATE_REQUEST):
            return "Below is your current belief: I track the bombs I have seen and where my teammates are."
        if user.endswith((released.OBSERVATION_ACTION_REQUEST, released.BELIEF_ACTION_REQUEST)):
            return self._act(agent, 1 + sum(m["role"] == "assistant" for m in prompt))
        question = re.search(r"(Do you know .*|Does player .*|Based on the observation and previous history, .*)$", user)
        return self._answer(agent, question.group(1))

    def _act(self, agent: str, round_now: int) -> str:
        game = self.shadow
        while game.round < round_now:  # the episode ended a round since this agent's last turn
            game.end_round()
        if not self.released or round_now == 1:
            game.observe(agent)  # as the episode does (the log records what was shown, and when)
        if self.policy == "explorer":
            action = self._explore(agent)
        else:
            joint = self.plan[game.round - 1] if game.round - 1 < len(self.plan) else None
            action = joint[self.config.agents.index(agent)] if joint is not None else Action("wait")
        pick = self.rng.choice
        here_room = game.positions[agent]
        if action.kind == "wait":
            action = Action("move", room=here_room)  # the paper's no-op
            text = pick(_WAIT).format(room=here_room)
        elif action.kind == "move":
            text = pick(_MOVE).format(room=action.room)
        elif action.kind == "inspect":
            text = pick(_INSPECT)
        else:
            text = pick(_CUT).format(colour=action.colour, Colour=str(action.colour).capitalize())
        here = game.bomb_in(here_room)
        news = (f"bomb {here.id} here still needs {', '.join(here.remaining)}" if here is not None and
                here.id in game.inspected[agent] else f"I am in room {here_room}")
        reply = f'{text} Message to Team: "{news}."'
        named, message = self.parse(reply)  # what the episode will make of it
        assert named == action, (reply, named, action)
        game.act(agent, named, message)
        if self.released:
            game.observe(agent)  # the released observation answers the action
        return reply

    def _explore(self, agent: str) -> Action:
        """Inspect an unseen bomb, cut a phase one holds the cutter for, now and then try a wrong cutter,
        else move at random: an agent that learns, tells and acts, so the ToM questions have both answers."""
        game = self.shadow
        here = game.bomb_in(game.positions[agent])
        legal = game.legal_actions(agent)
        if here is not None and here.id not in game.inspected[agent] and Action("inspect") in legal:
            return Action("inspect")
        if here is not None and here.id in game.inspected[agent] and here.remaining[0] in self.config.holds(agent):
            return Action("cut", colour=here.remaining[0])
        if here is not None and self.rng.random() < 0.2:  # now and then a wrong cutter, refused: nothing changes
            return Action("cut", colour=self.config.holds(agent)[0])
        moves = [a for a in legal if a.kind == "move"]
        return self.rng.choice(moves) if moves else Action("wait")

    def _answer(self, agent: str, question: str) -> str:
        if self.tom == "no":
            return self.rng.choice(_NO)
        log = self.shadow.log
        t = len(log.events) - 1
        who = re.match(r"Does (\w+) know", question)
        second = "know that you know" in question
        if self.released:
            player = re.search(r"player (\w+)", question)
            who = re.match(r"(\w+)", self.ids[player.group(1)]) if player else None
            second = "aware of the fact" in question
        room = re.search(r"current contents of room (\d+)", question)
        change = re.search(r"state of bomb (\d+) has just changed|remaining sequence of bomb (\d+)", question)
        if "a bomb phase has just been defused" in question:  # the release's wording after a defusing cut
            change = re.search(r"(\d+)", str(max((e for e in log.events if e.kind == "cut" and e.agent == agent),
                                                 key=lambda e: e.t).bomb))
        if room:
            r = int(room.group(1))
            truth = (knows_that_knows_room(log, who.group(1), agent, r, t) if second
                     else knows_room(log, who.group(1) if who else agent, r, t))
        elif change:
            b = int(next(g for g in change.groups() if g is not None))
            event = max(e.t for e in log.events if e.kind == "cut" and e.agent == agent and e.bomb == b)
            truth = (knows_that_knows_change(log, who.group(1), agent, event) if second
                     else knows_change(log, who.group(1) if who else agent, event))
        else:
            b = int(re.search(r"bomb (\d+)", question).group(1))
            truth = (knows_that_knows(log, who.group(1), agent, b, t) if second
                     else knows(log, who.group(1) if who else agent, b, t))
        return self.rng.choice(_YES if truth else _NO)


def _play(config: TeamConfig, seed: int, tom: str, belief: bool = False, policy: str = "planner",
          prompts: str = "tomlab"):
    lm = PlannerInWords(config, seed, tom=tom, policy=policy, prompts=prompts)
    (episode,) = play_llm_episodes(lm, config, [seed], LLMAgentConfig(belief=belief, prompts=prompts), progress=False)
    return episode


@pytest.mark.parametrize("prompts", ["released", "tomlab"])
@pytest.mark.parametrize("belief", [False, True])
def test_planner_in_words_reaches_the_planners_score_and_rounds(belief, prompts):
    config = TeamConfig()
    for seed in SEEDS:
        planner = play_planner(config, seed)
        episode = _play(config, seed, "truth", belief=belief, prompts=prompts)
        assert (episode.score, episode.rounds_played, episode.complete) == (
            planner.score, planner.rounds_played, planner.complete), f"seed {seed}"
        assert episode.calls > 0 and episode.tom, f"seed {seed}: no ToM questions were asked"


@pytest.mark.parametrize("prompts", ["released", "tomlab"])
def test_tom_answers_from_the_log_score_100_and_always_no_scores_the_no_share(prompts):
    config = TeamConfig()
    truthful = [_play(config, seed, "truth", policy=p, prompts=prompts) for seed in SEEDS for p in ("planner", "explorer")]
    never = [_play(config, seed, "no", policy=p, prompts=prompts) for seed in SEEDS for p in ("planner", "explorer")]
    right = tom_frame(truthful)
    assert len(right) > 0 and right["correct"].all() and right["parsed"].notna().all()
    # the questions have both answers at every order (the planner never inspects: the explorer does)
    assert right.groupby("order")["truth"].agg(["min", "max"]).eq([False, True]).all().all()
    said_no = tom_frame(never)
    # the same questions are asked: ToM questions follow the actions, which do not depend on the answers
    key = ["seed", "round", "agent", "teammate", "topic", "subject", "order"]
    pd.testing.assert_frame_equal(right[key + ["truth"]].reset_index(drop=True), said_no[key + ["truth"]].reset_index(drop=True))
    table = tom_table(said_no, n_boot=100)
    for row in table.itertuples():
        assert row.accuracy == pytest.approx(1 - row.truth_yes)
        if row.truth_yes <= 0.5:  # "no" is the majority answer: always-no is the majority baseline
            assert row.accuracy == pytest.approx(row.majority_baseline)
    assert (tom_table(right, n_boot=100)["accuracy"] == 1.0).all()
    # the paper's three topics all occur, and every (topic, order) cell that has both answers is answered right
    assert set(right["topic"]) == {"room", "bomb_change", "sequence"}
    assert any(row.truth_yes < 0.5 and row.accuracy == row.majority_baseline for row in table.itertuples())
