"""Team-game agents: random, planner, MAPPO, and LLM agents with and without a belief state, with the
theory-of-mind questions, episodes and transcripts."""

from __future__ import annotations

import json
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from tomlab.backends.lm import Completion, LanguageModel
from tomlab.backends.lockstep import Request, run_lockstep
from tomlab.team import AGENT_TYPES, LLM_TYPES
from tomlab.team.env import observation_text, reply_parser
from tomlab.team.epistemic import TOM_ORDERS
from tomlab.team.game import (
    Action,
    BombGame,
    Result,
    TeamConfig,
    action_from_index,
    action_space_size,
)
from tomlab.team.episode import (  # noqa: F401 (LLMAgentConfig, Episode, parse_yes_no: this module's API too)
    TOMLAB_HISTORY_ROUNDS,
    Episode,
    LLMAgentConfig,
    _finish,
    _record,
    parse_yes_no,
    tom_truth,
)
from tomlab.team.planner import plan_game

Policy = Callable[[BombGame, str, np.random.Generator], Action]


def random_policy(game: BombGame, agent: str, rng: np.random.Generator) -> Action:
    """Uniform over the whole discrete action space (every room, inspect, every colour), as an
    untrained policy would act: actions that are illegal where the agent stands lose the turn."""
    return action_from_index(game.config, int(rng.integers(action_space_size(game.config))))


def random_legal_policy(game: BombGame, agent: str, rng: np.random.Generator) -> Action:
    """Uniform over the actions that are legal where the agent stands (a stronger random baseline)."""
    legal = game.legal_actions(agent)
    return legal[int(rng.integers(len(legal)))]


def play_policy(config: TeamConfig, seed: int, policy: Policy, agent_type: str, shuffle: bool = False) -> Episode:
    """An episode in which every agent follows ``policy``; with ``shuffle`` the agents act in a random
    order each round (the paper's MAPPO setting)."""
    game = BombGame(config, seed=seed)
    rng = np.random.default_rng([seed, 7])
    ep = Episode(agent_type=agent_type, seed=seed, record=game.record())
    while not game.over:
        order = [config.agents[i] for i in rng.permutation(len(config.agents))] if shuffle else config.agents
        for agent in order:
            if game.done:
                break
            action = policy(game, agent, rng)
            _record(ep, game, agent, action, game.act(agent, action))
        game.end_round()
    return _finish(ep, game)


def play_planner(config: TeamConfig, seed: int) -> Episode:
    """The centralised planner: plan once with full information, then play the plan."""
    game = BombGame(config, seed=seed)
    plan = plan_game(game)
    ep = Episode(agent_type="planner", seed=seed, record=game.record())
    for joint in plan.actions:
        for agent, action in zip(config.agents, joint):
            _record(ep, game, agent, action, game.act(agent, action))
        game.end_round()
    ep = _finish(ep, game)
    if ep.score != plan.score:  # pragma: no cover - the plan is computed on the same rules
        raise RuntimeError(f"planner: plan promised {plan.score} points, the game gave {ep.score}")
    return ep


def rules_text(config: TeamConfig, agent: str) -> str:
    """The initial (system) prompt: the game, the map, who holds which cutters, how to reply. Under the
    paper's rules this is the only place the map, the tools and the reply format are stated."""
    if config.rules == "paper":
        return _paper_rules_text(config, agent)
    others = "; ".join(f"{a} holds {' and '.join(config.holds(a))}" for a in config.agents if a != agent)
    corridors = ", ".join(f"{a}-{b}" for a, b in config.corridors)
    return (
        f"You are {agent}, one of {len(config.agents)} agents ({', '.join(config.agents)}) defusing bombs in a "
        f"building. Rooms: {', '.join(map(str, config.rooms))}. Corridors: {corridors}. Each bomb has 1 to "
        f"{max(config.bomb_phases)} phases, each with a colour ({', '.join(config.colours)}); a bomb is defused "
        "when its phases are cut in order, each with a cutter of that phase's colour. Inspecting a bomb shows "
        f"you its phases. You hold the {' and '.join(config.holds(agent))} cutters; {others}. The team scores "
        f"{config.points_per_phase} points per phase of every defused bomb. Each round every agent takes one "
        "action: move to a room next to yours, inspect the bomb in your room, or apply one of your cutters to "
        "it. You may also send one message to the team."
    )


def _paper_rules_text(config: TeamConfig, agent: str) -> str:
    """tomlab's own wording of what the paper's initial prompt tells an agent (the released prompt text
    is not reproduced); the reply format is the released one, which its parser expects."""
    links = "; ".join(f"room {r} to room{'s' if len(n) > 1 else ''} {', '.join(map(str, n))}"
                      for r, n in config.neighbours.items())
    tools = "; ".join(f"{a} holds {' and '.join(config.holds(a))}" for a in config.agents)
    return (
        f"This is a text game. You are {agent}, one of {len(config.agents)} specialists "
        f"({', '.join(config.agents)}) who defuse bombs hidden in a building of {len(config.rooms)} rooms, "
        f"numbered {', '.join(map(str, config.rooms))}. Hallways link {links}; each round you can only go to a "
        f"room linked to yours. There are {len(config.bomb_phases)} bombs, at most one per room, each with 1 to "
        f"{max(config.bomb_phases)} phases; every phase has a colour ({', '.join(config.colours)}), and a bomb is "
        "defused by applying wire cutters of its phases' colours in order (a red-green bomb takes the red "
        f"cutter, then the green one). Each cutter use on a bomb the team defuses earns {config.points_per_phase} "
        "points; score as much as you can, as soon as you can. At the start nobody knows where the bombs are "
        f"or what their sequences are. Cutters: {tools}. Each round you do one of three things: move to a "
        "linked room, inspect the bomb in your room to learn its sequence, or apply one of your cutters to the "
        "bomb in your room. You may also send one message to both teammates, which they read next round. You "
        "see only your own room, the round, the team score, where your teammates are and their messages; your "
        "teammates see no more, and do not know what you did unless you tell them. Reply in exactly this "
        'form: Action selection: <your action>. Message to Team: "<your message>". To move, say \'Move to '
        "Room X'; to inspect, say 'Inspect Bomb'; to use a cutter, say 'Apply X Tool'."
    )


# A concrete example line: the embedded 135M model echoes its observation when shown only a
# template with placeholders, and names an action when shown one filled in (it then favours the
# example's room, which the report says). Used under the assisted rules only.
ACTION_INSTRUCTION = (
    "Choose one of the actions you can take now. Reply in this form:\n"
    "Action: move to room 0\n"
    "Message: I am going to room 0."
)
PAPER_INSTRUCTION = "What is your next action?"
"""The question closing each turn's prompt under the paper's rules (the format is in the initial prompt)."""


def tom_questions(topic: str, teammate: str, subject: int, room: int | None = None) -> dict[str, str]:
    """The three orders of one ToM topic: ``room`` (the current contents of room ``subject``),
    ``bomb_change`` (that a cut just changed bomb ``subject``), ``sequence`` (bomb ``subject``'s phase
    sequence; ``room`` is where it is)."""
    if topic == "room":
        what = f"the current contents of room {subject}"
    elif topic == "bomb_change":
        what = f"that the state of bomb {subject} has just changed"
    elif topic == "sequence":
        what = f"the phase sequence of bomb {subject}" + (f" (in room {room})" if room is not None else "")
    else:
        raise ValueError(f"unknown ToM topic {topic!r}")
    return {
        "introspection": f"Do you know {what}?",
        "first_order": f"Does {teammate} know {what}?",
        "second_order": f"Does {teammate} know that you know {what}?",
    }


EpisodeGen = Generator[list[Request], list[Completion], Episode]


def llm_episode(config: TeamConfig, seed: int, agent_cfg: LLMAgentConfig) -> EpisodeGen:
    """One LLM-agent episode as a generator of prompt batches (see :func:`play_llm_episodes`): in the
    released conversation (:mod:`tomlab.team.released_play`) under ``team.prompts: released`` and the
    paper's rules, else in tomlab's own text."""
    if agent_cfg.released and config.rules == "paper":
        from tomlab.team.released_play import released_episode

        return (yield from released_episode(config, seed, agent_cfg))
    game = BombGame(config, seed=seed)
    rng = np.random.default_rng([seed, 11])
    agent_type = "llm_belief" if agent_cfg.belief else "llm"
    ep = Episode(agent_type=agent_type, seed=seed, record=game.record())
    history: dict[str, list[tuple[str, str]]] = {a: [] for a in config.agents}
    belief: dict[str, str] = {a: "Nothing known yet." for a in config.agents}

    def ask(requests: list[Request], kinds: list[str], agent: str) -> Generator[list[Request], list[Completion], list[str]]:
        completions = yield requests
        texts = []
        for req, comp, kind in zip(requests, completions, kinds):
            ep.calls += 1
            ep.prompt_tokens += comp.prompt_tokens
            ep.completion_tokens += comp.completion_tokens
            ep.transcript.append({"kind": kind, "round": game.round, "agent": agent,
                                  "prompt": req.prompt, "completion": comp.text})
            texts.append(comp.text)
        return texts

    parse = reply_parser(config.rules, agent_cfg.parser, rooms=config.rooms)
    instruction = PAPER_INSTRUCTION if config.rules == "paper" else ACTION_INSTRUCTION
    while not game.over:
        for agent in config.agents:
            if game.done:
                break
            system = {"role": "system", "content": rules_text(config, agent)}
            obs = observation_text(game.observe(agent))
            if agent_cfg.belief:
                content = (f"Your belief state so far:\n{belief[agent]}\n\nNew observation:\n{obs}\n\n"
                           "Rewrite your belief state: what you know about the rooms, the bombs and their phases, "
                           "where your teammates are and what they know. At most five short lines.")
                (text,) = yield from ask([Request([system, {"role": "user", "content": content}],
                                                  agent_cfg.generation("belief", seed), agent)], ["belief"], agent)
                belief[agent] = text.strip() or belief[agent]
                context = f"Your belief state:\n{belief[agent]}\n\nNow:\n{obs}"
            else:
                keep = TOMLAB_HISTORY_ROUNDS if agent_cfg.history_rounds is None else agent_cfg.history_rounds
                past = history[agent] if keep == "all" else (history[agent][-int(keep):] if int(keep) > 0 else [])
                context = "".join(f"Earlier (round {i + 1} of those shown):\n{o}\nYou replied:\n{r}\n\n"
                                  for i, (o, r) in enumerate(past)) + f"Now:\n{obs}"
            prompt = [system, {"role": "user", "content": f"{context}\n\n{instruction}"}]
            (reply,) = yield from ask([Request(prompt, agent_cfg.generation("action", seed), agent)], ["action"], agent)
            named, message = parse(reply)
            bomb_here = game.bomb_in(game.positions[agent])
            result = game.act(agent, named, message)  # the rules refuse an action that is not possible here
            _record(ep, game, agent, named, result, row=ep.transcript[-1],
                    parsed=None if named is None else named.describe(), message=message)
            history[agent].append((obs, reply.strip()))
            if agent_cfg.tom and _asks_tom(config, named, result, bomb_here):
                yield from _ask_tom(game, agent, context, result, bomb_here, agent_cfg, seed, rng, ep, ask, system)
        game.end_round()
    return _finish(ep, game)


def _asks_tom(config: TeamConfig, named: Action | None, result: Result, bomb_here: Any) -> bool:
    """Whether the acting agent is asked the ToM questions. Under the paper's rules, as the released
    code asks them: after every move it named (refused or not), and after an inspection or a cut it
    named where a bomb was; under ``assisted``, after every valid move, inspection or cut."""
    if named is None or named.kind == "wait":
        return False
    if config.rules == "paper":
        return named.kind == "move" or bomb_here is not None
    return result.valid


def _tom_subject(game: BombGame, agent: str, result: Result, bomb_here: Any,
                 rng: np.random.Generator) -> tuple[str, int, dict[str, Any]]:
    """What the ToM questions after ``result`` are about. Under the paper's rules the topic follows
    the action named (a move: the contents of the room it named; a cut: whether the bomb that was
    there changed; an inspection: that bomb's sequence); under ``assisted`` it is always a bomb's
    sequence (the one in the agent's room, else a random one)."""
    action = result.action
    assert action is not None
    if game.config.rules == "paper":
        if action.kind == "move":
            return "room", int(action.room), {}  # type: ignore[arg-type]
        if action.kind == "cut":
            return "bomb_change", bomb_here.id, {}
        return "sequence", bomb_here.id, {"room": bomb_here.room}
    here = game.bomb_in(game.positions[agent])
    bomb = here if here is not None else game.bombs[int(rng.integers(len(game.bombs)))]
    return "sequence", bomb.id, {"room": bomb.room}


def _ask_tom(game: BombGame, agent: str, context: str, result: Result, bomb_here: Any, agent_cfg: LLMAgentConfig,
             seed: int, rng: np.random.Generator, ep: Episode, ask: Any, system: dict[str, str]) -> Any:
    cfg = game.config
    teammates = [a for a in cfg.agents if a != agent]
    teammate = teammates[int(rng.integers(len(teammates)))]
    topic, subject, extra = _tom_subject(game, agent, result, bomb_here, rng)
    truth = tom_truth(game, topic, subject, agent, teammate, result.event)
    questions = tom_questions(topic, teammate, subject, **extra)
    requests = [Request([system, {"role": "user", "content":
                                  f"{context}\n\nYou acted: {result.feedback}\n\n{questions[o]} Answer yes or no."}],
                        agent_cfg.generation("tom", seed), agent) for o in TOM_ORDERS]
    answers = yield from ask(requests, [f"tom:{o}" for o in TOM_ORDERS], agent)
    for order, text in zip(TOM_ORDERS, answers):
        said = parse_yes_no(text)
        ep.tom.append({"seed": ep.seed, "agent_type": ep.agent_type, "round": game.round, "agent": agent,
                       "teammate": teammate, "topic": topic, "subject": subject, "order": order,
                       "question": questions[order], "answer": text, "parsed": said, "truth": truth[order],
                       "correct": said is not None and said == truth[order]})


def check_agent_models(names: Iterable[str], config: TeamConfig) -> None:
    """Refuse per-agent models (``team.agent_models``) for agents the game does not have."""
    unknown = sorted(set(names) - set(config.agents))
    if unknown:
        raise ValueError(f"team.agent_models: no agent named {unknown} (agents: {list(config.agents)})")


def play_llm_episodes(lm: LanguageModel | Mapping[str, LanguageModel], config: TeamConfig, seeds: Iterable[int],
                      agent_cfg: LLMAgentConfig, progress: bool = True) -> list[Episode]:
    """Play one episode per seed in lockstep, batching the prompts they wait on into one call to
    ``generate`` per backend and generation setting (see :func:`tomlab.lockstep.run_lockstep`).
    ``lm`` is one model for the whole team, or a mapping from agent name to its model (with an
    optional ``"default"`` for the agents it does not name)."""
    if isinstance(lm, LanguageModel):
        models: dict[str, LanguageModel] = {a: lm for a in config.agents}
    else:
        check_agent_models(set(lm) - {"default"}, config)
        missing = [a for a in config.agents if a not in lm and "default" not in lm]
        if missing:
            raise ValueError(f"team: no model for agent(s) {missing}")
        models = {a: lm.get(a) or lm["default"] for a in config.agents}
    gens = [llm_episode(config, int(s), agent_cfg) for s in seeds]
    return run_lockstep(gens, models, progress=progress, desc=f"{'llm_belief' if agent_cfg.belief else 'llm'} prompts")


def write_transcript(path: Any, episode: Episode, max_rounds: int) -> None:
    """One JSON object per line. The first is the episode's record (``"kind": "episode"``: rules
    variant, map, each agent's cutters and start room, each bomb's room and phase sequence, the
    limits; see :meth:`tomlab.team.game.BombGame.record`) with the agent type, so the episode can be
    checked or replayed (:meth:`BombGame.from_record`) without rerunning anything; then every prompt,
    completion, parsed action, reward and ToM answer, and a summary."""
    from tomlab.io import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        header = {**episode.record, "kind": "episode", "agent_type": episode.agent_type, "seed": episode.seed}
        fh.write(json.dumps(header) + "\n")
        for row in episode.transcript:
            fh.write(json.dumps(row, default=str) + "\n")
        for row in episode.tom:
            fh.write(json.dumps({"kind": "tom_answer", **row}, default=str) + "\n")
        fh.write(json.dumps({"kind": "summary", **episode.summary(max_rounds)}, default=str) + "\n")


def episodes_frame(episodes: Sequence[Episode], max_rounds: int) -> Any:
    import pandas as pd

    return pd.DataFrame([e.summary(max_rounds) for e in episodes])


def tom_frame(episodes: Sequence[Episode]) -> Any:
    import pandas as pd

    cols = ["seed", "agent_type", "round", "agent", "teammate", "topic", "subject", "order", "question", "answer",
            "parsed", "truth", "correct"]
    rows = [r for e in episodes for r in e.tom]
    return pd.DataFrame(rows, columns=cols)


def play_episodes(agent_type: str, config: TeamConfig, seeds: Iterable[int], *, policies: Any = None,
                  lm: LanguageModel | Mapping[str, LanguageModel] | None = None, llm: Mapping[str, Any] | None = None) -> list[Episode]:
    """Play one episode per seed with a team of ``agent_type``: ``policies`` (a trained MAPPO file)
    for ``mappo``, ``lm`` and the ``team.llm`` settings for the LLM teams."""
    seeds = list(seeds)
    if agent_type == "random":
        return [play_policy(config, s, random_policy, "random") for s in seeds]
    if agent_type == "planner":
        return [play_planner(config, s) for s in seeds]
    if agent_type == "mappo":
        if not policies:
            raise ValueError("--policies is required for agent type mappo")
        from tomlab.team.mappo import load_policies, mappo_policy

        policy = mappo_policy(load_policies(policies, config), config)
        return [play_policy(config, s, policy, "mappo", shuffle=config.rules == "paper") for s in seeds]
    if agent_type in LLM_TYPES:
        if lm is None:
            raise ValueError(f"agent type {agent_type} needs a language model")
        agent_cfg = LLMAgentConfig.from_dict(llm or {}, belief=agent_type == "llm_belief")
        return play_llm_episodes(lm, config, seeds, agent_cfg)
    raise ValueError(f"unknown agent type {agent_type!r}; known: {list(AGENT_TYPES)}")
