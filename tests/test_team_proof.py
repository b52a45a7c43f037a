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
from tomlab.team.env import parse_reply
from tomlab.team.game import Action, BombGame, TeamConfig, knows, knows_that_knows
from tomlab.team.planner import plan_game
from tomlab.team.tables import tom_table

SEEDS = range(6)

_MOVE = ("Action: move to room {room}", "I'll head over to room {room} now.", "Let's go to room {room}.",
         "Action: walk to room {room}")
_INSPECT = ("Action: inspect the bomb", "I am going to inspect the bomb in this room.", "Let me examine it.")
_CUT = ("Action: apply the {colour} cutter", "I'll use my {colour} cutter on it.", "Cutting with the {colour} cutter.")
_WAIT = ("I will stay where I am this round.", "Nothing useful for me to do; I hold my position.")
_YES = ("Yes.", "yes, I am sure", "Yes, that is known.")
_NO = ("No.", "no, not yet", "No, that is not known.")


class PlannerInWords(LanguageModel):
    """Replies for one episode: the planner's joint plan in words, ToM answers from a shadow game's log.

    The shadow game is played with exactly what the episode will make of each reply (the same parser
    and legality check), so its log is the episode's log at every question.
    """

    def __init__(self, config: TeamConfig, seed: int, tom: str = "truth", policy: str = "planner") -> None:
        super().__init__()
        self.config = config
        self.policy = policy
        self.shadow = BombGame(config, seed=seed)
        self.plan = plan_game(BombGame(config, seed=seed)).actions
        self.rng = random.Random(seed)
        self.tom = tom

    def model_id(self) -> str:
        return "planner-in-words"

    def generate(self, prompts: Sequence[Prompt], config: GenerationConfig) -> list[Completion]:
        out = [Completion(self._reply(p), prompt_tokens=1, completion_tokens=1, finish_reason="stop") for p in prompts]
        self._record(out)
        return out

    def _reply(self, prompt: Prompt) -> str:
        assert isinstance(prompt, list)
        agent = re.match(r"You are (\w+),", prompt[0]["content"]).group(1)
        user = prompt[-1]["content"]
        if user.rstrip().endswith("Answer yes or no."):
            return self._answer(agent, user.rstrip().splitlines()[-1])  # the question is the last line
        if "Rewrite your belief state" in user:
            return "I track the bombs I have seen and where my teammates are."
        return self._act(agent, int(re.findall(r"Round (\d+) of", user)[-1]))

    def _act(self, agent: str, round_now: int) -> str:
        game = self.shadow
        while game.round < round_now:  # the episode ended a round since this agent's last turn
            game.end_round()
        if self.policy == "explorer":
            action = self._explore(agent)
        else:
            joint = self.plan[game.round - 1] if game.round - 1 < len(self.plan) else None
            action = joint[self.config.agents.index(agent)] if joint is not None else Action("wait")
        pick = self.rng.choice
        if action.kind == "move":
            text = pick(_MOVE).format(room=action.room)
        elif action.kind == "inspect":
            text = pick(_INSPECT)
        elif action.kind == "cut":
            text = pick(_CUT).format(colour=action.colour)
        else:
            text = pick(_WAIT)
        here = game.bomb_in(game.positions[agent])
        news = (f"bomb {here.id} here still needs {', '.join(here.remaining)}" if here is not None and
                here.id in game.inspected[agent] else f"I am in room {game.positions[agent]}")
        reply = f"{text}\nMessage: {news}."
        named, message = parse_reply(reply)  # what the episode will make of it
        legal = game.legal_actions(agent)
        game.act(agent, named if named is not None and named in legal else None, message)
        return reply

    def _explore(self, agent: str) -> Action:
        """Inspect an unseen bomb, cut a phase one holds the cutter for, else move at random: an agent
        that learns, tells and acts, so the ToM questions have both answers."""
        game = self.shadow
        here = game.bomb_in(game.positions[agent])
        legal = game.legal_actions(agent)
        if here is not None and here.id not in game.inspected[agent] and Action("inspect") in legal:
            return Action("inspect")
        if here is not None and here.id in game.inspected[agent] and here.remaining[0] in self.config.holds(agent):
            return Action("cut", colour=here.remaining[0])
        moves = [a for a in legal if a.kind == "move"]
        return self.rng.choice(moves) if moves else Action("wait")

    def _answer(self, agent: str, question: str) -> str:
        if self.tom == "no":
            return self.rng.choice(_NO)
        log = self.shadow.log
        t = len(log.events) - 1
        bomb = int(re.search(r"bomb (\d+)", question).group(1))
        second = re.search(r"Does (\w+) know that you know", question)
        first = re.search(r"Does (\w+) know the phase", question)
        if second:
            truth = knows_that_knows(log, second.group(1), agent, bomb, t)
        elif first:
            truth = knows(log, first.group(1), bomb, t)
        else:
            truth = knows(log, agent, bomb, t)
        return self.rng.choice(_YES if truth else _NO)


def _play(config: TeamConfig, seed: int, tom: str, belief: bool = False, policy: str = "planner"):
    lm = PlannerInWords(config, seed, tom=tom, policy=policy)
    (episode,) = play_llm_episodes(lm, config, [seed], LLMAgentConfig(belief=belief), progress=False)
    return episode


@pytest.mark.parametrize("belief", [False, True])
def test_planner_in_words_reaches_the_planners_score_and_rounds(belief):
    config = TeamConfig()
    for seed in SEEDS:
        planner = play_planner(config, seed)
        episode = _play(config, seed, "truth", belief=belief)
        assert (episode.score, episode.rounds_played, episode.complete) == (
            planner.score, planner.rounds_played, planner.complete), f"seed {seed}"
        assert episode.calls > 0 and episode.tom, f"seed {seed}: no ToM questions were asked"


def test_tom_answers_from_the_log_score_100_and_always_no_scores_the_no_share():
    config = TeamConfig()
    truthful = [_play(config, seed, "truth", policy=p) for seed in SEEDS for p in ("planner", "explorer")]
    never = [_play(config, seed, "no", policy=p) for seed in SEEDS for p in ("planner", "explorer")]
    right = tom_frame(truthful)
    assert len(right) > 0 and right["correct"].all() and right["parsed"].notna().all()
    # the questions have both answers at every order (the planner never inspects: the explorer does)
    assert right.groupby("order")["truth"].agg(["min", "max"]).eq([False, True]).all().all()
    said_no = tom_frame(never)
    # the same questions are asked: ToM questions follow the actions, which do not depend on the answers
    key = ["seed", "round", "agent", "teammate", "bomb", "order"]
    pd.testing.assert_frame_equal(right[key + ["truth"]].reset_index(drop=True), said_no[key + ["truth"]].reset_index(drop=True))
    table = tom_table(said_no, n_boot=100)
    for row in table.itertuples():
        assert row.accuracy == pytest.approx(1 - row.truth_yes)
        if row.truth_yes <= 0.5:  # "no" is the majority answer: always-no is the majority baseline
            assert row.accuracy == pytest.approx(row.majority_baseline)
    assert (tom_table(right, n_boot=100)["accuracy"] == 1.0).all()
    # where "no" is the majority answer (the planner's games: it never inspects, nobody learns a sequence
    # by looking), always-no is exactly the majority baseline
    planner_only = tom_table(tom_frame(never[::2]), n_boot=100)  # never alternates planner, explorer
    assert ((planner_only["truth_yes"] < 0.5) & (planner_only["accuracy"] == planner_only["majority_baseline"])).all()
