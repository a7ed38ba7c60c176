"""Variational Bayesian PCA with automatic relevance determination (Bishop 1999; PRML 12.2.3).

Model: x_n = W z_n + μ + ε_n, z_n ~ N(0, I_L), ε_n ~ N(0, τ⁻¹ I_D), with priors
p(W | α) = ∏_i N(w_i | 0, α_i⁻¹ I_D) on the columns w_i (ARD), p(α_i) = Gam(a_α, b_α),
p(μ) = N(m_0, β⁻¹ I), p(τ) = Gam(a_τ, b_τ). The posterior is approximated by
q(Z) q(W) q(μ) q(α) q(τ), each factor updated in turn on the CAVI loop of
:mod:`latentmodels.elbo` (Bishop 1999, section 3; Ilin & Raiko 2010, section 4).

**Priors in the units of the data.** Bishop (1999) uses broad priors a = b = 10⁻³ and Ilin &
Raiko (2010) note that such hyper-parameters are only "non-informative" relative to the scale of
the data: b_τ has units of x², β of 1/x², b_α of W² = x². Here every prior is stated for the
standardised data x̃ = (x − x̄)/s with s² = tr(S)/D, the average variance of the features:
p(μ̃) = N(0, β⁻¹ I) (i.e. p(μ) = N(x̄, s² β⁻¹ I)), p(τ̃) = Gam(a_τ, b_τ) on the precision of the
noise in units of s², p(α̃_i) = Gam(a_α, b_α) in units of 1/s². The fit runs on x̃ and maps back
(W = s W̃, μ = x̄ + s μ̃, σ² = s² σ̃²); the ELBO's data term shifts by −D log s per sample (the
Jacobian of x → x̃) and the KL terms, being invariant to reparametrisation, do not change. The
fit of a·X + b is therefore the fit of X mapped by the same affine map, for any a ≠ 0 and b:
no shrinkage of a far-off mean towards 0, no noise floor set by a unit-scale b_τ, and no
overflow at 1e150·X.

CAVI updates (⟨·⟩ = expectation under q), on the standardised data:

- q(z_n) = N(m_z_n, Σ_z):  ``Σ_z = (I + ⟨τ⟩⟨WᵀW⟩)⁻¹``,  ``m_z_n = ⟨τ⟩ Σ_z ⟨W⟩ᵀ (x_n − ⟨μ⟩)``
- q(μ) = N(m_μ, Σ_μ I):    ``Σ_μ = (β + N⟨τ⟩)⁻¹``,  ``m_μ = ⟨τ⟩ Σ_μ Σ_n (x_n − ⟨W⟩ m_z_n)``
- q(W): rows w̃_d ~ N(m_d, Σ_W),
  ``Σ_W = (diag⟨α⟩ + ⟨τ⟩ Σ_n ⟨z_n z_nᵀ⟩)⁻¹``,  ``m_d = ⟨τ⟩ Σ_W Σ_n m_z_n (x_nd − ⟨μ_d⟩)``
- q(α_i) = Gam(a_α + D/2, b_α + ⟨‖w_i‖²⟩/2)
- q(τ) = Gam(a_τ + ND/2, b_τ + ½ Σ_n ⟨‖x_n − W z_n − μ‖²⟩)

with ``⟨WᵀW⟩ = ⟨W⟩ᵀ⟨W⟩ + D Σ_W`` and ``⟨‖w_i‖²⟩ = ‖⟨w_i⟩‖² + D (Σ_W)_ii``.
"""

from __future__ import annotations

import numpy as np
from scipy import special

from . import gaussian as gs
from .elbo import ELBO, coordinate_ascent, float_error
from .gaussian import GaussianQ
from .linear_gaussian import LinearGaussianModel
from .validation import (
    check_array,
    check_fitted,
    check_int,
    check_magnitude,
    check_n_components,
    check_positive,
    check_random_state,
)

__all__ = ["VBPCA", "kl_gamma", "gamma_entropy"]


def kl_gamma(a_q, b_q, a_p, b_p):
    """``KL(Gam(a_q, b_q) ‖ Gam(a_p, b_p))``, shape–rate parametrisation.

    ``(a_q − a_p) ψ(a_q) − lnΓ(a_q) + lnΓ(a_p) + a_p (ln b_q − ln b_p) + a_q (b_p − b_q)/b_q``
    (e.g. Penny 2001, "KL-divergences of Normal, Gamma, Dirichlet and Wishart densities").
    """
    return ((a_q - a_p) * special.digamma(a_q) - special.gammaln(a_q) + special.gammaln(a_p)
            + a_p * (np.log(b_q) - np.log(b_p)) + a_q * (b_p - b_q) / b_q)


def gamma_entropy(a, b):
    """Entropy of Gam(a, b) (rate b): ``a − ln b + lnΓ(a) + (1 − a) ψ(a)`` (Bishop eq. B.31)."""
    return a - np.log(b) + special.gammaln(a) + (1.0 - a) * special.digamma(a)


class VBPCA(LinearGaussianModel):
    """Variational Bayesian PCA with ARD; see the module docstring for the model and the priors.

    Parameters: ``n_components`` (the maximum L; ARD chooses how many are used), ``tol``,
    ``max_iter``, ``random_state`` (initial W), hyper-parameters ``a_alpha = b_alpha = a_tau =
    b_tau = beta = 1e-3`` (broad, as Bishop 1999), stated in the units of the standardised data.

    Attributes: ``W_`` (posterior mean, D×L), ``mu_``, ``alpha_`` (posterior-mean ARD precisions,
    in units of 1/x²), ``sigma2_`` = 1/⟨τ⟩, ``scale_`` (s), ``n_effective_``, ``history_``,
    ``history_steps_``, ``n_iter_``, ``converged_``.
    """

    _isotropic = True
    sigma2_ = None

    def __init__(self, n_components: int = 2, *, tol: float = 1e-9, max_iter: int = 5000,
                 a_alpha: float = 1e-3, b_alpha: float = 1e-3, a_tau: float = 1e-3,
                 b_tau: float = 1e-3, beta: float = 1e-3, random_state=None):
        self.n_components = n_components
        self.tol = tol
        self.max_iter = max_iter
        self.a_alpha = a_alpha
        self.b_alpha = b_alpha
        self.a_tau = a_tau
        self.b_tau = b_tau
        self.beta = beta
        self.random_state = random_state

    # ---- the factor updates (Bishop 1999, section 3), on standardised data ----------------
    def _E(self):
        s = self._s
        D = s["MW"].shape[0]
        Etau = s["a_tau"] / s["b_tau"]
        EWtW = s["MW"].T @ s["MW"] + D * s["SW"]
        return Etau, EWtW

    def _q_z(self, Xs):
        """q(z_n) for standardised rows with the parameter factors fixed: one Cholesky solve."""
        s = self._s
        Etau, EWtW = self._E()
        L = EWtW.shape[0]
        Sz = gs.chol_solve(gs.cholesky(np.eye(L) + Etau * EWtW, "q(Z) precision"), np.eye(L))
        return Etau * (Xs - s["m_mu"]) @ s["MW"] @ Sz, (Sz + Sz.T) / 2.0

    def _update_Z(self):
        self._s["Mz"], self._s["Sz"] = self._q_z(self._X)

    def _update_mu(self):
        s = self._s
        N = self._X.shape[0]
        Etau, _ = self._E()
        s["S_mu"] = 1.0 / (self.beta + N * Etau)
        s["m_mu"] = Etau * s["S_mu"] * np.sum(self._X - s["Mz"] @ s["MW"].T, axis=0)

    def _update_W(self):
        s = self._s
        N = self._X.shape[0]
        Etau, _ = self._E()
        Ezz = N * s["Sz"] + s["Mz"].T @ s["Mz"]
        Ealpha = s["a_alpha"] / s["b_alpha"]
        LW = gs.cholesky(np.diag(Ealpha) + Etau * Ezz, "q(W) precision")
        s["SW"] = gs.chol_solve(LW, np.eye(Ezz.shape[0]))
        s["MW"] = Etau * gs.chol_solve(LW, s["Mz"].T @ (self._X - s["m_mu"])).T

    def _update_alpha(self):
        s = self._s
        D = s["MW"].shape[0]
        s["a_alpha"] = np.full(s["MW"].shape[1], self.a_alpha + D / 2.0)
        s["b_alpha"] = self.b_alpha + 0.5 * (np.sum(s["MW"] ** 2, axis=0) + D * np.diag(s["SW"]))

    def _sq_error_terms(self, X, Mz, mean_Sz):
        """The terms of Σ_n ⟨‖x_n − W z_n − μ‖²⟩ under q (Bishop 1999, the q(τ) update)."""
        s = self._s
        N, D = X.shape
        _, EWtW = self._E()
        Ezz = N * mean_Sz + Mz.T @ Mz
        WMz = Mz @ s["MW"].T
        return (np.sum(X * X), N * (s["m_mu"] @ s["m_mu"] + D * s["S_mu"]), np.sum(EWtW * Ezz),
                2 * np.sum(WMz @ s["m_mu"]), -2 * np.sum(X * WMz), -2 * np.sum(X @ s["m_mu"]))

    def _update_tau(self):
        s = self._s
        N, D = self._X.shape
        s["a_tau"] = self.a_tau + N * D / 2.0
        s["b_tau"] = self.b_tau + 0.5 * sum(self._sq_error_terms(self._X, s["Mz"], s["Sz"]))

    # ---- the ELBO ------------------------------------------------------------------------------
    def _kl_params_terms(self):
        """⟨KL(q(W)‖p(W|α))⟩, KL(q(α)‖p(α)), KL(q(μ)‖p(μ)), KL(q(τ)‖p(τ)), in nats (not per N)."""
        s = self._s
        D, L = s["MW"].shape
        Ealpha = s["a_alpha"] / s["b_alpha"]
        Elogalpha = special.digamma(s["a_alpha"]) - np.log(s["b_alpha"])
        Ew2 = np.sum(s["MW"] ** 2, axis=0) + D * np.diag(s["SW"])
        e_log_pW = np.sum(0.5 * D * (Elogalpha - gs.LOG_2PI) - 0.5 * Ealpha * Ew2)
        h_W = 0.5 * D * (L * (1 + gs.LOG_2PI) + gs.logdet(s["SW"]))
        kl_W = -e_log_pW - h_W
        kl_alpha = np.sum(kl_gamma(s["a_alpha"], s["b_alpha"], self.a_alpha, self.b_alpha))
        kl_mu = gs.kl_diag(s["m_mu"], np.full(D, s["S_mu"]), 0.0, np.full(D, 1.0 / self.beta))
        kl_tau = kl_gamma(s["a_tau"], s["b_tau"], self.a_tau, self.b_tau)
        return float(kl_W), float(kl_alpha), float(kl_mu), float(kl_tau)

    def _elbo_on(self, Xs, q: GaussianQ, *, with_error: bool = False):
        """The ELBO per sample on standardised rows Xs for a Gaussian q(Z) (shared or per-row Σ_n).

        ``E[log p(X|Z,W,μ,τ)] = ½ND(⟨log τ⟩ − log 2π) − ½⟨τ⟩ Σ_n ⟨‖x_n − W z_n − μ‖²⟩`` (uses only
        the row-average of Σ_n) and ``KL(q(Z)‖p(Z)) = N · mean_n KL(q(z_n)‖N(0, I))``
        (:meth:`GaussianQ.kl_to_standard`: the mean of log|Σ_n|, not log|mean Σ_n|).
        """
        s = self._s
        N, D = Xs.shape
        Etau = s["a_tau"] / s["b_tau"]
        Elogtau = special.digamma(s["a_tau"]) - np.log(s["b_tau"])
        sq = self._sq_error_terms(Xs, q.mean, q.mean_cov())
        ell = 0.5 * N * D * (Elogtau - gs.LOG_2PI) - 0.5 * Etau * sum(sq)
        kl_z = N * q.kl_to_standard()
        klp = self._kl_params_terms()
        e = ELBO(ell / N, kl_z / N, sum(klp) / N)
        if not with_error:
            return e
        err = float_error(0.5 * N * D * Elogtau, 0.5 * N * D * gs.LOG_2PI, 0.5 * Etau * np.abs(sq),
                          kl_z, klp, n_ops=N * D) / N
        return e, err

    # ---- fitting -----------------------------------------------------------------------------------
    def _standardise(self, X):
        return (X - self._center) / self.scale_

    def fit(self, X, y=None) -> "VBPCA":
        """Run CAVI over q(Z), q(μ), q(W), q(α), q(τ) until the ELBO settles. Returns self."""
        from .missing import has_missing

        if has_missing(X):
            raise ValueError("X has missing values (NaN): VBPCA needs complete rows; fit "
                             "FactorAnalysis or PPCA, which handle NaN, and use their impute(X)")
        X = check_magnitude(check_array(X, "X", min_samples=2), "X")
        N, D = X.shape
        L = check_n_components(self.n_components, D)
        for name in ("a_alpha", "b_alpha", "a_tau", "b_tau", "beta"):
            check_positive(getattr(self, name), name)
        tol = check_positive(self.tol, "tol")
        max_iter = check_int(self.max_iter, "max_iter")
        rng = check_random_state(self.random_state)
        center = X.mean(axis=0)
        # s² = mean feature variance, computed without overflow for any representable scale
        amax = float(np.max(np.abs(X - center)))
        if amax == 0.0:
            raise ValueError("X is constant: every feature has zero variance, nothing to fit")
        scale = amax * float(np.sqrt(np.mean(((X - center) / amax) ** 2)))
        with np.errstate(over="ignore", under="ignore"):
            var = np.float64(scale) ** 2
        if not (np.isfinite(var) and var > 0):
            raise ValueError(
                f"X has a mean feature variance of {scale:.3g}² which float64 cannot hold (the "
                "noise variance sigma2_ and the ARD precisions would over- or underflow); rescale X"
            )
        self._center, self.scale_ = center, scale
        Xs = self._standardise(X)
        self._X = Xs
        # initial q: W from the leading principal directions plus noise, τ from the residual
        _, sv, Vt = np.linalg.svd(Xs, full_matrices=False)
        MW = (Vt[:L].T * sv[:L] / np.sqrt(N)) + 0.1 * rng.standard_normal((D, L))
        self._s = {
            "MW": MW, "SW": np.eye(L) * 1e-3, "m_mu": np.zeros(D), "S_mu": 1.0 / N,
            "a_alpha": np.full(L, self.a_alpha + D / 2.0),
            "b_alpha": np.full(L, self.b_alpha) + 0.5 * np.sum(MW ** 2, axis=0),
            "a_tau": self.a_tau + N * D / 2.0, "b_tau": self.b_tau + N * D / 2.0,
        }
        blocks = [("q(Z)", self._update_Z), ("q(mu)", self._update_mu), ("q(W)", self._update_W),
                  ("q(alpha)", self._update_alpha), ("q(tau)", self._update_tau)]
        cache = {}

        def objective():
            e, cache["err"] = self._elbo_on(Xs, GaussianQ(self._s["Mz"], self._s["Sz"]),
                                            with_error=True)
            return e.total

        prev = {"W": None}

        def param_change():
            W = self._s["MW"]
            moved = np.inf if prev["W"] is None else float(
                np.linalg.norm(W - prev["W"]) / max(np.linalg.norm(W), 1e-300))
            prev["W"] = W.copy()
            return moved

        try:
            result = coordinate_ascent(blocks, objective, tol=tol, max_iter=max_iter,
                                       model_name="VBPCA", error=lambda: cache["err"],
                                       param_change=param_change, param_tol=tol ** (1.0 / 3.0))
        finally:
            del self._X
        s = self._s
        self.W_ = s["MW"] * scale
        self.mu_ = center + scale * s["m_mu"]
        self.alpha_ = s["a_alpha"] / s["b_alpha"] / var
        self.sigma2_ = float(s["b_tau"] / s["a_tau"] * var)
        norms = np.sum(s["MW"] ** 2, axis=0)
        self.n_effective_ = int(np.sum(norms > 1e-3 * norms.max()))
        jac = -D * np.log(scale)
        self.history_ = [h + jac for h in result.history]
        self.history_steps_ = list(result.steps)
        self.n_iter_ = result.n_iter
        self.converged_ = result.converged
        self.n_features_in_, self.n_samples_ = D, N
        return self

    def fit_from_statistics(self, statistics=None):
        """Not available: VB-PCA's q(Z) is per row, so it needs the rows themselves."""
        raise NotImplementedError("VBPCA fits rows (its q(Z) is per row); call fit(X)")

    def partial_fit(self, X_chunk, y=None, *, refit: bool = True):
        """Not available: VB-PCA's q(Z) is per row, so it needs the rows themselves."""
        raise NotImplementedError("VBPCA fits rows (its q(Z) is per row); call fit(X)")

    # ---- the shared interface -------------------------------------------------------------------
    def noise_variance(self) -> np.ndarray:
        """σ² = 1/⟨τ⟩ repeated D times (a new array)."""
        check_fitted(self, ("W_", "sigma2_"))
        return np.full(self.W_.shape[0], self.sigma2_)

    def posterior(self, X) -> GaussianQ:
        """q(z_n) for new rows with the parameter factors held at their fitted values."""
        X = self._validate_X(X)
        return GaussianQ(*self._q_z(self._standardise(X)))

    def score_samples(self, X) -> np.ndarray:
        """Plug-in log N(x | ⟨μ⟩, ⟨W⟩⟨W⟩ᵀ + σ²I), σ² = 1/⟨τ⟩, computed on the standardised data
        (minus D log s), so that it does not overflow at any scale. Not the Bayesian marginal."""
        X = self._validate_X(X)
        s = self._s
        Xs = self._standardise(X)
        psi = np.full(X.shape[1], float(s["b_tau"] / s["a_tau"]))
        return gs.lowrank_logpdf(Xs, s["m_mu"], s["MW"], psi) - X.shape[1] * np.log(self.scale_)

    def elbo(self, X, q: GaussianQ | None = None, include_params: bool = True) -> ELBO:
        """The ELBO of the Bayesian model on X, per sample, with the fitted q(W, μ, α, τ).

        q(Z) is the optimal one for X (or ``q``, shared or per-row covariances). On the training
        data this is the bound that ``fit`` maximised; on other data it is still a lower bound on
        that data's log marginal likelihood, since the parameter factors are one admissible
        choice of q. ``kl_params`` is the parameters' KL divided by ``len(X)``.

        ``include_params=False`` drops that KL: what remains, E_q(θ)[E_q(z)[log p(x|z,θ)] −
        KL(q(z)‖p(z))], lower-bounds E_q(θ)[log p(x | θ)] and, by Jensen, the log predictive
        density log ∫ p(x | θ) q(θ) dθ of new data — the comparable number for held-out rows.
        """
        X = self._validate_X(X)
        q = self.posterior(X) if q is None else q
        if not isinstance(q, GaussianQ):
            raise TypeError(f"q must be a latentmodels.gaussian.GaussianQ, got {type(q).__name__}")
        if q.mean.shape != (X.shape[0], self.W_.shape[1]):
            raise ValueError(f"q has means of shape {q.mean.shape}, expected "
                             f"{(X.shape[0], self.W_.shape[1])}")
        e = self._elbo_on(self._standardise(X), q)
        ell = e.expected_log_lik - X.shape[1] * np.log(self.scale_)
        return ELBO(ell, e.kl_latent, e.kl_params if include_params else 0.0)

    def n_parameters(self) -> int:
        """Effective parameters of the plug-in model: the switched-on columns only."""
        check_fitted(self, ("W_", "n_effective_"))
        D = self.W_.shape[0]
        k = self.n_effective_
        return D * k - k * (k - 1) // 2 + D + 1
