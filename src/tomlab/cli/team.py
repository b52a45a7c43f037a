"""Subcommands for the team game."""

from __future__ import annotations

import argparse
import json
from typing import Any

import pandas as pd

from tomlab import io
from tomlab.backends.batching import parse_batch_size
from tomlab.cli.common import N_BOOT, _add_model_args, _model_cfg, int_range, json_object
from tomlab.schema import default as schema_default
from tomlab.schema import maximum as schema_maximum

#: The most episodes one ``team-play`` call plays (each writes a transcript): the schema's bound on ``team.seeds``.
MAX_EPISODES: int = schema_maximum("team.seeds")
#: The columns of the episode and ToM tables (``team-play``) that the tables and figures read.
EPISODE_COLUMNS = ("agent_type", "score", "rounds", "complete", "actions", "valid_actions", "total_tokens")
TOM_COLUMNS = ("agent_type", "order", "parsed", "truth", "correct")
CURVE_COLUMNS = ("timestep", "score", "rounds")


def _team_config(args: argparse.Namespace) -> Any:
    """The game of ``--team-json``; an error naming the flag when a value has the wrong type or is refused."""
    from tomlab.team.game import TeamConfig

    section = json_object(args.team_json, "--team-json")
    try:
        return TeamConfig.from_dict(section)
    except (TypeError, AttributeError, ValueError) as err:
        raise ValueError(f"--team-json: {err}") from err


def cmd_team_play(args: argparse.Namespace) -> None:
    from tomlab.backends.build import build_backend, usage_report
    from tomlab.team.agents import (
        LLM_TYPES,
        check_agent_models,
        episodes_frame,
        play_episodes,
        tom_frame,
        write_transcript,
    )

    config = _team_config(args)
    seeds = range(args.seed_offset, args.seed_offset + args.seeds)
    lm: Any = None
    if args.agent_type in LLM_TYPES:
        from tomlab.team.agents import LLMAgentConfig

        try:  # the team.llm settings (and team.prompts) are checked before any weights are loaded
            LLMAgentConfig.from_dict(json_object(args.llm_json, "--llm-json"))
        except (TypeError, ValueError) as err:
            raise ValueError(f"--llm-json: {err}") from err
        own = {a: spec for a, spec in json_object(args.agent_models_json, "--agent-models-json").items() if spec}
        check_agent_models(own, config)  # before any weights are loaded
        if own:
            from tomlab.backends.build import build_backends

            lm = build_backends({"default": _model_cfg(args), **own}, tuple(config.agents), batch_size=args.batch_size,
                                completion_cache=args.completion_cache, cache_dir=args.cache_dir, where="team.agent_models")
        else:
            lm = build_backend(_model_cfg(args), batch_size=args.batch_size, completion_cache=args.completion_cache,
                               cache_dir=args.cache_dir, where="team.model")
    episodes = play_episodes(args.agent_type, config, seeds, policies=args.policies, lm=lm,
                             llm=json_object(args.llm_json, "--llm-json"))
    with io.atomic_dir(args.transcripts) as tmp:
        for ep in episodes:
            write_transcript(tmp / f"seed{ep.seed}.jsonl", ep, config.max_rounds)
    io.write_parquet(args.out_tom, tom_frame(episodes))
    frame = episodes_frame(episodes, config.max_rounds)
    io.write_parquet(args.out_episodes, frame)
    usage: dict[str, Any] = {}
    if isinstance(lm, dict):
        usage = {"models": {agent: usage_report(backend) for agent, backend in lm.items()}}
    elif lm is not None:
        usage = usage_report(lm)
    print(json.dumps({"agent_type": args.agent_type, "mean_score": float(frame["score"].mean()),
                      "mean_rounds": float(frame["rounds"].mean()),
                      "tokens_per_episode": float(frame["total_tokens"].mean()), **usage}))


def cmd_team_train(args: argparse.Namespace) -> None:
    from tomlab.team.mappo import MAPPOConfig, save_policies, train_mappo

    config = _team_config(args)
    cfg = MAPPOConfig.from_dict(json_object(args.mappo_json, "--mappo-json"))
    policies, curve = train_mappo(config, cfg)
    save_policies(args.out_policies, policies, cfg)
    io.write_parquet(args.out_curve, curve)
    tail = curve.tail(max(1, len(curve) // 10))
    print(json.dumps({"episodes": len(curve), "last_tenth_mean_score": float(tail["score"].mean()) if len(curve) else None}))


def cmd_team_tables(args: argparse.Namespace) -> None:
    from tomlab.team.tables import summary_table, tom_table

    episodes = pd.concat([io.read_table(p, EPISODE_COLUMNS, flag="--episodes") for p in args.episodes],
                         ignore_index=True)
    toms = [io.read_table(p, TOM_COLUMNS, flag="--tom") for p in args.tom]
    tom = pd.concat([t for t in toms if not t.empty], ignore_index=True) if any(not t.empty for t in toms) else toms[0]
    io.write_parquet(args.out_episodes, episodes)
    io.write_parquet(args.out_summary, summary_table(episodes))
    io.write_parquet(args.out_tom, tom_table(tom, n_boot=args.n_boot, seed=args.seed))


def cmd_plot_team(args: argparse.Namespace) -> None:
    from tomlab.figures.team import plot_mappo_curve, plot_team_rounds

    episodes = io.read_table(args.episodes, ("agent_type", "rounds", "score"), flag="--episodes")
    plot_team_rounds(episodes, args.out_rounds, max_rounds=args.max_rounds)
    curve = (io.read_table(args.curve, CURVE_COLUMNS, flag="--curve") if args.curve
             else pd.DataFrame(columns=list(CURVE_COLUMNS)))
    plot_mappo_curve(curve, args.out_curve)


def add_commands(sub: Any) -> None:
    from tomlab.team import AGENT_TYPES

    def team_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--team-json", help="the config's team section as JSON (map, bombs, agents, rules)")

    p = sub.add_parser("team-play", help="play the team game with one agent type over several seeds")
    _add_model_args(p)
    team_arg(p)
    p.add_argument("--agent-type", required=True, choices=AGENT_TYPES)
    p.add_argument("--seeds", type=int_range(1, MAX_EPISODES), default=schema_default("team.seeds"),
                   help=f"number of episodes (seeds offset, offset+1, ...), 1 to {MAX_EPISODES}")
    p.add_argument("--seed-offset", type=int_range(0, 2**32 - 1 - MAX_EPISODES), default=0)
    p.add_argument("--policies", help="trained MAPPO policies (agent type mappo)")
    p.add_argument("--llm-json", help="the config's team.llm section as JSON (LLM agent types)")
    p.add_argument("--agent-models-json", help="the config's team.agent_models as JSON: agent -> its own model spec")
    p.add_argument("--batch-size", type=parse_batch_size, default=schema_default("team.llm.batch_size"),
                   help="prompts generated at once: an integer, or auto (the backend chooses)")
    p.add_argument("--completion-cache", help="directory of cached completions")
    p.add_argument("--out-episodes", required=True)
    p.add_argument("--out-tom", required=True)
    p.add_argument("--transcripts", required=True, help="directory for one JSONL transcript per episode")
    p.set_defaults(func=cmd_team_play)

    p = sub.add_parser("team-train", help="train MAPPO on the team game")
    team_arg(p)
    p.add_argument("--mappo-json", help="the config's team.mappo section as JSON")
    p.add_argument("--out-policies", required=True)
    p.add_argument("--out-curve", required=True)
    p.set_defaults(func=cmd_team_train)

    p = sub.add_parser("team-tables", help="combine the agent types' episodes; score and ToM tables")
    p.add_argument("--episodes", nargs="+", required=True)
    p.add_argument("--tom", nargs="+", required=True)
    p.add_argument("--n-boot", type=N_BOOT, default=schema_default("team.n_boot"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out-episodes", required=True)
    p.add_argument("--out-summary", required=True)
    p.add_argument("--out-tom", required=True)
    p.set_defaults(func=cmd_team_tables)

    p = sub.add_parser("plot-team", help="rounds-to-completion and MAPPO learning-curve figures")
    p.add_argument("--episodes", required=True)
    p.add_argument("--curve", help="MAPPO learning curve (without it the figure says MAPPO was not trained)")
    p.add_argument("--max-rounds", type=int_range(1, 100_000), default=schema_default("team.max_rounds"))
    p.add_argument("--out-rounds", required=True, help="figure path without extension")
    p.add_argument("--out-curve", required=True, help="figure path without extension")
    p.set_defaults(func=cmd_plot_team)
