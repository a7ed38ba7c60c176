"""Factor analysis, fitted by EM on sufficient statistics (Bishop PRML 12.2.4; Rubin & Thayer 1982).

The generative model (Bishop PRML eqs. 12.31–12.33, 12.64):

    z ~ N(0, I_L),    x | z ~ N(W z + μ, Ψ),    Ψ = diag(ψ_1, …, ψ_D)
    ⇒ x ~ N(μ, C),    C = W Wᵀ + Ψ

The exact posterior is Gaussian (Bishop eqs. 12.66–12.68, with G the posterior covariance):

    G = (I + Wᵀ Ψ⁻¹ W)⁻¹,     E[z | x] = G Wᵀ Ψ⁻¹ (x − μ),     E[z zᵀ | x] = G + E[z] E[z]ᵀ

Both the E-step and the M-step depend on the data only through the mean x̄ and the (biased)
covariance S = (1/N) Σ (x_n − x̄)(x_n − x̄)ᵀ, so after one pass over X each EM iteration costs
O(D² L), whatever N is. Writing the E-step as the linear map E[z | x] = B (x − x̄) with
B = G Wᵀ Ψ⁻¹, the sample averages the M-step needs are

    (1/N) Σ (x_n − x̄) E[z_n]ᵀ = S Bᵀ,       (1/N) Σ E[z_n z_nᵀ] = G + B S Bᵀ

and the M-step (Bishop eqs. 12.69–12.70) is

    W_new = S Bᵀ (G + B S Bᵀ)⁻¹,       Ψ_new = diag(S − W_new B S).

This module also holds the machinery that PPCA reuses (PPCA is FA with Ψ = σ² I): the base
class :class:`LinearGaussianModel` and the E- and M-steps, whose ``noise="isotropic"`` M-step is
Bishop's PPCA update eq. 12.57.
"""

from __future__ import annotations

import numpy as np

from . import gaussian as gs
from .elbo import ELBO, coordinate_ascent
from .gaussian import GaussianQ
from .validation import (
    ConvergenceWarning,
    check_array,
    check_covariance,
    check_fitted,
    check_int,
    check_n_components,
    check_n_features,
    check_positive,
    check_random_state,
    warn,
)

__all__ = ["FactorAnalysis", "LinearGaussianModel", "e_step", "m_step", "elbo_from_moments",
           "moments", "profile_polish", "run_em"]


# --------------------------------------------------------------------------------------------
# The E-step, the M-step and the ELBO, on sufficient statistics
# --------------------------------------------------------------------------------------------

def moments(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sample mean x̄ and biased covariance S = (1/N) Σ (x_n − x̄)(x_n − x̄)ᵀ, in one pass."""
    mean = X.mean(axis=0)
    Xc = X - mean
    S = Xc.T @ Xc / X.shape[0]
    return mean, (S + S.T) / 2.0


def e_step(W: np.ndarray, psi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The E-step of FA and PPCA: the exact posterior q(z | x) = N(B (x − μ), G).

    Bishop PRML eqs. 12.66–12.68 (12.42 for PPCA):
    ``G = (I + Wᵀ Ψ⁻¹ W)⁻¹`` and ``B = G Wᵀ Ψ⁻¹``, from one Cholesky factor of the L×L matrix
    ``I + Wᵀ Ψ⁻¹ W`` — never a D×D inverse.

    Returns ``(B, G)``: B (L, D) maps centred data to posterior means; G (L, L) is the posterior
    covariance, the same for every x.
    """
    n_comp = W.shape[1]
    Wp = W / psi[:, None]  # Ψ⁻¹ W
    LM = gs.cholesky(np.eye(n_comp) + W.T @ Wp, "I + W^T Psi^-1 W")
    G = gs.chol_solve(LM, np.eye(n_comp))
    B = gs.chol_solve(LM, Wp.T)
    return B, (G + G.T) / 2.0


def m_step(S: np.ndarray, B: np.ndarray, G: np.ndarray, psi: np.ndarray, *,
           noise: str = "diagonal", psi_floor: np.ndarray | float = 0.0
           ) -> tuple[np.ndarray, np.ndarray]:
    """The M-step of FA (and PPCA), from the sufficient statistic S and the E-step's (B, G).

    Bishop PRML eqs. 12.69–12.70 (FA), 12.56–12.57 (PPCA), with the data averages written
    through S (see the module docstring):

    - ``W_new = S Bᵀ (G + B S Bᵀ)⁻¹``
    - ``noise="diagonal"`` (FA): ``Ψ_new = diag(S − W_new B S)``
    - ``noise="isotropic"`` (PPCA): ``σ²_new = tr(S − W_new B S) / D``, returned as a vector
    - ``noise="fixed"``: Ψ is held at ``psi`` (EM for W alone, Roweis 1998)

    The new uniquenesses are floored at ``psi_floor``. Returns ``(W_new, psi_new)``.
    """
    SB = S @ B.T                               # (1/N) Σ (x_n − x̄) E[z_n]ᵀ
    Ezz = G + B @ SB                           # (1/N) Σ E[z_n z_nᵀ]
    W = gs.chol_solve(gs.cholesky(Ezz, "E[z z^T]"), SB.T).T
    if noise == "fixed":
        return W, psi
    resid = np.diag(S) - np.sum(W * SB, axis=1)  # diag(S − W_new B S)
    if noise == "isotropic":
        resid = np.full_like(resid, resid.mean())
    elif noise != "diagonal":
        raise ValueError(f"noise must be 'diagonal', 'isotropic' or 'fixed', got {noise!r}")
    return W, np.maximum(resid, psi_floor)


def elbo_from_moments(S: np.ndarray, W: np.ndarray, psi: np.ndarray, B: np.ndarray,
                      G: np.ndarray) -> ELBO:
    """Mean ELBO per sample of data with mean μ and covariance S, for q(z|x) = N(B(x − μ), G).

    With ``m_n = B (x_n − μ)`` and residual ``r_n = x_n − μ − W m_n`` (Bishop PRML 9.4, 12.2.4):

    - ``E_q[log p(x|z)] = −½ [D log 2π + log|Ψ| + tr(Ψ⁻¹ S) − 2 tr(Ψ⁻¹ W B S)
      + tr(Wᵀ Ψ⁻¹ W (B S Bᵀ + G))]``
    - ``KL(q ‖ p(z)) = ½ [tr G + tr(B S Bᵀ) − L − log|G|]``

    Costs O(D² L). When (B, G) is the E-step of (W, psi) this equals the exact log-likelihood.
    """
    D, n_comp = W.shape
    SB = S @ B.T
    BSB = B @ SB
    Wp = W / psi[:, None]
    quad = (np.sum(np.diag(S) / psi) - 2.0 * np.sum(Wp * SB)
            + np.sum((W.T @ Wp) * (BSB + G)))
    ell = -0.5 * (D * gs.LOG_2PI + np.sum(np.log(psi)) + quad)
    kl = 0.5 * (np.trace(G) + np.trace(BSB) - n_comp - gs.logdet(G))
    return ELBO(ell, kl)


def run_em(S, W, psi, *, noise="diagonal", psi_floor=0.0, tol=1e-8, max_iter=10000,
           accelerate=False, model_name="EM"):
    """EM for FA or PPCA on the covariance S: E-step, M-step, repeat (Bishop PRML 12.2.4, 9.4).

    The two steps are handed to :func:`latentmodels.elbo.coordinate_ascent`, which records the
    ELBO (:func:`elbo_from_moments`) after each and raises if either lowers it. ``noise`` selects
    the M-step (see :func:`m_step`); ``accelerate`` adds the monotone SQUAREM jump before every
    third E-step. Returns ``(AscentResult, W, psi)``.
    """
    state = {"W": W, "psi": psi, "B": None, "G": None}
    accel = _Squarem(S, psi_floor) if accelerate else None

    def expectation():
        if accel is not None:
            accel.maybe_jump(state)
        state["B"], state["G"] = e_step(state["W"], state["psi"])

    def maximisation():
        state["W"], state["psi"] = m_step(S, state["B"], state["G"], state["psi"], noise=noise,
                                          psi_floor=psi_floor)

    def objective():
        return elbo_from_moments(S, state["W"], state["psi"], state["B"], state["G"]).total

    result = coordinate_ascent([("E", expectation), ("M", maximisation)], objective, tol=tol,
                               max_iter=max_iter, model_name=model_name)
    return result, state["W"], state["psi"]


# --------------------------------------------------------------------------------------------
# What FA and PPCA share once fitted
# --------------------------------------------------------------------------------------------

class LinearGaussianModel:
    """A fitted linear-Gaussian latent model x = W z + μ + ε, z ~ N(0, I), ε ~ N(0, diag(noise)).

    Subclasses set ``W_``, ``mu_`` and ``n_features_in_`` in ``fit`` and define
    :meth:`noise_variance` (FA: ``psi_``; PPCA: ``sigma2_`` repeated).
    """

    W_ = None
    mu_ = None
    n_features_in_ = None

    # ---- helpers -----------------------------------------------------------------------
    def noise_variance(self) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _validate_X(self, X, name: str = "X") -> np.ndarray:
        check_fitted(self, ("W_", "mu_", "n_features_in_"))
        X = check_array(X, name)
        check_n_features(self, X, name)
        return X

    @property
    def n_components_(self) -> int:
        check_fitted(self, ("W_",))
        return self.W_.shape[1]

    def n_parameters(self) -> int:
        """Free parameters: D·L loadings − L(L−1)/2 rotations + D means + noise variances."""
        D, n_comp = self.W_.shape
        n_noise = 1 if self._isotropic else D
        return D * n_comp - n_comp * (n_comp - 1) // 2 + D + n_noise

    _isotropic = False

    # ---- the marginal p(x) ---------------------------------------------------------------
    def get_covariance(self) -> np.ndarray:
        """The model covariance C = W Wᵀ + Ψ of the marginal p(x) (Bishop PRML eq. 12.36)."""
        check_fitted(self, ("W_",))
        return self.W_ @ self.W_.T + np.diag(self.noise_variance())

    def score_samples(self, X) -> np.ndarray:
        """log p(x_n) for each row, exact: ``log N(x | μ, W Wᵀ + Ψ)`` by Woodbury (Bishop 12.35)."""
        X = self._validate_X(X)
        return gs.lowrank_logpdf(X, self.mu_, self.W_, self.noise_variance())

    def log_likelihood(self, X) -> float:
        """Mean log p(x) per sample in nats, exact."""
        return float(np.mean(self.score_samples(X)))

    def score(self, X, y=None) -> float:
        """Average log-likelihood of the samples, as scikit-learn's ``FactorAnalysis.score``."""
        return self.log_likelihood(X)

    # ---- the posterior ---------------------------------------------------------------------
    def posterior(self, X) -> GaussianQ:
        """The exact posterior p(z | x) = N(G Wᵀ Ψ⁻¹ (x − μ), G) (Bishop PRML eqs. 12.66–12.68)."""
        X = self._validate_X(X)
        B, G = e_step(self.W_, self.noise_variance())
        return GaussianQ((X - self.mu_) @ B.T, G)

    def transform(self, X) -> np.ndarray:
        """Posterior means E[z | x], shape (N, L)."""
        return self.posterior(X).mean

    def reconstruct(self, X) -> np.ndarray:
        """W E[z | x] + μ: the data mapped through the posterior mean and back."""
        return self.transform(X) @ self.W_.T + self.mu_

    def sample(self, n_samples: int = 1, random_state=None) -> np.ndarray:
        """Draw x = W z + μ + ε from the generative model, shape (n_samples, D)."""
        check_fitted(self, ("W_",))
        n_samples = check_int(n_samples, "n_samples")
        rng = check_random_state(random_state)
        D, n_comp = self.W_.shape
        Z = rng.standard_normal((n_samples, n_comp))
        E = rng.standard_normal((n_samples, D)) * np.sqrt(self.noise_variance())
        return Z @ self.W_.T + self.mu_ + E

    # ---- the ELBO ----------------------------------------------------------------------------
    def elbo(self, X, q: GaussianQ | None = None) -> ELBO:
        """The ELBO of X under a Gaussian q(z | x) (default: the exact posterior), mean per sample.

        With q_n = N(m_n, Σ_n) and residual r_n = x_n − μ − W m_n (Bishop PRML eqs. 9.71, 12.2.4):

        - ``E_q[log p(x|z)] = −½ [D log 2π + log|Ψ| + r_nᵀ Ψ⁻¹ r_n + tr(Wᵀ Ψ⁻¹ W Σ_n)]``
        - ``KL(q_n ‖ N(0, I)) = ½ [tr Σ_n + ‖m_n‖² − L − log|Σ_n|]``

        At the exact posterior the total equals :meth:`log_likelihood`; for any other q it is
        lower by KL(q ‖ p(z | x)).
        """
        X = self._validate_X(X)
        if q is None:
            q = self.posterior(X)
        D, n_comp = self.W_.shape
        if q.mean.shape != (X.shape[0], n_comp):
            raise ValueError(
                f"q has means of shape {q.mean.shape}, expected {(X.shape[0], n_comp)}"
            )
        psi = self.noise_variance()
        R = X - self.mu_ - q.mean @ self.W_.T
        WtPW = self.W_.T @ (self.W_ / psi[:, None])
        quad = np.mean(np.sum(R * R / psi, axis=1)) + np.sum(WtPW * q.mean_cov())
        ell = -0.5 * (D * gs.LOG_2PI + np.sum(np.log(psi)) + quad)
        return ELBO(ell, q.kl_to_standard())


def _sufficient_statistics(X=None, S=None, n_samples=None, mean=None):
    """Validate either data X or a covariance S (with n_samples, optional mean)."""
    if X is not None:
        X = check_array(X, "X", min_samples=2)
        mu, S = moments(X)
        return mu, S, X.shape[0]
    S = check_covariance(S, "S")
    n_samples = check_int(n_samples, "n_samples", minimum=2)
    if mean is None:
        mu = np.zeros(S.shape[0])
    else:
        mu = check_array(mean, "mean", ndim=1)
        if mu.shape[0] != S.shape[0]:
            raise ValueError(f"mean has {mu.shape[0]} entries, S is {S.shape[0]}x{S.shape[0]}")
    return mu, S, n_samples


# --------------------------------------------------------------------------------------------
# Factor analysis
# --------------------------------------------------------------------------------------------

class FactorAnalysis(LinearGaussianModel):
    """Maximum-likelihood factor analysis by EM on the sample covariance.

    Parameters
    ----------
    n_components : int
        Number of factors L, 1 ≤ L ≤ D.
    tol : float, default 1e-8
        Stop when one EM iteration raises the mean log-likelihood by less than
        ``tol * max(1, |L|)``. With the acceleration and the polish below, the uniquenesses
        reach the maximum-likelihood solution to about 1e-5 even in near-Heywood cases.
    max_iter : int, default 10000
        Cap on EM iterations (each is an E-step and an M-step); a ``ConvergenceWarning`` if hit.
    min_psi : float, default 1e-6
        Lower bound on each uniqueness, as a fraction of that feature's variance S_dd. A warning
        naming the feature is issued when a uniqueness ends at the bound (a Heywood case).
    noise : {"diagonal", "isotropic"}, default "diagonal"
        "isotropic" forces Ψ = σ² I, which makes this PPCA fitted by EM (Bishop eq. 12.57).
    accelerate : bool, default True
        SQUAREM extrapolation (Varadhan & Roland 2008, scheme S3) every third iteration,
        accepted only if it raises the exact log-likelihood, so the ELBO history stays monotone.
    polish : bool, default True
        After EM stops, finish with a quasi-Newton (L-BFGS-B) ascent of the profile likelihood
        in log ψ (Jöreskog 1967; see :func:`profile_polish`), kept only if it raises log p(x).
        EM's convergence is very slow along a uniqueness near zero (a near-Heywood case), where
        the likelihood is flat; the polish reaches the maximum there in a few dozen evaluations.
        The history then ends with one E-step at the polished θ.
    init : {"ppca", "random"}, default "ppca"
        Start from the closed-form PPCA solution (Tipping & Bishop 1999), or from random
        loadings drawn with ``random_state``.
    random_state : None, int or numpy.random.Generator
        Used by ``init="random"``.

    Attributes
    ----------
    W_ (D, L), psi_ (D,), mu_ (D,), history_ (ELBO after every E- and M-step, mean nats per
    sample), n_iter_, converged_, n_features_in_, n_samples_.
    """

    def __init__(self, n_components: int = 1, *, tol: float = 1e-8, max_iter: int = 10000,
                 min_psi: float = 1e-6, noise: str = "diagonal", accelerate: bool = True,
                 polish: bool = True, init: str = "ppca", random_state=None):
        self.n_components = n_components
        self.tol = tol
        self.max_iter = max_iter
        self.min_psi = min_psi
        self.noise = noise
        self.accelerate = accelerate
        self.polish = polish
        self.init = init
        self.random_state = random_state

    @property
    def _isotropic(self):
        return self.noise == "isotropic"

    def noise_variance(self) -> np.ndarray:
        check_fitted(self, ("psi_",))
        return self.psi_

    psi_ = None

    def fit(self, X, y=None) -> "FactorAnalysis":
        """Fit by EM to the rows of X (n_samples, n_features). Returns self."""
        mu, S, n = _sufficient_statistics(X=X)
        return self._fit_moments(mu, S, n)

    def fit_covariance(self, S, n_samples: int, mean=None) -> "FactorAnalysis":
        """Fit by EM to a covariance matrix S computed elsewhere (e.g. a correlation matrix).

        ``S`` should be the maximum-likelihood (1/N) covariance; ``n_samples`` is recorded and
        ``mean`` (default zeros) becomes ``mu_``. Returns self.
        """
        mu, S, n = _sufficient_statistics(S=S, n_samples=n_samples, mean=mean)
        return self._fit_moments(mu, S, n)

    # The ascent ---------------------------------------------------------------------------
    def _initial_parameters(self, S, n_comp, rng):
        D = S.shape[0]
        if self.init == "random":
            scale = np.sqrt(np.mean(np.diag(S)))
            return rng.standard_normal((D, n_comp)) * scale / np.sqrt(n_comp), np.diag(S).copy()
        if self.init != "ppca":
            raise ValueError(f"init must be 'ppca' or 'random', got {self.init!r}")
        lam, U = np.linalg.eigh(S)
        lam, U = lam[::-1], U[:, ::-1]
        sigma2 = max(lam[n_comp:].mean() if n_comp < D else lam[-1] / 2, 1e-3 * lam[0])
        W = U[:, :n_comp] * np.sqrt(np.maximum(lam[:n_comp] - sigma2, 1e-3 * lam[0]))
        # diag(S − W Wᵀ) is positive when σ² > 0, a valid starting Ψ (isotropic: σ²).
        psi = np.full(D, sigma2) if self._isotropic else np.diag(S) - np.sum(W * W, axis=1)
        return W, np.maximum(psi, 1e-3 * np.diag(S))

    def _fit_moments(self, mu, S, n_samples):
        D = S.shape[0]
        n_comp = check_n_components(self.n_components, D)
        tol = check_positive(self.tol, "tol")
        max_iter = check_int(self.max_iter, "max_iter")
        min_psi = check_positive(self.min_psi, "min_psi")
        if self.noise not in ("diagonal", "isotropic"):
            raise ValueError(f"noise must be 'diagonal' or 'isotropic', got {self.noise!r}")
        rng = check_random_state(self.random_state)
        constant = np.flatnonzero(np.diag(S) <= 1e-12 * max(np.max(np.diag(S)), 1e-300))
        if constant.size and not self._isotropic:
            raise ValueError(
                f"X has {constant.size} constant feature(s) (indices {constant[:10].tolist()}): "
                "their uniqueness would be 0 and the likelihood unbounded; drop them or "
                "dequantise the data (latentmodels.dequantize)"
            )
        floor = min_psi * (np.diag(S).mean() if self._isotropic else np.diag(S))

        W, psi = self._initial_parameters(S, n_comp, rng)
        result, W, psi = run_em(S, W, psi, noise="isotropic" if self._isotropic else "diagonal",
                                psi_floor=floor, tol=tol, max_iter=max_iter,
                                accelerate=self.accelerate, model_name=type(self).__name__)
        # log p(x | θ) is the ELBO right after an E-step
        loglik = elbo_from_moments(S, W, psi, *e_step(W, psi)).total
        if self.polish and not self._isotropic:
            W_pol, psi_pol = profile_polish(S, psi, n_comp, floor)
            loglik_pol = elbo_from_moments(S, W_pol, psi_pol, *e_step(W_pol, psi_pol)).total
            if loglik_pol > loglik:
                W, psi, loglik = W_pol, psi_pol, loglik_pol
        # End on an E-step so that the last ELBO is the log-likelihood of the final θ.
        self.W_, self.psi_, self.mu_ = W, psi, mu
        self.history_ = list(result.history) + [loglik]
        self.n_iter_ = result.n_iter
        self.converged_ = result.converged
        self.n_features_in_ = D
        self.n_samples_ = n_samples
        at_floor = np.flatnonzero(self.psi_ <= floor * (1 + 1e-9))
        for d in at_floor[:10] if not self._isotropic else []:
            warn(
                f"uniqueness psi_[{d}] of feature {d} reached its lower bound min_psi*S[{d},{d}] = "
                f"{np.broadcast_to(floor, (D,))[d]:.3g}: a Heywood case (that feature is "
                "explained entirely by the factors); consider fewer components",
                ConvergenceWarning,
            )
        return self


def profile_polish(S: np.ndarray, psi: np.ndarray, n_components: int,
                   floor: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """Maximise the FA log-likelihood over Ψ with W profiled out (Jöreskog 1967).

    For fixed Ψ, let ``Ψ^{-1/2} S Ψ^{-1/2} = U diag(λ) Uᵀ`` (λ descending). The W maximising the
    likelihood is ``W = Ψ^{1/2} U_L diag(max(λ_j − 1, 0))^{1/2}`` (Tipping & Bishop 1999 applied
    to the whitened data), and the mean log-likelihood becomes

        ℓ(Ψ) = −½ [D log 2π + Σ_d log ψ_d + Σ_{j≤L, λ_j>1} (log λ_j + 1) + Σ_{other j} λ_j].

    Its gradient in log ψ_d is ``½ Σ_{other j} U_dj² (λ_j − 1)`` (the eigenvectors not used
    by W), from ``∂ℓ/∂Ψ = −½ diag(C⁻¹ − C⁻¹ S C⁻¹)``. L-BFGS-B ascends ℓ in log ψ with
    ψ ≥ ``floor``, starting at ``psi``. Returns ``(W, psi)``.
    """
    from scipy import optimize

    D = S.shape[0]
    floor = np.broadcast_to(np.asarray(floor, dtype=float), (D,))

    def eig(log_psi):
        s = np.exp(-0.5 * log_psi)
        lam, U = np.linalg.eigh(S * s[:, None] * s[None, :])
        return lam[::-1], U[:, ::-1]

    def negative(log_psi):
        lam, U = eig(log_psi)
        used = np.zeros(D, dtype=bool)
        used[:n_components] = lam[:n_components] > 1.0
        value = np.sum(log_psi) + np.sum(np.log(lam[used]) + 1.0) + np.sum(lam[~used])
        grad = 0.5 * (U[:, ~used] ** 2) @ (1.0 - lam[~used])
        return 0.5 * value, grad

    x0 = np.log(np.maximum(psi, floor))
    bounds = list(zip(np.log(np.maximum(floor, np.finfo(float).tiny)), [None] * D))
    res = optimize.minimize(negative, x0, jac=True, method="L-BFGS-B", bounds=bounds,
                            options={"ftol": 1e-15, "gtol": 1e-11, "maxiter": 1000})
    psi = np.exp(res.x)
    lam, U = eig(res.x)
    W = np.sqrt(psi)[:, None] * U[:, :n_components] * np.sqrt(
        np.maximum(lam[:n_components] - 1.0, 0.0))
    return W, psi


class _Squarem:
    """Monotone SQUAREM for the EM map θ → M(E(θ)) (Varadhan & Roland 2008, scheme S3).

    From three consecutive EM iterates θ0, θ1, θ2 it proposes
    ``θ' = θ0 − 2α r + α² v`` with ``r = θ1 − θ0``, ``v = θ2 − 2θ1 + θ0``,
    ``α = −‖r‖/‖v‖`` (clamped to [−step_max, −1]), in (W, log ψ) coordinates. The jump is taken
    only when it raises the exact log-likelihood, so EM's monotonicity is kept.
    """

    def __init__(self, S, floor):
        self.S = S
        self.floor = floor
        self.buffer: list[np.ndarray] = []
        self.step_max = 1.0
        self.shape = None

    def _pack(self, state):
        self.shape = state["W"].shape
        return np.concatenate([state["W"].ravel(), np.log(state["psi"])])

    def _unpack(self, theta):
        k = self.shape[0] * self.shape[1]
        return theta[:k].reshape(self.shape), np.exp(theta[k:])

    def _loglik(self, W, psi):
        return elbo_from_moments(self.S, W, psi, *e_step(W, psi)).total

    def maybe_jump(self, state):
        self.buffer.append(self._pack(state))
        if len(self.buffer) < 3:
            return
        t0, t1, t2 = self.buffer
        self.buffer = []
        r, v = t1 - t0, t2 - 2 * t1 + t0
        nr, nv = np.linalg.norm(r), np.linalg.norm(v)
        if nv == 0 or nr == 0:
            return
        alpha = max(-nr / nv, -self.step_max)
        if alpha > -1.0:
            return
        W, psi = self._unpack(t0 - 2 * alpha * r + alpha * alpha * v)
        psi = np.maximum(psi, self.floor)
        try:
            gain = self._loglik(W, psi) - self._loglik(state["W"], state["psi"])
        except (ValueError, FloatingPointError):
            gain = -np.inf
        if np.isfinite(gain) and gain > 0:
            state["W"], state["psi"] = W, psi
            if alpha == -self.step_max:
                self.step_max *= 4.0
        else:
            self.step_max = max(1.0, self.step_max / 4.0)
