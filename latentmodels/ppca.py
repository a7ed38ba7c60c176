"""Probabilistic PCA (Tipping & Bishop 1999; Bishop PRML 12.2) and plain PCA by SVD.

PPCA is factor analysis with isotropic noise, Ψ = σ² I (Bishop PRML eq. 12.33):

    z ~ N(0, I_L),   x | z ~ N(W z + μ, σ² I)   ⇒   x ~ N(μ, W Wᵀ + σ² I)

so it uses the linear-Gaussian core (:mod:`latentmodels.linear_gaussian`). Its maximum-likelihood
solution is in closed form (Bishop eqs. 12.45–12.46): with S = U diag(λ) Uᵀ, λ descending,

    σ²_ML = (1/(D − L)) Σ_{j>L} λ_j,      W_ML = U_L (Λ_L − σ² I)^{1/2} R     (R = I here)

and as σ² → 0 the posterior mean E[z|x] = (WᵀW + σ²I)⁻¹ Wᵀ (x − μ) becomes the orthogonal
projection onto the principal subspace (Bishop 12.2.2; Roweis 1998): PPCA gives back PCA.

EM works at every σ² ≥ 0. At σ² = 0 it is Roweis's (1998) EM for PCA (E: Z = (WᵀW)⁻¹Wᵀ(x − μ),
M: W = S Bᵀ (B S Bᵀ)⁻¹), whose history is −½ the mean squared reconstruction error (the ELBO is
−∞ there). For small σ² > 0, EM finds the subspace quickly but the scale of W converges at the
rate 1 − 2σ²(λ − σ²)/λ² per iteration, which tends to 1; once the subspace has settled the
exact scale step :func:`latentmodels.linear_gaussian.ritz_scale_step` sets it (recorded as the
labelled step "scale"), and SQUAREM jumps (:mod:`latentmodels.acceleration`) speed the subspace.
Convergence needs the ELBO and the parameters (relative change of W Wᵀ; at σ² = 0 the subspace)
to settle: a relative change of an ELBO of size ~1/σ² is no test on its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .linear_gaussian import (
    LinearGaussianModel,
    check_statistics,
    e_step,
    elbo_from_moments,
    moments,
    reconstruction_objective,
    run_em,
)
from .missing import fit_missing
from .statistics import SufficientStatistics
from .validation import (
    check_array,
    check_fitted,
    check_int,
    check_n_components,
    check_positive,
    check_random_state,
)

__all__ = ["PPCA", "PCAResult", "pca", "moments"]


class PPCA(LinearGaussianModel):
    """Probabilistic PCA, by closed form or EM, with σ² learned or held fixed.

    Parameters
    ----------
    n_components : int
        Latent dimension L. With σ² learned, 1 ≤ L < D; with σ² fixed, 1 ≤ L ≤ D.
    sigma2 : float or None, default None
        None learns σ². A float ≥ 0 holds σ² there and fits W alone — in closed form
        ``W = U_L max(Λ_L − σ², 0)^{1/2}`` (Tipping & Bishop 1999, eq. 7 with σ² given) or by EM;
        small values explore the σ → 0 limit in which PPCA becomes PCA, and 0 is that limit
        (Roweis's EM for PCA; ``log_likelihood`` and ``elbo`` then raise, p(x) has no density).
    method : {"closed_form", "em"}, default "closed_form"
        "em" runs Bishop's EM (eqs. 12.54–12.57) on the shared linear-Gaussian core; the E-step is
        formed from ``(WᵀW + σ²I)`` through a Cholesky factor, so it is defined at σ² = 0.
    tol, max_iter : EM stops when an iteration changes the ELBO by less than ``tol · max(1, |L|)``
        (or by less than its floating-point error) and W Wᵀ by less than ``tol`` (relative).
    accelerate : bool, default True
        SQUAREM jumps between EM iterations, kept only when they raise the objective.
    random_state : None, int or Generator
        The random initial W of EM.
    missing : {"raise", "em"}, default "raise"
        What a NaN in X means: an error, or a missing value (see below).

    Attributes
    ----------
    W_ (D, L), sigma2_ (float), mu_ (D,), explained_variance_ (the L leading eigenvalues of S),
    history_ (ELBO after each step; one value for the closed form; at σ² = 0 the reconstruction
    objective), history_steps_ (the label of each: "E", "M", "squarem", "scale"), n_iter_,
    converged_, n_features_in_, n_samples_, statistics_.

    Input: ``fit`` takes an array, a memmap, an iterable of chunks, a Dask array or a
    :class:`~latentmodels.statistics.SufficientStatistics`; with ``missing="em"`` NaN entries are
    missing values, fitted by EM on the observed entries (whatever ``method``; else NaN raises).
    ``partial_fit`` accumulates chunks and, by
    default, refits from all rows seen.
    """

    _isotropic = True
    sigma2_ = None

    def __init__(self, n_components: int = 1, *, sigma2: float | None = None,
                 method: str = "closed_form", tol: float = 1e-10, max_iter: int = 10000,
                 accelerate: bool = True, random_state=None, missing="raise"):
        self.n_components = n_components
        self.sigma2 = sigma2
        self.method = method
        self.tol = tol
        self.max_iter = max_iter
        self.accelerate = accelerate
        self.random_state = random_state
        self.missing = missing

    def noise_variance(self) -> np.ndarray:
        """σ² repeated D times (a new array)."""
        check_fitted(self, ("W_", "sigma2_"))
        return np.full(self.W_.shape[0], self.sigma2_)

    def n_parameters(self) -> int:
        """D·L − L(L−1)/2 loadings, D means, and σ² when it was learned."""
        check_fitted(self, ("W_", "sigma2_"))
        D, n_comp = self.W_.shape
        return D * n_comp - n_comp * (n_comp - 1) // 2 + D + int(self._learned_sigma2)

    def fit_covariance(self, S, n_samples: int, mean=None) -> "PPCA":
        """Fit to a (1/N) covariance matrix computed elsewhere (``mean`` is copied). Returns self."""
        mu, S, n = check_statistics(S=S, n_samples=n_samples, mean=mean)
        self._fit_moments(mu, S, n)
        self.statistics_ = SufficientStatistics(n, mu, S * n)
        return self

    def _fit_missing(self, X):
        """EM on the observed entries (Tipping & Bishop 1999, section 4.1;
        :func:`latentmodels.missing.fit_missing`), σ² learned or held at ``sigma2``."""
        if self.sigma2 is not None:
            s2 = check_positive(self.sigma2, "sigma2")
            kw = dict(noise="fixed", fixed_psi=s2)
        else:
            kw = dict(noise="isotropic")
        r = fit_missing(X, self.n_components, max_iter=self.max_iter, tol=self.tol,
                        random_state=self.random_state, **kw)
        self._learned_sigma2 = self.sigma2 is None
        self.W_, self.mu_ = r.W, r.mu
        self.sigma2_ = float(np.atleast_1d(r.psi)[0])
        self.explained_variance_ = None
        self.history_, self.history_steps_ = list(r.history), list(r.history_labels)
        self.n_iter_, self.converged_ = r.n_iter, r.converged
        self.n_features_in_, self.n_samples_ = r.W.shape[0], r.n_samples
        self.statistics_ = None
        return self

    def _fit_moments(self, mu, S, n_samples):
        D = S.shape[0]
        fixed = self.sigma2 is not None
        n_comp = check_n_components(self.n_components, D, strict=not fixed)
        sigma2 = check_positive(self.sigma2, "sigma2", allow_zero=True) if fixed else None
        self._learned_sigma2 = not fixed
        if self.method not in ("closed_form", "em"):
            raise ValueError(f"method must be 'closed_form' or 'em', got {self.method!r}")
        # every hyper-parameter is checked, also where this method does not use it
        check_positive(self.tol, "tol")
        check_int(self.max_iter, "max_iter")
        rng = check_random_state(self.random_state)
        if not isinstance(self.accelerate, (bool, np.bool_)):
            raise TypeError(f"accelerate must be True or False, got {self.accelerate!r}")
        if not np.trace(S) > 0:
            raise ValueError("X has zero variance in every feature (all rows equal): there is no "
                             "subspace to fit")
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
            B, G = e_step(W, psi)
            self.history_ = [reconstruction_objective(S, W, B) if sigma2 == 0.0
                             else elbo_from_moments(S, W, psi, B, G).total]
            self.history_steps_ = ["closed form"]
            self.n_iter_ = 0
            self.converged_ = True
        else:
            self._fit_em(S, n_comp, sigma2, rng)
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
        result, W, psi = run_em(
            S, W0, psi0, noise="fixed" if sigma2 is not None else "isotropic",
            psi_floor=1e-300, tol=tol, max_iter=max_iter, accelerate=bool(self.accelerate),
            model_name="PPCA (EM)", scale_step=True)
        self.W_, self.sigma2_ = W, float(psi[0])
        # end on an E-step: the last value is the exact log-likelihood of the final θ
        history, steps = list(result.history), list(result.steps)
        if steps[-1] != "E":
            B, G = e_step(W, psi)
            history.append(reconstruction_objective(S, W, B) if self.sigma2_ == 0.0
                           else elbo_from_moments(S, W, psi, B, G).total)
            steps.append("E")
        self.history_, self.history_steps_ = history, steps
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
