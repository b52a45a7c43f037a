"""The steering benchmark: shared-prefix evaluation against the token-by-token path, on the same items
and interventions, in one run.

Speed is the ratio of wall times.  Agreement is measured three ways, because on a CPU in bf16 two
batch shapes already round differently: against the token-by-token path in the model's own dtype;
the token-by-token path against itself at batch size 1 (the noise floor of that dtype); and both
paths in float32 on a few items, where they should agree exactly.  In the model's dtype the
token-by-token path is compared with itself at a quarter of the batch size on three interventions.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from tomlab.backends.lm import GenerationConfig, TransformersLM
from tomlab.backends.models import LoadedModel
from tomlab.steering.intervention import Intervention
from tomlab.steering.run import evaluate_steered
from tomlab.steering.shared import evaluate_interventions


def agreement(a: Sequence[pd.DataFrame], b: Sequence[pd.DataFrame]) -> dict[str, Any]:
    """How far two lists of scored frames (the same items under the same interventions) agree."""
    rows = sum(len(x) for x in a)
    out: dict[str, Any] = {"rows": rows}
    if all("completion" in x.columns for x in (*a, *b)):
        out["same_completions"] = int(sum((x["completion"] == y["completion"]).sum() for x, y in zip(a, b)))
        out["same_parsed"] = int(sum((x["parsed"] == y["parsed"]).sum() for x, y in zip(a, b)))
    if all("logp_a" in x.columns for x in (*a, *b)):
        out["same_ll_pred"] = int(sum((x["ll_pred"] == y["ll_pred"]).sum() for x, y in zip(a, b)))
        out["max_abs_logp_diff"] = float(max(
            max(np.abs(x["logp_a"] - y["logp_a"]).max(), np.abs(x["logp_b"] - y["logp_b"]).max())
            for x, y in zip(a, b)))
    out["identical_answers"] = bool(out.get("same_parsed", rows) == rows and out.get("same_ll_pred", rows) == rows)
    return out


def _both(lm: LoadedModel, items: pd.DataFrame, interventions: Sequence[Intervention], config: GenerationConfig,
          modes: Sequence[str], batch_size: int) -> tuple[list[pd.DataFrame], float, list[pd.DataFrame], float]:
    gen = TransformersLM(lm, batch_size=batch_size)
    start = time.perf_counter()
    shared, _ = evaluate_interventions(lm, items, gen, config, interventions, modes=modes, batch_size=batch_size,
                                       progress=False)
    shared_s = time.perf_counter() - start
    start = time.perf_counter()
    stepwise = [evaluate_steered(lm, items, gen, config, iv, modes=modes, batch_size=batch_size, progress=False)[0]
                for iv in interventions]
    return shared, shared_s, stepwise, time.perf_counter() - start


def bench_steering(lm: LoadedModel, items: pd.DataFrame, interventions: Sequence[Intervention],
                   config: GenerationConfig, *, modes: Sequence[str] = ("generation", "log-likelihood"),
                   batch_size: int = 16, lm_float32: LoadedModel | None = None,
                   float32_items: int = 4) -> dict[str, Any]:
    """Time and compare both paths; see the module's docstring.

    ``lm_float32``, when given, is the same model in float32: both paths run on its first
    ``float32_items`` items under the first two interventions.  Returns a flat JSON-ready dict with
    ``speedup`` (token-by-token seconds over shared-prefix seconds) and ``identical_answers``
    (every parsed answer and log-likelihood choice the same in the model's dtype).
    """
    if items.empty:
        raise ValueError("the steering benchmark needs at least one item")
    shared, shared_s, stepwise, stepwise_s = _both(lm, items, interventions, config, modes, batch_size)
    # the noise floor: the token-by-token path against itself at another batch size, on the weakest, a
    # middle and the strongest intervention
    picks = sorted({0, len(interventions) // 2, len(interventions) - 1})
    other = max(1, batch_size // 4) if batch_size > 1 else 2
    gen_other = TransformersLM(lm, batch_size=other)
    floor = [evaluate_steered(lm, items, gen_other, config, interventions[i], modes=modes, batch_size=other,
                              progress=False)[0] for i in picks]
    result: dict[str, Any] = {
        "model": lm.name, "device": str(lm.device), "dtype": str(lm.dtype).removeprefix("torch."),
        "items": len(items), "interventions": len(interventions), "batch_size": batch_size,
        "max_new_tokens": int(config.max_new_tokens), "modes": list(modes),
        "shared_seconds": shared_s, "stepwise_seconds": stepwise_s, "speedup": stepwise_s / shared_s,
        "target_speedup": 3.0,
    }
    result.update({f"vs_stepwise_{k}": v for k, v in agreement(shared, stepwise).items()})
    result["identical_answers"] = result.pop("vs_stepwise_identical_answers")
    result["noise_floor_batch_size"] = other
    result.update({f"noise_floor_{k}": v for k, v in agreement(floor, [stepwise[i] for i in picks]).items()})
    if lm_float32 is not None:
        sub = items.iloc[:float32_items].reset_index(drop=True)
        a, _, b, _ = _both(lm_float32, sub, list(interventions[:2]), config, modes, batch_size)
        result.update({f"float32_{k}": v for k, v in agreement(a, b).items()})
    result["target_met"] = bool(result["speedup"] >= result["target_speedup"] and result["identical_answers"])
    return result
