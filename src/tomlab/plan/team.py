"""What the team game's LLM episodes ask of their models: rule ``team_play_llm`` (workflow/rules/team.smk),
one job per team model and LLM agent type (``results/benchmarks/team_play_llm/{model}/{agent}.tsv``).

An episode is a conversation whose length depends on the model's replies, so the plan counts its LIMITS.
It plays ``min(team.seeds, SIMULATED_SEEDS)`` episodes with a stand-in for the model through the game's own
episode code (:func:`tomlab.team.agents.llm_episode`: the released conversation of
:mod:`tomlab.team.released_play` under ``team.prompts: released``, else tomlab's prompts), so every prompt
counted is built by the functions the run uses, then renders each prompt as the backend does (the model's
chat template, its special tokens) and counts it with the model's tokenizer (``ctx.tokens``).  The
stand-in's replies are what the plan assumes of the model (:data:`LIMIT`):

- every reply takes its whole ``max_new_tokens`` (action ``team.llm.max_new_tokens``, belief update
  ``belief_max_new_tokens``, ToM answer ``tom_max_new_tokens``), and a reply the conversation keeps counts
  that many tokens in every later prompt (under ``team.prompts: released`` with ``history_rounds`` null the
  whole conversation is kept, so a round-r prompt holds every earlier observation and reply);
- every action is a valid move with a message to the team as long as a whole reply (the team stays
  together in the start room in round 1 under the paper's rules, then moves back and forth as one), so
  no bomb is defused, no deadlock or stall ends the episode before ``team.max_rounds`` and the ToM
  questions (``team.llm.tom``: three per turn) follow every turn.

The counts of prompts and decoded tokens are limits: a team that defuses the bombs or deadlocks plays
fewer rounds, a reply that stops early is shorter, and no ToM question follows an unreadable action (nor,
under ``team.rules: assisted``, a refused one).  The prompt lengths are the limit of what the replies add
and an estimate of the rest: each observation is the game's own text for a move, with every message at its
limit; another result (a refused cut's sentence is longer than a move's) can make a real prompt a little
longer.  With :data:`INVALID` the stand-in names nothing, as a model whose replies cannot be read: the
counts are then exact for such a model (the tests check them against the meter).  Each round's prompts of
each kind (action, belief update, ToM) are a Pass of their own, so the growth of the conversation shows;
rounds past :data:`EXACT_ROUNDS` are extrapolated from the last two.  A team agent with a model of its own
(``team.agent_models``) is counted on that model, in a JobWork of its own for the same job (``model``: its
panel name, else its short name as :func:`tomlab.panel.model_name` gives it).

The helpers at the top (models by role, rendering and counting prompts, driving a conversation with a
stand-in) serve :mod:`tomlab.plan.debate` too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import replace
from typing import Any

import pandas as pd

from tomlab.panel import is_served, with_defaults
from tomlab.plan.context import PlanContext
from tomlab.plan.work import JobWork, Pass

#: Episodes played with the stand-in per job (the prompts differ across seeds only by the map's draw).
SIMULATED_SEEDS = 2
#: Rounds whose prompts are built one by one; later rounds grow as the last two did.
EXACT_ROUNDS = 40
#: The stand-in's behaviour: ``limit`` (valid moves with messages: the most the run can ask) or
#: ``invalid`` (replies that name no action and send no message: how an unreadable model plays).
LIMIT, INVALID = "limit", "invalid"
#: The team section's keys the rule passes as ``--team-json`` (common.smk's TEAM_RULES).
TEAM_RULES = ("rules", "map", "bomb_phases", "colours", "agents", "max_rounds", "deadlock_rounds", "stall_rounds",
              "wrong_cutter", "points_per_phase")

# --- shared with tomlab.plan.debate ------------------------------------------------------------------

#: A stand-in reply of kind K is ``⟪K⟫...⟪/K⟫`` and a mark ``⟦K⟧``; a prompt counts either as ``lengths[K]``
#: tokens wherever it appears (the text inside a reply is what the game reads, not what the model is
#: assumed to write).  A reply holds no other reply, so each is found in one pass.
_SPAN = re.compile(r"\u27ea(\w+)\u27eb[^\u27ea]*\u27ea/\1\u27eb")
_MARK = re.compile(r"\u27e6(\w+)\u27e7")


def reply(kind: str, text: str = "") -> str:
    """A stand-in reply of ``kind`` (counted as that kind's tokens) that the game reads as ``text``."""
    return f"\u27ea{kind}\u27eb{text}\u27ea/{kind}\u27eb"


def mark(kind: str) -> str:
    """A mark counted as ``kind``'s tokens where it appears (a message quoted in an observation)."""
    return f"\u27e6{kind}\u27e7"


def unmark(text: str, lengths: Mapping[str, int]) -> tuple[str, int]:
    """``text`` without its stand-in replies and marks, and the tokens they stand for."""
    extra = 0

    def cut(m: re.Match[str]) -> str:
        nonlocal extra
        extra += int(lengths[m.group(1)])
        return ""

    return _MARK.sub(cut, _SPAN.sub(cut, text)), extra


def batch_size(value: Any) -> int:
    """A config's batch size as a Pass's: ``auto`` is 0 (the memory plan decides)."""
    return 0 if value == "auto" else int(value)


def own_models(ctx: PlanContext, key: str, role_spec: Any, experiment: str) -> dict[str, Any]:
    """The models an experiment plays, by the name its jobs carry (:func:`tomlab.panel.own_models`)."""
    from tomlab.panel import own_models as workflow_models

    return workflow_models(ctx.config, ctx.panel, key, role_spec, experiment)


def role_model_name(ctx: PlanContext, spec: Mapping[str, Any]) -> str:
    """A role's model by name: the panel model it is, else its short name (:func:`tomlab.panel.model_name`)."""
    from tomlab.panel import model_name, with_defaults

    full = with_defaults(spec)
    return next((m for m, s in ctx.panel.items() if s == full), model_name(spec))


def backend_groups(default: Mapping[str, Any], roles: Mapping[str, Any]) -> list[tuple[Mapping[str, Any], list[str]]]:
    """The backends a command builds (:func:`tomlab.backends.build.build_backends`: equal specs share one,
    ``default`` first, built even when no role uses it), each with the roles it plays."""
    groups: dict[str, tuple[Mapping[str, Any], list[str]]] = {}
    for role in ("default", *roles):
        spec = roles.get(role) or default
        groups.setdefault(json.dumps(spec, sort_keys=True), (spec, []))[1].append(role)
    return list(groups.values())


class PromptCounter:
    """Tokens of a prompt as a model's backend feeds it: rendered through the chat template (or as
    ``role: content`` lines), special tokens as the backend adds them, stand-in replies at their lengths.
    A panel model is counted through ``ctx``; a role's model outside the panel through a context of its
    own (its tokenizer where one is at hand, else the character estimate, named in ``ctx.estimated``)."""

    def __init__(self, ctx: PlanContext) -> None:
        self.ctx = ctx
        self._contexts: dict[str, PlanContext] = {}

    def context(self, name: str, spec: Mapping[str, Any]) -> PlanContext:
        from tomlab.panel import with_defaults

        if self.ctx.panel.get(name) == with_defaults(spec):
            return self.ctx
        key = f"{name}\n{json.dumps(spec, sort_keys=True)}"
        if key not in self._contexts:
            self._contexts[key] = PlanContext({"models": {name: dict(spec)}}, scratch=self.ctx._scratch / "tokens")
        return self._contexts[key]

    def render(self, name: str, spec: Mapping[str, Any], prompt: Any, chat_template: bool,
               lengths: Mapping[str, int]) -> tuple[str, float]:
        """The prompt's text as ``name``'s backend feeds it, without the stand-in's replies and marks, and
        the tokens to add to the text's (the replies' and marks', less the special tokens ``ctx.tokens``
        adds to a text that the chat template has already written)."""
        from tomlab.backends.lm import messages_as_lines, normalize_prompt
        from tomlab.backends.models import apply_chat, uses_chat_template

        ctx = self.context(name, spec)
        tok = ctx.tokenizer(name)
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else normalize_prompt(prompt)
        if tok is not None and uses_chat_template(tok, chat_template, name):
            text, specials = apply_chat(tok, messages), ctx.tokens(name, [""])
        else:
            text, specials = (prompt if isinstance(prompt, str) else messages_as_lines(messages)), 0.0
        text, extra = unmark(text, lengths)
        return text, extra - specials

    def mean(self, name: str, spec: Mapping[str, Any], texts: list[str]) -> float:
        """The mean tokens of rendered ``texts`` under ``name``'s tokenizer (one call for them all)."""
        ctx = self.context(name, spec)
        tokens = ctx.tokens(name, texts)
        self.ctx.estimated |= ctx.estimated
        return tokens


def drive(conversation: Generator[list[Any], list[Any], Any],
          answer: Callable[[list[Any]], list[str]]) -> tuple[Any, list[list[Any]]]:
    """Run a lockstep conversation to its end, ``answer`` replying to each step's requests; its result and
    the requests of every step."""
    from tomlab.backends.lm import Completion

    steps: list[list[Any]] = []
    try:
        requests = next(conversation)
        while True:
            steps.append(requests)
            texts = answer(requests)
            requests = conversation.send([Completion(t, 0, 0, "length") for t in texts])
    except StopIteration as stop:
        return stop.value, steps


def model_works(ctx: PlanContext, counter: PromptCounter, *, experiment: str, rule: str, job: str, job_model: str,
                default: Mapping[str, Any], roles: Mapping[str, Any], asked: pd.DataFrame, lengths: Mapping[str, int],
                passes: Callable[[pd.DataFrame], list[Pass]]) -> list[JobWork]:
    """One JobWork per model a job loads (the job's own, then each role's other model), with the passes
    ``passes`` makes of the prompts ``asked`` of the roles it plays (its ``role`` column), each row's
    ``tokens`` the mean of its ``step`` (the prompts of one step are counted in one call)."""
    out = []
    for spec, played in backend_groups(default, roles):
        name = job_model if "default" in played else role_model_name(ctx, spec)
        mine = asked[asked["role"].isin(played)].copy()
        rendered = [counter.render(name, spec, p, t, lengths) for p, t in zip(mine["prompt"], mine["chat_template"])]
        mine["text"] = [text for text, _ in rendered]
        mine["extra"] = [extra for _, extra in rendered]
        mine["tokens"] = 0.0
        for _, group in mine.groupby("step", sort=False):
            mine.loc[group.index, "tokens"] = counter.mean(name, spec, list(group["text"])) + group["extra"].mean()
        own = None if ctx.specs.get(name) == with_defaults(spec) else with_defaults(spec)
        out.append(JobWork(experiment=experiment, rule=rule, job=job, model=name, loads=0 if is_served(spec) else 1,
                           passes=tuple(passes(mine)) if len(mine) else (), spec=own))
    return out


# --- the team game -----------------------------------------------------------------------------------


def _next_room(config: Any, here: int) -> int:
    """A room next to ``here`` the released parser can read (one digit where there is one)."""
    rooms = config.neighbours[here] or (here,)
    return min(rooms, key=lambda r: (not 0 <= r <= 9, r))


def _move(room: int) -> str:
    """A move with a message, in the released format and in tomlab's (every parser reads both)."""
    return (f'Action: Move to Room {room}. Message to Team: "{mark("message")}"\n'
            f"Message: {mark('message')}\n")


def _stand_in(config: Any, agent_cfg: Any, seed: int, replies: str) -> Callable[[list[Any]], list[str]]:
    """The stand-in model of one episode: ``limit`` stays in the start room in round 1 where the rules allow
    it (the paper's: the whole team then shows in every round-1 observation), then moves the team back and
    forth between two rooms, each move with a message; ``invalid`` names nothing. Every reply is counted at
    its kind's limit."""
    from tomlab.team.game import BombGame

    positions = dict(BombGame(config, seed=seed).positions)
    moved: set[str] = set()
    belief = agent_cfg.generation("belief", seed)

    def answer(requests: list[Any]) -> list[str]:
        if len(requests) > 1:
            return [reply("tom") for _ in requests]
        (req,) = requests
        if req.config == belief:
            return [reply("belief")]
        if replies == INVALID:
            return [reply("action")]
        agent, stays = req.model, req.model not in moved and config.rules == "paper"
        moved.add(agent)
        positions[agent] = positions[agent] if stays else _next_room(config, positions[agent])
        return [reply("action", _move(positions[agent]))]

    return answer


def _purpose(kind: str) -> str:
    return "tom" if kind.startswith("tom:") else kind


def asked_prompts(config: Any, agent_cfg: Any, seeds: Iterable[int], replies: str = LIMIT) -> pd.DataFrame:
    """Every prompt the episodes of ``seeds`` ask with the stand-in model: seed, round, purpose, role (the
    agent), prompt, chat_template and step (round and purpose)."""
    from tomlab.team.agents import llm_episode

    rows = []
    for seed in seeds:
        episode, _ = drive(llm_episode(config, seed, agent_cfg), _stand_in(config, agent_cfg, seed, replies))
        rows += [{"seed": seed, "round": int(r["round"]), "purpose": _purpose(r["kind"]), "role": r["agent"],
                  "prompt": r["prompt"], "chat_template": agent_cfg.chat_template,
                  "step": f"{r['round']}:{_purpose(r['kind'])}"} for r in episode.transcript if "prompt" in r]
    return pd.DataFrame(rows, columns=["seed", "round", "purpose", "role", "prompt", "chat_template", "step"])


_WHAT = {
    "action": "action requests (the conversation so far, earlier replies at their limit)",
    "belief": "belief updates",
    "tom": "ToM questions (3 after every turn: a limit; none follow an unreadable action)",
}


def team_passes(asked: pd.DataFrame, *, scale: float, rounds: int, lengths: Mapping[str, int],
                batch: int) -> list[Pass]:
    """A Pass per round and kind of prompt (``scale``: episodes run per episode played), rounds past the
    ones played extrapolated from the last two."""
    table = (asked.groupby(["round", "purpose"], sort=False)
             .agg(rows=("tokens", "size"), tokens=("tokens", "mean")).reset_index())
    out = [_team_pass(int(r.round), str(r.purpose), round(r.rows * scale), float(r.tokens), rounds, lengths, batch)
           for r in table.itertuples()]
    last = int(table["round"].max())
    final = table[table["round"] == last].set_index("purpose")
    before = table[table["round"] == last - 1].set_index("purpose")
    for rnd in range(last + 1, rounds + 1):
        for purpose, row in final.iterrows():
            step = float(row["tokens"] - before.loc[purpose, "tokens"]) if purpose in before.index else 0.0
            tokens = float(row["tokens"]) + (rnd - last) * step
            out.append(_team_pass(rnd, str(purpose), round(row["rows"] * scale), tokens, rounds, lengths, batch,
                                  extrapolated=True))
    return out


def _team_pass(rnd: int, purpose: str, rows: int, tokens: float, rounds: int, lengths: Mapping[str, int], batch: int,
               extrapolated: bool = False) -> Pass:
    how = ", prompt length extrapolated" if extrapolated else ""
    return Pass("generate", rows=rows, prompt_tokens=tokens, new_tokens=int(lengths[purpose]), batch=batch,
                what=f"round {rnd} of at most {rounds}: {_WHAT[purpose]}; up to {lengths[purpose]} new tokens{how}")


def jobs(ctx: PlanContext) -> list[JobWork]:
    """The ``team_play_llm`` jobs, counted at their limits (see the module)."""
    return jobs_assuming(ctx, LIMIT)


def jobs_assuming(ctx: PlanContext, replies: str) -> list[JobWork]:
    """The ``team_play_llm`` jobs, with the stand-in model playing as ``replies`` says (:data:`LIMIT`,
    :data:`INVALID`)."""
    from tomlab.panel import resolve_spec
    from tomlab.team import LLM_TYPES
    from tomlab.team.agents import LLMAgentConfig, check_agent_models
    from tomlab.team.game import TeamConfig

    team = ctx.section("team")
    types = [a for a in team["agent_types"] if a in LLM_TYPES]
    specs = own_models(ctx, "team.model", team["model"], "team")
    if not types or not specs:
        return []
    config = TeamConfig.from_dict({k: team[k] for k in TEAM_RULES})
    played = replace(config, max_rounds=min(config.max_rounds, EXACT_ROUNDS))
    own = {a: resolve_spec(s, ctx.panel, f"team.agent_models.{a}") for a, s in team["agent_models"].items() if s}
    check_agent_models(own, config)
    seeds = int(team["seeds"])
    simulated = range(min(seeds, SIMULATED_SEEDS))
    llm = {**{k: v for k, v in team["llm"].items() if k != "batch_size"}, "prompts": team["prompts"]}
    counter, out = PromptCounter(ctx), []
    for agent_type in types:
        agent_cfg = LLMAgentConfig.from_dict(llm, belief=agent_type == "llm_belief")
        lengths = {"action": agent_cfg.max_new_tokens, "belief": agent_cfg.belief_max_new_tokens,
                   "tom": agent_cfg.tom_max_new_tokens, "message": agent_cfg.max_new_tokens}
        asked = asked_prompts(played, agent_cfg, simulated, replies)

        def passes(mine: pd.DataFrame, lengths: Mapping[str, int] = lengths) -> list[Pass]:
            return team_passes(mine, scale=seeds / len(simulated), rounds=config.max_rounds, lengths=lengths,
                               batch=batch_size(team["llm"]["batch_size"]))

        for name, spec in specs.items():
            out += model_works(ctx, counter, experiment="team", rule="team_play_llm", job=f"{name}/{agent_type}",
                               job_model=name, default=spec, roles={a: own.get(a) for a in config.agents},
                               asked=asked, lengths=lengths, passes=passes)
    return out
