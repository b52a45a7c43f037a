"""The report's probing section: summary tables, the paper comparison, and commentary generated from the numbers."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from tomlab import io
from tomlab.bigtom.conditions import MAIN_TASK
from tomlab.manifest import Manifest
from tomlab.probing.probes import CHANCE, TARGETS
from tomlab.report.common import (
    NOT_TRANSCRIBED,
    _f,
    _get,
    _join,
    _read_table,
    load_setup,
    md_text,
)
from tomlab.stats import binomial_se

# The paper (Zhu, Zhang & Wang, ICML 2024) shows per-head probe accuracies only as heatmaps
# (Figure 2).  No number is transcribed from a figure: a value would be entered here only if the
# paper's text states it, together with the section it comes from.
PAPER_BEST_HEAD: dict[str, float | str] = {t: NOT_TRANSCRIBED for t in TARGETS}


PAPER_SOURCE = "Figure 2 (heatmaps only)"


SITE_DESCRIPTIONS: dict[str, str] = {
    "attn_out": (
        "the attention block's output after the output projection, cut into n_heads equal slices (of "
        "head_dim, or of hidden size / n_heads where the heads are wider, as in Gemma 3; what the original code "
        "stores; a slice mixes all heads, so it is not one head's own output)"
    ),
    "head_z": "each head's own output, i.e. the input of the output projection split per head (as in ITI)",
}


def _heads(m: Manifest, site: str) -> pd.DataFrame:
    return _read_table(m.path("heads", site))


def _lexical(m: Manifest) -> pd.DataFrame | None:
    """The main task's lexical baseline, if the run has one."""
    path = m.get("lexical", MAIN_TASK)
    return io.read_parquet(path) if path is not None and path.is_file() else None


def _try_setup(m: Manifest) -> dict[str, Any] | None:
    path = m.get("setup")
    if path is None:
        return None
    try:
        return load_setup(path)
    except (FileNotFoundError, ValueError):
        return None


def _targets_in(df: pd.DataFrame) -> list[str]:
    present = [str(t) for t in df["target"].unique()]
    ordered = [t for t in TARGETS if t in present]
    return ordered + sorted(t for t in present if t not in TARGETS)


def _best_row(df: pd.DataFrame) -> pd.Series:
    """Highest val_acc; ties broken by selectivity, then by lower layer and head."""
    ordered = df.sort_values(
        ["val_acc", "selectivity", "layer", "head"], ascending=[False, False, True, True], kind="mergesort"
    )
    return ordered.iloc[0]


def _head_label(row: pd.Series) -> str:
    return f"{int(row['layer'])}.{int(row['head'])}"


@dataclass(frozen=True)
class _TargetStats:
    target: str
    best_head: str
    best_acc: float
    best_selectivity: float
    best_control: float  # control accuracy of the best head
    n_val: int
    mean_acc: float
    max_control: float  # best shuffled-label control accuracy over all heads
    n_heads: int
    n_above_control: int
    lexical_acc: float
    majority_acc: float
    chance: float
    best_layer: int | None
    best_layer_acc: float

    @property
    def se(self) -> float:
        return binomial_se(self.best_acc, self.n_val)


def _target_stats(
    heads: pd.DataFrame,
    layers: pd.DataFrame | None,
    lexical: pd.DataFrame | None,
    target: str,
    margin: float = 0.05,
) -> _TargetStats:
    sub = heads[heads["target"] == target]
    best = _best_row(sub)
    max_control = float(sub["control_acc"].max())
    lex_acc = maj_acc = float("nan")
    if lexical is not None and "target" in lexical:
        lrow = lexical[lexical["target"] == target]
        if len(lrow):
            lex_acc = float(lrow["val_acc"].iloc[0])
            maj_acc = float(lrow["majority_acc"].iloc[0]) if "majority_acc" in lrow else float("nan")
    best_layer: int | None = None
    best_layer_acc = float("nan")
    if layers is not None and len(layers):
        lsub = layers[layers["target"] == target]
        if len(lsub):
            lbest = lsub.sort_values(["val_acc", "layer"], ascending=[False, True], kind="mergesort").iloc[0]
            best_layer, best_layer_acc = int(lbest["layer"]), float(lbest["val_acc"])
    n_val = int(best["n_val"]) if "n_val" in best and pd.notna(best["n_val"]) else 0
    return _TargetStats(
        target=target,
        best_head=_head_label(best),
        best_acc=float(best["val_acc"]),
        best_selectivity=float(best["selectivity"]),
        best_control=float(best["control_acc"]),
        n_val=n_val,
        mean_acc=float(sub["val_acc"].mean()),
        max_control=max_control,
        n_heads=len(sub),
        n_above_control=int((sub["val_acc"] > max_control + margin).sum()),
        lexical_acc=lex_acc,
        majority_acc=maj_acc,
        chance=CHANCE.get(target, float("nan")),
        best_layer=best_layer,
        best_layer_acc=best_layer_acc,
    )


def _all_stats(m: Manifest, site: str, margin: float = 0.05) -> dict[str, _TargetStats]:
    heads = _heads(m, site)
    layers_path = m.get("layers", site)
    layers = io.read_parquet(layers_path) if layers_path is not None and layers_path.is_file() else None
    lexical = _lexical(m)
    return {t: _target_stats(heads, layers, lexical, t, margin) for t in _targets_in(heads)}


def probing_summary(m: Manifest, site: str) -> pd.DataFrame:
    """One row per target at one site (the manifest's ``heads``, ``layers`` and ``lexical``): best head
    and its accuracy/selectivity, means, baselines, chance."""
    rows = []
    for t, s in _all_stats(m, site).items():
        rows.append(
            {
                "target": t,
                "best head (L.H)": s.best_head,
                "val acc": s.best_acc,
                "selectivity": s.best_selectivity,
                "mean head acc": s.mean_acc,
                "best layer": s.best_layer,
                "layer acc": s.best_layer_acc,
                "lexical acc": s.lexical_acc,
                "majority": s.majority_acc,
                "chance": s.chance,
            }
        )
    return pd.DataFrame(rows)


def top_heads_table(m: Manifest, site: str, k: int = 10) -> pd.DataFrame:
    """Top-``k`` heads per target side by side (the manifest's ``top`` of ``site``): rank, then
    head / val acc / selectivity per target."""
    top = _read_table(m.path("top", site))
    top = top[top["rank"] <= k]
    out = pd.DataFrame({"rank": sorted(int(r) for r in top["rank"].unique())})
    for t in _targets_in(top):
        sub = top[top["target"] == t].copy()
        sub["rank"] = sub["rank"].astype(int)
        sub[f"{t} head"] = [f"{int(a)}.{int(b)}" for a, b in zip(sub["layer"], sub["head"], strict=True)]
        sub = sub.rename(columns={"val_acc": f"{t} acc", "selectivity": f"{t} sel."})
        out = out.merge(sub[["rank", f"{t} head", f"{t} acc", f"{t} sel."]], on="rank", how="left")
    return out


def paper_comparison(m: Manifest, site: str) -> pd.DataFrame:
    """Paper (Mistral-7B) vs this run for the best-head accuracy of each target."""
    stats = _all_stats(m, site)
    setup = _try_setup(m)
    model = str(_get((setup or {}).get("model"), "name", "this model"))
    rows = []
    for t in TARGETS:
        paper = PAPER_BEST_HEAD.get(t, NOT_TRANSCRIBED)
        if t in stats:
            s = stats[t]
            ours: float | str = s.best_acc
            note = f"ours: {model}, site {site}, head {s.best_head}, n_val {s.n_val}"
        else:
            ours, note = "n/a", f"no {t} probes in this run"
        if paper == NOT_TRANSCRIBED:
            note = f"paper: {PAPER_SOURCE}; {note}"
        rows.append({"quantity": f"{t} best-head accuracy", "paper (Mistral-7B)": paper, "ours": ours, "note": note})
    return pd.DataFrame(rows)


def _heads_phrase(n: int) -> str:
    return "1 head beats" if n == 1 else f"{n} heads beat"


def commentary_probing(m: Manifest, site: str, margin: float = 0.05) -> str:
    """Data-driven markdown commentary on one site's probing results.

    A target counts as clearly decodable only if its best head beats the lexical baseline, the
    best shuffled-label control head and chance each by more than ``margin``; otherwise the text
    says the evidence is weak and why.
    """
    stats = _all_stats(m, site, margin)
    setup = _try_setup(m)
    paras: list[str] = []

    for t, s in stats.items():
        head = (
            f"**{md_text(t.capitalize())}.** The best head, {s.best_head}, reaches {_f(s.best_acc)} validation "
            f"accuracy (binomial standard error {_f(s.se)} with n_val = {s.n_val})."
        )
        comparisons: list[tuple[str, str, float]] = []
        if math.isfinite(s.lexical_acc):
            comparisons.append(("the lexical baseline", _f(s.lexical_acc), s.lexical_acc))
        comparisons.append(("the best shuffled-label control head", _f(s.max_control), s.max_control))
        if math.isfinite(s.chance):
            comparisons.append(("chance", f"{s.chance:.2f}", s.chance))
        gaps = [(f"{name} ({shown})", s.best_acc - ref) for name, shown, ref in comparisons]
        failing = [
            f"{name} ({shown}; gap {s.best_acc - ref:+.3f})"
            for name, shown, ref in comparisons
            if not s.best_acc - ref > margin
        ]
        if failing:
            verdict = (
                f"The evidence is weak: it does not beat {_join(failing)} by more than the "
                f"{margin:.2f} margin."
            )
        else:
            verdict = (
                f"It beats {_join([name for name, _ in gaps], 'and')} by more than the {margin:.2f} margin "
                f"(smallest gap {min(g for _, g in gaps):+.3f}), so in this run the {md_text(t)} label is "
                "linearly decodable beyond what word statistics or a probe fitting noise would give."
            )
            smallest = min(g for _, g in gaps)
            if math.isfinite(s.se) and smallest < 2 * s.se:
                verdict += (
                    f" But that smallest gap is under two standard errors ({2 * s.se:.3f}), so the evidence "
                    "is still weak."
                )
        if not math.isfinite(s.lexical_acc):
            verdict += " No lexical baseline was found for this target, so surface cues are not ruled out."
        spread = (
            f" Averaged over all {s.n_heads} heads the accuracy is {_f(s.mean_acc)}; "
            f"{_heads_phrase(s.n_above_control)} the best control head by more than the margin."
        )
        paras.append(" ".join([head, verdict]) + spread)

    def clear(st: _TargetStats) -> bool:
        """Beats chance, lexical baseline and best control head by the margin and by 2 SE."""
        refs = [st.chance, st.max_control] + ([st.lexical_acc] if math.isfinite(st.lexical_acc) else [])
        gap = min(st.best_acc - r for r in refs if math.isfinite(r))
        return gap > margin and (not math.isfinite(st.se) or gap >= 2 * st.se)

    if "oracle" in stats and "protagonist" in stats:
        o, p = stats["oracle"], stats["protagonist"]
        counts = (
            f"best head {_f(o.best_acc)} vs {_f(p.best_acc)}; heads clearly above the best control head: "
            f"{o.n_above_control} (oracle) vs {p.n_above_control} (protagonist)"
        )
        if not clear(o) and not clear(p):
            paras.append(
                f"Neither belief is clearly decodable here ({counts}), so the comparison of oracle and "
                "protagonist says nothing about the paper's finding that more heads carry the oracle's belief."
            )
        elif o.best_acc > p.best_acc and o.n_above_control >= p.n_above_control:
            paras.append(
                f"Oracle beliefs are easier to decode than the protagonist's ({counts}). That is the direction "
                "the paper describes (more heads carry the oracle's belief)."
            )
        else:
            paras.append(
                f"Oracle beliefs are not easier to decode than the protagonist's here ({counts}). The paper "
                "finds more heads carrying the oracle's belief, so this part is not reproduced."
            )

    if "joint" in stats:
        j = stats["joint"]
        above = j.best_acc - j.chance
        detail = f"best head {_f(j.best_acc)}, mean over heads {_f(j.mean_acc)}, best control head {_f(j.max_control)}"
        if clear(j):
            paras.append(f"The four-way joint probe is clearly above its chance level of 0.25 ({detail}).")
        elif above > margin:
            paras.append(
                f"The four-way joint probe is nominally above its chance level of 0.25 ({detail}), but not by "
                "enough over the controls and the sampling noise; the evidence is weak."
            )
        else:
            paras.append(
                f"The four-way joint probe is not above its chance level of 0.25 by more than the margin "
                f"({detail}); the evidence is weak."
            )

    if "joint" in stats and "protagonist" in stats and clear(stats["joint"]) and not clear(stats["protagonist"]):
        paras.append(
            "The joint probe succeeds where the binary protagonist probe does not. That is no contradiction: "
            "the protagonist label is the exclusive-or of the oracle label and the story version (the "
            "protagonist believes the true statement in the true-belief story and the false one in the "
            "false-belief story). If a head encodes the statement's truth and the story version along separate "
            "directions, no single hyperplane separates the protagonist label, while each of the four joint "
            "classes can still be cut off linearly. A high joint accuracy therefore shows that both ingredients "
            "are present, not that the head carries a direction for the protagonist's belief."
        )

    split = str(_get((setup or {}).get("data"), "split_mode", "unknown"))
    if split == "by_story":
        paras.append(
            "The split is by story: all four samples of a story land on the same side, so a probe cannot "
            "score by recognising a story it saw during training."
        )
    elif split == "by_sample":
        paras.append(
            "The split is by sample, as in the original code: the four samples of a story share almost all "
            "their text and are spread over train and validation, so a probe can partly succeed by "
            "recognising the story. Treat these accuracies as optimistic; `split.mode: by_story` holds "
            "out whole stories."
        )
    else:
        paras.append(
            "The split mode is not recorded in setup.json, so leakage between training and validation "
            "stories cannot be ruled out."
        )

    if stats:
        n_val = max(s.n_val for s in stats.values())
        n_heads = max(s.n_heads for s in stats.values())
        se_half = binomial_se(0.5, n_val)
        se_high = binomial_se(0.9, n_val)
        paras.append(
            f"Each probe is scored on n_val = {n_val} validation samples, so per-head accuracies are noisy: "
            f"the binomial standard error sqrt(p(1-p)/n_val) is {_f(se_half)} at p = 0.5 and {_f(se_high)} "
            f"at p = 0.9. Differences between heads smaller than about twice that are not meaningful."
        )
        ctrl = "; ".join(
            f"{md_text(t)} {_f(s.max_control)} (real best {_f(s.best_acc)}, gap {s.best_acc - s.max_control:+.3f})"
            for t, s in stats.items()
        )
        paras.append(
            f"Each best-head number is the maximum over {n_heads} heads picked on the same validation "
            "data, so it is biased upward and is not an independent held-out estimate. The shuffled-label "
            "control shows how large that bias can be: with labels that carry no information its best "
            f"head still reaches {ctrl}. The fair comparison is best real head against best control head, "
            "not against chance."
        )
    return "\n\n".join(paras)
