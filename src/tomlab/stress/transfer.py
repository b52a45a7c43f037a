"""Doubts 2 and 3: probes trained on the original stories, tested unchanged on shifted ones.

A *shift* is a set of stories the probes never saw: a perturbation of the originals (see
:mod:`tomlab.stress.perturb`: the same stories with other words, or decoys whose words and belief
disagree) or other stories altogether (tomlab's generated stories; with the real BigToM file, other
scenarios). The probes are fitted once, per head, on the original training samples; the heads are
ranked on an inner split of those training samples alone, so every accuracy below is on samples no
choice was made on.

A perturbed sample is *paired* with the original validation sample it came from (same story, same
condition, same statement role: ``pair`` is that sample's id), so accuracy before and after is
compared on the same stories; only perturbations of validation samples are scored, since the
perturbed copy of a training story is nearly a training sample. Samples of other stories have no
pair (``pair`` = -1).

Beside the heads, the lexical baseline (a bag of words over the prompt, fitted on the same training
samples) is scored on every shift: a representation of belief should hold where a word detector falls.
"""

from __future__ import annotations

import warnings
import zlib
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from scipy.stats import rankdata
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression

from tomlab.probing.estimator import (
    DEFAULT_C_BINARY,
    DEFAULT_C_JOINT,
    DEFAULT_MAX_ITER,
    BatchedLogisticRegression,
)
from tomlab.probing.probes import TARGETS, _row_space_features, head_groups
from tomlab.probing.samples import build_probe_samples
from tomlab.stress.perturb import DECOYS, KEEP_BELIEF

ORIGINAL = "original"
GENERATED = "generated"
REVERSE = "generated_to_original"
"""The reverse direction (probes trained on the generated stories, tested on the originals' validation
samples); run only when the originals are the real BigToM file."""

POOLS: dict[str, tuple[str, ...]] = {"kept_belief": KEEP_BELIEF, "decoys": DECOYS}
"""Pooled rows of the statistics: every perturbation that keeps the belief, and both decoys."""

CORRECT_COLUMNS: tuple[str, ...] = ("shift", "method", "layer", "head", "sample", "pair", "story", "correct")
STAT_COLUMNS: tuple[str, ...] = (
    "shift", "paired", "n", "n_stories", "chance", "top_k", "top_acc", "top_acc_low", "top_acc_high", "original_top_acc", "drop",
    "drop_low", "drop_high", "lexical_acc", "lexical_low", "lexical_high", "margin", "margin_low", "margin_high",
    "spearman", "spearman_low", "spearman_high", "jaccard", "jaccard_low", "jaccard_high", "spearman_ceiling",
    "jaccard_ceiling",
)


# --- the shifted samples ---------------------------------------------------------------------------

def origin_table(n_original: int, kept: Sequence[int]) -> pd.DataFrame:
    """Where each original story went: ``row`` in the shifted file, or -1 where the shift skipped it."""
    row = np.full(n_original, -1, dtype=np.int64)
    row[np.asarray(kept, dtype=np.int64)] = np.arange(len(kept))
    return pd.DataFrame({"origin_story": np.arange(n_original, dtype=np.int64), "row": row})


def shifted_samples(conditions_dir: str, *, task: str, statements: str, original: pd.DataFrame | None = None,
                    is_val: np.ndarray | None = None, origin: pd.DataFrame | None = None) -> pd.DataFrame:
    """The probing samples of a shifted story set, with ``pair`` and ``origin_story`` columns.

    Every story of ``conditions_dir`` gives its four samples (``eval_fraction`` 0: none is kept for
    evaluation). With ``origin`` (a perturbation), each sample is paired with the ``original`` sample
    of the story it came from, in the same condition and statement role, and only samples whose pair
    is a validation sample (``is_val``) are kept; without it (other stories) every sample is kept,
    unpaired. A perturbed sample identical to its original (the perturbation changed a sentence only the
    other condition uses) is dropped: it would score the original again.
    """
    samples = build_probe_samples(conditions_dir, task=task, eval_fraction=0.0, statements=statements)
    if origin is None:
        return samples.assign(origin_story=-1, pair=-1)
    if original is None or is_val is None:
        raise ValueError("a perturbed story set needs the original samples and their split to pair with")
    rows = origin[origin["row"] >= 0].set_index("row")["origin_story"]
    samples = samples.assign(origin_story=samples["story_id"].map(rows))
    if samples["origin_story"].isna().any():
        raise ValueError(f"{conditions_dir}: the origin table does not cover every shifted story")
    val = original.loc[np.asarray(is_val, dtype=bool), ["sample_id", "story_id", "condition", "protagonist"]]
    val = val.rename(columns={"sample_id": "pair", "story_id": "origin_story"})
    val = val.assign(original_prompt=original.loc[np.asarray(is_val, dtype=bool), "prompt"].to_numpy())
    out = samples.merge(val, on=["origin_story", "condition", "protagonist"], how="inner", validate="one_to_one")
    out = out[out["prompt"] != out.pop("original_prompt")].reset_index(drop=True)  # the condition it left unchanged
    if out.empty:
        raise ValueError(f"{conditions_dir}: no shifted sample differs from, and pairs with, an original validation "
                         "sample (drop this perturbation from stress.perturbations, or hold out more stories)")
    out["sample_id"] = np.arange(len(out))
    return out.astype({"origin_story": np.int64, "pair": np.int64})


# --- fitting once, scoring every shift -------------------------------------------------------------

def _C(target: str, C: float | None) -> float:
    return float(C if C is not None else (DEFAULT_C_BINARY if TARGETS.get(target, 2) == 2 else DEFAULT_C_JOINT))


def head_correct(train: np.ndarray, y_train: np.ndarray, tests: Mapping[str, tuple[np.ndarray, np.ndarray]], *,
                 C: float, max_iter: int = DEFAULT_MAX_ITER) -> dict[str, np.ndarray]:
    """One probe per head fitted on ``train`` (N, L, H, D); which samples of each test set (N_t, L, H, D)
    every head gets right: ``{name: (L*H, N_t) bool}``."""
    x_train = head_groups(train, dtype=np.float64)
    names = list(tests)
    sizes = [len(tests[n][1]) for n in names]
    x_test = np.concatenate([head_groups(tests[n][0], dtype=np.float64) for n in names], axis=1)
    if x_train.shape[2] > x_train.shape[1]:  # wide: the exact row-space reduction, as the probes use
        x_train, x_test = _row_space_features(x_train, x_test, torch.device("cpu"))
    est = BatchedLogisticRegression(C=C, max_iter=max_iter)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(x_train, y_train)
    pred = est.predict(x_test)
    y_all = np.concatenate([np.asarray(tests[n][1]) for n in names])
    hits = pred == y_all[None, :]
    return dict(zip(names, np.split(hits, np.cumsum(sizes)[:-1], axis=1), strict=True))


def lexical_correct(train: Sequence[str], y_train: np.ndarray, tests: Mapping[str, tuple[Sequence[str], np.ndarray]],
                    *, C: float, max_iter: int = DEFAULT_MAX_ITER) -> dict[str, np.ndarray]:
    """The lexical baseline (unigram and bigram counts of the prompt, as in
    :func:`tomlab.probing.probes.lexical_baseline`) fitted on ``train``; which test samples it gets right."""
    vec = CountVectorizer(lowercase=True, ngram_range=(1, 2))
    model = LogisticRegression(C=C, max_iter=max_iter).fit(vec.fit_transform(list(train)), y_train)
    return {n: model.predict(vec.transform(list(p))) == np.asarray(y) for n, (p, y) in tests.items()}


def inner_split(stories: np.ndarray, y: np.ndarray, *, seed: int, inner_fraction: float = 0.25) -> np.ndarray:
    """An inner held-out mask over training samples that holds out whole stories (about
    ``inner_fraction`` of them): a story's other samples, with the opposite label, must not sit on the
    fitting side, or held-out accuracy is pushed below chance. Both sides keep every label."""
    groups, index = np.unique(np.asarray(stories), return_inverse=True)
    rng = np.random.default_rng(seed)
    for _ in range(20):
        inner = (rng.random(len(groups)) < inner_fraction)[index]
        if inner.any() and not inner.all() and len(np.unique(y[~inner])) == len(np.unique(y)):
            return inner
    inner = (np.arange(len(groups)) % max(2, round(1 / inner_fraction)) == 0)[index]  # every k-th story
    if inner.all() or not inner.any():
        raise ValueError(f"an inner split needs at least two stories, got {len(groups)}")
    return inner


def inner_ranking(train: np.ndarray, y_train: np.ndarray, stories: np.ndarray, *, C: float, max_iter: int,
                  seed: int, inner_fraction: float = 0.25) -> np.ndarray:
    """Each head's accuracy on an inner split of the training stories (fitted on the other training
    stories): the ranking the top heads are chosen by, made without a validation sample."""
    inner = inner_split(stories, y_train, seed=seed, inner_fraction=inner_fraction)
    hits = head_correct(train[~inner], y_train[~inner], {"inner": (train[inner], y_train[inner])},
                        C=C, max_iter=max_iter)["inner"]
    return hits.mean(axis=1)


def transfer_correct(original: tuple[np.ndarray, pd.DataFrame, np.ndarray],
                     shifts: Mapping[str, tuple[np.ndarray, pd.DataFrame]], *, target: str = "protagonist",
                     C: float | None = None, max_iter: int = DEFAULT_MAX_ITER, seed: int = 0,
                     reverse: str | None = None) -> pd.DataFrame:
    """Per test sample, whether each head's probe and the lexical baseline get it right.

    ``original`` is (activations, samples, validation mask); ``shifts`` maps a name to (activations,
    samples with ``pair``). Probes are fitted on the original training samples and scored on the
    original validation samples (shift ``original``) and on every shift. The heads' inner-split
    accuracy (their ranking) is kept as rows of shift ``inner``. With ``reverse`` (the name of an
    unpaired shift), probes fitted on that shift are also scored on the original validation samples
    (shift :data:`REVERSE`, paired with them), their heads ranked on an inner split of that shift
    (rows of shift ``inner:`` + :data:`REVERSE`). Returns the long frame of :data:`CORRECT_COLUMNS`; ``layer``/``head`` are
    -1 on the lexical rows.
    """
    acts, meta, is_val = original
    is_val = np.asarray(is_val, dtype=bool)
    if target not in meta.columns:
        raise ValueError(f"transfer: target {target!r} is not a column of the samples")
    n_layers, n_heads = acts.shape[1:3]
    c = _C(target, C)
    y = meta[target].to_numpy()
    train = np.asarray(acts[~is_val])
    tests = {ORIGINAL: (np.asarray(acts[is_val]), y[is_val])}
    pairs = {ORIGINAL: meta.loc[is_val, "sample_id"].to_numpy()}
    stories = {ORIGINAL: meta.loc[is_val, "story_id"].to_numpy()}
    prompts = {ORIGINAL: (meta.loc[is_val, "prompt"].tolist(), y[is_val])}
    for name, (s_acts, s_meta) in shifts.items():
        if name in (ORIGINAL, REVERSE) or name.startswith("inner"):
            raise ValueError(f"transfer: {name!r} is a reserved name, not a shift")
        if len(s_meta) != len(s_acts) or target not in s_meta.columns:
            raise ValueError(f"transfer: shift {name!r}: activations ({len(s_acts)}) and samples ({len(s_meta)}) "
                             f"disagree, or the samples have no {target!r} column")
        tests[name] = (np.asarray(s_acts), s_meta[target].to_numpy())
        pairs[name] = s_meta["pair"].to_numpy()
        # a perturbed sample belongs to its original story (the bootstrap resamples stories)
        stories[name] = np.where(pairs[name] >= 0, s_meta["origin_story"], s_meta["story_id"])
        prompts[name] = (s_meta["prompt"].tolist(), s_meta[target].to_numpy())
    layer, head = np.divmod(np.arange(n_layers * n_heads), n_heads)
    heads = head_correct(train, y[~is_val], tests, C=c, max_iter=max_iter)
    lexical = lexical_correct(meta.loc[~is_val, "prompt"].tolist(), y[~is_val], prompts, C=c, max_iter=max_iter)
    ranking = inner_ranking(train, y[~is_val], meta.loc[~is_val, "story_id"].to_numpy(), C=c, max_iter=max_iter,
                            seed=seed)
    frames = [pd.DataFrame({"shift": "inner", "method": "head", "layer": layer, "head": head, "sample": -1,
                            "pair": -1, "story": -1, "correct": ranking})]
    if reverse is not None:  # trained on the other stories (ranked there), tested on the same validation samples
        r_acts, r_meta = shifts[reverse]
        r_y = r_meta[target].to_numpy()
        heads[REVERSE] = head_correct(np.asarray(r_acts), r_y, {REVERSE: tests[ORIGINAL]}, C=c,
                                      max_iter=max_iter)[REVERSE]
        lexical[REVERSE] = lexical_correct(r_meta["prompt"].tolist(), r_y, {REVERSE: prompts[ORIGINAL]}, C=c,
                                           max_iter=max_iter)[REVERSE]
        pairs[REVERSE], stories[REVERSE] = pairs[ORIGINAL], stories[ORIGINAL]
        r_rank = inner_ranking(np.asarray(r_acts), r_y, r_meta["story_id"].to_numpy(), C=c, max_iter=max_iter,
                               seed=seed)
        frames.append(pd.DataFrame({"shift": f"inner:{REVERSE}", "method": "head", "layer": layer, "head": head,
                                    "sample": -1, "pair": -1, "story": -1, "correct": r_rank}))
    for name, hits in heads.items():
        g, n = hits.shape
        frames.append(pd.DataFrame({"shift": name, "method": "head", "layer": np.repeat(layer, n),
                                    "head": np.repeat(head, n), "sample": np.tile(np.arange(n), g),
                                    "pair": np.tile(pairs[name], g), "story": np.tile(stories[name], g),
                                    "correct": hits.ravel().astype(float)}))
        frames.append(pd.DataFrame({"shift": name, "method": "lexical", "layer": -1, "head": -1,
                                    "sample": np.arange(n), "pair": pairs[name], "story": stories[name],
                                    "correct": lexical[name].astype(float)}))
    out = pd.concat(frames, ignore_index=True)
    out["target"] = target
    out["n_classes"] = TARGETS.get(target, len(np.unique(y)))
    return out


# --- statistics per shift --------------------------------------------------------------------------

def _matrix(correct: pd.DataFrame, shift: str, method: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(heads, samples) correctness of one shift (one row for the lexical method), the samples' pairs
    and their stories."""
    part = correct[(correct["shift"] == shift) & (correct["method"] == method)]
    if part.empty:
        raise ValueError(f"no {method} results for shift {shift!r}")
    part = part.sort_values(["layer", "head", "sample"])
    n = int(part["sample"].max()) + 1
    return (part["correct"].to_numpy(dtype=float).reshape(-1, n), part["pair"].to_numpy()[:n],
            part["story"].to_numpy()[:n])


def story_weights(stories: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Cluster-bootstrap weights (samples, n_boot): column b resamples whole stories with replacement
    (a story's samples share its text and balance its labels, so they are resampled together); a
    sample's weight is its story's draw count over the resample's size."""
    groups, index = np.unique(stories, return_inverse=True)
    draws = rng.integers(len(groups), size=(n_boot, len(groups)))
    counts = np.zeros((len(groups), n_boot))
    np.add.at(counts, (draws, np.arange(n_boot)[:, None]), 1.0)
    w = counts[index]
    return w / w.sum(axis=0, keepdims=True)


def spearman_columns(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman correlation of each column of ``a`` with the same column of ``b`` (heads in rows)."""
    ra, rb = rankdata(a, axis=0), rankdata(b, axis=0)
    ra, rb = ra - ra.mean(axis=0), rb - rb.mean(axis=0)
    den = np.sqrt((ra**2).sum(axis=0) * (rb**2).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (ra * rb).sum(axis=0) / den, np.nan)


def top_sets(maps: np.ndarray, k: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """Boolean (heads, columns): the ``k`` best heads of each column; ties are broken at random when
    ``rng`` is given (by head index otherwise, which makes two maps' ties agree and inflates overlap)."""
    if rng is not None:
        maps = maps + rng.uniform(0, 1e-9, size=maps.shape)  # below any accuracy step
    order = np.argsort(-maps, axis=0, kind="stable")[:k]
    out = np.zeros(maps.shape, dtype=bool)
    np.put_along_axis(out, order, True, axis=0)
    return out


def jaccard_columns(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a & b).sum(axis=0) / (a | b).sum(axis=0)


def percentile_interval(values: np.ndarray) -> tuple[float, float]:
    """95% percentile interval of bootstrap ``values``."""
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    low, high = np.quantile(values, [0.025, 0.975])
    return float(low), float(high)


def interval_fields(name: str, values: np.ndarray) -> dict[str, float]:
    """``{name}_low`` and ``{name}_high``: the percentile interval of bootstrap ``values``."""
    low, high = percentile_interval(values)
    return {f"{name}_low": low, f"{name}_high": high}


def split_half_ceiling(h: np.ndarray, stories: np.ndarray, *, top_k: int, draws: int,
                       rng: np.random.Generator) -> tuple[float, float]:
    """What the statistics reach with no shift at all: the per-head accuracy maps of two random halves of
    the stories, their Spearman correlation stepped up to the full number of stories (Spearman-Brown:
    ``2r / (1 + r)``, the map's reliability) and their top-``top_k`` Jaccard overlap (at half the
    stories; no step-up exists for it), each a mean over ``draws``. Per-head accuracies near chance are
    mostly noise, and the noise alone keeps these below 1."""
    groups, index = np.unique(stories, return_inverse=True)
    if len(groups) < 2:
        return float("nan"), float("nan")
    a, b = [], []
    for _ in range(draws):
        first = rng.permutation(len(groups))[: len(groups) // 2]
        in_first = np.isin(index, first)
        a.append(h[:, in_first].mean(axis=1))
        b.append(h[:, ~in_first].mean(axis=1))
    a, b = np.stack(a, axis=1), np.stack(b, axis=1)
    r = float(np.nanmean(spearman_columns(a, b)))
    reliability = 2 * r / (1 + r) if r > -1 else float("nan")
    return reliability, float(jaccard_columns(top_sets(a, top_k, rng), top_sets(b, top_k, rng)).mean())


def _stat_row(shift: str, h: np.ndarray, lex: np.ndarray, pairs: np.ndarray, stories: np.ndarray,
              original: tuple[np.ndarray, np.ndarray], position: Mapping[int, int], top: np.ndarray, top_k: int,
              n_boot: int, rng: np.random.Generator) -> dict[str, object]:
    n = h.shape[1]
    paired = bool((pairs >= 0).all())
    w = story_weights(stories, n_boot, rng)
    if paired:
        h_o, w_o = original[0][:, [position[int(p)] for p in pairs]], w
    else:
        h_o = original[0]
        w_o = story_weights(original[1], n_boot, rng)
    per_top, per_top_o = h[top].mean(axis=0), h_o[top].mean(axis=0)
    maps, maps_o = h @ w, h_o @ w_o  # (heads, n_boot)
    top_b, top_o_b, lex_b = per_top @ w, per_top_o @ w_o, lex @ w
    mean, mean_o = h.mean(axis=1, keepdims=True), h_o.mean(axis=1, keepdims=True)

    spearman = float(spearman_columns(mean, mean_o)[0])
    jaccard = float(_overlap(mean, mean_o, top_k, rng)[0])
    return {
        "shift": shift, "paired": paired, "n": n, "n_stories": len(np.unique(stories)), "top_k": top_k,
        "top_acc": float(per_top.mean()), **interval_fields("top_acc", top_b),
        "original_top_acc": float(per_top_o.mean()), "drop": float(per_top_o.mean() - per_top.mean()),
        **interval_fields("drop", top_o_b - top_b),
        "lexical_acc": float(lex.mean()), **interval_fields("lexical", lex_b),
        "margin": float(per_top.mean() - lex.mean()), **interval_fields("margin", top_b - lex_b),
        "spearman": spearman, **interval_fields("spearman", spearman_columns(maps, maps_o)),
        "jaccard": jaccard,
        **interval_fields("jaccard", _overlap(maps, maps_o, top_k, rng)),
    }


def _overlap(a: np.ndarray, b: np.ndarray, top_k: int, rng: np.random.Generator) -> np.ndarray:
    """Top-``top_k`` Jaccard per column, ties broken at random in each map (a map with itself: 1)."""
    if a.shape == b.shape and np.array_equal(a, b):
        return np.ones(a.shape[1])
    return jaccard_columns(top_sets(a, top_k, rng), top_sets(b, top_k, rng))


def _child_rng(seed: int, name: str) -> np.random.Generator:
    """One stream per row, so a row's intervals do not change with which other rows were run."""
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def _top_mask(ranking: np.ndarray, top_k: int) -> np.ndarray:
    top = np.zeros(len(ranking), dtype=bool)
    top[np.argsort(-ranking, kind="stable")[:top_k]] = True
    return top


def transfer_stats(correct: pd.DataFrame, *, top_k: int = 16, n_boot: int = 1000, seed: int = 0,
                   pools: Mapping[str, Sequence[str]] | None = None) -> pd.DataFrame:
    """One row per shift (:data:`STAT_COLUMNS`): the mean accuracy of the ``top_k`` heads (ranked on the
    inner split of the training stories: the originals', or for :data:`REVERSE` the other stories') on
    the shift and on the original validation samples (the same stories where the shift is paired), the
    drop between them, the lexical baseline's accuracy and the heads' margin over it (paired per
    sample), the Spearman correlation of the per-head accuracy maps (original vs shift) and the Jaccard
    overlap of their top-``top_k`` heads (ties broken at random); each with a 95% percentile bootstrap
    interval over stories (a cluster bootstrap, resampled jointly where paired, independently
    otherwise). Resampling adds noise to the maps, so where per-head accuracies are mostly noise the
    correlation's and the overlap's intervals sit below their estimates; ``spearman_ceiling`` (the
    original map's split-half reliability) and ``jaccard_ceiling`` (:func:`split_half_ceiling`) say what
    no shift at all would give.

    ``pools`` adds a row per pool (name: member shifts) whose samples are all its members' present in
    ``correct`` (e.g. both decoys), when at least one member is.
    """
    def ranking(name: str) -> np.ndarray:
        return correct[correct["shift"] == name].sort_values(["layer", "head"])["correct"].to_numpy(dtype=float)

    inner = ranking("inner")
    top_k = min(int(top_k), len(inner))
    h_orig, orig_ids, orig_stories = _matrix(correct, ORIGINAL, "head")
    position = {int(s): i for i, s in enumerate(orig_ids)}
    shifts = [s for s in dict.fromkeys(correct["shift"]) if not s.startswith("inner")]
    data = {s: (*_matrix(correct, s, "head"), _matrix(correct, s, "lexical")[0][0]) for s in shifts}
    for pool, members in (pools or {}).items():
        present = [m for m in members if m in data]
        if present:
            data[pool] = tuple(np.concatenate([data[m][i] for m in present], axis=-1) for i in range(4))
    own = {name[len("inner:"):] for name in correct["shift"].unique() if name.startswith("inner:")}
    rows = [_stat_row(name, h, lex, pairs, stories, (h_orig, orig_stories), position,
                      _top_mask(ranking(f"inner:{name}") if name in own else inner, top_k), top_k, n_boot,
                      _child_rng(seed, name))
            for name, (h, pairs, stories, lex) in data.items()]
    chance = 1.0 / int(correct["n_classes"].iloc[0])
    ceiling = split_half_ceiling(h_orig, orig_stories, top_k=top_k, draws=max(20, n_boot // 10),
                                 rng=_child_rng(seed, "ceiling"))
    return pd.DataFrame(rows).assign(chance=chance, spearman_ceiling=ceiling[0], jaccard_ceiling=ceiling[1]).reindex(
        columns=list(STAT_COLUMNS))


def overlap_matrix(correct: pd.DataFrame, *, top_k: int = 16) -> pd.DataFrame:
    """Jaccard overlap of the top-``top_k`` heads (by accuracy on each story set) between every two
    story sets: rows and columns are the shifts, the original first."""
    shifts = [s for s in dict.fromkeys(correct["shift"]) if not s.startswith("inner")]
    maps = np.stack([_matrix(correct, s, "head")[0].mean(axis=1) for s in shifts], axis=1)
    sets = top_sets(maps, min(int(top_k), maps.shape[0]), np.random.default_rng(0))
    inter = sets.T.astype(int) @ sets.astype(int)
    union = sets.sum(axis=0)[:, None] + sets.sum(axis=0)[None, :] - inter
    return pd.DataFrame(inter / union, index=shifts, columns=shifts)


def shift_examples(original_raw: pd.DataFrame, shifted: Mapping[str, tuple[pd.DataFrame, pd.DataFrame]]) -> pd.DataFrame:
    """One before/after example per perturbation: the first story it changed, the field it changed (the
    story, or the sentence a condition adds), before and after; and how many stories it skipped."""
    rows = []
    for kind, (raw, origin) in shifted.items():
        kept = origin[origin["row"] >= 0]
        skipped = int((origin["row"] < 0).sum())
        for _, o in kept.iterrows():
            before, after = original_raw.iloc[int(o["origin_story"])], raw.iloc[int(o["row"])]
            changed = [f for f in ("story", "aware_of_event", "not_aware_of_event") if before[f] != after[f]]
            if changed:
                f = changed[0]
                rows.append({"perturbation": kind, "story": int(o["origin_story"]), "field": f,
                             "before": before[f], "after": after[f], "applied": len(kept), "skipped": skipped})
                break
    return pd.DataFrame(rows, columns=["perturbation", "story", "field", "before", "after", "applied", "skipped"])

