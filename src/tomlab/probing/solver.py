"""The batched Newton solver behind the probes: scikit-learn's L2 logistic-regression objective for many
independent problems at once, in torch (float64)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

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

        def phi(
            sel: torch.Tensor | None,
            tt: torch.Tensor,
            *,
            pen0: torch.Tensor = pen0,
            lin: torch.Tensor = lin,
            quad: torch.Tensor = quad,
            loss: _Loss = loss,
            z: torch.Tensor = z,
            xstep: torch.Tensor = xstep,
        ) -> torch.Tensor:
            """Objective at theta + tt * step for the groups ``sel`` (None: all), this iteration's step."""
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
