"""The panel of models a run compares: names, specs, which experiments run which model, and gathering
per-model tables into one with a ``model`` column.

A config names its models in ``models:`` (short name -> model spec); ``model:`` alone is a panel of one,
named after the model (:func:`model_name`).  A spec is a local model section (``{name: ..., dtype: ...}``,
the schema's ``model`` section with its defaults) or a served one (``{base_url, model, ...}``).  Each
experiment narrows the panel with its own ``<experiment>.panel`` list; probing, steering and the stress
tests need the weights, so a served model listed there is refused by name.  The team game's and the
debate's role settings may name a panel model instead of giving a spec.

Part of the shared layer: it imports only :mod:`tomlab.schema` (and pandas).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import pandas as pd

from tomlab.schema import NAME_PATTERN, load_schema

#: Experiments that read activations or hook the model, so need its weights.
NEEDS_WEIGHTS: tuple[str, ...] = ("probing", "steering", "stress")
#: Every experiment with its own ``panel`` list, in report order.
EXPERIMENTS: tuple[str, ...] = ("probing", "evaluation", "steering", "stress", "team", "debate")


def is_served(spec: Any) -> bool:
    """Whether a model spec is served (an OpenAI-compatible server) rather than local weights."""
    return isinstance(spec, Mapping) and "base_url" in spec


def model_name(spec: Mapping[str, Any]) -> str:
    """A short, folder-safe name for a spec: ``embedded:smollm2-135m-instruct`` -> ``smollm2-135m-instruct``,
    ``random:llama`` -> ``random-llama``, ``org/Model-7B`` (or a folder) -> ``Model-7B``; a served spec by its
    ``model``."""
    raw = str(spec.get("model") if is_served(spec) else spec.get("name", "model"))
    if raw.startswith("embedded:"):
        raw = raw.removeprefix("embedded:")
    elif raw.startswith("random:"):
        raw = "random-" + raw.removeprefix("random:")
    raw = raw.rstrip("/").rsplit("/", 1)[-1]
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", raw).strip("-._")[:64]
    return name or "model"


def _local_defaults() -> dict[str, Any]:
    props = load_schema()["properties"]["model"]["properties"]
    return {k: v["default"] for k, v in props.items() if "default" in v}


def with_defaults(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A local spec with the schema's defaults of the ``model`` section filled in; a served spec as is."""
    return dict(spec) if is_served(spec) else {**_local_defaults(), **spec}


def _check_local(spec: Mapping[str, Any], where: str) -> list[str]:
    props = load_schema()["properties"]["model"]["properties"]
    problems = [f"{where}.{k}: unknown key of a model section (known: {', '.join(props)})" for k in spec if k not in props]
    if not isinstance(spec.get("name"), str) or not spec.get("name"):
        problems.append(f"{where}: a local model needs a non-empty name (or base_url for a served one)")
    return problems


def model_panel(config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The run's panel, name -> spec (defaults filled in), in the config's order.  ``models:`` wins over
    ``model:`` when both are given (a panel file layered over a config that sets ``model:``)."""
    from tomlab.schema import served_spec_problems

    models = config.get("models") or {}
    if not models:
        if not config.get("model"):
            raise ValueError("config: give the model under study as 'model: {name: ...}' or a panel as 'models: {NAME: spec}'")
        spec = with_defaults(config["model"])
        return {model_name(spec): spec}
    if not isinstance(models, Mapping):
        raise ValueError(f"config key 'models': a mapping from a short name to a model spec, got {type(models).__name__}")
    panel: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    for name, spec in models.items():
        where = f"models.{name}"
        if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
            problems.append(f"models: the name {str(name)[:80]!r} is not a short name (letters, digits, '.', '_', '-'; "
                            "at most 64, starting with a letter or digit)")
            continue
        if not isinstance(spec, Mapping):
            problems.append(f"{where}: a model spec is a mapping ({{name: ...}} or {{base_url: ..., model: ...}}), "
                            f"got {type(spec).__name__}")
            continue
        problems += served_spec_problems(spec, where) if is_served(spec) or "api_key" in spec else _check_local(spec, where)
        panel[name] = with_defaults(spec)
    if problems:
        raise ValueError("; ".join(problems))
    return panel


def experiment_panel(config: Mapping[str, Any], experiment: str, panel: Mapping[str, Any]) -> list[str]:
    """The panel models ``experiment`` runs: its ``<experiment>.panel`` list (names checked), or every panel
    model it can run (the local ones for the experiments that need weights)."""
    if experiment not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {experiment!r}; known: {list(EXPERIMENTS)}")
    chosen = (config.get(experiment) or {}).get("panel")
    if chosen is None:
        return [n for n, s in panel.items() if experiment not in NEEDS_WEIGHTS or not is_served(s)]
    unknown = [n for n in chosen if n not in panel]
    if unknown:
        raise ValueError(f"config key '{experiment}.panel': {unknown} not in the panel (models: {list(panel)})")
    served = [n for n in chosen if is_served(panel[n])]
    if experiment in NEEDS_WEIGHTS and served:
        raise ValueError(f"config key '{experiment}.panel': {served} {'is a served model' if len(served) == 1 else 'are served models'}; "
                         f"{experiment} reads activations and needs the weights (run it on a local model)")
    return list(chosen)


def bench_model(config: Mapping[str, Any], panel: Mapping[str, Any]) -> str | None:
    """The model the benchmarks measure: the panel's first model that is both probed and steered (None: no
    benchmark)."""
    steered = experiment_panel(config, "steering", panel)
    return next((m for m in experiment_panel(config, "probing", panel) if m in steered), None)


def resolve_spec(spec: Any, panel: Mapping[str, Any], where: str) -> Any:
    """A role's model: a panel name becomes that model's spec; a spec (or null) is kept as it is."""
    if isinstance(spec, str):
        if spec not in panel:
            # the value is not repeated: a key pasted where a name belongs would reach the log
            raise ValueError(f"config key '{where}': a string here must be a panel model's name (models: {list(panel)}); "
                             "a model spec is a mapping ({name: ...} or {base_url: ..., model: ...})")
        return dict(panel[spec])
    return spec


def own_models(config: Mapping[str, Any], panel: Mapping[str, Any], key: str, role_spec: Any,
               experiment: str) -> dict[str, Any]:
    """The models an experiment plays, name -> spec: the one its role setting ``key`` names (team.model,
    debate.models.default; a panel model keeps its panel name, another is named after its model), else
    the experiment's panel."""
    if not role_spec:
        return {m: panel[m] for m in experiment_panel(config, experiment, panel)}
    spec = with_defaults(resolve_spec(role_spec, panel, key))
    same = [m for m, s in panel.items() if s == spec]
    name = same[0] if same else model_name(spec)
    if name in panel and panel[name] != spec:
        name = f"{name}-{experiment}"
    if name in panel and panel[name] != spec:
        raise ValueError(f"config key '{key}': its model would be named {name!r}, which the panel already uses for "
                         "another model; add it to models: under a name of its own and name that here")
    return {name: spec}


def run_models(config: Mapping[str, Any], panel: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The team game's models, the debate's, and every model of the run (the panel, then those two), by name."""
    team = own_models(config, panel, "team.model", (config.get("team") or {}).get("model"), "team")
    debate = own_models(config, panel, "debate.models.default",
                        ((config.get("debate") or {}).get("models") or {}).get("default"), "debate")
    for name in team.keys() & debate.keys():
        if team[name] != debate[name]:
            raise ValueError(f"config keys 'team.model' and 'debate.models.default' name two different models that "
                             f"would both be called {name!r}; give them names of their own under models: and name those")
    return team, debate, {**panel, **team, **debate}


def gather(tables: Mapping[str, pd.DataFrame], column: str = "model") -> pd.DataFrame:
    """Per-model tables as one, with ``column`` first naming each row's model (the order of ``tables``)."""
    frames = []
    for name, df in tables.items():
        if column in df.columns:
            raise ValueError(f"the table of model {name!r} already has a {column!r} column")
        frames.append(df.assign(**{column: name})[[column, *df.columns]])
    if not frames:
        raise ValueError("nothing to gather: no table given")
    return pd.concat(frames, ignore_index=True)
