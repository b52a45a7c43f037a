"""BatchedLogisticRegression: many L2 logistic regressions fitted at once, with scikit-learn's manners."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning

from tomlab.probing.solver import (
    _MEMORY_BUDGET_BYTES,
    _lapack_threads,
    _n_dims,
    _newton_solve,
    _shape,
    _to_tensor,
    default_chunk_size,
)

#: The original's inverse regularisation strength for the binary targets.
DEFAULT_C_BINARY: float = 10.0


#: The original's inverse regularisation strength for the 4-way joint target.
DEFAULT_C_JOINT: float = 1.0


#: The original's iteration cap.
DEFAULT_MAX_ITER: int = 1000


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
