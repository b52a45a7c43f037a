"""What the debate and its baselines ask of their models: rule ``debate_run`` (workflow/rules/debate.smk),
one job per debate model, task and method (``results/benchmarks/debate_run/{model}/{task}_{method}.tsv``).

The task's items are built as the ``debate_tasks`` rule builds them (:mod:`tomlab.debate.tasks`), and each
item's conversation (:func:`tomlab.debate.run.conversations`, the run's own) is played with a stand-in for
the models, so every prompt counted is the one the run builds; each is rendered as its backend renders it
and counted with the model's tokenizer (see :class:`tomlab.plan.team.PromptCounter`).  Per item:

- ``direct``, ``cot``: one prompt; ``self_consistency``: ``debate.sc_samples`` samples of one prompt;
  ``self_reflection``: an answer, then ``debate.reflection_iterations`` times a critique and a revision,
  each holding the answer (and the critique) so far;
- ``debate``: per round (``debate.rounds``) ``debate.n_debaters`` turns (the affirmative side's model, then
  the negative side's), each holding the transcript so far, and the judge's discriminative reading; the
  judge may end the debate at any round, so the plan counts the LIMIT: every round, then the extractive
  judgement that only a debate at its round limit gets; ``debate_forced``: every round, then the extractive
  judgement (exact).

Every reply is counted at its ``max_new_tokens`` (``debate.max_new_tokens``, the judge's
``debate.judge_max_new_tokens``), where it is decoded and wherever a later prompt quotes it: a reply that
stops early makes both shorter.  Each round (each step of a baseline) is a Pass of its own, so the growth
of the transcript shows.  A role set in ``debate.models`` to another model is counted on that model, in a
JobWork of its own for the same job (loaded with the job's own, as the command builds every role).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from tomlab.plan.context import PlanContext
from tomlab.plan.team import PromptCounter, batch_size, drive, model_works, own_models, reply
from tomlab.plan.work import JobWork, Pass

#: The model roles of ``--models-json`` besides ``default`` (:data:`tomlab.debate.run.ROLES`).
ROLES = ("affirmative", "negative", "judge")
#: The debate section's keys the rule does not pass in ``--debate-json`` (common.smk's DEBATE_SETTINGS).
NOT_SETTINGS = ("tasks", "methods", "arithmetic", "translation", "models", "n_boot", "batch_size", "panel")


def task_items(debate: Mapping[str, Any], task: str) -> pd.DataFrame:
    """A task's items as ``tomlab debate-tasks`` makes them with the flags the ``debate_tasks`` rule gives."""
    from tomlab.debate import tasks

    if task == "arithmetic":
        a = debate["arithmetic"]
        return tasks.load_arithmetic_json(a["file"]) if a["file"] else tasks.generate_arithmetic(
            int(a["n"]), int(a["seed"]), a["families"] or None)
    t = debate["translation"]
    pair = (t["source_language"], t["target_language"])
    if t["file"]:
        rows = tasks.load_translation(t["file"], *pair)
    elif pair != tasks.EXAMPLE_PAIR:
        raise ValueError(f"config key 'debate.translation': the built-in examples are {tasks.EXAMPLE_PAIR[0]} -> "
                         f"{tasks.EXAMPLE_PAIR[1]}; give a file of the pair {pair[0]} -> {pair[1]}")
    else:
        rows = tasks.example_translations()
    return rows.head(int(t["max_items"])) if t["max_items"] else rows


def _answer(requests: list[Any]) -> list[str]:
    """The stand-in: every reply at its limit; a judge's names no side, so a debate runs every round."""
    return [reply("judge" if r.model == "judge" else "reply") for r in requests]


def _labels(method: str, steps: list[list[Any]], n_debaters: int) -> list[str]:
    """What each step of one item's conversation is, as its Pass is named."""
    from tomlab.debate.protocol import EXTRACTIVE, SIDES

    if method.startswith("debate"):
        out, turns = [], 0
        for (req,) in steps:
            if req.model in SIDES:
                out.append(f"round {turns // n_debaters + 1}: debaters' turns (the transcript so far)")
                turns += 1
            elif req.prompt[0]["content"] == EXTRACTIVE[0]:
                out.append("after the last round: the judge's extractive judgement")
            else:
                out.append(f"round {turns // n_debaters}: the judge's discriminative reading")
        return out
    if method == "self_reflection":
        return ["answer"] + [f"{'critique' if k % 2 else 'revision'} {(k + 1) // 2}" for k in range(1, len(steps))]
    return ["samples" if method == "self_consistency" else "answer"] * len(steps)


def asked_prompts(task: str, method: str, items: pd.DataFrame, settings: Mapping[str, Any]) -> pd.DataFrame:
    """Every prompt ``method`` asks on ``items`` with the stand-in: item, step, role, prompt, chat_template,
    new_tokens."""
    from tomlab.debate.run import _setting, conversations

    n_debaters = int(_setting(settings, "n_debaters"))
    rows = []
    for item, conv in zip(items["id"], conversations(task, method, items, settings)):
        _, steps = drive(conv, _answer)
        for label, step in zip(_labels(method, steps, n_debaters), steps):
            rows += [{"item": item, "step": label, "role": r.model, "prompt": r.prompt,
                      "chat_template": r.config.chat_template, "new_tokens": r.config.max_new_tokens} for r in step]
    return pd.DataFrame(rows, columns=["item", "step", "role", "prompt", "chat_template", "new_tokens"])


def debate_passes(asked: pd.DataFrame, batch: int, early_end: bool = False) -> list[Pass]:
    """A Pass per step (a round's turns, a judgement, a baseline's step) in the order the run asks them;
    with ``early_end`` (the judge may end the debate) every step after the first round's is a limit."""
    table = (asked.groupby("step", sort=False)
             .agg(rows=("tokens", "size"), tokens=("tokens", "mean"), new=("new_tokens", "max")).reset_index())
    note = "; asked only if the judge has not ended the debate (a limit)"
    return [Pass("generate", rows=int(r.rows), prompt_tokens=float(r.tokens), new_tokens=int(r.new), batch=batch,
                 what=f"{r.step}: up to {int(r.new)} new tokens per reply"
                      f"{note if early_end and not str(r.step).startswith('round 1:') else ''}")
            for r in table.itertuples()]


def jobs(ctx: PlanContext) -> list[JobWork]:
    """The ``debate_run`` jobs (see the module)."""
    from tomlab.debate.run import _setting
    from tomlab.panel import resolve_spec

    debate = ctx.section("debate")
    specs = own_models(ctx, "debate.models.default", debate["models"]["default"], "debate")
    roles = {r: resolve_spec(debate["models"][r], ctx.panel, f"debate.models.{r}") for r in ROLES}
    settings = {k: v for k, v in debate.items() if k not in NOT_SETTINGS}
    lengths = {"reply": int(_setting(settings, "max_new_tokens")),
               "judge": int(_setting(settings, "judge_max_new_tokens"))}
    batch = batch_size(debate["batch_size"])
    counter, out = PromptCounter(ctx), []
    for task in debate["tasks"] if specs else ():
        items = task_items(debate, task)
        for method in debate["methods"]:
            asked = asked_prompts(task, method, items, settings)

            def passes(mine: pd.DataFrame, method: str = method) -> list[Pass]:
                return debate_passes(mine, batch, early_end=method == "debate")

            for name, spec in specs.items():
                out += model_works(ctx, counter, experiment="debate", rule="debate_run", job=f"{name}/{task}_{method}",
                                   job_model=name, default=spec, roles=roles, asked=asked, lengths=lengths,
                                   passes=passes)
    return out
