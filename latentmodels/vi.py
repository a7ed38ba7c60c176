"""Mean-field variational inference: coordinate-ascent VI (CAVI) on the same loop as EM.

Variational inference drops the line between latent variables and parameters: both get a
distribution, and q is assumed to factorise, q = ∏_j q_j. The optimal factor, holding the others
fixed, is (Bishop PRML eq. 10.9)

    log q_j*(θ_j) = E_{i≠j}[log p(x, θ)] + const,

and updating one factor at a time can only raise the ELBO — exactly as the E- and M-steps of EM
do. Every model here hands its factor updates to :func:`latentmodels.elbo.coordinate_ascent`,
the loop EM uses, which records the ELBO after each factor and raises if one ever lowers it.

- :class:`NormalGammaVI`: the univariate Gaussian with unknown mean and precision (Bishop 10.1.3).
- :class:`MeanFieldGaussian`: a factorised approximation of a correlated Gaussian (Bishop 10.1.2).
- :func:`mean_field_q`: a factorised q(z|x) for a fitted FA/PPCA model — the bridge from EM to VI.
- :class:`VBPCA`: variational Bayesian PCA with automatic relevance determination (Bishop 1999).
"""

from __future__ import annotations

import numpy as np
from scipy import special

from . import gaussian as gs
from .elbo import ELBO, coordinate_ascent
from .gaussian import GaussianQ
from .validation import (
    check_array,
    check_fitted,
    check_int,
    check_n_components,
    check_n_features,
    check_positive,
    check_random_state,
)

__all__ = ["NormalGammaVI", "MeanFieldGaussian", "mean_field_q", "VBPCA", "kl_gamma"]


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


# --------------------------------------------------------------------------------------------
# Bishop 10.1.3: the univariate Gaussian
# --------------------------------------------------------------------------------------------

class NormalGammaVI:
    """CAVI for x_n ~ N(μ, τ⁻¹) with prior N(μ | μ0, (λ0 τ)⁻¹) Gam(τ | a0, b0) (Bishop 10.1.3).

    The factorised q(μ) q(τ) = N(μ | μ_N, λ_N⁻¹) Gam(τ | a_N, b_N) is updated in turn
    (Bishop PRML eqs. 10.26–10.30):

    - q(μ):  ``μ_N = (λ0 μ0 + N x̄) / (λ0 + N)``,  ``λ_N = (λ0 + N) E[τ]``
    - q(τ):  ``a_N = a0 + (N + 1)/2``,
      ``b_N = b0 + ½ E_μ[Σ_n (x_n − μ)² + λ0 (μ − μ0)²]``

    starting from q(τ) at the prior. The exact posterior is the conjugate Normal-Gamma
    (:meth:`exact_posterior`) and the evidence has a closed form (:meth:`log_evidence`), so the gap
    log p(x) − ELBO = KL(q ‖ p(μ, τ | x)) can be read off directly.

    Attributes: ``mu_N_``, ``lambda_N_``, ``a_N_``, ``b_N_``, ``history_`` (ELBO per sample after
    each factor update), ``n_iter_``.
    """

    def __init__(self, mu0: float = 0.0, lambda0: float = 1.0, a0: float = 1.0, b0: float = 1.0,
                 *, tol: float = 1e-12, max_iter: int = 1000):
        self.mu0, self.lambda0, self.a0, self.b0 = mu0, lambda0, a0, b0
        self.tol, self.max_iter = tol, max_iter

    mu_N_ = None

    def _check_x(self, x):
        return check_array(x, "x", ndim=1, min_samples=1)

    def _check_priors(self):
        if not np.isfinite(self.mu0):
            raise ValueError(f"mu0 must be finite, got {self.mu0}")
        for name in ("lambda0", "a0", "b0"):
            check_positive(getattr(self, name), name)

    def fit(self, x) -> "NormalGammaVI":
        """Run CAVI on the 1-D data ``x``. Returns self."""
        x = self._check_x(x)
        self._check_priors()
        self._x_stats = (x.size, float(np.sum(x)), float(np.sum(x * x)))
        self.a_N_, self.b_N_ = float(self.a0), float(self.b0)

        def update_mu():   # Bishop 10.26–10.27
            N, sx, _ = self._x_stats
            self.mu_N_ = (self.lambda0 * self.mu0 + sx) / (self.lambda0 + N)
            self.lambda_N_ = (self.lambda0 + N) * self.a_N_ / self.b_N_

        def update_tau():  # Bishop 10.29–10.30
            N, sx, sxx = self._x_stats
            Emu, Emu2 = self.mu_N_, self.mu_N_ ** 2 + 1.0 / self.lambda_N_
            self.a_N_ = self.a0 + (N + 1) / 2.0
            self.b_N_ = self.b0 + 0.5 * (sxx - 2 * Emu * sx + N * Emu2
                                         + self.lambda0 * (Emu2 - 2 * self.mu0 * Emu + self.mu0 ** 2))

        result = coordinate_ascent([("q(mu)", update_mu), ("q(tau)", update_tau)],
                                   lambda: self._elbo_terms().total, tol=check_positive(self.tol, "tol"),
                                   max_iter=check_int(self.max_iter, "max_iter"),
                                   model_name="NormalGammaVI")
        self.history_, self.n_iter_ = result.history, result.n_iter
        return self

    def _elbo_terms(self) -> ELBO:
        """Every term of the ELBO (Bishop 10.1.3; Gamma entropy B.31), divided by N."""
        N, sx, sxx = self._x_stats
        Etau = self.a_N_ / self.b_N_
        Elogtau = special.digamma(self.a_N_) - np.log(self.b_N_)
        Emu, Emu2 = self.mu_N_, self.mu_N_ ** 2 + 1.0 / self.lambda_N_
        sq_data = sxx - 2 * Emu * sx + N * Emu2                   # E Σ (x_n − μ)²
        sq_prior = Emu2 - 2 * self.mu0 * Emu + self.mu0 ** 2      # E (μ − μ0)²
        log_lik = 0.5 * N * (Elogtau - gs.LOG_2PI) - 0.5 * Etau * sq_data
        log_p_mu = 0.5 * (np.log(self.lambda0) + Elogtau - gs.LOG_2PI) - 0.5 * self.lambda0 * Etau * sq_prior
        log_p_tau = (self.a0 * np.log(self.b0) - special.gammaln(self.a0)
                     + (self.a0 - 1) * Elogtau - self.b0 * Etau)
        entropy = 0.5 * (1 + gs.LOG_2PI - np.log(self.lambda_N_)) + gamma_entropy(self.a_N_, self.b_N_)
        kl_params = -(log_p_mu + log_p_tau + entropy)
        return ELBO(log_lik / N, 0.0, kl_params / N)

    def elbo(self, x=None) -> ELBO:
        """The ELBO terms per sample for the fitted q (on the data it was fitted to, or on ``x``)."""
        check_fitted(self, ("mu_N_",))
        if x is not None:
            x = self._check_x(x)
            saved = self._x_stats
            self._x_stats = (x.size, float(np.sum(x)), float(np.sum(x * x)))
            try:
                return self._elbo_terms()
            finally:
                self._x_stats = saved
        return self._elbo_terms()

    def exact_posterior(self) -> dict:
        """The conjugate posterior NormalGamma(μ | m, (λ τ)⁻¹) Gam(τ | a, b) (Bishop ex. 2.44)."""
        check_fitted(self, ("mu_N_",))
        N, sx, sxx = self._x_stats
        xbar = sx / N
        lam = self.lambda0 + N
        return {
            "mu": (self.lambda0 * self.mu0 + sx) / lam,
            "lambda": lam,
            "a": self.a0 + N / 2.0,
            "b": (self.b0 + 0.5 * (sxx - N * xbar ** 2)
                  + 0.5 * self.lambda0 * N * (xbar - self.mu0) ** 2 / lam),
        }

    def log_evidence(self, x=None) -> float:
        """Exact log p(x) per sample: the ratio of Normal-Gamma normalisers, prior over posterior
        (Murphy 2007, "Conjugate Bayesian analysis of the Gaussian distribution").

        ``log p(x) = lnΓ(a_N) − lnΓ(a0) + a0 ln b0 − a_N ln b_N + ½ ln(λ0/λ_N) − (N/2) ln 2π``
        with (a_N, b_N, λ_N) of the exact posterior.
        """
        if x is not None:
            other = NormalGammaVI(self.mu0, self.lambda0, self.a0, self.b0)
            other._x_stats = (len(self._check_x(x)), float(np.sum(x)), float(np.sum(np.square(x))))
            other.mu_N_ = 0.0
            return other.log_evidence()
        post = self.exact_posterior()
        N = self._x_stats[0]
        total = (special.gammaln(post["a"]) - special.gammaln(self.a0) + self.a0 * np.log(self.b0)
                 - post["a"] * np.log(post["b"]) + 0.5 * np.log(self.lambda0 / post["lambda"])
                 - 0.5 * N * gs.LOG_2PI)
        return float(total / N)


# --------------------------------------------------------------------------------------------
# Bishop 10.1.2: factorised approximation of a correlated Gaussian
# --------------------------------------------------------------------------------------------

class MeanFieldGaussian:
    """Approximate p(z) = N(z | μ, Λ⁻¹) by q(z) = ∏_j N(z_j | m_j, s_j) — both ways round.

    CAVI minimises KL(q ‖ p) one coordinate at a time (Bishop PRML eqs. 10.12–10.15):

        s_j = 1/Λ_jj,      m_j = μ_j − Λ_jj⁻¹ Σ_{k≠j} Λ_jk (m_k − μ_k)

    converging to m = μ with variances 1/Λ_jj, which are smaller than the true marginal variances
    (Λ⁻¹)_jj: mean field under-estimates variance. Minimising the reverse KL(p ‖ q) instead
    matches moments: m = μ, s_j = (Λ⁻¹)_jj (Bishop Fig. 10.2), too broad where p is correlated.

    Since p is normalised (log Z = 0), the ELBO is −KL(q ‖ p); ``history_`` records it after each
    coordinate update.

    Attributes: ``mean_``, ``var_`` (CAVI), ``reverse_mean_``, ``reverse_var_`` (moment matching),
    ``kl_qp_`` = KL(q ‖ p) and ``kl_pq_`` = KL(p ‖ q) for the CAVI solution,
    ``reverse_kl_qp_`` and ``reverse_kl_pq_`` for the moment-matched one.
    """

    def __init__(self, mean, precision, *, tol: float = 1e-12, max_iter: int = 1000,
                 random_state=None):
        self.mean = mean
        self.precision = precision
        self.tol, self.max_iter, self.random_state = tol, max_iter, random_state

    mean_ = None

    def fit(self, init=None) -> "MeanFieldGaussian":
        """Run CAVI from ``init`` (default: random means). Returns self."""
        mu = check_array(self.mean, "mean", ndim=1)
        Lam = check_array(self.precision, "precision")
        k = mu.size
        if Lam.shape != (k, k):
            raise ValueError(f"precision must be {k}x{k} to match mean, got shape {Lam.shape}")
        cov = gs.chol_solve(gs.cholesky(Lam, "precision"), np.eye(k))
        rng = check_random_state(self.random_state)
        m = (mu + 3.0 * rng.standard_normal(k) * np.sqrt(np.diag(cov)) if init is None
             else check_array(init, "init", ndim=1).copy())
        s = 1.0 / np.diag(Lam)
        target = (mu, cov)

        def block(j):
            def update():  # Bishop 10.13
                m[j] = mu[j] - (Lam[j] @ (m - mu) - Lam[j, j] * (m[j] - mu[j])) / Lam[j, j]
            return (f"q(z{j})", update)

        def objective():
            return -gs.kl(m, np.diag(s), *target)

        result = coordinate_ascent([block(j) for j in range(k)], objective,
                                   tol=check_positive(self.tol, "tol"),
                                   max_iter=check_int(self.max_iter, "max_iter"),
                                   model_name="MeanFieldGaussian",
                                   initial=objective() if np.all(np.isfinite(m)) else None)
        self.mean_, self.var_ = m, s
        self.history_, self.n_iter_ = result.history, result.n_iter
        self.reverse_mean_, self.reverse_var_ = mu.copy(), np.diag(cov).copy()
        self.kl_qp_ = float(gs.kl(m, np.diag(s), mu, cov))
        self.kl_pq_ = float(gs.kl(mu, cov, m, np.diag(s)))
        self.reverse_kl_qp_ = float(gs.kl(mu, np.diag(self.reverse_var_), mu, cov))
        self.reverse_kl_pq_ = float(gs.kl(mu, cov, mu, np.diag(self.reverse_var_)))
        self.cov_ = cov
        return self

    def elbo(self) -> ELBO:
        """ELBO = E_q[log p(z)] + H[q] = −KL(q ‖ p), reported as expected_log_lik = E_q[log p(z)]
        and kl_latent = −H[q]."""
        check_fitted(self, ("mean_",))
        mu = np.asarray(self.mean, float)
        k = mu.size
        Lam = np.asarray(self.precision, float)
        d = self.mean_ - mu
        e_log_p = -0.5 * (k * gs.LOG_2PI - gs.logdet(Lam) + d @ Lam @ d + np.sum(np.diag(Lam) * self.var_))
        return ELBO(e_log_p, -gs.entropy(np.diag(self.var_)))


# --------------------------------------------------------------------------------------------
# The bridge: a factorised q(z|x) for factor analysis, parameters held fixed
# --------------------------------------------------------------------------------------------

def mean_field_q(model, X, *, tol: float = 1e-12, max_iter: int = 1000, init=None):
    """Fit a factorised q(z|x) = ∏_j N(z_j | m_j(x), s_j) to a fitted FA or PPCA model by CAVI.

    For x = W z + μ + ε with ε ~ N(0, Ψ), log p(x, z) is quadratic in z with precision
    ``Λ = I + Wᵀ Ψ⁻¹ W`` and linear term ``h = Wᵀ Ψ⁻¹ (x − μ)``, so the CAVI update of factor j
    (Bishop PRML eq. 10.9, as in 10.12–10.13) is

        s_j = 1/Λ_jj,      m_j(x) = (h_j(x) − Σ_{k≠j} Λ_jk m_k(x)) / Λ_jj

    for every row at once. The model's parameters are not changed. ``model.elbo(X, q)`` of the
    result is ≤ log p(x), with equality exactly when Λ — the exact posterior's precision — is
    diagonal (e.g. closed-form PPCA, whose WᵀW is diagonal).

    Returns ``(q, history)``: a diagonal :class:`GaussianQ` and the ELBO after each factor update.
    """
    X = model._validate_X(X)
    W, psi, mu = model.W_, model.noise_variance(), model.mu_
    L = W.shape[1]
    Wp = W / psi[:, None]
    Lam = np.eye(L) + W.T @ Wp
    H = (X - mu) @ Wp                      # rows h(x_n)
    s = 1.0 / np.diag(Lam)
    M = np.zeros_like(H) if init is None else check_array(init, "init").copy()
    state = {"q": GaussianQ.from_diag(M, s)}

    def block(j):
        def update():
            M[:, j] = (H[:, j] - M @ Lam[j] + M[:, j] * Lam[j, j]) / Lam[j, j]
            state["q"] = GaussianQ.from_diag(M, s)
        return (f"q(z{j})", update)

    result = coordinate_ascent([block(j) for j in range(L)], lambda: model.elbo(X, state["q"]).total,
                               tol=tol, max_iter=max_iter, model_name="mean-field q(z|x)",
                               initial=model.elbo(X, state["q"]).total)
    return GaussianQ.from_diag(M.copy(), s), result.history


# --------------------------------------------------------------------------------------------
# Variational Bayesian PCA with ARD (Bishop 1999)
# --------------------------------------------------------------------------------------------

class VBPCA:
    """Variational Bayesian PCA with automatic relevance determination (Bishop 1999; PRML 12.2.3).

    Model: x_n = W z_n + μ + ε_n, z_n ~ N(0, I_L), ε_n ~ N(0, τ⁻¹ I_D), with priors
    p(W | α) = ∏_i N(w_i | 0, α_i⁻¹ I_D) on the columns w_i (ARD), p(α_i) = Gam(a_α, b_α),
    p(μ) = N(0, β⁻¹ I), p(τ) = Gam(a_τ, b_τ). The posterior is approximated by
    q(Z) q(W) q(μ) q(α) q(τ), each factor updated in turn (Bishop 1999, section 3), with
    ⟨·⟩ expectations under q:

    - q(z_n) = N(m_z_n, Σ_z):  ``Σ_z = (I + ⟨τ⟩⟨WᵀW⟩)⁻¹``,  ``m_z_n = ⟨τ⟩ Σ_z ⟨W⟩ᵀ (x_n − ⟨μ⟩)``
    - q(μ) = N(m_μ, Σ_μ I):    ``Σ_μ = (β + N⟨τ⟩)⁻¹``,  ``m_μ = ⟨τ⟩ Σ_μ Σ_n (x_n − ⟨W⟩ m_z_n)``
    - q(W): rows w̃_d ~ N(m_d, Σ_W),
      ``Σ_W = (diag⟨α⟩ + ⟨τ⟩ Σ_n ⟨z_n z_nᵀ⟩)⁻¹``,  ``m_d = ⟨τ⟩ Σ_W Σ_n m_z_n (x_nd − ⟨μ_d⟩)``
    - q(α_i) = Gam(a_α + D/2, b_α + ⟨‖w_i‖²⟩/2)
    - q(τ) = Gam(a_τ + ND/2, b_τ + ½ Σ_n ⟨‖x_n − W z_n − μ‖²⟩)

    with ``⟨WᵀW⟩ = ⟨W⟩ᵀ⟨W⟩ + D Σ_W`` and ``⟨‖w_i‖²⟩ = ‖⟨w_i⟩‖² + D (Σ_W)_ii``. Columns that the data
    do not support get ⟨α_i⟩ → large and w_i → 0: they switch off.

    ELBO terms (per sample): ``expected_log_lik`` = ⟨log p(X | Z, W, μ, τ)⟩ / N, ``kl_latent`` =
    KL(q(Z) ‖ p(Z)) / N, ``kl_params`` = [⟨KL(q(W) ‖ p(W|α))⟩_q(α) + KL(q(α)‖p(α)) + KL(q(μ)‖p(μ))
    + KL(q(τ)‖p(τ))] / N.

    Parameters: ``n_components`` (the maximum L; ARD chooses how many are used), ``tol``,
    ``max_iter``, ``random_state`` (initial W), hyper-parameters ``a_alpha = b_alpha = a_tau =
    b_tau = beta = 1e-3`` (broad, as Bishop 1999).

    Attributes: ``W_`` (posterior mean, D×L), ``mu_``, ``alpha_`` (posterior-mean ARD
    precisions), ``sigma2_`` = 1/⟨τ⟩, ``n_effective_``, ``history_``, ``n_iter_``.
    """

    def __init__(self, n_components: int = 2, *, tol: float = 1e-9, max_iter: int = 5000,
                 a_alpha: float = 1e-3, b_alpha: float = 1e-3, a_tau: float = 1e-3,
                 b_tau: float = 1e-3, beta: float = 1e-3, random_state=None):
        self.n_components = n_components
        self.tol, self.max_iter = tol, max_iter
        self.a_alpha, self.b_alpha, self.a_tau, self.b_tau, self.beta = (
            a_alpha, b_alpha, a_tau, b_tau, beta)
        self.random_state = random_state

    W_ = None
    n_features_in_ = None

    # ---- the factor updates (Bishop 1999, section 3) ------------------------------------------
    def _E(self):
        """Current expectations under q that several updates share."""
        s = self._s
        D = s["MW"].shape[0]
        Etau = s["a_tau"] / s["b_tau"]
        EWtW = s["MW"].T @ s["MW"] + D * s["SW"]
        return Etau, EWtW

    def _update_Z(self):
        s = self._s
        Etau, EWtW = self._E()
        L = EWtW.shape[0]
        s["Sz"] = gs.chol_solve(gs.cholesky(np.eye(L) + Etau * EWtW, "q(Z) precision"), np.eye(L))
        s["Mz"] = Etau * (self._X - s["m_mu"]) @ s["MW"] @ s["Sz"]

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

    def _sq_error(self, X, Mz, Sz):
        """Σ_n ⟨‖x_n − W z_n − μ‖²⟩ under q (Bishop 1999, the q(τ) update)."""
        s = self._s
        N, D = X.shape
        _, EWtW = self._E()
        Ezz = N * Sz + Mz.T @ Mz
        Emu2 = N * (s["m_mu"] @ s["m_mu"] + D * s["S_mu"])
        WMz = Mz @ s["MW"].T
        return (np.sum(X * X) + Emu2 + np.sum(EWtW * Ezz) + 2 * np.sum(WMz @ s["m_mu"])
                - 2 * np.sum(X * WMz) - 2 * np.sum(X @ s["m_mu"]))

    def _update_tau(self):
        s = self._s
        N, D = self._X.shape
        s["a_tau"] = self.a_tau + N * D / 2.0
        s["b_tau"] = self.b_tau + 0.5 * self._sq_error(self._X, s["Mz"], s["Sz"])

    # ---- the ELBO ------------------------------------------------------------------------------
    def _kl_params_total(self) -> float:
        """⟨KL(q(W)‖p(W|α))⟩ + KL(q(α)‖p(α)) + KL(q(μ)‖p(μ)) + KL(q(τ)‖p(τ)), in nats (not per N)."""
        s = self._s
        D, L = s["MW"].shape
        Ealpha = s["a_alpha"] / s["b_alpha"]
        Elogalpha = special.digamma(s["a_alpha"]) - np.log(s["b_alpha"])
        Ew2 = np.sum(s["MW"] ** 2, axis=0) + D * np.diag(s["SW"])
        e_log_pW = np.sum(0.5 * D * (Elogalpha - gs.LOG_2PI) - 0.5 * Ealpha * Ew2)
        h_W = 0.5 * D * (L * (1 + gs.LOG_2PI) + gs.logdet(s["SW"]))
        kl_W = -e_log_pW - h_W
        kl_alpha = np.sum(kl_gamma(s["a_alpha"], s["b_alpha"], self.a_alpha, self.b_alpha))
        kl_mu = 0.5 * (D * self.beta * s["S_mu"] + self.beta * s["m_mu"] @ s["m_mu"] - D
                       - D * np.log(self.beta * s["S_mu"]))
        kl_tau = kl_gamma(s["a_tau"], s["b_tau"], self.a_tau, self.b_tau)
        return float(kl_W + kl_alpha + kl_mu + kl_tau)

    def _elbo_on(self, X, Mz, Sz) -> ELBO:
        s = self._s
        N, D = X.shape
        L = Sz.shape[0]
        Etau = s["a_tau"] / s["b_tau"]
        Elogtau = special.digamma(s["a_tau"]) - np.log(s["b_tau"])
        ell = 0.5 * N * D * (Elogtau - gs.LOG_2PI) - 0.5 * Etau * self._sq_error(X, Mz, Sz)
        kl_z = 0.5 * (N * np.trace(Sz) + np.sum(Mz * Mz) - N * L - N * gs.logdet(Sz))
        return ELBO(ell / N, kl_z / N, self._kl_params_total() / N)

    # ---- fitting -----------------------------------------------------------------------------------
    def fit(self, X, y=None) -> "VBPCA":
        """Run CAVI over q(Z), q(μ), q(W), q(α), q(τ) until the ELBO settles. Returns self."""
        X = check_array(X, "X", min_samples=2)
        N, D = X.shape
        L = check_n_components(self.n_components, D)
        for name in ("a_alpha", "b_alpha", "a_tau", "b_tau", "beta"):
            check_positive(getattr(self, name), name)
        rng = check_random_state(self.random_state)
        self._X = X
        mean = X.mean(axis=0)
        # initial q: W from the leading principal directions plus noise, τ from the residual
        _, sv, Vt = np.linalg.svd(X - mean, full_matrices=False)
        MW = (Vt[:L].T * sv[:L] / np.sqrt(N)) + 0.1 * rng.standard_normal((D, L)) * np.sqrt(
            np.mean((X - mean) ** 2))
        var = np.mean((X - mean) ** 2)
        self._s = {
            "MW": MW, "SW": np.eye(L) * 1e-3 * var, "m_mu": mean, "S_mu": var / N,
            "a_alpha": np.full(L, self.a_alpha + D / 2.0),
            "b_alpha": np.full(L, self.b_alpha) + 0.5 * np.sum(MW ** 2, axis=0),
            "a_tau": self.a_tau + N * D / 2.0, "b_tau": self.b_tau + N * D * var / 2.0,
        }
        blocks = [("q(Z)", self._update_Z), ("q(mu)", self._update_mu), ("q(W)", self._update_W),
                  ("q(alpha)", self._update_alpha), ("q(tau)", self._update_tau)]
        objective = lambda: self._elbo_on(X, self._s["Mz"], self._s["Sz"]).total  # noqa: E731
        result = coordinate_ascent(blocks, objective, tol=check_positive(self.tol, "tol"),
                                   max_iter=check_int(self.max_iter, "max_iter"),
                                   model_name="VBPCA")
        s = self._s
        self.W_, self.mu_ = s["MW"], s["m_mu"]
        self.alpha_ = s["a_alpha"] / s["b_alpha"]
        self.sigma2_ = float(s["b_tau"] / s["a_tau"])
        norms = np.sum(self.W_ ** 2, axis=0)
        self.n_effective_ = int(np.sum(norms > 1e-3 * norms.max()))
        self.history_, self.n_iter_ = result.history, result.n_iter
        self.converged_ = result.converged
        self.n_features_in_, self.n_samples_ = D, N
        del self._X
        return self

    # ---- the shared interface -------------------------------------------------------------------
    def _validate_X(self, X):
        check_fitted(self, ("W_", "n_features_in_"))
        X = check_array(X, "X")
        check_n_features(self, X)
        return X

    def noise_variance(self) -> np.ndarray:
        return np.full(self.W_.shape[0], self.sigma2_)

    def posterior(self, X) -> GaussianQ:
        """q(z_n) for new rows with the parameter factors held at their fitted values."""
        X = self._validate_X(X)
        s = self._s
        Etau, EWtW = self._E()
        L = EWtW.shape[0]
        Sz = gs.chol_solve(gs.cholesky(np.eye(L) + Etau * EWtW), np.eye(L))
        return GaussianQ(Etau * (X - s["m_mu"]) @ s["MW"] @ Sz, Sz)

    def transform(self, X) -> np.ndarray:
        return self.posterior(X).mean

    def elbo(self, X, q: GaussianQ | None = None, include_params: bool = True) -> ELBO:
        """The ELBO of the Bayesian model on X, per sample, with the fitted q(W, μ, α, τ).

        q(Z) is the optimal one for X (or ``q``). On the training data this is the bound that
        ``fit`` maximised; on other data it is still a lower bound on that data's log marginal
        likelihood, log p(X) = log ∫ p(X | θ) p(θ) dθ, since the parameter factors are one
        admissible choice of q. ``kl_params`` is the parameters' KL divided by ``len(X)``.

        ``include_params=False`` drops that KL: what remains, E_q(θ)[E_q(z)[log p(x|z,θ)] −
        KL(q(z)‖p(z))], lower-bounds E_q(θ)[log p(x | θ)] and, by Jensen, the log predictive
        density log ∫ p(x | θ) q(θ) dθ of new data — the comparable number for held-out rows.
        """
        X = self._validate_X(X)
        q = self.posterior(X) if q is None else q
        e = self._elbo_on(X, q.mean, q.mean_cov())
        return e if include_params else ELBO(e.expected_log_lik, e.kl_latent, 0.0)

    def log_likelihood(self, X) -> float:
        """Mean log p(x) per sample with the posterior means plugged in: N(x | ⟨μ⟩, ⟨W⟩⟨W⟩ᵀ + σ²I),
        σ² = 1/⟨τ⟩. A plug-in value, not the Bayesian marginal likelihood."""
        X = self._validate_X(X)
        return float(np.mean(gs.lowrank_logpdf(X, self.mu_, self.W_, self.noise_variance())))

    def sample(self, n_samples: int = 1, random_state=None) -> np.ndarray:
        """Draws from the plug-in generative model (posterior-mean W, μ, σ²)."""
        check_fitted(self, ("W_",))
        rng = check_random_state(random_state)
        n = check_int(n_samples, "n_samples")
        D, L = self.W_.shape
        return (rng.standard_normal((n, L)) @ self.W_.T + self.mu_
                + np.sqrt(self.sigma2_) * rng.standard_normal((n, D)))

    def n_parameters(self) -> int:
        """Effective parameters of the plug-in model: the switched-on columns only."""
        D = self.W_.shape[0]
        k = self.n_effective_
        return D * k - k * (k - 1) // 2 + D + 1
