"""Stable Gaussian algebra: Cholesky solves, log-determinants, log-densities, KLs, entropies.

Nothing here forms an explicit inverse. A covariance ``C`` enters through its lower Cholesky factor
``C = L Lᵀ``: ``log|C| = 2 Σ log L_ii`` and ``C⁻¹ b`` is two triangular solves.

The low-rank-plus-diagonal covariance of factor analysis, ``C = W Wᵀ + Ψ``, is handled through the
Woodbury identity and the matrix determinant lemma (Bishop PRML eqs. C.7 and C.14 / 12.41–12.42):

    C⁻¹   = Ψ⁻¹ − Ψ⁻¹ W M⁻¹ Wᵀ Ψ⁻¹,     M = I + Wᵀ Ψ⁻¹ W   (L × L)
    log|C| = log|Ψ| + log|M|

so every D×D operation becomes an L×L one when L ≪ D.

This module also defines :class:`GaussianQ`, the Gaussian q(z|x) that every model's ``posterior``
returns and every ``elbo(X, q)`` accepts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import linalg

LOG_2PI = float(np.log(2.0 * np.pi))

__all__ = [
    "GaussianQ",
    "cholesky",
    "chol_solve",
    "logdet",
    "logpdf",
    "diag_logpdf",
    "lowrank_logpdf",
    "kl",
    "kl_diag",
    "kl_to_standard",
    "entropy",
    "capacitance",
    "weighted_gram",
    "kl_to_standard_terms",
    "expected_diag_loglik",
]


def cholesky(A: np.ndarray, name: str = "matrix") -> np.ndarray:
    """Lower Cholesky factor of a symmetric positive-definite matrix (or a stack of them).

    Raises ``ValueError`` naming ``name`` when ``A`` is not positive definite.
    """
    try:
        return np.linalg.cholesky(A)
    except np.linalg.LinAlgError as exc:
        raise ValueError(f"{name} is not positive definite ({exc})") from None


def chol_solve(L: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Solve ``(L Lᵀ) X = B`` for X, given the lower Cholesky factor ``L`` (2-D)."""
    return linalg.cho_solve((L, True), B, check_finite=False)


def logdet(A_or_L: np.ndarray, *, is_cholesky: bool = False) -> np.ndarray:
    """``log|A|`` for a positive-definite ``A`` (or a stack), as ``2 Σ log diag(chol(A))``."""
    L = A_or_L if is_cholesky else cholesky(A_or_L)
    return 2.0 * np.sum(np.log(np.diagonal(L, axis1=-2, axis2=-1)), axis=-1)


def logpdf(X: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """Row-wise ``log N(x_n | mean, cov)`` for a full covariance (Bishop PRML eq. 2.43).

    ``log N = −½ [D log 2π + log|C| + (x−m)ᵀ C⁻¹ (x−m)]``, with the quadratic form as
    ``‖L⁻¹ (x−m)‖²`` from one triangular solve.
    """
    X = np.atleast_2d(X)
    L = cholesky(cov, "cov")
    R = linalg.solve_triangular(L, (X - mean).T, lower=True, check_finite=False)
    D = X.shape[1]
    return -0.5 * (D * LOG_2PI + logdet(L, is_cholesky=True) + np.sum(R * R, axis=0))


def diag_logpdf(X: np.ndarray, mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    """Row-wise log-density of a Gaussian with diagonal covariance ``diag(var)``."""
    X = np.atleast_2d(X)
    r = X - mean
    return -0.5 * np.sum(LOG_2PI + np.log(var) + r * r / var, axis=-1)


def capacitance(W: np.ndarray, psi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The L×L "capacitance" ``M = I + Wᵀ Ψ⁻¹ W`` of ``C = W Wᵀ + Ψ``, as its Cholesky factor.

    This is the one place in the package that forms M (Bishop PRML eqs. 12.41, 12.68, C.7):
    the FA/PPCA posterior is ``N(M⁻¹ Wᵀ Ψ⁻¹ (x − μ), M⁻¹)``, ``C⁻¹ = Ψ⁻¹ − Ψ⁻¹ W M⁻¹ Wᵀ Ψ⁻¹``
    and ``log|C| = log|Ψ| + log|M|``. Returns ``(L_M, Ψ⁻¹ W)`` with ``M = L_M L_Mᵀ``.
    """
    Wp = W / psi[:, None]
    LM = cholesky(np.eye(W.shape[1]) + W.T @ Wp, "I + W^T Psi^-1 W")
    return LM, Wp


def weighted_gram(W: np.ndarray, psi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(Wᵀ Ψ⁻¹ W, Ψ⁻¹ W)``: the data-precision-weighted Gram matrix of the loadings, the
    quadratic part of E_q[log p(x|z)] (and M − I of :func:`capacitance`)."""
    Wp = W / psi[:, None]
    return W.T @ Wp, Wp


def lowrank_logpdf(X: np.ndarray, mean: np.ndarray, W: np.ndarray, psi: np.ndarray) -> np.ndarray:
    """Row-wise ``log N(x | mean, W Wᵀ + diag(psi))`` by Woodbury, in O(N D L) after O(D L²).

    Bishop PRML eq. 12.35 (FA/PPCA marginal) with C⁻¹ and log|C| from eqs. C.7 and C.14:
    ``(x−μ)ᵀ C⁻¹ (x−μ) = ‖r‖²_Ψ⁻¹ − ‖L_M⁻¹ Wᵀ Ψ⁻¹ r‖²`` with ``M = I + WᵀΨ⁻¹W = L_M L_Mᵀ``
    (:func:`capacitance`).
    """
    X = np.atleast_2d(X)
    D = W.shape[0]
    R = X - mean
    LM, Wp = capacitance(W, psi)
    A = linalg.solve_triangular(LM, (R @ Wp).T, lower=True, check_finite=False)
    quad = np.sum(R * R / psi, axis=1) - np.sum(A * A, axis=0)
    log_det = np.sum(np.log(psi)) + logdet(LM, is_cholesky=True)
    return -0.5 * (D * LOG_2PI + log_det + quad)


def expected_diag_loglik(R: np.ndarray, psi: np.ndarray, W: np.ndarray, mean_cov: np.ndarray) -> float:
    """``E_q[log N(x_n | W z_n + μ, diag ψ)]`` averaged over rows, for q(z_n) = N(m_n, Σ_n).

    With residuals ``r_n = x_n − μ − W m_n`` (rows of ``R``) and ``Σ̄`` the row-average of Σ_n
    (Bishop PRML eq. 12.53 written for a general Gaussian q):
    ``−½ [D log 2π + log|Ψ| + mean_n r_nᵀ Ψ⁻¹ r_n + tr(Wᵀ Ψ⁻¹ W Σ̄)]``. The trace is linear in
    Σ_n, so the average covariance is enough here (not in the KL, whose log-det is not linear).
    """
    D = W.shape[0]
    WtPW, _ = weighted_gram(W, psi)
    quad = float(np.mean(np.sum(R * R / psi, axis=1))) + float(np.sum(WtPW * mean_cov))
    return -0.5 * (D * LOG_2PI + float(np.sum(np.log(psi))) + quad)


def kl(m1: np.ndarray, S1: np.ndarray, m0: np.ndarray, S0: np.ndarray) -> np.ndarray:
    """``KL(N(m1, S1) ‖ N(m0, S0))`` for full covariances (Bishop PRML exercise 2.13).

    ``KL = ½ [tr(S0⁻¹ S1) + (m0−m1)ᵀ S0⁻¹ (m0−m1) − k + log|S0| − log|S1|]``.
    Means may be stacked (..., k) with shared covariances (k, k).
    """
    k = S1.shape[-1]
    L0 = cholesky(S0, "S0")
    L1 = cholesky(S1, "S1")
    T = linalg.solve_triangular(L0, L1, lower=True, check_finite=False)  # L0⁻¹ L1
    d = np.atleast_2d(m0 - m1)
    u = linalg.solve_triangular(L0, d.T, lower=True, check_finite=False)
    out = 0.5 * (np.sum(T * T) + np.sum(u * u, axis=0) - k
                 + logdet(L0, is_cholesky=True) - logdet(L1, is_cholesky=True))
    return out if np.ndim(m1) > 1 or np.ndim(m0) > 1 else out[0]


def kl_diag(m1, v1, m0, v0) -> np.ndarray:
    """``KL(N(m1, diag v1) ‖ N(m0, diag v0))`` summed over the last axis.

    ``KL = ½ Σ_j [v1_j/v0_j + (m1_j−m0_j)²/v0_j − 1 + log v0_j − log v1_j]``.
    """
    m1, v1, m0, v0 = (np.asarray(a, dtype=float) for a in (m1, v1, m0, v0))
    return 0.5 * np.sum(v1 / v0 + (m1 - m0) ** 2 / v0 - 1.0 + np.log(v0) - np.log(v1), axis=-1)


def kl_to_standard(mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """``KL(N(mean, cov) ‖ N(0, I))`` (Kingma & Welling 2014, appendix B, for full cov).

    ``KL = ½ [tr(cov) + ‖mean‖² − k − log|cov|]``; ``cov`` (k, k) or stacked (n, k, k).
    """
    k = cov.shape[-1]
    tr = np.trace(cov, axis1=-2, axis2=-1)
    return kl_to_standard_terms(tr, np.sum(mean * mean, axis=-1), logdet(cov), k)


def kl_to_standard_terms(trace, sq_norm, log_det, k: int):
    """``KL(N(m, Σ) ‖ N(0, I_k)) = ½ [tr Σ + ‖m‖² − k − log|Σ|]`` from its three statistics.

    The one place the formula is written (Bishop PRML ex. 2.13 with S0 = I). It is linear in
    ``tr Σ``, ``‖m‖²`` and ``log|Σ|``, so the row-average of the KLs is this formula applied to
    the row-averages of the three statistics — the mean of ``log|Σ_n|``, never ``log|mean Σ_n|``.
    """
    return 0.5 * (trace + sq_norm - k - log_det)


def entropy(cov: np.ndarray) -> np.ndarray:
    """Differential entropy ``½ log|2πe C|`` of a Gaussian (Bishop PRML eq. B.41)."""
    k = cov.shape[-1]
    return 0.5 * (k * (1.0 + LOG_2PI) + logdet(cov))


@dataclass(frozen=True)
class GaussianQ:
    """A Gaussian q(z_n | x_n) for each of N rows: means (N, L) and covariances.

    ``cov`` is either one (L, L) matrix shared by every row (the exact posterior of FA and PPCA,
    Bishop PRML eq. 12.42), or a stack (N, L, L), or — with ``diagonal=True`` — variances of shape
    (L,) or (N, L) (mean-field and VAE posteriors).
    """

    mean: np.ndarray
    cov: np.ndarray
    diagonal: bool = False

    def __post_init__(self):
        mean = np.atleast_2d(np.asarray(self.mean, dtype=float))
        cov = np.asarray(self.cov, dtype=float)
        N, L = mean.shape
        ok = (cov.shape in ((L,), (N, L))) if self.diagonal else (cov.shape in ((L, L), (N, L, L)))
        if not ok:
            raise ValueError(
                f"q covariance of shape {cov.shape} does not fit means of shape {mean.shape} "
                f"(diagonal={self.diagonal})"
            )
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "cov", cov)

    @classmethod
    def from_diag(cls, mean, var) -> "GaussianQ":
        """A factorised (mean-field) q with per-coordinate variances ``var``."""
        return cls(mean, var, diagonal=True)

    @property
    def n_components(self) -> int:
        return self.mean.shape[1]

    def full_cov(self) -> np.ndarray:
        """Covariances as (L, L) or (N, L, L) matrices."""
        if not self.diagonal:
            return self.cov
        return np.apply_along_axis(np.diag, -1, self.cov) if self.cov.ndim == 2 else np.diag(self.cov)

    def mean_cov(self) -> np.ndarray:
        """The covariance averaged over rows, (L, L): enough for every trace term of the ELBO."""
        if self.diagonal:
            return np.diag(self.cov if self.cov.ndim == 1 else self.cov.mean(axis=0))
        return self.cov if self.cov.ndim == 2 else self.cov.mean(axis=0)

    def mean_logdet(self) -> float:
        """``log|Σ_n|`` averaged over rows."""
        if self.diagonal:
            s = np.sum(np.log(self.cov), axis=-1)
        else:
            s = logdet(self.cov)
        return float(np.mean(s))

    def kl_to_standard(self) -> float:
        """``KL(q(z_n) ‖ N(0, I))`` averaged over rows, in nats."""
        return float(kl_to_standard_terms(np.trace(self.mean_cov()),
                                          float(np.mean(np.sum(self.mean ** 2, axis=1))),
                                          self.mean_logdet(), self.n_components))

    def sample(self, random_state=None, n_samples: int | None = None) -> np.ndarray:
        """Draws z ~ q: (N, L), or (n_samples, N, L) when ``n_samples`` is given."""
        from .validation import check_random_state

        rng = check_random_state(random_state)
        shape = self.mean.shape if n_samples is None else (n_samples, *self.mean.shape)
        eps = rng.standard_normal(shape)
        if self.diagonal:
            return self.mean + np.sqrt(self.cov) * eps
        Lc = cholesky(self.cov, "q covariance")
        if Lc.ndim == 2:
            return self.mean + eps @ Lc.T
        return self.mean + np.einsum("nij,...nj->...ni", Lc, eps)
