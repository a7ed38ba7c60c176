"""Probabilistic PCA (Tipping & Bishop 1999; Bishop PRML 12.2) and plain PCA by SVD.

PPCA is factor analysis with isotropic noise, Ψ = σ² I (Bishop PRML eq. 12.33):

    z ~ N(0, I_L),   x | z ~ N(W z + μ, σ² I)   ⇒   x ~ N(μ, W Wᵀ + σ² I)

so it reuses FA's posterior, ELBO and E-/M-steps (:mod:`latentmodels.fa`). Its maximum-likelihood
solution is in closed form (Bishop eqs. 12.45–12.46): with S = U diag(λ) Uᵀ, λ descending,

    σ²_ML = (1/(D − L)) Σ_{j>L} λ_j,      W_ML = U_L (Λ_L − σ² I)^{1/2} R     (R = I here)

and as σ² → 0 the posterior mean E[z|x] = (WᵀW + σ²I)⁻¹ Wᵀ (x − μ) becomes the orthogonal
projection onto the principal subspace (Bishop 12.2.2; Roweis 1998): PPCA gives back PCA.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .fa import LinearGaussianModel, _sufficient_statistics, e_step, elbo_from_moments, run_em
from .validation import (
    check_array,
    check_int,
    check_n_components,
    check_positive,
    check_random_state,
)

__all__ = ["PPCA", "PCAResult", "pca"]


class PPCA(LinearGaussianModel):
    """Probabilistic PCA, by closed form or EM, with σ² learned or held fixed.

    Parameters
    ----------
    n_components : int
        Latent dimension L. With σ² learned, 1 ≤ L < D; with σ² fixed, 1 ≤ L ≤ D.
    sigma2 : float or None, default None
        None learns σ². A positive float holds σ² there and fits W alone — in closed form
        ``W = U_L max(Λ_L − σ², 0)^{1/2}`` (Tipping & Bishop 1999, eq. 7 with σ² given) or by EM;
        small values explore the σ → 0 limit in which PPCA becomes PCA.
    method : {"closed_form", "em"}, default "closed_form"
        "em" runs Bishop's EM (eqs. 12.54–12.57) through FA's E- and M-steps with the isotropic
        M-step; with σ² fixed and tiny it is Roweis' (1998) EM for PCA, which stays stable because
        the E-step is formed from ``(WᵀW + σ²I)`` through a Cholesky factor.
    tol, max_iter : EM stopping rule (relative ELBO change per iteration) and cap.
    random_state : None, int or Generator
        The random initial W of EM.

    Attributes
    ----------
    W_ (D, L), sigma2_ (float), mu_ (D,), explained_variance_ (the L leading eigenvalues of S),
    history_ (ELBO after each E- and M-step; one value for the closed form), n_iter_,
    n_features_in_, n_samples_.
    """

    _isotropic = True
    sigma2_ = None

    def __init__(self, n_components: int = 1, *, sigma2: float | None = None,
                 method: str = "closed_form", tol: float = 1e-10, max_iter: int = 10000,
                 random_state=None):
        self.n_components = n_components
        self.sigma2 = sigma2
        self.method = method
        self.tol = tol
        self.max_iter = max_iter
        self.random_state = random_state

    def noise_variance(self) -> np.ndarray:
        return np.full(self.W_.shape[0], self.sigma2_)

    def n_parameters(self) -> int:
        D, n_comp = self.W_.shape
        return D * n_comp - n_comp * (n_comp - 1) // 2 + D + (self.sigma2 is None)

    def fit(self, X, y=None) -> "PPCA":
        """Fit to the rows of X (n_samples, n_features). Returns self."""
        mu, S, n = _sufficient_statistics(X=X)
        return self._fit_moments(mu, S, n)

    def fit_covariance(self, S, n_samples: int, mean=None) -> "PPCA":
        """Fit to a (1/N) covariance matrix computed elsewhere. Returns self."""
        mu, S, n = _sufficient_statistics(S=S, n_samples=n_samples, mean=mean)
        return self._fit_moments(mu, S, n)

    def _fit_moments(self, mu, S, n_samples):
        D = S.shape[0]
        fixed = self.sigma2 is not None
        n_comp = check_n_components(self.n_components, D, strict=not fixed)
        sigma2 = check_positive(self.sigma2, "sigma2") if fixed else None
        if self.method not in ("closed_form", "em"):
            raise ValueError(f"method must be 'closed_form' or 'em', got {self.method!r}")
        lam, U = np.linalg.eigh(S)
        lam, U = lam[::-1], U[:, ::-1]
        self.explained_variance_ = lam[:n_comp].copy()
        if self.method == "closed_form":
            if not fixed:
                sigma2 = float(np.mean(lam[n_comp:]))
                if sigma2 <= 1e-12 * max(lam[0], 1e-300):
                    raise ValueError(
                        f"the data have (numerically) rank <= n_components={n_comp}, so the "
                        "maximum-likelihood sigma2 is 0; use fewer components or fix sigma2"
                    )
            W = U[:, :n_comp] * np.sqrt(np.maximum(lam[:n_comp] - sigma2, 0.0))
            self.W_, self.sigma2_ = W, sigma2
            psi = np.full(D, sigma2)
            self.history_ = [elbo_from_moments(S, W, psi, *e_step(W, psi)).total]
            self.n_iter_ = 0
            self.converged_ = True
        else:
            self._fit_em(S, n_comp, sigma2, check_random_state(self.random_state))
        self.mu_ = mu
        self.n_features_in_ = D
        self.n_samples_ = n_samples
        return self

    def _fit_em(self, S, n_comp, sigma2, rng):
        """EM for PPCA, Bishop PRML eqs. 12.54–12.57 (with σ² fixed: W-update only)."""
        D = S.shape[0]
        tol = check_positive(self.tol, "tol")
        max_iter = check_int(self.max_iter, "max_iter")
        W0 = rng.standard_normal((D, n_comp)) * np.sqrt(np.trace(S) / D)
        psi0 = np.full(D, sigma2 if sigma2 is not None else np.trace(S) / D)
        result, self.W_, psi = run_em(
            S, W0, psi0, noise="fixed" if sigma2 is not None else "isotropic",
            psi_floor=1e-12 * np.trace(S) / D, tol=tol, max_iter=max_iter, model_name="PPCA (EM)")
        self.sigma2_ = float(psi[0])
        # end on an E-step: the last ELBO is the exact log-likelihood of the final θ
        self.history_ = result.history + [
            elbo_from_moments(S, self.W_, psi, *e_step(self.W_, psi)).total]
        self.n_iter_ = result.n_iter
        self.converged_ = result.converged


@dataclass(frozen=True)
class PCAResult:
    """Plain PCA: ``components`` (L, D) orthonormal rows, ``explained_variance`` (L,), ``mean``."""

    components: np.ndarray
    explained_variance: np.ndarray
    mean: np.ndarray

    def transform(self, X) -> np.ndarray:
        """Coordinates in the principal subspace, (X − mean) Uᵀ."""
        return (check_array(X) - self.mean) @ self.components.T

    def reconstruct(self, X) -> np.ndarray:
        """The orthogonal projection of X onto the principal affine subspace."""
        return self.transform(X) @ self.components + self.mean


def pca(X, n_components: int) -> PCAResult:
    """Principal components of X by SVD of the centred data (Bishop PRML 12.1).

    ``X − x̄ = U diag(s) Vᵀ``; the components are the first L rows of Vᵀ (sign fixed so the
    largest-magnitude entry of each is positive) and the explained variances are s² / N — the
    eigenvalues of the maximum-likelihood covariance S that PPCA uses (scikit-learn divides by
    N − 1 instead).
    """
    X = check_array(X, "X", min_samples=2)
    n_comp = check_n_components(n_components, min(X.shape))
    mean = X.mean(axis=0)
    _, s, Vt = np.linalg.svd(X - mean, full_matrices=False)
    comps = Vt[:n_comp]
    signs = np.sign(comps[np.arange(n_comp), np.argmax(np.abs(comps), axis=1)])
    return PCAResult(comps * signs[:, None], s[:n_comp] ** 2 / X.shape[0], mean)
