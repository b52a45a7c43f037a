"""An LLM-agent episode through the released text interface (``team.prompts: released``, the default).

The conversation is the release's: a system message, the background prompt, then per round the
observation that answers the agent's last action followed by the request for its next action (with a
belief state: the belief the agent wrote from that observation, followed by the action request), each
reply kept. Without a belief state every agent is first stepped to the start room, so its first
observation is round 0's "You moved to Room X". The ToM questions are the observation text followed by
the release's question, asked as a temporary user message; the teammate is drawn at every turn, as the
release draws it. The game, its rules and the ToM ground truth are tomlab's (:mod:`tomlab.team.game`).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import numpy as np

from tomlab.backends.lm import Completion
from tomlab.backends.lockstep import Request
from tomlab.team import released as rel
from tomlab.team.episode import Episode, LLMAgentConfig, _finish, _record, parse_yes_no, tom_truth
from tomlab.team.env import reply_parser
from tomlab.team.epistemic import TOM_ORDERS
from tomlab.team.game import Action, BombGame, Result, TeamConfig

Messages = list[dict[str, str]]


def window(messages: Messages, rounds: int | None) -> Messages:
    """The conversation sent: all of it (``rounds`` None), else the opening (system and background) and the
    last ``rounds`` rounds (each an assistant reply and the user message that follows it) before the latest
    user message."""
    if rounds is None or len(messages) <= 2:
        return list(messages)
    body = messages[2:]
    keep = 1 + 2 * rounds
    return messages[:2] + body[-keep:]


def result_text(game: BombGame, agent: str, action: Action | None, result: Result, here: int,
                bomb: tuple[int, tuple[str, ...], int] | None, found: list[str]) -> str:
    """The release's result sentence for ``action``, given the agent's room before it, the bomb that was
    there (id, sequence, phases cut) and who was in a move's target room before the move."""
    cfg = game.config
    if action is None:
        return rel.INVALID
    if action.kind == "move":
        room = int(action.room)  # type: ignore[arg-type]
        if result.valid:  # the bombs there: a move changes none
            return rel.moved(room, found, [b.id for b in game.bombs if b.room == room and b.live])
        return rel.not_adjacent(room, here)
    if action.kind == "inspect":
        if bomb is None:
            return rel.nothing_to_inspect(here)
        bomb_id, sequence, cut = bomb
        return rel.inspected(bomb_id, len(sequence), sequence[cut:])
    if action.kind == "cut":
        colour = str(action.colour)
        if colour not in cfg.holds(agent):
            return rel.no_such_tool(colour)
        if bomb is None:
            return rel.nothing_to_defuse(here)
        bomb_id, sequence, cut = bomb
        if colour == sequence[cut]:
            return rel.applied(colour, bomb_id, sequence[cut + 1:])
        return rel.wrong_colour(colour, bomb_id, sequence[cut:], cfg.colours)
    return rel.INVALID  # "wait" is never named by an LLM agent


def tom_topic(action: Action | None, bomb: tuple[int, tuple[str, ...], int] | None,
              defused: bool) -> tuple[str, str, int | None] | None:
    """(wording, ground-truth topic, subject) of the questions the release asks after ``action``, or None:
    after a move named, the named room's contents; after a cut where a bomb was, that it changed (or, when the
    cut defused it, that a phase was defused); after an inspection where a bomb was, its sequence."""
    if action is None or action.kind == "wait":
        return None
    if action.kind == "move":
        return "room", "room", int(action.room)  # type: ignore[arg-type]
    if bomb is None:
        return None
    if action.kind == "cut":
        return ("bomb_defused" if defused else "bomb_change"), "bomb_change", bomb[0]
    return "sequence", "sequence", bomb[0]


AskGen = Generator[list[Request], list[Completion], list[str]]


def released_episode(config: TeamConfig, seed: int, agent_cfg: LLMAgentConfig) -> Generator[list[Request], list[Completion], Episode]:
    """One LLM-agent episode in the release's conversation (see the module)."""
    game = BombGame(config, seed=seed)
    game.log.teammates_shown = False  # the released observation shows one's own room, not teammates' rooms
    rng = np.random.default_rng([seed, 11])
    ep = Episode(agent_type="llm_belief" if agent_cfg.belief else "llm", seed=seed, record=game.record())
    start = game.positions[config.agents[0]]
    start_bomb = game.bomb_in(start)
    chats: dict[str, Messages] = {a: rel.opening(a, agent_cfg.belief, start, None if start_bomb is None else start_bomb.id)
                                  for a in config.agents}
    said: dict[str, str] = {a: rel.NO_MESSAGE_YET for a in config.agents}
    occupancy = rel.Occupancy.start(game.positions)
    parse = reply_parser(config.rules, agent_cfg.parser, rooms=config.rooms)
    keep = agent_cfg.history_rounds if agent_cfg.history_rounds != "all" else None

    def ask(prompts: list[Messages], kinds: list[str], agent: str, purpose: str) -> AskGen:
        requests = [Request(p, agent_cfg.generation(purpose, seed), agent) for p in prompts]
        completions = yield requests
        for req, comp, kind in zip(requests, completions, kinds):
            ep.calls += 1
            ep.prompt_tokens += comp.prompt_tokens
            ep.completion_tokens += comp.completion_tokens
            ep.transcript.append({"kind": kind, "round": game.round, "agent": agent, "prompt": req.prompt,
                                  "completion": comp.text})
        return [c.text for c in completions]

    def observe(agent: str, round_: int, result: str) -> str:
        room = game.positions[agent]
        text = rel.observation(round_, game.score, result, room, occupancy.here(room), bombs_in(room), said)
        game.observe(agent)  # the epistemic log: what the agent was shown, and when
        return text

    def bombs_in(room: int) -> list[int]:
        return [b.id for b in game.bombs if b.room == room and b.live]

    while not game.over:
        for agent in config.agents:
            if game.done:
                break
            chat = chats[agent]
            here = game.positions[agent]
            if game.round == 1 and not agent_cfg.belief:  # round 0: stepped to the start room it is in
                found = occupancy.here(here)
                occupancy.move(agent, here)
                text = observe(agent, 0, rel.moved(here, found, bombs_in(here)))
                chat.append({"role": "user", "content": text + rel.OBSERVATION_ACTION_REQUEST})
            elif game.round == 1:
                game.observe(agent)  # the initial belief shows the start room
            (reply,) = yield from ask([window(chat, keep)], ["action"], agent, "action")
            chat.append({"role": "assistant", "content": reply})
            named, message = parse(reply)
            said[agent] = rel.reply_message(reply)
            live = game.bomb_in(here)
            bomb = None if live is None else (live.id, live.sequence, live.cut)
            target = int(named.room) if named is not None and named.kind == "move" else None  # type: ignore[arg-type]
            found = occupancy.here(target) if target is not None else []
            result = game.act(agent, named, message)
            _record(ep, game, agent, named, result, row=ep.transcript[-1],
                    parsed=None if named is None else named.describe(), message=message)
            if target is not None and result.valid:
                occupancy.move(agent, target)
            obs = observe(agent, game.round, result_text(game, agent, named, result, here, bomb, found))
            if agent_cfg.belief:
                (belief,) = yield from ask([window(chat, keep) + [{"role": "user", "content": obs + rel.UPDATE_REQUEST}]],
                                           ["belief"], agent, "belief")
                chat.append({"role": "user", "content": belief + rel.BELIEF_ACTION_REQUEST})
            else:
                chat.append({"role": "user", "content": obs + rel.OBSERVATION_ACTION_REQUEST})
            if agent_cfg.tom:
                teammates = [a for a in config.agents if a != agent]
                teammate = teammates[int(rng.integers(len(teammates)))]  # drawn every turn, as released
                defused = live is not None and not live.live and not live.exploded
                topic = tom_topic(named, bomb, defused)
                if topic is not None:
                    yield from _ask_tom(game, agent, teammate, topic, obs, window(chat, keep), result, ep, ask)
        game.end_round()
    return _finish(ep, game)


def _ask_tom(game: BombGame, agent: str, teammate: str, topic: tuple[str, str, int | None], obs: str,
             chat: Messages, result: Result, ep: Episode, ask: Any) -> Generator[list[Request], list[Completion], None]:
    wording, truth_topic, subject = topic
    questions = rel.tom_questions(wording, teammate, subject)
    truth = tom_truth(game, truth_topic, int(subject or 0), agent, teammate, result.event)
    prompts = [chat + [{"role": "user", "content": obs + questions[o]}] for o in TOM_ORDERS]
    answers = yield from ask(prompts, [f"tom:{o}" for o in TOM_ORDERS], agent, "tom")
    for order, text in zip(TOM_ORDERS, answers):
        parsed = parse_yes_no(text)
        ep.tom.append({"seed": ep.seed, "agent_type": ep.agent_type, "round": game.round, "agent": agent,
                       "teammate": teammate, "topic": truth_topic, "wording": wording, "subject": subject,
                       "order": order, "question": questions[order], "answer": text, "parsed": parsed,
                       "truth": truth[order], "correct": parsed is not None and parsed == truth[order]})
