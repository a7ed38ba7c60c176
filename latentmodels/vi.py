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

Variational Bayesian PCA lives in :mod:`latentmodels.vbpca` (re-exported here as ``VBPCA`` for
older callers).
"""

from __future__ import annotations

import numpy as np
from scipy import special

from . import gaussian as gs
from .elbo import ELBO, coordinate_ascent, float_error
from .gaussian import GaussianQ
from .validation import (
    Estimator,
    check_array,
    check_fitted,
    check_int,
    check_positive,
    check_random_state,
)
from .vbpca import VBPCA, gamma_entropy, kl_gamma  # noqa: F401  (VBPCA: compatibility re-export)

__all__ = ["NormalGammaVI", "MeanFieldGaussian", "mean_field_q", "VBPCA", "kl_gamma"]


# --------------------------------------------------------------------------------------------
# Bishop 10.1.3: the univariate Gaussian
# --------------------------------------------------------------------------------------------

class NormalGammaVI(Estimator):
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
        self.mu0 = mu0
        self.lambda0 = lambda0
        self.a0 = a0
        self.b0 = b0
        self.tol = tol
        self.max_iter = max_iter

    mu_N_ = None

    def _check_x(self, x):
        x = check_array(x, "x", ndim=1, min_samples=1)
        # the updates need Σ x² and the prior terms μ0²: both must be finite in float64
        big = float(np.max(np.abs(x)))
        limit = np.sqrt(np.finfo(float).max / (4.0 * x.size))
        if big > limit:
            raise ValueError(
                f"x has values up to {big:.3g}, too large for the sums of squares this model needs "
                f"(limit {limit:.3g} for {x.size} samples); rescale x (e.g. divide by its standard "
                "deviation) and the prior accordingly"
            )
        return x

    def _check_priors(self):
        if isinstance(self.mu0, bool) or not isinstance(self.mu0, (int, float, np.number)):
            raise TypeError(f"mu0 must be a real number, got {self.mu0!r}")
        if not np.isfinite(self.mu0) or abs(self.mu0) > 1e150:
            raise ValueError(f"mu0 must be finite and below 1e150 in magnitude, got {self.mu0}")
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
                                   lambda: self._elbo_terms().total, error=lambda: self._elbo_error,
                                   tol=check_positive(self.tol, "tol"),
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
        # rounding error of the sums above (Higham 2002, eq. 4.4), per sample: sq_data cancels
        # Σx² against N x̄², which dominates for data far from 0
        self._elbo_error = float_error(sxx, 2 * Emu * sx, N * Emu2, 0.5 * N * Elogtau,
                                       0.5 * Etau * sq_data, log_p_mu, log_p_tau, entropy,
                                       n_ops=8) * max(1.0, Etau) / N
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

class MeanFieldGaussian(Estimator):
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
        self.tol = tol
        self.max_iter = max_iter
        self.random_state = random_state

    mean_ = None

    def fit(self, init=None) -> "MeanFieldGaussian":
        """Run CAVI from ``init`` (default: random means). Returns self."""
        mu = check_array(self.mean, "mean", ndim=1)
        Lam = check_array(self.precision, "precision")
        k = mu.size
        if Lam.shape != (k, k):
            raise ValueError(f"precision must be {k}x{k} to match mean, got shape {Lam.shape}")
        scale = max(float(np.max(np.abs(Lam))), np.finfo(float).tiny)
        asym = float(np.max(np.abs(Lam - Lam.T)))
        if asym > 1e-10 * scale:
            raise ValueError(
                f"precision must be symmetric (max |P - P.T| = {asym:.3g}); pass (P + P.T) / 2 if "
                "the asymmetry is round-off"
            )
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
    from .linear_gaussian import LinearGaussianModel

    if not isinstance(model, LinearGaussianModel):
        raise TypeError(
            "model must be a fitted linear-Gaussian model (FactorAnalysis, PPCA or VBPCA), "
            f"got {type(model).__name__}"
        )
    X = model._validate_X(X)
    W, psi, mu = model.W_, model.noise_variance(), model.mu_
    if np.any(psi <= 0):
        raise ValueError("model has zero noise variance (sigma2_ = 0): its posterior is a point "
                         "mass and there is no mean-field q to fit")
    L = W.shape[1]
    LM, Wp = gs.capacitance(W, psi)
    Lam = LM @ LM.T                        # I + Wᵀ Ψ⁻¹ W
    H = (X - mu) @ Wp                      # rows h(x_n)
    s = 1.0 / np.diag(Lam)
    M = np.zeros_like(H) if init is None else check_array(init, "init").copy()
    state = {"q": GaussianQ.from_diag(M, s)}

    def block(j):
        def update():
            M[:, j] = (H[:, j] - M @ Lam[j] + M[:, j] * Lam[j, j]) / Lam[j, j]
            state["q"] = GaussianQ.from_diag(M, s)
        return (f"q(z{j})", update)

    def objective():
        e = model.elbo(X, state["q"])
        # the ELBO is a mean over N rows of sums of D + L terms (Higham 2002, eq. 4.4)
        state["error"] = float_error(e.expected_log_lik, e.kl_latent, n_ops=4 * (X.shape[1] + L))
        return e.total

    initial = objective()
    result = coordinate_ascent([block(j) for j in range(L)], objective, tol=tol, max_iter=max_iter,
                               model_name="mean-field q(z|x)", initial=initial,
                               error=lambda: state["error"])
    return GaussianQ.from_diag(M.copy(), s), result.history
