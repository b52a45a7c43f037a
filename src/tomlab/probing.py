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
    "cross_task_correlation",
    "TARGETS",
    "DEFAULT_C_BINARY",
    "DEFAULT_C_JOINT",
    "DEFAULT_MAX_ITER",
    "SPLIT_MODES",
    "BatchedLogisticRegression",
    "default_chunk_size",
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
_MAX_REFINEMENTS: int = 6
_SINGLE_THREAD_LAPACK: bool = True


# --------------------------------------------------------------------------------------
# Batched Newton solver
# --------------------------------------------------------------------------------------


def _to_tensor(x: Any, device: torch.device) -> torch.Tensor:
    """``x`` (numpy or torch) as a tensor on ``device``, dtype kept (read-only arrays copied)."""
    if isinstance(x, torch.Tensor):
        return x.detach().to(device)
    arr = np.asarray(x)
    if not arr.flags.writeable:
        arr = arr.copy()
    return torch.as_tensor(arr, device=device)


def _n_dims(x: Any) -> int:
    return x.dim() if isinstance(x, torch.Tensor) else np.ndim(x)


def _shape(x: Any) -> tuple[int, ...]:
    return tuple(x.shape) if isinstance(x, torch.Tensor) else tuple(np.shape(x))


def _bytes_per_group(n: int, d: int, n_classes: int) -> int:
    """Rough peak memory (bytes) of one group's Newton problem (8-byte units below)."""
    d1 = min(d, n) + 1  # wide problems are reduced to at most n features (see fit)
    m = 1 if n_classes == 2 else n_classes - 1
    n_pairs = m * (m + 1) // 2
    floats = (
        3 * n * d  # float64 copy of the raw chunk (and the SVD workspace when wide)
        + 3 * n * d1  # float64 design + compaction copy, float32 design
        + n * d1  # float32 weighted copy for the Hessian bmm
        + 4 * n_pairs * d1 * d1  # Hessian blocks, Cholesky factor, temporaries
        + 16 * n * n_classes + 4 * n * m * m  # logits, steps, probabilities, curvatures
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

    def directional(self, z: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """First and second derivatives (g,) of the summed loss along logit direction ``v``."""
        if self.multinomial:
            full = torch.cat([z, -z.sum(-1, keepdim=True)], dim=-1)
            vf = torch.cat([v, -v.sum(-1, keepdim=True)], dim=-1)
            p = torch.softmax(full, dim=-1)
            mean_v = (p * vf).sum(-1)
            first = ((p - self.onehot) * vf).sum((-1, -2))
            second = ((p * vf * vf).sum(-1) - mean_v * mean_v).sum(-1)
            return first, second
        p = torch.sigmoid(z[..., 0])
        vv = v[..., 0]
        return ((p - self.y) * vv).sum(-1), (p * (1.0 - p) * vv * vv).sum(-1)


@contextlib.contextmanager
def _lapack_threads(device: torch.device) -> Iterator[None]:
    """Run CPU LAPACK calls single-threaded, restoring the thread count afterwards.

    torch's batched CPU factorizations call LAPACK once per matrix; with several MKL threads
    on these small matrices the OpenMP hand-offs cost far more than the work (100x slower
    on a busy 2-core machine), and batched LU (``linalg.solve``) can even return corrupt
    pivots with more than one thread (pytorch/pytorch#142815), so it is never used here.
    """
    if device.type != "cpu" or not _SINGLE_THREAD_LAPACK:
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


class _BlockFactor:
    """Lower block-triangular Cholesky factor of a batch of (m*d1) x (m*d1) Hessians.

    ``blocks[(i, j)]`` (i >= j) holds the (g, d1, d1) block L_ij for every group; the
    upper blocks are never stored.
    """

    def __init__(self, blocks: dict[tuple[int, int], torch.Tensor], m: int) -> None:
        self.blocks = blocks
        self.m = m

    def put(self, idx: torch.Tensor, other: _BlockFactor) -> None:
        for key, val in self.blocks.items():
            val[idx] = other.blocks[key]

    def solve(self, rhs: torch.Tensor) -> torch.Tensor:
        """Solve ``(L L') x = rhs`` per group; ``rhs`` and the result are (g, m, d1)."""
        m, fac = self.m, self.blocks
        ys: list[torch.Tensor] = []
        with _lapack_threads(rhs.device):
            for j in range(m):
                r = rhs[:, j].unsqueeze(-1)
                for k in range(j):
                    r = r - torch.bmm(fac[(j, k)], ys[k])
                ys.append(torch.linalg.solve_triangular(fac[(j, j)], r, upper=False))
            xs: list[torch.Tensor] = list(ys)
            for j in reversed(range(m)):
                r = ys[j]
                for k in range(j + 1, m):
                    r = r - torch.bmm(fac[(k, j)].mT, xs[k])
                xs[j] = torch.linalg.solve_triangular(fac[(j, j)].mT, r, upper=True)
        return torch.cat(xs, dim=-1).mT


def _block_cholesky(hb: dict[tuple[int, int], torch.Tensor], m: int) -> tuple[_BlockFactor, torch.Tensor]:
    """Blocked Cholesky of symmetric block matrices given by their lower blocks ``hb[(i, j)]``.

    The natural blocks of the multinomial Hessian (one per pair of classes) are factorised
    with batched d1 x d1 Cholesky factorizations, triangular solves and ``bmm`` Schur
    updates, several times faster on CPU than one (m*d1) x (m*d1) factorization.
    Returns the factor and a bool (g,) flagging groups whose factorization failed.
    """
    fac: dict[tuple[int, int], torch.Tensor] = {}
    failed: torch.Tensor | None = None
    with _lapack_threads(hb[(0, 0)].device):
        for j in range(m):
            s = hb[(j, j)]
            for k in range(j):
                s = torch.baddbmm(s, fac[(j, k)], fac[(j, k)].mT, alpha=-1.0)
            l_jj, info = torch.linalg.cholesky_ex(s)
            bad = (info != 0) | ~torch.isfinite(l_jj.diagonal(dim1=1, dim2=2)).all(-1)
            failed = bad if failed is None else failed | bad
            fac[(j, j)] = l_jj
            for i in range(j + 1, m):
                t = hb[(i, j)]
                for k in range(j):
                    t = torch.baddbmm(t, fac[(i, k)], fac[(j, k)].mT, alpha=-1.0)
                fac[(i, j)] = torch.linalg.solve_triangular(l_jj.mT, t, upper=True, left=False)
    assert failed is not None
    return _BlockFactor(fac, m), failed


def _factor_hessians(
    x: torch.Tensor, q: torch.Tensor, a_mat: torch.Tensor, pi: torch.Tensor, c: float
) -> _BlockFactor:
    """Cholesky factor of ``C * sum_i q_i (x) x_i x_i' + A (x) diag(pi)`` for every group.

    ``x`` (g, n, d1) in the precision the data part is accumulated in; ``q`` (g, n, m, m).
    Groups whose Hessian is numerically indefinite are refactorised with a growing jitter.
    """
    m = q.shape[-1]
    xt = x.mT
    hb: dict[tuple[int, int], torch.Tensor] = {}
    for i in range(m):
        for j in range(i + 1):
            weight = (q[..., i, j] * c).to(x.dtype).unsqueeze(-1)  # (g, n, 1)
            block = torch.bmm(xt, x * weight).to(torch.float64)
            block.diagonal(dim1=1, dim2=2).add_(a_mat[i, j] * pi)
            hb[(i, j)] = block
    fac, failed = _block_cholesky(hb, m)
    if bool(failed.any()):
        scale = torch.stack([hb[(i, i)].diagonal(dim1=1, dim2=2).abs().amax(-1) for i in range(m)]).amax(0)
        scale = scale.clamp_min(1.0)
        for jitter in (1e-12, 1e-9, 1e-6, 1e-3, 1.0):
            bad = failed.nonzero().squeeze(-1)
            h_bad = {key: val[bad].clone() for key, val in hb.items()}
            for i in range(m):
                h_bad[(i, i)].diagonal(dim1=1, dim2=2).add_((jitter * scale[bad]).unsqueeze(-1))
            fac_bad, failed_bad = _block_cholesky(h_bad, m)
            fac.put(bad, fac_bad)
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

    Each iteration: float64 gradient; Hessian data part ``X' diag(q) X`` accumulated with
    ``bmm`` in ``hessian_dtype`` (its rounding only perturbs the step: objective, gradient,
    line search and the stopping test are float64, so the iterates converge to the float64
    optimum); blocked Cholesky solve; per-group step-halving Armijo line search, and, when
    the full step is accepted, up to a few 1-D Newton refinements of the step length (on
    separable data the weights must grow and the Newton step is often too short).  Trial
    points need no matrix product: the logits along the step are ``z + t * X step``.

    Returns theta, the Newton steps taken per group and whether each group met ``tol``.
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

    # Working buffer: the groups still being optimised plus recently finished (frozen) ones,
    # compacted whenever a quarter of it has finished.
    idx = torch.arange(g, device=dev)
    x64 = xa
    xh = xa if hessian_dtype == f64 else xa.to(hessian_dtype)
    loss = _Loss(y, n_classes)
    theta = torch.zeros((g, m, d1), dtype=f64, device=dev)
    z = torch.zeros((g, n, m), dtype=f64, device=dev)
    f = c * loss.value(z)
    live = torch.ones(g, dtype=torch.bool, device=dev)

    for _ in range(max_iter + 1):
        r, q = loss.derivatives(z)
        grad = penalty_grad(theta) + c * torch.bmm(r.mT, x64)  # (b, m, d1)
        done = live & (grad.flatten(1).abs().amax(-1) * grad_scale <= tol)
        if bool(done.any()):
            converged[idx[done].cpu().numpy()] = True
            live &= ~done
        n_live = int(live.sum())
        if n_live == 0:
            break
        if n_live <= 0.75 * len(idx):
            theta_out[idx[~live]] = theta[~live]
            keep = live.nonzero().squeeze(-1)
            idx, x64, loss, live = idx[keep], x64[keep], loss.subset(keep), live[keep]
            xh = x64 if hessian_dtype == f64 else xh[keep]
            theta, z, f, grad, q = theta[keep], z[keep], f[keep], grad[keep], q[keep]
        if int(n_iter[idx[live][0].item()]) >= max_iter:
            break
        b = len(idx)
        frozen = ~live

        step = -_factor_hessians(xh, q, a_mat, pi, c).solve(grad)
        bad = ~torch.isfinite(step.flatten(1)).all(-1)
        if bool(bad.any()):  # numerically hopeless Hessian: steepest descent, scaled below
            step[bad] = -grad[bad]
        step[frozen] = 0.0
        slope = (grad * step).flatten(1).sum(-1)
        xstep = torch.bmm(x64, step.mT)  # (b, n, m)
        pg = penalty_grad(step)
        lin = (theta * pg).flatten(1).sum(-1)  # phi'(0) of the penalty along the step
        quad = (step * pg).flatten(1).sum(-1)  # phi'' of the penalty along the step
        pen0 = 0.5 * (theta * penalty_grad(theta)).flatten(1).sum(-1)
        slack = eps_slack * f.abs()

        def phi(sel: torch.Tensor | None, tt: torch.Tensor) -> torch.Tensor:
            """Objective at theta + tt * step for the groups ``sel`` (None: all)."""
            if sel is None:
                return pen0 + tt * lin + 0.5 * tt * tt * quad + c * loss.value(z + tt.view(-1, 1, 1) * xstep)
            fp = pen0[sel] + tt * lin[sel] + 0.5 * tt * tt * quad[sel]
            return fp + c * loss.subset(sel).value(z[sel] + tt.view(-1, 1, 1) * xstep[sel])

        # Step-halving Armijo line search, independently per group (frozen groups: step 0).
        t = torch.ones(b, dtype=f64, device=dev)
        f_new = phi(None, t)
        accepted = frozen | torch.isfinite(f_new) & (
            (f_new <= f + _ARMIJO_C * slope) | (f_new - f <= slack)
        )
        full = accepted & live
        pending = (~accepted).nonzero().squeeze(-1)
        for _halving in range(_MAX_HALVINGS):
            if len(pending) == 0:
                break
            t[pending] *= 0.5
            tp = t[pending]
            fp = phi(pending, tp)
            ok = torch.isfinite(fp) & (
                (fp <= f[pending] + _ARMIJO_C * tp * slope[pending]) | (fp - f[pending] <= slack[pending])
            )
            accepted[pending[ok]] = True
            f_new[pending[ok]] = fp[ok]
            pending = pending[~ok]

        # 1-D Newton refinement of accepted full steps: phi' and phi'' along the step.
        grp = full.nonzero().squeeze(-1)
        for _refine in range(_MAX_REFINEMENTS):
            if len(grp) == 0:
                break
            tt = t[grp]
            xs_g = xstep[grp]
            d_loss, d2_loss = loss.subset(grp).directional(z[grp] + tt.view(-1, 1, 1) * xs_g, xs_g)
            dphi = lin[grp] + tt * quad[grp] + c * d_loss
            d2phi = quad[grp] + c * d2_loss
            tn = (tt - dphi / d2phi).clamp(0.5 * tt, 8.0 * tt)
            fp = phi(grp, tn)
            better = torch.isfinite(fp) & (fp < f_new[grp] - slack[grp])
            t[grp[better]] = tn[better]
            f_new[grp[better]] = fp[better]
            grp = grp[better & ((tn - tt).abs() > 1e-2 * tt)]

        moved = accepted & live
        tm = torch.where(moved, t, torch.zeros_like(t)).view(-1, 1, 1)
        theta = theta + tm * step
        z = z + tm * xstep
        f = torch.where(moved, f_new, f)
        n_iter[idx[live].cpu().numpy()] += 1
        live &= accepted  # a Newton step that cannot decrease f: stalled at machine precision
    theta_out[idx] = theta
    return theta_out, n_iter, converged


class BatchedLogisticRegression:
    """L2-regularised logistic regression for G independent problems at once (torch, Newton).

    Each group ``g`` minimises exactly scikit-learn's ``LogisticRegression(penalty="l2")``
    objective ``0.5 * ||W||^2 + C * sum_i CE(y_i, W x_i + b)`` with an unpenalised intercept:
    binary problems use one weight vector (the class-1 row, like scikit-learn), problems with
    K > 2 classes a full softmax with K rows (scikit-learn's multinomial ``lbfgs``).

    Solver: damped Newton in float64 on chunks of groups.  Per iteration, a float64
    gradient; the Hessian's data part ``X' diag(q) X`` from one batched ``bmm`` (accumulated
    in float32, which only perturbs the step: objective, gradient, line search and stopping
    test stay float64, so the result is the float64 optimum); batched Cholesky solves
    (blocked by class pair for multinomial problems); and a per-group step-halving Armijo
    line search whose accepted full steps get a few 1-D Newton refinements of their length
    (on separable data the weights must grow and plain Newton steps are short).  A group
    stops when the max-abs gradient of the mean-loss-scaled objective (scikit-learn's
    ``gtol`` convention: our gradient divided by ``C * n_samples``) is ``<= tol``, or after
    ``max_iter`` Newton steps; finished groups leave the batch.

    Exact reformulations used (none changes the optimum):

    * multinomial: softmax is invariant to adding one vector to every class row and the
      L2 penalty strictly prefers rows that sum to zero, so the optimum has
      ``sum_k w_k = 0``; the solver works in that subspace (K - 1 free rows, the K-th is
      minus their sum, intercepts likewise centred), which is also what makes the Hessian
      invertible.  ``coef_`` still has all K rows.
    * the intercepts carry a ridge of 1e-10 in mean-loss units (guards the Hessian when
      a class is separable; its effect on the solution is of that order);
    * when the features are wider than the samples (D > N, e.g. whole-layer probes) each
      group is solved in the N-dimensional row space of its design (thin SVD
      ``X = U S V'``, fit on ``U S``, map back ``W = W_r V'``): the penalised weights of the
      optimum lie in that row space.

    Parameters
    ----------
    C : inverse regularisation strength (as in scikit-learn).
    max_iter : maximum Newton steps per group.
    tol : tolerance on the max-abs mean-loss gradient (scikit-learn's ``tol`` for lbfgs).
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

    On CPU, LAPACK calls run single-threaded (see ``_lapack_threads``); torch's thread count
    is restored afterwards.
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
            raw_t = _to_tensor(X[start:stop], dev)
            basis = None
            if d > n:  # exact reduction to the row space of each group's design
                with _lapack_threads(dev):
                    u, s, basis = torch.linalg.svd(raw_t.to(torch.float64), full_matrices=False)
                raw_t = u * s.unsqueeze(1)  # (g, n, n); basis: (g, n, d)
                del u, s
            xa = torch.empty((stop - start, n, raw_t.shape[-1] + 1), dtype=torch.float64, device=dev)
            xa[..., :-1] = raw_t  # copy_ casts to float64
            xa[..., -1] = 1.0
            del raw_t
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
        per_group = 8 * (2 * n * d + 4 * n * len(self.classes_))
        chunk = self.chunk_size or max(1, _MEMORY_BUDGET_BYTES // per_group)
        out = np.empty((g, n, self.coef_.shape[1]))
        for start in range(0, g, chunk):
            stop = min(g, start + chunk)
            xc = _to_tensor(X[start:stop], dev).to(torch.float64)
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
    train_acc, val_acc, n_unconverged = _sklearn_loop(X_train, y_train, X_val, y_val, C, max_iter, tol)
    if n_unconverged:
        message = f"sklearn_grid: {n_unconverged} of {len(train_acc)} fits hit max_iter={max_iter}"
        warnings.warn(message, ConvergenceWarning, stacklevel=2)
    return train_acc, val_acc


def _sklearn_loop(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_val: np.ndarray,
    y_val: np.ndarray,
    C: float,
    max_iter: int,
    tol: float,
) -> tuple[np.ndarray, np.ndarray, int]:
    """The loop behind :func:`sklearn_grid`; also returns how many fits stopped at ``max_iter``."""
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
    return train_acc, val_acc, n_unconverged


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


def head_groups(acts: np.ndarray, dtype: Any = None) -> np.ndarray:
    """Regroup activations (N, L, H, D) into one probing problem per head: (L*H, N, D).

    Group ``g`` is layer ``g // H``, head ``g % H``; ``dtype`` optionally casts the result.
    """
    n, n_layers, n_heads, d = np.shape(acts)
    grouped = np.ascontiguousarray(np.moveaxis(np.asarray(acts), 0, 2), dtype=dtype)
    return grouped.reshape(n_layers * n_heads, n, d)


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
) -> tuple[np.ndarray, int]:
    """Fit the real and the control probe on a batch of groups.

    Returns the accuracies (3, G): train, val and control val; and the number of fits
    (real and control) that stopped short of the tolerance.
    """
    real = BatchedLogisticRegression(C=C, max_iter=max_iter, device=device)
    control = BatchedLogisticRegression(C=C, max_iter=max_iter, device=device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # counted and reported once by the caller
        real.fit(x_train, y_train)
        control.fit(x_train, y_control)
    acc = np.stack([real.score(x_train, y_train), real.score(x_val, y_val), control.score(x_val, y_val)])
    return acc, int((~real.converged_).sum() + (~control.converged_).sum())


def _warn_unconverged(n_unconverged: int, n_fits: int, max_iter: int, where: str) -> None:
    if n_unconverged:
        message = f"{where}: {n_unconverged} of {n_fits} probes did not reach tol within max_iter={max_iter}"
        warnings.warn(message, ConvergenceWarning, stacklevel=3)


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
    groups = head_groups(acts)
    x_train, x_val = groups[:, ~is_val], groups[:, is_val]
    n_train, n_val = int((~is_val).sum()), int(is_val.sum())
    labels = {t: _target_labels(meta, t) for t in targets}
    chunks = {t: default_chunk_size(n_train, d, k) for t, (_, k) in labels.items()}
    n_groups = n_layers * n_heads
    total = sum(math.ceil(n_groups / chunks[t]) for t in targets)
    frames = []
    n_unconverged = 0
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
                acc[:, sl], bad = _fit_real_and_control(
                    x_train[sl], x_val[sl], y_train, y_val, y_control, C, max_iter, device
                )
                n_unconverged += bad
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
    _warn_unconverged(n_unconverged, 2 * n_groups * len(targets), max_iter, "probe_heads")
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
    N-dimensional row space of its design (thin SVD), so the Hessians are (N+1)-sized rather
    than (H*D+1)-sized and the chunking keeps memory near 1 GB; the per-layer optimum is
    the same as scikit-learn's.  Returns columns layer, target, train_acc, val_acc,
    control_acc, selectivity, n_train, n_val.
    """
    is_val = _check_split(acts, meta, is_val)
    n, n_layers, n_heads, d = acts.shape
    layers = np.ascontiguousarray(np.moveaxis(np.asarray(acts), 0, 1)).reshape(n_layers, n, n_heads * d)
    x_train, x_val = layers[:, ~is_val], layers[:, is_val]
    n_train, n_val = int((~is_val).sum()), int(is_val.sum())
    if n_heads * d > n_train:
        # Reduce once here rather than in each of the 2 * len(targets) fits.
        x_train, x_val = _row_space_features(x_train, x_val, torch.device(device))
    frames = []
    n_unconverged = 0
    for target in tqdm(list(targets), desc="probing layers", disable=not progress):
        y, k = _target_labels(meta, target)
        C = C_binary if k == 2 else C_joint
        y_train, y_val = y[~is_val], y[is_val]
        y_control = shuffled_labels(y_train, seed)
        (train_acc, val_acc, control_acc), bad = _fit_real_and_control(
            x_train, x_val, y_train, y_val, y_control, C, max_iter, device
        )
        n_unconverged += bad
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
    _warn_unconverged(n_unconverged, 2 * n_layers * len(targets), max_iter, "probe_layers")
    return pd.concat(frames, ignore_index=True)


def _row_space_features(
    x_train: np.ndarray, x_val: np.ndarray, device: torch.device
) -> tuple[np.ndarray, np.ndarray]:
    """Exact reduction of wide designs (D > N) to the N-dimensional training row space.

    Per group, ``X_train = U S V'`` (thin SVD): returns ``U S`` (G, N, N) and ``X_val V``
    (G, N_val, N), float64.  An L2 probe on these has the same logits as one on the raw
    features, because the optimal weights lie in the row space of ``X_train``.
    """
    g, n, d = x_train.shape
    z_train = np.empty((g, n, n))
    z_val = np.empty((g, x_val.shape[1], n))
    chunk = max(1, _MEMORY_BUDGET_BYTES // (8 * 4 * (n + x_val.shape[1]) * d))
    for start in range(0, g, chunk):
        sl = slice(start, min(g, start + chunk))
        xt = _to_tensor(x_train[sl], device).to(torch.float64)
        with _lapack_threads(device):
            u, s, vh = torch.linalg.svd(xt, full_matrices=False)
        z_train[sl] = (u * s.unsqueeze(1)).cpu().numpy()
        z_val[sl] = torch.bmm(_to_tensor(x_val[sl], device).to(torch.float64), vh.mT).cpu().numpy()
    return z_train, z_val


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
    sklearn_tol: float = 1e-6,
    sklearn_max_iter: int | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    """Time batched Newton vs the scikit-learn loop on every head for one target.

    ``sklearn_max_iter`` (default: ``max_iter``) bounds lbfgs; on real, unscaled activations
    the original's 1000 iterations do not always reach the optimum, and the number of fits
    that stopped at the bound is returned as ``sklearn_not_converged``.

    Both paths fit on the training samples and score train and validation accuracy; each is
    run ``repeats`` times and the fastest run is reported (``time.perf_counter``).  The
    batched model uses its default ``tol`` (1e-8); the scikit-learn loop uses
    ``sklearn_tol`` (1e-6, as :func:`sklearn_grid`).  At 1e-6 lbfgs can stop a hair short of
    the optimum and flip a validation point that sits on the decision boundary, which shows
    up in ``max_acc_gap`` as one sample (1 / n_val); a tighter ``sklearn_tol`` removes it.
    ``device`` is where the batched model runs (its timing includes the transfers).

    Returns n_probes, n_train, n_val, dim, batched_seconds, sklearn_seconds, speedup
    (sklearn / batched), max_acc_gap and mean_acc_gap (|val acc batched - val acc sklearn|
    over heads), target and torch_threads.
    """
    is_val = _check_split(acts, meta, is_val)
    n, n_layers, n_heads, d = acts.shape
    groups = head_groups(acts)
    x_train = groups[:, ~is_val].astype(np.float64)
    x_val = groups[:, is_val].astype(np.float64)
    y, _ = _target_labels(meta, target)
    y_train, y_val = y[~is_val], y[is_val]

    batched_times, sklearn_times = [], []
    batched_val = sklearn_val = np.empty(0)
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        model = BatchedLogisticRegression(C=C, max_iter=max_iter, device=device)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(x_train, y_train)
        model.score(x_train, y_train)
        batched_val = model.score(x_val, y_val)
        batched_times.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        _, sklearn_val, not_converged = _sklearn_loop(
            x_train, y_train, x_val, y_val, C, sklearn_max_iter or max_iter, sklearn_tol
        )
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
        "batched_tol": float(model.tol),
        "sklearn_tol": float(sklearn_tol),
        "sklearn_max_iter": int(sklearn_max_iter or max_iter),
        "sklearn_not_converged": int(not_converged),
        "device": device,
    }


def cross_task_correlation(
    heads_by_task: dict[str, pd.DataFrame], *, value: str = "val_acc", top_k: int = 16
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """How similar the per-head probe accuracies of different tasks are (Figure 6 of Zhu et al.).

    ``heads_by_task`` maps a task name to its heads table (columns layer, head, target and
    ``value``) from one capture site.  Returns

    * a wide table: one row per (target, layer, head), one column per task holding ``value``;
    * the correlations: one row per target and unordered pair of tasks with ``pearson_r``,
      ``spearman_rho``, ``n_heads`` and ``top_k_overlap`` (how many of the ``top_k`` best heads of
      one task are among the ``top_k`` best of the other).
    """
    tasks = list(heads_by_task)
    if len(tasks) < 2:
        raise ValueError(f"cross-task correlation needs at least two tasks; got {tasks}")
    wide: pd.DataFrame | None = None
    for task, table in heads_by_task.items():
        missing = {"layer", "head", "target", value} - set(table.columns)
        if missing:
            raise ValueError(f"heads table of task {task!r} lacks column(s) {sorted(missing)}")
        part = table[["target", "layer", "head", value]].rename(columns={value: task})
        wide = part if wide is None else wide.merge(part, on=["target", "layer", "head"], how="inner")
    assert wide is not None
    if wide.empty:
        raise ValueError("the tasks' heads tables share no (target, layer, head) rows: different models or sites?")
    rows = []
    for target, frame in wide.groupby("target", sort=False):
        for i, a in enumerate(tasks):
            for b in tasks[i + 1:]:
                x, y = frame[a].to_numpy(dtype=float), frame[b].to_numpy(dtype=float)
                ok = np.isfinite(x) & np.isfinite(y)
                pearson = spearman = float("nan")
                if ok.sum() >= 3 and np.std(x[ok]) > 0 and np.std(y[ok]) > 0:
                    pearson = float(np.corrcoef(x[ok], y[ok])[0, 1])
                    rx = pd.Series(x[ok]).rank().to_numpy()
                    ry = pd.Series(y[ok]).rank().to_numpy()
                    spearman = float(np.corrcoef(rx, ry)[0, 1])
                k = min(top_k, len(frame))
                best_a = set(map(tuple, frame.nlargest(k, a)[["layer", "head"]].to_numpy().tolist()))
                best_b = set(map(tuple, frame.nlargest(k, b)[["layer", "head"]].to_numpy().tolist()))
                rows.append({"target": target, "task_a": a, "task_b": b, "pearson_r": pearson,
                             "spearman_rho": spearman, "n_heads": int(ok.sum()),
                             "top_k": k, "top_k_overlap": len(best_a & best_b)})
    return wide.reset_index(drop=True), pd.DataFrame(rows)
