"""MAPPO (skrl) for the team game, with a centralised critic and the original's reward shaping."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from tomlab.team.env import BombDefusalEnv
from tomlab.team.game import Action, BombGame, TeamConfig, action_from_index


@dataclass(frozen=True)
class MAPPOConfig:
    timesteps: int = 50000  # environment steps (rounds) of training
    rollouts: int = 256  # steps collected between updates
    learning_epochs: int = 4
    mini_batches: int = 4
    learning_rate: float = 3e-4
    discount: float = 0.99
    gae_lambda: float = 0.95
    entropy: float = 0.01
    hidden: int = 64
    seed: int = 0

    @classmethod
    def from_dict(cls, cfg: Mapping[str, Any]) -> MAPPOConfig:
        known = set(cls.__dataclass_fields__)
        unknown = set(cfg) - known
        if unknown:
            raise ValueError(f"team.mappo: unknown key(s) {sorted(unknown)}")
        return cls(**dict(cfg))


def _mlp(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
                         nn.Linear(hidden, n_out))


def _models(env: Any, hidden: int) -> dict[str, dict[str, Any]]:
    from skrl.models.torch import CategoricalMixin, DeterministicMixin, Model

    class PolicyNet(CategoricalMixin, Model):
        def __init__(self, observation_space: Any, action_space: Any) -> None:
            Model.__init__(self, observation_space=observation_space, action_space=action_space, device="cpu")
            CategoricalMixin.__init__(self, unnormalized_log_prob=True)
            self.net = _mlp(self.num_observations, hidden, int(action_space.n))

        def compute(self, inputs: dict[str, Any], role: str = "") -> tuple[torch.Tensor, dict]:
            return self.net(inputs["observations"]), {}

    class ValueNet(DeterministicMixin, Model):
        def __init__(self, state_space: Any) -> None:
            Model.__init__(self, state_space=state_space, device="cpu")
            DeterministicMixin.__init__(self)
            self.net = _mlp(self.num_states, hidden, 1)

        def compute(self, inputs: dict[str, Any], role: str = "") -> tuple[torch.Tensor, dict]:
            return self.net(inputs["states"]), {}

    return {
        a: {"policy": PolicyNet(env.observation_space(a), env.action_space(a)), "value": ValueNet(env.state_space)}
        for a in env.possible_agents
    }


def train_mappo(config: TeamConfig, cfg: MAPPOConfig, progress: bool = True) -> tuple[dict[str, nn.Module], pd.DataFrame]:
    """Train MAPPO for ``cfg.timesteps`` rounds. Returns each agent's policy network (logits over
    the discrete actions from its observation vector) and the learning curve: per finished training
    episode the timestep, the team's score, rounds and summed shaped reward, and the wall time since
    training began (``wall_s``)."""
    import time

    from skrl.envs.wrappers.torch import wrap_env
    from skrl.memories.torch import RandomMemory
    from skrl.multi_agents.torch.mappo import MAPPO, MAPPO_CFG
    from tqdm.auto import tqdm

    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    env = BombDefusalEnv(config)
    env.reset(seed=cfg.seed)
    wrapped = wrap_env(env, wrapper="pettingzoo", verbose=False)
    models = _models(env, cfg.hidden)
    memories = {a: RandomMemory(memory_size=cfg.rollouts, num_envs=1, device="cpu") for a in env.possible_agents}
    agent_cfg = MAPPO_CFG(rollouts=cfg.rollouts, learning_epochs=cfg.learning_epochs, mini_batches=cfg.mini_batches,
                          learning_rate=cfg.learning_rate, discount_factor=cfg.discount, gae_lambda=cfg.gae_lambda,
                          entropy_loss_scale=cfg.entropy)
    for f in dataclasses.fields(agent_cfg):  # skrl 2.1 rejects an empty kwargs dict: give one per agent
        if getattr(agent_cfg, f.name) == {}:
            setattr(agent_cfg, f.name, {a: {} for a in env.possible_agents})
    agent_cfg.experiment.write_interval = 0
    agent_cfg.experiment.checkpoint_interval = 0
    agent = MAPPO(possible_agents=list(env.possible_agents), models=models, memories=memories,
                  observation_spaces=wrapped.observation_spaces, state_spaces=wrapped.state_spaces,
                  action_spaces=wrapped.action_spaces, device="cpu", cfg=agent_cfg)
    agent.init()
    agent.enable_training_mode(True)

    curve: list[dict[str, Any]] = []
    obs, _ = wrapped.reset()
    states = wrapped.state()
    ep_reward = 0.0
    episode = 0
    began = time.perf_counter()
    for t in tqdm(range(cfg.timesteps), desc="MAPPO", unit="step", disable=not progress, mininterval=2.0):
        agent.pre_interaction(timestep=t, timesteps=cfg.timesteps)
        with torch.no_grad():
            actions, _ = agent.act(obs, states, timestep=t, timesteps=cfg.timesteps)
            next_obs, rewards, terminated, truncated, infos = wrapped.step(actions)
            next_states = wrapped.state()
            ep_reward += float(sum(r.sum() for r in rewards.values()))
            agent.record_transition(observations=obs, states=states, actions=actions, rewards=rewards,
                                    next_observations=next_obs, next_states=next_states, terminated=terminated,
                                    truncated=truncated, infos=infos, timestep=t, timesteps=cfg.timesteps)
        agent.post_interaction(timestep=t, timesteps=cfg.timesteps)
        if any(bool(x.any()) for x in terminated.values()) or any(bool(x.any()) for x in truncated.values()):
            game = env.game
            assert game is not None
            curve.append({"episode": episode, "timestep": t + 1, "score": game.score, "rounds": game.round - 1,
                          "complete": game.done, "reward": ep_reward, "wall_s": time.perf_counter() - began})
            episode += 1
            ep_reward = 0.0
            obs, _ = wrapped.reset()
            states = wrapped.state()
        else:
            obs, states = next_obs, next_states
    policies = {a: models[a]["policy"].net.eval() for a in env.possible_agents}
    return policies, pd.DataFrame(curve, columns=["episode", "timestep", "score", "rounds", "complete", "reward",
                                             "wall_s"])


def mappo_policy(policies: Mapping[str, nn.Module], config: TeamConfig, greedy: bool = False) -> Any:
    """A player from trained policies: each agent samples from its policy (with the episode's
    random generator), or with ``greedy`` takes its most likely action. PPO learns a stochastic
    policy, and its arg-max often walks in circles, so sampling is the default."""
    env = BombDefusalEnv(config)

    def act(game: BombGame, agent: str, rng: np.random.Generator) -> Action:
        env.game = game
        with torch.no_grad():
            logits = policies[agent](torch.as_tensor(env._encode(agent)).unsqueeze(0))[0]
        if greedy:
            return action_from_index(config, int(logits.argmax()))
        probs = torch.softmax(logits.double(), dim=-1).numpy()
        return action_from_index(config, int(rng.choice(len(probs), p=probs / probs.sum())))

    return act


def save_policies(path: str | os.PathLike[str], policies: Mapping[str, nn.Module], cfg: MAPPOConfig) -> None:
    from tomlab.io import atomic_path

    with atomic_path(path) as tmp:
        torch.save({"config": asdict(cfg), "policies": {a: p.state_dict() for a, p in policies.items()}}, tmp)


def load_policies(path: str | os.PathLike[str], config: TeamConfig) -> dict[str, nn.Module]:
    data = torch.load(path, map_location="cpu", weights_only=True)
    cfg = MAPPOConfig.from_dict(data["config"])
    env = BombDefusalEnv(config)
    out: dict[str, nn.Module] = {}
    for a, state in data["policies"].items():
        if a not in config.agents:
            raise ValueError(f"{path}: policy for {a!r}, an agent this config does not have")
        net = _mlp(env.obs_dim, cfg.hidden, int(env.action_space(a).n))
        net.load_state_dict(state)
        out[a] = net.eval()
    return out
