"""Linear probes on per-attention-head activations (Zhu, Zhang & Wang, ICML 2024).

The paper trains one L2-regularised logistic regression per (layer, head) on the head's
output activations and reports validation accuracy for the oracle's belief, the
protagonist's belief and their joint (4-way) label.  This module reproduces that with

* :class:`BatchedLogisticRegression`: the same objective as scikit-learn's
  ``LogisticRegression(penalty="l2", solver="lbfgs")`` solved for many independent problems
  at once with a batched Newton method in torch (float64);
* :func:`sklearn_grid`: the reference path, a plain loop of scikit-learn fits;
* splitting (:func:`split_train_val`, including the original's leaky by-sample split),
  a Hewitt & Liang-style control task (:func:`shuffled_labels`), per-head and per-layer
  probing (:func:`probe_heads`, :func:`probe_layers`), a bag-of-words baseline on the prompt
  text (:func:`lexical_baseline`), ranking (:func:`top_heads`) and a speed/agreement
  benchmark (:func:`bench_probing`).

Activations are an array ``acts`` of shape (N samples, L layers, H heads, D head_dim) and
``meta`` is a DataFrame with one row per sample (``sample_id``, ``story_id``, ``prompt``,
``oracle``, ``protagonist``, ``joint``).
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression
from tqdm.auto import tqdm

__all__ = [
    "TARGETS",
    "DEFAULT_C_BINARY",
    "DEFAULT_C_JOINT",
    "DEFAULT_MAX_ITER",
    "SPLIT_MODES",
    "BatchedLogisticRegression",
    "sklearn_grid",
    "split_train_val",
    "shuffled_labels",
    "probe_heads",
    "probe_layers",
    "lexical_baseline",
    "top_heads",
    "bench_probing",
    "synthetic_activations",
]

#: Probe targets and their number of classes.
TARGETS: dict[str, int] = {"oracle": 2, "protagonist": 2, "joint": 4}
#: The original's inverse regularisation strength for the binary targets.
DEFAULT_C_BINARY: float = 10.0
#: The original's inverse regularisation strength for the 4-way joint target.
DEFAULT_C_JOINT: float = 1.0
#: The original's iteration cap.
DEFAULT_MAX_ITER: int = 1000
#: Allowed values of ``split_train_val(mode=...)``.
SPLIT_MODES: tuple[str, ...] = ("by_story", "by_sample")

_DEFAULT_TARGETS: tuple[str, ...] = ("oracle", "protagonist", "joint")
# Ridge on the (otherwise unpenalised) intercepts, in units of scikit-learn's mean-loss
# objective (i.e. multiplied by C * n_samples in ours).  It makes the multinomial Hessian
# invertible (softmax is invariant to a common shift of the intercepts) and guards the
# binary intercept when the data are separable; its effect on the solution is ~1e-10.
_INTERCEPT_RIDGE: float = 1e-10
_MEMORY_BUDGET_BYTES: int = 1 << 30
_ARMIJO_C: float = 1e-4
_MAX_HALVINGS: int = 50
_MAX_DOUBLINGS: int = 6


# --------------------------------------------------------------------------------------
# Batched Newton solver
# --------------------------------------------------------------------------------------


def _as_float64_tensor(x: Any, device: torch.device) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().to(device=device, dtype=torch.float64)
    return torch.as_tensor(np.asarray(x), device=device).to(torch.float64)


def _n_dims(x: Any) -> int:
    return x.dim() if isinstance(x, torch.Tensor) else np.ndim(x)


def _shape(x: Any) -> tuple[int, ...]:
    return tuple(x.shape) if isinstance(x, torch.Tensor) else tuple(np.shape(x))


def _bytes_per_group(n: int, d: int, n_classes: int) -> int:
    """Rough peak memory (bytes) of one group's Newton problem."""
    d_eff = min(d, n)  # wide problems are reduced to at most n features (see fit)
    m = 1 if n_classes == 2 else n_classes - 1
    p = m * (d_eff + 1)
    floats = (
        3 * n * d  # the raw chunk, its float64 copy and the SVD workspace when wide
        + 4 * n * (d_eff + 1)  # float64 design (+ a compaction copy), float32 design, weighted copy
        + 4 * p * p  # Hessian, Cholesky factor, temporaries
        + 4 * n * m * m
        + 12 * n * n_classes  # logits, probabilities, residuals ...
        + 16 * p  # parameters, gradients, steps
    )
    return 8 * floats


def default_chunk_size(
    n_samples: int, n_features: int, n_classes: int, budget_bytes: int = _MEMORY_BUDGET_BYTES
) -> int:
    """Largest number of groups whose Newton problems fit in ``budget_bytes`` together."""
    return max(1, int(budget_bytes // _bytes_per_group(n_samples, n_features, n_classes)))


class _Loss:
    """Cross-entropy on *reduced* logits ``z`` (g, n, m) and its derivatives.

    Binary: m = 1, sigmoid on z.  Multinomial with K classes: m = K - 1 and the full logits
    are ``[z, -sum(z)]`` (the sum-zero gauge of the full softmax, see ``_newton_solve``).
    """

    def __init__(self, y: torch.Tensor, n_classes: int) -> None:
        self.multinomial = n_classes > 2
        self.k = n_classes
        if self.multinomial:
            self.onehot = torch.nn.functional.one_hot(y, n_classes).to(torch.float64)  # (g, n, k)
        else:
            self.y = y.to(torch.float64)  # (g, n)

    def subset(self, idx: torch.Tensor) -> _Loss:
        out = _Loss.__new__(_Loss)
        out.multinomial, out.k = self.multinomial, self.k
        if self.multinomial:
            out.onehot = self.onehot[idx]
        else:
            out.y = self.y[idx]
        return out

    def value(self, z: torch.Tensor) -> torch.Tensor:
        """Summed cross-entropy per group (g,)."""
        if self.multinomial:
            full = torch.cat([z, -z.sum(-1, keepdim=True)], dim=-1)
            return (torch.logsumexp(full, dim=-1) - (self.onehot * full).sum(-1)).sum(-1)
        zz = z[..., 0]
        return (torch.logaddexp(torch.zeros_like(zz), zz) - self.y * zz).sum(-1)

    def derivatives(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """First derivatives r (g, n, m) and second derivatives q (g, n, m, m) wrt z."""
        if self.multinomial:
            full = torch.cat([z, -z.sum(-1, keepdim=True)], dim=-1)
            p = torch.softmax(full, dim=-1)
            resid = p - self.onehot
            r = resid[..., :-1] - resid[..., -1:]
            pm, pk = p[..., :-1], p[..., -1:]
            # q_ab = p_a d_ab - p_a p_b + p_K (p_a + p_b) + p_K (1 - p_K)
            q = torch.diag_embed(pm) - pm.unsqueeze(-1) * pm.unsqueeze(-2)
            q += (pk * pm).unsqueeze(-1) + (pk * pm).unsqueeze(-2)
            q += (pk * (1.0 - pk)).unsqueeze(-1)
            return r, q
        p = torch.sigmoid(z)
        return p - self.y.unsqueeze(-1), (p * (1.0 - p)).unsqueeze(-1)


@contextlib.contextmanager
def _lapack_threads(device: torch.device) -> Iterator[None]:
    """Run CPU LAPACK calls single-threaded, restoring the thread count afterwards.

    torch's batched CPU factorizations call LAPACK once per matrix; with several MKL threads
    on these small matrices the OpenMP hand-offs cost far more than the work (100x slower
    on a busy 2-core machine), and batched LU (``linalg.solve``) can even return corrupt
    pivots with more than one thread (pytorch/pytorch#142815), so it is never used here.
    """
    if device.type != "cpu":
        yield
        return
    previous = torch.get_num_threads()
    if previous == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _block_cholesky(hb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Blocked Cholesky of symmetric block matrices ``hb`` (g, m, m, d1, d1) (lower blocks used).

    The natural blocks of the multinomial Hessian (one per pair of classes) are factorised
    with batched d1 x d1 Cholesky factorizations, triangular solves and ``bmm`` Schur
    updates, which is several times faster than one (m*d1) x (m*d1) factorization on CPU.
    Returns the lower block factor (g, m, m, d1, d1) and a bool (g,) flagging failures.
    """
    g, m = hb.shape[:2]
    fac = torch.zeros_like(hb)
    failed = torch.zeros(g, dtype=torch.bool, device=hb.device)
    with _lapack_threads(hb.device):
        for j in range(m):
            s = hb[:, j, j]
            for k in range(j):
                s = s - torch.bmm(fac[:, j, k], fac[:, j, k].mT)
            l_jj, info = torch.linalg.cholesky_ex(s)
            failed |= info != 0
            fac[:, j, j] = l_jj
            for i in range(j + 1, m):
                t = hb[:, i, j]
                for k in range(j):
                    t = t - torch.bmm(fac[:, i, k], fac[:, j, k].mT)
                fac[:, i, j] = torch.linalg.solve_triangular(l_jj.mT, t, upper=True, left=False)
    failed |= ~torch.isfinite(fac.flatten(1)).all(-1)
    return fac, failed


def _block_cholesky_solve(fac: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    """Solve ``(L L') x = rhs`` for block factors ``fac`` (g, m, m, d1, d1), ``rhs`` (g, m, d1)."""
    m = fac.shape[1]
    ys: list[torch.Tensor] = []
    with _lapack_threads(fac.device):
        for j in range(m):
            r = rhs[:, j].unsqueeze(-1)
            for k in range(j):
                r = r - torch.bmm(fac[:, j, k], ys[k])
            ys.append(torch.linalg.solve_triangular(fac[:, j, j], r, upper=False))
        xs: list[torch.Tensor] = [ys[0]] * m
        for j in reversed(range(m)):
            r = ys[j]
            for k in range(j + 1, m):
                r = r - torch.bmm(fac[:, k, j].mT, xs[k])
            xs[j] = torch.linalg.solve_triangular(fac[:, j, j].mT, r, upper=True)
    return torch.cat(xs, dim=-1).mT


def _factor_hessians(
    x: torch.Tensor, q: torch.Tensor, a_mat: torch.Tensor, pi: torch.Tensor, c: float
) -> torch.Tensor:
    """Cholesky block factors of ``C * sum_i q_i (x) x_i x_i' + A (x) diag(pi)`` per group.

    ``x`` (g, n, d1) in the precision the data part is accumulated in, ``q`` (g, n, m, m).
    Groups whose Hessian is numerically indefinite are refactorised with a growing jitter.
    """
    g, n, d1 = x.shape
    m = q.shape[-1]
    qc = (q * c).to(x.dtype)
    hb = torch.empty((g, m, m, d1, d1), dtype=torch.float64, device=x.device)
    xt = x.mT
    for i in range(m):
        for j in range(i + 1):
            block = torch.bmm(xt, x * qc[..., i, j].unsqueeze(-1)).to(torch.float64)
            block.diagonal(dim1=1, dim2=2).add_(a_mat[i, j] * pi)
            hb[:, i, j] = block
            if i != j:
                hb[:, j, i] = block
    fac, failed = _block_cholesky(hb)
    if bool(failed.any()):
        scale = hb.diagonal(dim1=1, dim2=2).diagonal(dim1=-2, dim2=-1).abs().flatten(1).amax(-1).clamp_min(1.0)
        eye = torch.eye(d1, dtype=torch.float64, device=x.device)
        for jitter in (1e-12, 1e-9, 1e-6, 1e-3, 1.0):
            bad = failed.nonzero().squeeze(-1)
            h_bad = hb[bad].clone()
            for i in range(m):
                h_bad[:, i, i] += (jitter * scale[bad])[:, None, None] * eye
            fac_bad, failed_bad = _block_cholesky(h_bad)
            fac[bad] = fac_bad
            failed[bad] = failed_bad
            if not bool(failed.any()):
                break
    return fac


def _newton_solve(
    xa: torch.Tensor,
    y: torch.Tensor,
    n_classes: int,
    c: float,
    max_iter: int,
    tol: float,
    hessian_dtype: torch.dtype = torch.float32,
    refresh_ratio: float = 0.05,
) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """Fit every group of one chunk with damped Newton.

    ``xa``: float64 design with a trailing column of ones (g, n, d1); ``y``: class codes (g, n).
    Parameters are ``theta`` (g, m, d1): m = 1 for binary problems (scikit-learn's single
    class-1 row), m = K - 1 for multinomial ones, whose K-th row is ``-sum(theta)``.  That
    gauge loses nothing: softmax is invariant to adding one vector to every row, and the L2
    penalty strictly prefers rows summing to zero, so the full-softmax optimum has
    ``sum_k w_k = 0``; the unpenalised intercepts are free up to a common shift, fixed to sum
    to zero.  The penalty of the full K rows is ``0.5 * sum_ab A_ab <theta_a, Pi theta_b>`` with
    ``A = I + 11'`` (``A = [1]`` for binary) and ``Pi = diag(1, ..., 1, ridge)``.

    The Hessian's data part ``X' diag(q) X`` is accumulated with ``bmm`` in ``hessian_dtype``;
    objective, gradients, line search and the stopping test are float64, so the iterates
    converge to the float64 optimum either way.  A group keeps its factorised Hessian for the
    next step when its last step was a full Newton step that cut the gradient by more than
    ``1 / refresh_ratio`` (the quadratic phase, where the Hessian barely moves); any other
    step, or a failed line search with a kept Hessian, refreshes it.

    Returns theta, the Newton steps taken per group and whether each met ``tol``.
    """
    g, n, d1 = xa.shape
    dev = xa.device
    f64 = torch.float64
    multinomial = n_classes > 2
    m = n_classes - 1 if multinomial else 1
    a_mat = torch.eye(m, dtype=f64, device=dev) + (1.0 if multinomial else 0.0)
    pi = torch.ones(d1, dtype=f64, device=dev)
    pi[-1] = _INTERCEPT_RIDGE * c * n
    grad_scale = 1.0 / (c * n)  # scikit-learn's gtol is on the gradient of the mean loss
    eps_slack = 64 * torch.finfo(f64).eps

    def penalty_grad(theta: torch.Tensor) -> torch.Tensor:
        return torch.einsum("ab,gbd->gad", a_mat, theta) * pi

    n_iter = np.zeros(g, dtype=np.int64)
    converged = np.zeros(g, dtype=bool)
    theta_out = torch.zeros((g, m, d1), dtype=f64, device=dev)

    # Working buffer: groups still being optimised plus recently finished (frozen) ones.
    idx = torch.arange(g, device=dev)
    x64 = xa
    xh = xa if hessian_dtype == f64 else xa.to(hessian_dtype)
    loss = _Loss(y, n_classes)
    theta = torch.zeros((g, m, d1), dtype=f64, device=dev)
    z = torch.zeros((g, n, m), dtype=f64, device=dev)
    f = c * loss.value(z)
    live = torch.ones(g, dtype=torch.bool, device=dev)
    fac = torch.zeros((g, m, m, d1, d1), dtype=f64, device=dev)
    stale = torch.ones(g, dtype=torch.bool, device=dev)  # factor must be recomputed
    gmax_prev = torch.full((g,), math.inf, dtype=f64, device=dev)
    fresh = torch.zeros(g, dtype=torch.bool, device=dev)  # factor computed at this iterate

    for _ in range(max_iter + 1):
        r, q = loss.derivatives(z)
        grad = penalty_grad(theta) + c * torch.bmm(r.mT, x64)  # (b, m, d1)
        gmax = grad.flatten(1).abs().amax(-1)
        done = live & (gmax * grad_scale <= tol)
        if bool(done.any()):
            converged[idx[done].cpu().numpy()] = True
            live &= ~done
        n_live = int(live.sum())
        if n_live == 0:
            break
        if n_live <= 0.75 * len(idx):  # compact the buffer: drop finished groups
            theta_out[idx[~live]] = theta[~live]
            keep = live.nonzero().squeeze(-1)
            idx, x64, loss = idx[keep], x64[keep], loss.subset(keep)
            xh = x64 if hessian_dtype == f64 else xh[keep]
            theta, z, f, grad, gmax, q = theta[keep], z[keep], f[keep], grad[keep], gmax[keep], q[keep]
            fac, stale, gmax_prev, live = fac[keep], stale[keep], gmax_prev[keep], live[keep]
        if int(n_iter[idx[live][0].item()]) >= max_iter:
            break
        b = len(idx)

        stale |= gmax > refresh_ratio * gmax_prev
        refresh = live & stale
        fresh = refresh.clone()
        if bool(refresh.any()):
            if bool(refresh.all()):
                fac = _factor_hessians(xh, q, a_mat, pi, c)
            else:
                sel = refresh.nonzero().squeeze(-1)
                fac[sel] = _factor_hessians(xh[sel], q[sel], a_mat, pi, c)
            stale &= ~refresh
        step = -_block_cholesky_solve(fac, grad)
        step[~live] = 0.0
        bad = ~torch.isfinite(step.flatten(1)).all(-1)
        if bool(bad.any()):  # numerically hopeless factor: steepest descent, scaled below
            step[bad] = -grad[bad]
        slope = (grad * step).flatten(1).sum(-1)
        xstep = torch.bmm(x64, step.mT)  # (b, n, m): z(t) = z + t * xstep
        pg = penalty_grad(step)
        lin = (theta * pg).flatten(1).sum(-1)  # d/dt of the penalty at t = 0
        quad = (step * pg).flatten(1).sum(-1)  # d2/dt2 of the penalty
        pen0 = 0.5 * (theta * penalty_grad(theta)).flatten(1).sum(-1)
        slack = eps_slack * f.abs()

        def trial(sel: torch.Tensor, tt: torch.Tensor) -> torch.Tensor:
            sub = loss.subset(sel) if len(sel) < b else loss
            fp = pen0[sel] + tt * lin[sel] + 0.5 * tt * tt * quad[sel]
            return fp + c * sub.value(z[sel] + tt.view(-1, 1, 1) * xstep[sel])

        # Backtracking (step-halving) Armijo line search, independently per group.
        t = torch.ones(b, dtype=f64, device=dev)
        accepted = ~live
        f_new = f.clone()
        pending = live.nonzero().squeeze(-1)
        for _halving in range(_MAX_HALVINGS):
            tp = t[pending]
            fp = trial(pending, tp)
            ok = (fp <= f[pending] + _ARMIJO_C * tp * slope[pending]) | (fp - f[pending] <= slack[pending])
            ok &= torch.isfinite(fp)
            accepted[pending[ok]] = True
            f_new[pending[ok]] = fp[ok]
            pending = pending[~ok]
            if len(pending) == 0:
                break
            t[pending] *= 0.5
        # Far from the optimum (separable data, where the weights must grow) the full Newton
        # step is often too short: double it while the objective keeps falling.
        growing = (live & accepted & (t == 1.0)).nonzero().squeeze(-1)
        for _doubling in range(_MAX_DOUBLINGS):
            if len(growing) == 0:
                break
            tp = 2.0 * t[growing]
            fp = trial(growing, tp)
            better = torch.isfinite(fp) & (fp < f_new[growing] - slack[growing])
            t[growing[better]] = tp[better]
            f_new[growing[better]] = fp[better]
            growing = growing[better]

        moved = accepted & live
        tm = torch.where(moved, t, torch.zeros_like(t)).view(-1, 1, 1)
        theta = theta + tm * step
        z = z + tm * xstep
        f = torch.where(moved, f_new, f)
        n_iter[idx[live].cpu().numpy()] += 1
        gmax_prev = torch.where(moved & (t == 1.0), gmax, torch.full_like(gmax, math.inf))
        failed = live & ~accepted
        stale |= failed  # a kept Hessian failed: refresh it and try again
        live &= ~(failed & fresh)  # a fresh Newton step cannot decrease: machine precision
    theta_out[idx] = theta
    return theta_out, n_iter, converged


class BatchedLogisticRegression:
    """L2-regularised logistic regression for G independent problems at once (torch, Newton).

    Each group ``g`` minimises exactly scikit-learn's ``LogisticRegression(penalty="l2")``
    objective ``0.5 * ||W||^2 + C * sum_i CE(y_i, W x_i + b)`` with an unpenalised intercept:
    binary problems use one weight vector (the class-1 row), problems with K > 2 classes a
    full softmax with K rows (scikit-learn's multinomial ``lbfgs``).  The solver is Newton's
    method in float64 with batched Hessians (``bmm``), Cholesky solves and a per-group
    step-halving Armijo line search; a group stops when the max-abs gradient of the
    mean-loss-scaled objective (scikit-learn's ``gtol`` convention, i.e. our gradient divided
    by ``C * n_samples``) is ``<= tol``, or after ``max_iter`` Newton steps.  Converged groups
    leave the active set, so the rest run on a smaller batch.

    Two exact implementation details: the intercepts carry a ridge of 1e-10 (mean-loss units)
    so the multinomial Hessian is invertible (the multinomial intercepts are kept centred,
    ``sum_k b_k = 0``, like scikit-learn's solution started from zero); and when the features
    are wider than the samples (D > N, e.g. whole-layer probes) each group is solved in the
    N-dimensional row space of its design (thin SVD ``X = U S V'``, fit on ``U S``, map back
    ``W = W_r V'``), which has the same optimum because the penalised weights never leave
    that row space.

    Parameters
    ----------
    C : inverse regularisation strength (as in scikit-learn).
    max_iter : maximum Newton steps per group.
    tol : tolerance on the max-abs mean-loss gradient.
    device : torch device for the computation (``"cpu"``, ``"cuda"``, ...).
    chunk_size : groups solved together; ``None`` picks the largest chunk within ~1 GB.
    random_state : accepted for API symmetry with scikit-learn; Newton is deterministic.

    Attributes (after ``fit``)
    --------------------------
    coef_ : ndarray (G, K', D), K' = 1 for binary problems, K otherwise.
    intercept_ : ndarray (G, K').
    classes_ : ndarray (K,), sorted class labels.
    n_iter_ : ndarray (G,), Newton steps per group.
    converged_ : ndarray (G,) of bool, whether each group met ``tol``.
    n_features_in_ : int.
    """

    def __init__(
        self,
        C: float = 1.0,
        max_iter: int = 100,
        tol: float = 1e-8,
        device: str = "cpu",
        chunk_size: int | None = None,
        random_state: int | None = None,
    ) -> None:
        self.C = C
        self.max_iter = max_iter
        self.tol = tol
        self.device = device
        self.chunk_size = chunk_size
        self.random_state = random_state

    # scikit-learn manners -------------------------------------------------------------
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {
            "C": self.C,
            "max_iter": self.max_iter,
            "tol": self.tol,
            "device": self.device,
            "chunk_size": self.chunk_size,
            "random_state": self.random_state,
        }

    def set_params(self, **params: Any) -> BatchedLogisticRegression:
        valid = self.get_params()
        for key, value in params.items():
            if key not in valid:
                raise ValueError(f"invalid parameter {key!r} for BatchedLogisticRegression")
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"BatchedLogisticRegression({args})"

    # fitting ----------------------------------------------------------------------------
    def _check_x(self, X: Any, fitted: bool) -> tuple[int, int, int]:
        if _n_dims(X) != 3:
            raise ValueError(f"X must have shape (G, N, D); got shape {_shape(X)}")
        g, n, d = _shape(X)
        if fitted:
            if d != self.n_features_in_:
                raise ValueError(f"X has {d} features; the model was fitted with {self.n_features_in_}")
            if g != self.coef_.shape[0]:
                raise ValueError(f"X has {g} groups; the model was fitted with {self.coef_.shape[0]}")
        return g, n, d

    def fit(self, X: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor) -> BatchedLogisticRegression:
        """Fit all G groups.  ``X``: (G, N, D); ``y``: (N,) shared or (G, N) class labels."""
        if self.C <= 0:
            raise ValueError(f"C must be positive; got {self.C}")
        if self.max_iter < 0:
            raise ValueError(f"max_iter must be >= 0; got {self.max_iter}")
        g, n, d = self._check_x(X, fitted=False)
        y_np = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
        if y_np.shape not in ((n,), (g, n)):
            raise ValueError(f"y must have shape ({n},) or ({g}, {n}); got {y_np.shape}")
        classes, codes = np.unique(y_np, return_inverse=True)
        codes = codes.reshape(y_np.shape)
        k = len(classes)
        if k < 2:
            raise ValueError(f"need at least 2 classes in y; got {classes.tolist()}")
        dev = torch.device(self.device)
        chunk = self.chunk_size or default_chunk_size(n, d, k)
        k_rows = 1 if k == 2 else k
        coef = np.zeros((g, k_rows, d))
        intercept = np.zeros((g, k_rows))
        n_iter = np.zeros(g, dtype=np.int64)
        converged = np.zeros(g, dtype=bool)
        codes_t = torch.as_tensor(codes, dtype=torch.long, device=dev)
        for start in range(0, g, chunk):
            stop = min(g, start + chunk)
            yc = codes_t if codes_t.dim() == 1 else codes_t[start:stop]
            yc = yc.expand(stop - start, n)
            basis = None
            if d > n:  # exact reduction to the row space of each group's design
                u, s, basis = torch.linalg.svd(_as_float64_tensor(X[start:stop], dev), full_matrices=False)
                xc = u * s.unsqueeze(1)  # (g, n, n); basis: (g, n, d)
                del u
            else:
                xc = _as_float64_tensor(X[start:stop], dev)
            xa = torch.empty((stop - start, n, xc.shape[-1] + 1), dtype=torch.float64, device=dev)
            xa[..., :-1] = xc
            xa[..., -1] = 1.0
            del xc
            theta, it, conv = _newton_solve(xa, yc, k, float(self.C), int(self.max_iter), float(self.tol))
            del xa
            if k > 2:  # the K-th softmax row of the sum-zero gauge
                theta = torch.cat([theta, -theta.sum(1, keepdim=True)], dim=1)
            w, b = theta[..., :-1], theta[..., -1]
            if basis is not None:
                w = torch.bmm(w, basis)
            coef[start:stop] = w.cpu().numpy()
            intercept[start:stop] = b.cpu().numpy()
            n_iter[start:stop] = it
            converged[start:stop] = conv
        self.coef_ = coef
        self.intercept_ = intercept
        self.classes_ = classes
        self.n_iter_ = n_iter
        self.converged_ = converged
        self.n_features_in_ = d
        if not converged.all():
            warnings.warn(
                f"BatchedLogisticRegression: {int((~converged).sum())} of {g} groups did not reach "
                f"tol={self.tol} within max_iter={self.max_iter} Newton steps",
                ConvergenceWarning,
                stacklevel=2,
            )
        return self

    # prediction -------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "coef_"):
            raise RuntimeError("this BatchedLogisticRegression is not fitted yet; call fit first")

    def decision_function(self, X: np.ndarray | torch.Tensor) -> np.ndarray:
        """Logits: (G, N) for binary problems (class 1 vs 0), (G, N, K) otherwise."""
        self._check_fitted()
        g, n, d = self._check_x(X, fitted=True)
        dev = torch.device(self.device)
        chunk = self.chunk_size or max(1, _MEMORY_BUDGET_BYTES // (8 * (2 * n * d + 4 * n * len(self.classes_))))
        out = np.empty((g, n, self.coef_.shape[1]))
        for start in range(0, g, chunk):
            stop = min(g, start + chunk)
            xc = _as_float64_tensor(X[start:stop], dev)
            w = torch.as_tensor(self.coef_[start:stop], device=dev)
            b = torch.as_tensor(self.intercept_[start:stop], device=dev)
            out[start:stop] = (torch.bmm(xc, w.transpose(1, 2)) + b.unsqueeze(1)).cpu().numpy()
        return out[..., 0] if len(self.classes_) == 2 else out

    def predict_proba(self, X: np.ndarray | torch.Tensor) -> np.ndarray:
        """Class probabilities (G, N, K), columns ordered as ``classes_``."""
        scores = self.decision_function(X)
        if len(self.classes_) == 2:
            p1 = 1.0 / (1.0 + np.exp(-scores))
            return np.stack([1.0 - p1, p1], axis=-1)
        scores = scores - scores.max(-1, keepdims=True)
        e = np.exp(scores)
        return e / e.sum(-1, keepdims=True)

    def predict(self, X: np.ndarray | torch.Tensor) -> np.ndarray:
        """Predicted class labels (G, N)."""
        scores = self.decision_function(X)
        idx = (scores > 0).astype(np.int64) if len(self.classes_) == 2 else scores.argmax(-1)
        return self.classes_[idx]

    def score(self, X: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor) -> np.ndarray:
        """Per-group accuracy (G,) against labels ``y`` of shape (N,) or (G, N)."""
        pred = self.predict(X)
        y_np = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
        if y_np.shape not in (pred.shape[1:], pred.shape):
            raise ValueError(f"y must have shape {pred.shape[1:]} or {pred.shape}; got {y_np.shape}")
        return (pred == y_np).mean(axis=-1)


# --------------------------------------------------------------------------------------
# Reference path
# --------------------------------------------------------------------------------------


def sklearn_grid(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_val: np.ndarray,
    y_val: np.ndarray,
    C: float,
    max_iter: int,
    tol: float = 1e-6,
) -> tuple[np.ndarray, np.ndarray]:
    """Reference: one scikit-learn ``LogisticRegression`` per group, in a plain loop.

    ``X_train`` (G, N_train, D), ``X_val`` (G, N_val, D); labels (N,) shared or (G, N).
    Returns per-group (train_acc, val_acc), each (G,).  Convergence warnings are collected
    and re-issued once.
    """
    X_train = np.asarray(X_train)
    X_val = np.asarray(X_val)
    y_train = np.asarray(y_train)
    y_val = np.asarray(y_val)
    g = X_train.shape[0]
    train_acc = np.empty(g)
    val_acc = np.empty(g)
    n_unconverged = 0
    for i in range(g):
        ytr = y_train if y_train.ndim == 1 else y_train[i]
        yva = y_val if y_val.ndim == 1 else y_val[i]
        model = LogisticRegression(C=C, max_iter=max_iter, tol=tol)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            model.fit(np.asarray(X_train[i], dtype=np.float64), ytr)
        n_unconverged += any(issubclass(w.category, ConvergenceWarning) for w in caught)
        train_acc[i] = model.score(np.asarray(X_train[i], dtype=np.float64), ytr)
        val_acc[i] = model.score(np.asarray(X_val[i], dtype=np.float64), yva)
    if n_unconverged:
        warnings.warn(
            f"sklearn_grid: {n_unconverged} of {g} fits hit max_iter={max_iter}", ConvergenceWarning, stacklevel=2
        )
    return train_acc, val_acc


# --------------------------------------------------------------------------------------
# Splits and control task
# --------------------------------------------------------------------------------------


def _n_chosen(fraction: float, total: int) -> int:
    n = int(round(fraction * total))
    if total >= 2:
        n = min(max(n, 1), total - 1)  # keep both sides non-empty
    return n


def split_train_val(
    meta: pd.DataFrame, val_fraction: float = 0.2, mode: str = "by_story", seed: int = 0
) -> np.ndarray:
    """Boolean ``is_val`` (N,) for a seeded train/validation split.

    ``by_story``: a random choice of ``round(val_fraction * n_stories)`` whole stories (every
    sample of a ``story_id``) is held out, so no story is on both sides.  ``by_sample``: the
    original paper's leaky split, ``round(val_fraction * N)`` random samples.  Both sides are
    kept non-empty.
    """
    if mode not in SPLIT_MODES:
        raise ValueError(f"unknown split mode {mode!r}; allowed: {', '.join(SPLIT_MODES)}")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1); got {val_fraction}")
    rng = np.random.default_rng(seed)
    n = len(meta)
    if mode == "by_sample":
        is_val = np.zeros(n, dtype=bool)
        is_val[rng.choice(n, size=_n_chosen(val_fraction, n), replace=False)] = True
        return is_val
    story = meta["story_id"].to_numpy()
    stories = np.unique(story)
    chosen = rng.choice(stories, size=_n_chosen(val_fraction, len(stories)), replace=False)
    return np.isin(story, chosen)


def shuffled_labels(y_train: np.ndarray, seed: int) -> np.ndarray:
    """Control-task labels: a seeded permutation of the training labels (along axis 0).

    The control probe is fitted on these and scored on the real validation labels, so its
    validation accuracy sits near chance; selectivity = real val acc - control val acc.
    """
    return np.random.default_rng(seed).permutation(np.asarray(y_train))


# --------------------------------------------------------------------------------------
# Probing
# --------------------------------------------------------------------------------------


def _target_labels(meta: pd.DataFrame, target: str) -> tuple[np.ndarray, int]:
    if target not in meta.columns:
        raise ValueError(f"target {target!r} is not a column of meta (known targets: {', '.join(TARGETS)})")
    y = meta[target].to_numpy()
    n_classes = TARGETS.get(target, len(np.unique(y)))
    return y, n_classes


def _check_split(acts: np.ndarray, meta: pd.DataFrame, is_val: np.ndarray) -> np.ndarray:
    if np.ndim(acts) != 4:
        raise ValueError(f"acts must have shape (N, L, H, D); got {np.shape(acts)}")
    is_val = np.asarray(is_val, dtype=bool)
    n = acts.shape[0]
    if len(meta) != n or is_val.shape != (n,):
        raise ValueError(f"acts ({n} samples), meta ({len(meta)} rows) and is_val {is_val.shape} disagree")
    if is_val.all() or not is_val.any():
        raise ValueError("is_val must select a non-empty, proper subset of the samples")
    return is_val


def _fit_real_and_control(
    x_train: np.ndarray,
    x_val: np.ndarray,
    y_train: np.ndarray,
    y_val: np.ndarray,
    y_control: np.ndarray,
    C: float,
    max_iter: int,
    device: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fit the real and the control probe on a batch of groups; return train, val, control acc."""
    real = BatchedLogisticRegression(C=C, max_iter=max_iter, device=device)
    control = BatchedLogisticRegression(C=C, max_iter=max_iter, device=device)
    with warnings.catch_warnings():
        # Separable control fits at large C can stall at machine precision; accuracies are unaffected.
        warnings.simplefilter("ignore", ConvergenceWarning)
        real.fit(x_train, y_train)
        control.fit(x_train, y_control)
    return real.score(x_train, y_train), real.score(x_val, y_val), control.score(x_val, y_val)


def probe_heads(
    acts: np.ndarray,
    meta: pd.DataFrame,
    is_val: np.ndarray,
    *,
    C_binary: float = DEFAULT_C_BINARY,
    C_joint: float = DEFAULT_C_JOINT,
    max_iter: int = DEFAULT_MAX_ITER,
    seed: int = 0,
    targets: Sequence[str] = _DEFAULT_TARGETS,
    device: str = "cpu",
    progress: bool = True,
) -> pd.DataFrame:
    """One probe per (layer, head) and target, plus its shuffled-label control.

    ``acts`` (N, L, H, D) is regrouped to (L*H, N, D) (group ``layer * H + head``) and cast to
    float64 chunk by chunk; each chunk is fitted with :class:`BatchedLogisticRegression` on the
    training samples (``C_binary`` for 2-class targets, ``C_joint`` otherwise) and again on
    :func:`shuffled_labels` (seeded by ``seed``) for the control.  Returns a long DataFrame
    with columns layer, head, target, train_acc, val_acc, control_acc, selectivity
    (= val_acc - control_acc), n_train, n_val.
    """
    is_val = _check_split(acts, meta, is_val)
    n, n_layers, n_heads, d = acts.shape
    groups = np.ascontiguousarray(np.moveaxis(np.asarray(acts), 0, 2)).reshape(n_layers * n_heads, n, d)
    x_train, x_val = groups[:, ~is_val], groups[:, is_val]
    n_train, n_val = int((~is_val).sum()), int(is_val.sum())
    labels = {t: _target_labels(meta, t) for t in targets}
    chunks = {t: default_chunk_size(n_train, d, k) for t, (_, k) in labels.items()}
    n_groups = n_layers * n_heads
    total = sum(math.ceil(n_groups / chunks[t]) for t in targets)
    frames = []
    with tqdm(total=total, desc="probing heads", disable=not progress) as bar:
        for target in targets:
            y, k = labels[target]
            C = C_binary if k == 2 else C_joint
            y_train, y_val = y[~is_val], y[is_val]
            y_control = shuffled_labels(y_train, seed)
            acc = np.empty((3, n_groups))
            for start in range(0, n_groups, chunks[target]):
                sl = slice(start, min(n_groups, start + chunks[target]))
                bar.set_postfix_str(f"{target} groups {sl.start}-{sl.stop - 1}")
                acc[:, sl] = _fit_real_and_control(
                    x_train[sl], x_val[sl], y_train, y_val, y_control, C, max_iter, device
                )
                bar.update(1)
            layer, head = np.divmod(np.arange(n_groups), n_heads)
            frames.append(
                pd.DataFrame(
                    {
                        "layer": layer,
                        "head": head,
                        "target": target,
                        "train_acc": acc[0],
                        "val_acc": acc[1],
                        "control_acc": acc[2],
                        "selectivity": acc[1] - acc[2],
                        "n_train": n_train,
                        "n_val": n_val,
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)


def probe_layers(
    acts: np.ndarray,
    meta: pd.DataFrame,
    is_val: np.ndarray,
    *,
    C_binary: float = DEFAULT_C_BINARY,
    C_joint: float = DEFAULT_C_JOINT,
    max_iter: int = DEFAULT_MAX_ITER,
    seed: int = 0,
    targets: Sequence[str] = _DEFAULT_TARGETS,
    device: str = "cpu",
    progress: bool = True,
) -> pd.DataFrame:
    """One probe per whole layer (all heads concatenated, H*D features) and target.

    Uses :class:`BatchedLogisticRegression` over the L layers: when H*D exceeds the number of
    training samples (4096 > ~320 at Mistral scale) each layer is solved exactly in the
    N-dimensional row space of its design, so memory stays at (N+1)-sized Hessians rather
    than (H*D+1)-sized ones.  Returns columns layer, target, train_acc, val_acc, control_acc,
    selectivity, n_train, n_val.
    """
    is_val = _check_split(acts, meta, is_val)
    n, n_layers, n_heads, d = acts.shape
    layers = np.ascontiguousarray(np.moveaxis(np.asarray(acts), 0, 1)).reshape(n_layers, n, n_heads * d)
    x_train, x_val = layers[:, ~is_val], layers[:, is_val]
    n_train, n_val = int((~is_val).sum()), int(is_val.sum())
    frames = []
    for target in tqdm(list(targets), desc="probing layers", disable=not progress):
        y, k = _target_labels(meta, target)
        C = C_binary if k == 2 else C_joint
        y_train, y_val = y[~is_val], y[is_val]
        y_control = shuffled_labels(y_train, seed)
        train_acc, val_acc, control_acc = _fit_real_and_control(
            x_train, x_val, y_train, y_val, y_control, C, max_iter, device
        )
        frames.append(
            pd.DataFrame(
                {
                    "layer": np.arange(n_layers),
                    "target": target,
                    "train_acc": train_acc,
                    "val_acc": val_acc,
                    "control_acc": control_acc,
                    "selectivity": val_acc - control_acc,
                    "n_train": n_train,
                    "n_val": n_val,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def lexical_baseline(
    meta: pd.DataFrame,
    is_val: np.ndarray,
    *,
    C_binary: float = DEFAULT_C_BINARY,
    C_joint: float = DEFAULT_C_JOINT,
    max_iter: int = DEFAULT_MAX_ITER,
    targets: Sequence[str] = _DEFAULT_TARGETS,
) -> pd.DataFrame:
    """Bag-of-words probe on the prompt text alone (no activations).

    Lower-cased unigram+bigram counts of ``meta["prompt"]`` (vocabulary from the training
    prompts) feed a scikit-learn ``LogisticRegression`` per target.  ``majority_acc`` is the
    validation accuracy of always predicting the most frequent training class.  Returns
    columns target, train_acc, val_acc, majority_acc.
    """
    is_val = np.asarray(is_val, dtype=bool)
    if is_val.shape != (len(meta),) or is_val.all() or not is_val.any():
        raise ValueError("is_val must be a boolean mask over meta selecting a proper, non-empty subset")
    prompts = meta["prompt"].astype(str).to_numpy()
    vectorizer = CountVectorizer(lowercase=True, ngram_range=(1, 2))
    x_train = vectorizer.fit_transform(prompts[~is_val])
    x_val = vectorizer.transform(prompts[is_val])
    rows = []
    for target in targets:
        y, k = _target_labels(meta, target)
        y_train, y_val = y[~is_val], y[is_val]
        values, counts = np.unique(y_train, return_counts=True)
        majority = values[np.argmax(counts)]
        if len(values) < 2:
            train_acc, val_acc = 1.0, float(np.mean(y_val == majority))
        else:
            model = LogisticRegression(C=C_binary if k == 2 else C_joint, max_iter=max_iter)
            model.fit(x_train, y_train)
            train_acc, val_acc = float(model.score(x_train, y_train)), float(model.score(x_val, y_val))
        rows.append(
            {
                "target": target,
                "train_acc": train_acc,
                "val_acc": val_acc,
                "majority_acc": float(np.mean(y_val == majority)),
            }
        )
    return pd.DataFrame(rows, columns=["target", "train_acc", "val_acc", "majority_acc"])


def top_heads(heads: pd.DataFrame, target: str, k: int = 10, by: str = "val_acc") -> pd.DataFrame:
    """The ``k`` best heads for ``target`` by ``by`` (descending), with a 1-based ``rank``.

    Ties are broken by higher selectivity, then lower layer, then lower head.
    """
    if by not in heads.columns:
        raise ValueError(f"cannot rank by {by!r}: not a column of heads")
    sub = heads[heads["target"] == target]
    if sub.empty:
        raise ValueError(f"no rows for target {target!r}")
    keys, ascending = [by], [False]
    for col, asc in (("selectivity", False), ("layer", True), ("head", True)):
        if col != by:
            keys.append(col)
            ascending.append(asc)
    out = sub.sort_values(keys, ascending=ascending, kind="mergesort").head(k).reset_index(drop=True)
    out.insert(0, "rank", np.arange(1, len(out) + 1))
    return out


# --------------------------------------------------------------------------------------
# Benchmark
# --------------------------------------------------------------------------------------


def synthetic_activations(
    n_stories: int = 100,
    n_layers: int = 30,
    n_heads: int = 9,
    dim: int = 64,
    *,
    separation: tuple[float, float] = (1.2, 5.0),
    seed: int = 0,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Synthetic (acts, meta) with the layout of real probing data, for tests and benchmarks.

    Four samples per story (every oracle x protagonist combination once, in random order).
    Each head's activations are standard normal noise plus class means: the oracle and the
    protagonist labels each move the mean along a random direction by a distance drawn
    uniformly from ``separation`` (independently per head), so per-head probe accuracies
    spread from near chance to near 1.  Returns float16 ``acts`` (N, L, H, D) and ``meta``
    with sample_id, story_id, prompt, oracle, protagonist, joint.
    """
    rng = np.random.default_rng(seed)
    n = 4 * n_stories
    combos = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
    order = np.concatenate([rng.permutation(4) for _ in range(n_stories)])
    oracle, protagonist = combos[order, 0], combos[order, 1]
    acts = rng.standard_normal((n, n_layers, n_heads, dim), dtype=np.float32)
    for label in (oracle, protagonist):
        direction = rng.standard_normal((n_layers, n_heads, dim)).astype(np.float32)
        direction /= np.linalg.norm(direction, axis=-1, keepdims=True)
        distance = rng.uniform(*separation, size=(n_layers, n_heads, 1)).astype(np.float32)
        acts += (label[:, None, None, None] - 0.5).astype(np.float32) * (distance * direction)
    words = np.array(["the", "ball", "is", "in", "a", "box", "basket", "room", "she", "he"])
    prompts = [" ".join(rng.choice(words, size=12)) for _ in range(n)]
    meta = pd.DataFrame(
        {
            "sample_id": np.arange(n),
            "story_id": np.repeat(np.arange(n_stories), 4),
            "prompt": prompts,
            "oracle": oracle,
            "protagonist": protagonist,
            "joint": 2 * oracle + protagonist,
        }
    )
    return acts.astype(np.float16), meta


def bench_probing(
    acts: np.ndarray,
    meta: pd.DataFrame,
    is_val: np.ndarray,
    *,
    target: str = "oracle",
    C: float = DEFAULT_C_BINARY,
    max_iter: int = DEFAULT_MAX_ITER,
    repeats: int = 1,
) -> dict[str, Any]:
    """Time batched Newton vs the scikit-learn loop on every head for one target.

    Both paths fit on the training samples and score train and validation accuracy; each is
    run ``repeats`` times and the fastest run is reported (``time.perf_counter``).  Returns
    n_probes, n_train, n_val, dim, batched_seconds, sklearn_seconds, speedup (sklearn /
    batched), max_acc_gap and mean_acc_gap (|val acc batched - val acc sklearn| over heads),
    target and torch_threads.
    """
    is_val = _check_split(acts, meta, is_val)
    n, n_layers, n_heads, d = acts.shape
    groups = np.ascontiguousarray(np.moveaxis(np.asarray(acts), 0, 2)).reshape(n_layers * n_heads, n, d)
    x_train = groups[:, ~is_val].astype(np.float64)
    x_val = groups[:, is_val].astype(np.float64)
    y, _ = _target_labels(meta, target)
    y_train, y_val = y[~is_val], y[is_val]

    batched_times, sklearn_times = [], []
    batched_val = sklearn_val = np.empty(0)
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        model = BatchedLogisticRegression(C=C, max_iter=max_iter)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(x_train, y_train)
        model.score(x_train, y_train)
        batched_val = model.score(x_val, y_val)
        batched_times.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            _, sklearn_val = sklearn_grid(x_train, y_train, x_val, y_val, C=C, max_iter=max_iter, tol=1e-6)
        sklearn_times.append(time.perf_counter() - t0)

    gap = np.abs(batched_val - sklearn_val)
    batched_seconds, sklearn_seconds = min(batched_times), min(sklearn_times)
    return {
        "n_probes": int(groups.shape[0]),
        "n_train": int((~is_val).sum()),
        "n_val": int(is_val.sum()),
        "dim": int(d),
        "batched_seconds": float(batched_seconds),
        "sklearn_seconds": float(sklearn_seconds),
        "speedup": float(sklearn_seconds / batched_seconds),
        "max_acc_gap": float(gap.max()),
        "mean_acc_gap": float(gap.mean()),
        "target": target,
        "torch_threads": int(torch.get_num_threads()),
    }
