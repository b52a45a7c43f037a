"""Tests for tomlab.probing: batched logistic regression, splits, probes, baselines."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from tomlab.probing.bench import (
    bench_joint_cap,
    bench_probing,
    sklearn_grid,
    synthetic_activations,
)
from tomlab.probing.estimator import BatchedLogisticRegression
from tomlab.probing.probes import (
    TARGETS,
    lexical_baseline,
    probe_heads,
    probe_layers,
    shuffled_labels,
    split_train_val,
    top_heads,
)

# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


def _grouped_problem(
    n_groups: int, n: int, d: int, n_classes: int, seed: int, shift: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """X (G, N, D): class means differing by ``shift`` along random directions, plus noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    means = rng.standard_normal((n_groups, n_classes, d)) * shift
    x = rng.standard_normal((n_groups, n, d)) + means[:, y]
    return x, y


def _reference(x: np.ndarray, y: np.ndarray, C: float) -> LogisticRegression:
    """scikit-learn fitted to (near) machine precision."""
    return LogisticRegression(C=C, max_iter=100_000, tol=1e-12).fit(x, y)


def _meta(n_stories: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = 4 * n_stories
    oracle = rng.integers(0, 2, n)
    protagonist = rng.integers(0, 2, n)
    return pd.DataFrame(
        {
            "sample_id": np.arange(n),
            "story_id": np.repeat(np.arange(n_stories), 4),
            "prompt": ["x"] * n,
            "oracle": oracle,
            "protagonist": protagonist,
            "joint": 2 * oracle + protagonist,
        }
    )


# --------------------------------------------------------------------------------------
# BatchedLogisticRegression vs scikit-learn
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("C", [10.0, 0.3])
def test_binary_matches_sklearn(C: float) -> None:
    x, y = _grouped_problem(4, 160, 8, 2, seed=1, shift=0.8)
    x_test, _ = _grouped_problem(4, 100, 8, 2, seed=2, shift=0.8)
    model = BatchedLogisticRegression(C=C, max_iter=200).fit(x, y)
    assert model.coef_.shape == (4, 1, 8)
    assert model.intercept_.shape == (4, 1)
    assert model.converged_.all()
    np.testing.assert_array_equal(model.classes_, [0, 1])
    pred = model.predict(x_test)
    proba = model.predict_proba(x_test)
    acc = model.score(x, y)
    for g in range(4):
        ref = _reference(x[g], y, C)
        scale = max(1.0, np.abs(ref.coef_).max())
        np.testing.assert_allclose(model.coef_[g], ref.coef_, atol=1e-3 * scale)
        np.testing.assert_allclose(model.intercept_[g], ref.intercept_, atol=1e-3 * scale)
        np.testing.assert_array_equal(pred[g], ref.predict(x_test[g]))
        np.testing.assert_allclose(proba[g], ref.predict_proba(x_test[g]), atol=1e-5)
        assert abs(acc[g] - ref.score(x[g], y)) <= 0.01


@pytest.mark.parametrize(("n_classes", "C"), [(4, 1.0), (3, 10.0)])
def test_multinomial_matches_sklearn(n_classes: int, C: float) -> None:
    x, y = _grouped_problem(3, 200, 6, n_classes, seed=3, shift=1.0)
    x_test, _ = _grouped_problem(3, 100, 6, n_classes, seed=4, shift=1.0)
    model = BatchedLogisticRegression(C=C, max_iter=200).fit(x, y)
    assert model.coef_.shape == (3, n_classes, 6)
    assert model.intercept_.shape == (3, n_classes)
    assert model.converged_.all()
    pred = model.predict(x_test)
    proba = model.predict_proba(x_test)
    assert proba.shape == (3, 100, n_classes)
    np.testing.assert_allclose(proba.sum(-1), 1.0)
    for g in range(3):
        ref = _reference(x[g], y, C)
        scale = max(1.0, np.abs(ref.coef_).max())
        np.testing.assert_allclose(model.coef_[g], ref.coef_, atol=1e-3 * scale)
        # intercepts are defined up to a common shift: compare centred
        ref_b = ref.intercept_ - ref.intercept_.mean()
        np.testing.assert_allclose(model.intercept_[g], ref_b, atol=1e-3 * scale)
        np.testing.assert_array_equal(pred[g], ref.predict(x_test[g]))
        np.testing.assert_allclose(proba[g], ref.predict_proba(x_test[g]), atol=1e-5)
        assert abs(model.score(x, y)[g] - ref.score(x[g], y)) <= 0.01


@pytest.mark.parametrize("n_classes", [2, 4])
def test_wide_features_match_sklearn(n_classes: int) -> None:
    """D > N takes the exact row-space reduction; the optimum must not change."""
    x, y = _grouped_problem(2, 40, 120, n_classes, seed=5, shift=0.5)
    model = BatchedLogisticRegression(C=1.0, max_iter=200).fit(x, y)
    for g in range(2):
        ref = _reference(x[g], y, 1.0)
        scale = max(1.0, np.abs(ref.coef_).max())
        np.testing.assert_allclose(model.coef_[g], ref.coef_, atol=1e-4 * scale)
        np.testing.assert_array_equal(model.predict(x)[g], ref.predict(x[g]))


def test_separable_data_matches_sklearn() -> None:
    """Linearly separable groups at large C (the slow case for Newton from zero)."""
    rng = np.random.default_rng(6)
    y = np.repeat([0, 1], 40)
    x = rng.standard_normal((3, 80, 5))
    x[:, :, 0] += np.where(y == 1, 3.0, -3.0)
    model = BatchedLogisticRegression(C=100.0, max_iter=200).fit(x, y)
    assert model.converged_.all()
    assert (model.score(x, y) == 1.0).all()
    for g in range(3):
        ref = _reference(x[g], y, 100.0)
        scale = max(1.0, np.abs(ref.coef_).max())
        np.testing.assert_allclose(model.coef_[g], ref.coef_, atol=1e-3 * scale)


def test_sklearn_grid_agrees_with_batched() -> None:
    x, y = _grouped_problem(6, 150, 5, 2, seed=7, shift=0.6)
    x_val, y_val = x[:, :50], y[:50]
    x_tr, y_tr = x[:, 50:], y[50:]
    train_ref, val_ref = sklearn_grid(x_tr, y_tr, x_val, y_val, C=10.0, max_iter=1000, tol=1e-10)
    model = BatchedLogisticRegression(C=10.0, max_iter=100).fit(x_tr, y_tr)
    np.testing.assert_allclose(model.score(x_tr, y_tr), train_ref, atol=0.01)
    np.testing.assert_allclose(model.score(x_val, y_val), val_ref, atol=0.01)
    assert train_ref.shape == val_ref.shape == (6,)


# --------------------------------------------------------------------------------------
# BatchedLogisticRegression behaviour
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_classes", [2, 4])
def test_groups_are_independent(n_classes: int) -> None:
    x, y = _grouped_problem(5, 120, 6, n_classes, seed=8)
    together = BatchedLogisticRegression(C=2.0, max_iter=100).fit(x, y)
    for g in range(5):
        alone = BatchedLogisticRegression(C=2.0, max_iter=100).fit(x[g : g + 1], y)
        np.testing.assert_allclose(together.coef_[g], alone.coef_[0], atol=1e-7)
        np.testing.assert_allclose(together.intercept_[g], alone.intercept_[0], atol=1e-7)
    chunked = BatchedLogisticRegression(C=2.0, max_iter=100, chunk_size=2).fit(x, y)
    np.testing.assert_allclose(together.coef_, chunked.coef_, atol=1e-7)


def test_per_group_labels() -> None:
    """y of shape (G, N): each group is fitted on its own labels."""
    rng = np.random.default_rng(9)
    x = rng.standard_normal((3, 100, 4))
    y = np.stack([(x[g, :, g] > 0).astype(int) for g in range(3)])  # group g: sign of feature g
    model = BatchedLogisticRegression(C=1.0, max_iter=100).fit(x, y)
    for g in range(3):
        alone = BatchedLogisticRegression(C=1.0, max_iter=100).fit(x[g : g + 1], y[g])
        np.testing.assert_allclose(model.coef_[g], alone.coef_[0], atol=1e-7)
        assert np.argmax(np.abs(model.coef_[g, 0])) == g
    assert model.score(x, y).shape == (3,)


def test_label_values_and_input_types() -> None:
    x, y01 = _grouped_problem(2, 100, 4, 2, seed=10)
    y = np.where(y01 == 1, 7, 3)
    model = BatchedLogisticRegression(C=1.0).fit(torch.as_tensor(x, dtype=torch.float16), y)
    np.testing.assert_array_equal(model.classes_, [3, 7])
    assert set(np.unique(model.predict(x))) <= {3, 7}
    ref = BatchedLogisticRegression(C=1.0).fit(x.astype(np.float16), torch.as_tensor(y01))
    np.testing.assert_allclose(model.coef_, ref.coef_, atol=1e-10)


def test_invalid_inputs_raise() -> None:
    x, y = _grouped_problem(2, 50, 3, 2, seed=11)
    with pytest.raises(ValueError, match="at least 2 classes"):
        BatchedLogisticRegression().fit(x, np.zeros(50, dtype=int))
    with pytest.raises(ValueError, match="shape"):
        BatchedLogisticRegression().fit(x[0], y)
    with pytest.raises(ValueError, match="shape"):
        BatchedLogisticRegression().fit(x, y[:-1])
    with pytest.raises(RuntimeError, match="not fitted"):
        BatchedLogisticRegression().predict(x)
    model = BatchedLogisticRegression().fit(x, y)
    with pytest.raises(ValueError, match="features"):
        model.predict(x[..., :2])


def test_max_iter_warns_and_reports() -> None:
    x, y = _grouped_problem(3, 100, 5, 2, seed=12)
    with pytest.warns(ConvergenceWarning):
        model = BatchedLogisticRegression(C=10.0, max_iter=1).fit(x, y)
    assert (model.n_iter_ == 1).all()
    assert not model.converged_.any()


def test_thread_count_restored() -> None:
    before = torch.get_num_threads()
    x, y = _grouped_problem(2, 60, 4, 3, seed=13)
    BatchedLogisticRegression().fit(x, y)
    assert torch.get_num_threads() == before


def test_sklearn_style_params() -> None:
    model = BatchedLogisticRegression(C=3.0, max_iter=7)
    assert model.get_params()["C"] == 3.0
    model.set_params(C=5.0)
    assert model.C == 5.0
    with pytest.raises(ValueError):
        model.set_params(alpha=1.0)


# --------------------------------------------------------------------------------------
# splits and control labels
# --------------------------------------------------------------------------------------


def test_split_by_story_keeps_stories_whole() -> None:
    meta = _meta(50)
    is_val = split_train_val(meta, 0.2, "by_story", seed=0)
    assert is_val.dtype == bool and is_val.shape == (200,)
    val_stories = set(meta.loc[is_val, "story_id"])
    train_stories = set(meta.loc[~is_val, "story_id"])
    assert not val_stories & train_stories
    assert len(val_stories) == 10
    assert is_val.sum() == 40


def test_split_by_sample_leaks_stories() -> None:
    meta = _meta(50)
    is_val = split_train_val(meta, 0.2, "by_sample", seed=0)
    assert is_val.sum() == 40
    shared = set(meta.loc[is_val, "story_id"]) & set(meta.loc[~is_val, "story_id"])
    assert len(shared) > 0


@pytest.mark.parametrize("mode", ["by_story", "by_sample"])
def test_split_is_deterministic_per_seed(mode: str) -> None:
    meta = _meta(50)
    a = split_train_val(meta, 0.2, mode, seed=3)
    b = split_train_val(meta, 0.2, mode, seed=3)
    c = split_train_val(meta, 0.2, mode, seed=4)
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()


def test_split_bad_mode_raises() -> None:
    with pytest.raises(ValueError, match="by_story.*by_sample"):
        split_train_val(_meta(5), mode="random")
    with pytest.raises(ValueError):
        split_train_val(_meta(5), val_fraction=1.5)


def test_shuffled_labels() -> None:
    y = np.repeat([0, 1, 2, 3], 25)
    a = shuffled_labels(y, seed=0)
    np.testing.assert_array_equal(np.sort(a), y)
    np.testing.assert_array_equal(a, shuffled_labels(y, seed=0))
    assert (a != y).mean() > 0.5
    assert (a != shuffled_labels(y, seed=1)).any()


# --------------------------------------------------------------------------------------
# probing
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def planted() -> tuple[np.ndarray, pd.DataFrame, np.ndarray]:
    """Pure noise everywhere except an oracle signal in (layer 1, head 2)."""
    rng = np.random.default_rng(14)
    meta = _meta(60, seed=14)
    acts = rng.standard_normal((240, 3, 4, 8)).astype(np.float32)
    direction = rng.standard_normal(8)
    direction /= np.linalg.norm(direction)
    acts[:, 1, 2] += np.outer(meta["oracle"].to_numpy() - 0.5, 4.0 * direction).astype(np.float32)
    is_val = split_train_val(meta, 0.25, "by_story", seed=0)
    return acts.astype(np.float16), meta, is_val


def test_probe_heads_finds_planted_head(planted: tuple[np.ndarray, pd.DataFrame, np.ndarray]) -> None:
    acts, meta, is_val = planted
    heads = probe_heads(acts, meta, is_val, progress=False)
    assert list(heads.columns) == [
        "layer",
        "head",
        "target",
        "train_acc",
        "val_acc",
        "control_acc",
        "selectivity",
        "n_train",
        "n_val",
    ]
    assert len(heads) == 3 * 4 * len(TARGETS)
    assert (heads["n_val"] == is_val.sum()).all() and (heads["n_train"] == (~is_val).sum()).all()
    np.testing.assert_allclose(heads["selectivity"], heads["val_acc"] - heads["control_acc"])

    best = top_heads(heads, "oracle", k=1).iloc[0]
    assert (best["layer"], best["head"]) == (1, 2)
    assert best["val_acc"] >= 0.9
    assert best["control_acc"] <= 0.75
    assert best["selectivity"] >= 0.3

    oracle = heads[heads["target"] == "oracle"]
    noise = oracle[(oracle["layer"] != 1) | (oracle["head"] != 2)]
    assert 0.35 <= noise["val_acc"].mean() <= 0.65
    assert noise["val_acc"].max() <= 0.8
    assert 0.35 <= oracle["control_acc"].mean() <= 0.65
    # nothing is planted for the protagonist: every head is near chance
    assert heads.loc[heads["target"] == "protagonist", "val_acc"].mean() <= 0.65


def test_probe_layers_shapes(planted: tuple[np.ndarray, pd.DataFrame, np.ndarray]) -> None:
    acts, meta, is_val = planted
    layers = probe_layers(acts, meta, is_val, targets=("oracle", "joint"), progress=False)
    assert list(layers.columns) == [
        "layer",
        "target",
        "train_acc",
        "val_acc",
        "control_acc",
        "selectivity",
        "n_train",
        "n_val",
    ]
    assert len(layers) == 3 * 2
    assert sorted(layers["layer"].unique()) == [0, 1, 2]
    oracle = layers[layers["target"] == "oracle"].set_index("layer")
    assert oracle.loc[1, "val_acc"] >= 0.85  # the layer holding the planted head
    np.testing.assert_allclose(layers["selectivity"], layers["val_acc"] - layers["control_acc"])


def test_probe_layers_wide_matches_sklearn() -> None:
    """H*D > n_train takes the row-space reduction; accuracies must equal plain sklearn's."""
    acts, meta = synthetic_activations(n_stories=30, n_layers=2, n_heads=8, dim=20, seed=3)
    is_val = split_train_val(meta, 0.25, "by_story", seed=1)
    layers = probe_layers(acts, meta, is_val, targets=("oracle", "joint"), progress=False)
    flat = acts.astype(np.float64).reshape(len(meta), 2, -1)
    for target, C in (("oracle", 10.0), ("joint", 1.0)):
        y = meta[target].to_numpy()
        for layer in range(2):
            ref = _reference(flat[~is_val, layer], y[~is_val], C)
            row = layers[(layers["target"] == target) & (layers["layer"] == layer)].iloc[0]
            assert row["val_acc"] == pytest.approx(ref.score(flat[is_val, layer], y[is_val]), abs=0.02)
            assert row["train_acc"] == pytest.approx(ref.score(flat[~is_val, layer], y[~is_val]), abs=0.02)


def test_probe_rejects_bad_inputs(planted: tuple[np.ndarray, pd.DataFrame, np.ndarray]) -> None:
    acts, meta, is_val = planted
    with pytest.raises(ValueError):
        probe_heads(acts[:, 0], meta, is_val, progress=False)
    with pytest.raises(ValueError):
        probe_heads(acts, meta, np.zeros(len(meta), dtype=bool), progress=False)
    with pytest.raises(ValueError, match="not a column"):
        probe_heads(acts, meta, is_val, targets=("belief",), progress=False)


def test_lexical_baseline() -> None:
    rng = np.random.default_rng(15)
    meta = _meta(60, seed=15)
    filler = np.array(["the", "cat", "moved", "ball", "into", "box", "while", "anne", "was", "away"])
    colour = np.where(meta["oracle"].to_numpy() == 1, "red", "blue")
    meta["prompt"] = [
        " ".join([*rng.choice(filler, 6), f"The {col} ball", *rng.choice(filler, 6)]) for col in colour
    ]
    is_val = split_train_val(meta, 0.25, "by_story", seed=0)
    out = lexical_baseline(meta, is_val, max_iter=2000)
    assert list(out.columns) == ["target", "train_acc", "val_acc", "majority_acc"]
    assert list(out["target"]) == ["oracle", "protagonist", "joint"]
    row = out.set_index("target")
    assert row.loc["oracle", "val_acc"] >= 0.97
    # the protagonist label is independent of the text: no better than the majority class
    assert row.loc["protagonist", "val_acc"] <= row.loc["protagonist", "majority_acc"] + 0.2
    y_val = meta.loc[is_val, "protagonist"]
    y_train = meta.loc[~is_val, "protagonist"]
    assert row.loc["protagonist", "majority_acc"] == pytest.approx((y_val == y_train.mode()[0]).mean())


def test_top_heads_ordering() -> None:
    heads = pd.DataFrame(
        {
            "layer": [0, 0, 1, 1, 2, 2],
            "head": [0, 1, 0, 1, 0, 1],
            "target": ["oracle"] * 5 + ["joint"],
            "val_acc": [0.7, 0.9, 0.9, 0.9, 0.6, 0.99],
            "selectivity": [0.1, 0.3, 0.4, 0.3, 0.0, 0.5],
        }
    )
    top = top_heads(heads, "oracle", k=4)
    assert list(top["rank"]) == [1, 2, 3, 4]
    # 0.9 three-way tie: selectivity 0.4 first, then (0, 1) before (1, 1) by layer
    assert list(zip(top["layer"], top["head"], strict=True)) == [(1, 0), (0, 1), (1, 1), (0, 0)]
    assert len(top_heads(heads, "oracle", k=10)) == 5
    by_sel = top_heads(heads, "oracle", k=2, by="selectivity")
    assert list(zip(by_sel["layer"], by_sel["head"], strict=True)) == [(1, 0), (0, 1)]
    with pytest.raises(ValueError):
        top_heads(heads, "protagonist")


def test_bench_probing_small() -> None:
    acts, meta = synthetic_activations(n_stories=40, n_layers=2, n_heads=3, dim=8, seed=1)
    is_val = split_train_val(meta, 0.25, "by_story", seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        out = bench_probing(acts, meta, is_val, target="oracle", C=10.0, sklearn_tol=1e-10)
    assert set(out) == {
        "n_probes",
        "n_train",
        "n_val",
        "dim",
        "batched_seconds",
        "sklearn_seconds",
        "speedup",
        "max_acc_gap",
        "mean_acc_gap",
        "target",
        "torch_threads",
        "batched_tol",
        "sklearn_tol",
        "sklearn_max_iter",
        "sklearn_not_converged",
        "device",
    }
    assert out["sklearn_not_converged"] == 0 and out["sklearn_max_iter"] == 1000
    assert out["n_probes"] == 6 and out["dim"] == 8 and out["target"] == "oracle"
    assert out["n_train"] + out["n_val"] == 160
    assert out["batched_seconds"] > 0 and out["sklearn_seconds"] > 0
    assert out["max_acc_gap"] <= 0.01


def test_synthetic_activations_layout() -> None:
    acts, meta = synthetic_activations(n_stories=10, n_layers=2, n_heads=3, dim=4, seed=0)
    assert acts.shape == (40, 2, 3, 4) and acts.dtype == np.float16
    assert set(meta.columns) >= {"sample_id", "story_id", "prompt", "oracle", "protagonist", "joint"}
    assert (meta.groupby("story_id").size() == 4).all()
    np.testing.assert_array_equal(meta["joint"], 2 * meta["oracle"] + meta["protagonist"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("n_classes", [2, 4])
def test_cuda_matches_cpu(n_classes: int) -> None:
    x, y = _grouped_problem(6, 150, 16, n_classes, seed=16)
    cpu = BatchedLogisticRegression(C=5.0, max_iter=100).fit(x, y)
    gpu = BatchedLogisticRegression(C=5.0, max_iter=100, device="cuda").fit(x, y)
    np.testing.assert_allclose(gpu.coef_, cpu.coef_, atol=1e-6)
    np.testing.assert_array_equal(gpu.predict(x), cpu.predict(x))


def test_bench_probing_counts_reference_fits_stopped_early() -> None:
    acts, meta = synthetic_activations(n_stories=40, n_layers=1, n_heads=2, dim=8, seed=1)
    is_val = split_train_val(meta, 0.25, "by_story", seed=0)
    out = bench_probing(acts, meta, is_val, target="oracle", C=10.0, sklearn_max_iter=1, sklearn_tol=1e-12)
    assert out["sklearn_not_converged"] == 2 and out["sklearn_max_iter"] == 1


def test_bench_joint_cap_fields() -> None:
    acts, meta = synthetic_activations(n_stories=30, n_layers=2, n_heads=3, dim=6, seed=2)
    is_val = split_train_val(meta, 0.2, "by_sample", seed=0)
    out = bench_joint_cap(acts, meta, is_val, capped_max_iter=100, top_k=4, C=1.0)
    assert set(out) == {
        "joint_C", "joint_capped_max_iter", "joint_capped_not_converged", "joint_converged_not_converged",
        "joint_top_k", "joint_top_k_overlap", "joint_tpfo_cosine_mean", "joint_tpfo_cosine_median",
        "joint_tpfo_cosine_min", "joint_tpfo_cosine_top_k_mean", "joint_max_val_acc_gap",
        "joint_mean_val_acc_gap", "joint_capped_seconds", "joint_converged_seconds",
    }
    assert out["joint_capped_max_iter"] == 100 and out["joint_top_k"] == 4
    assert 0 <= out["joint_capped_not_converged"] <= 6 and out["joint_converged_not_converged"] == 0
    assert 0 <= out["joint_top_k_overlap"] <= 4
    # 100 lbfgs steps on 6 well-scaled features reach the optimum: the same probe
    assert out["joint_tpfo_cosine_min"] > 0.999 and out["joint_top_k_overlap"] == 4
    assert -1 <= out["joint_tpfo_cosine_min"] <= out["joint_tpfo_cosine_median"] <= 1
    assert out["joint_max_val_acc_gap"] <= 1 / int(is_val.sum()) + 1e-12
    # one lbfgs step is far from the optimum: every fit is reported as stopped at the cap
    early = bench_joint_cap(acts, meta, is_val, capped_max_iter=1, top_k=99, C=1.0)
    assert early["joint_capped_not_converged"] == 6 and early["joint_top_k"] == 6
    assert early["joint_top_k_overlap"] == 6 and early["joint_tpfo_cosine_mean"] < out["joint_tpfo_cosine_mean"]


def test_head_groups_puts_layer_times_heads_plus_head_first() -> None:
    from tomlab.probing.probes import head_groups

    acts = np.arange(2 * 3 * 4 * 5, dtype=np.float16).reshape(2, 3, 4, 5)  # N, L, H, D
    groups = head_groups(acts, np.float64)
    assert groups.shape == (12, 2, 5) and groups.dtype == np.float64
    for layer in range(3):
        for head in range(4):
            np.testing.assert_array_equal(groups[layer * 4 + head], acts[:, layer, head, :])
