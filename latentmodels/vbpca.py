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

**From sufficient statistics.** On complete data every q(z_n) shares Σ_z and its mean is
m_n = A (x_n − c) with A = ⟨τ⟩ Σ_z ⟨W⟩ᵀ and c = m_μ at that update. So the updates and the ELBO
need only ``Σ m_n = A(Σx − Nc)``, ``Σ x_n m_nᵀ = (Σxxᵀ − Σx cᵀ) Aᵀ`` and
``Σ m_n m_nᵀ = A (Σxxᵀ − Σx cᵀ − c Σxᵀ + N ccᵀ) Aᵀ``, with Σxxᵀ = M2 + N x̄x̄ᵀ: the fit depends
on the data only through (N, x̄, M2), and ``fit`` runs on
:class:`~latentmodels.statistics.SufficientStatistics` (arrays, memmaps, chunk iterables,
Dask arrays; ``partial_fit`` and ``fit_from_statistics`` as for FA and PPCA). The
standardisation is done on the statistics: x̄̃ = 0, Σx̃x̃ᵀ = M2 / s², s² = tr(M2) / (N D).

**Missing values** (``missing="em"``, NaN in X; Ilin & Raiko 2010, JMLR 11, section 3.3 and
eqs. 33–39). Only the observed entries O enter: Σ_n = (I + ⟨τ⟩ Σ_{d∈O_n} ⟨w_d w_dᵀ⟩)⁻¹ per row
(one per missingness pattern), Σ_W,d = (diag⟨α⟩ + ⟨τ⟩ Σ_{n∈N_d} ⟨z_n z_nᵀ⟩)⁻¹ per row of W,
Σ_μ,d = (β + |N_d|⟨τ⟩)⁻¹ per coordinate, and q(τ) = Gam(a_τ + |O|/2, b_τ + ½ Σ_O ⟨r_nd²⟩);
the ELBO is the same functional restricted to O, so each block is its exact maximiser and the
shared loop checks it never decreases. The priors are standardised with the observed column
means and variances. ``impute`` and the log-likelihoods then use the posterior-mean (plug-in)
parameters: E[x_M | x_O] = μ_M + C_MO C_OO⁻¹ (x_O − μ_O), C = ⟨W⟩⟨W⟩ᵀ + σ² I.
"""

from __future__ import annotations

import numpy as np
from scipy import special

from . import gaussian as gs
from .elbo import ELBO, coordinate_ascent, float_error
from .gaussian import GaussianQ
from .linear_gaussian import LinearGaussianModel, check_statistics, statistics_of
from .statistics import SufficientStatistics, is_dask_array
from .validation import (
    check_fitted,
    check_int,
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
    b_tau = beta = 1e-3`` (broad, as Bishop 1999), stated in the units of the standardised data;
    ``missing`` {"raise", "em"}: what a NaN in X means — an error, or a missing value fitted by
    the VB updates on the observed entries only (Ilin & Raiko 2010; module docstring).

    Input: ``fit`` takes an array, a memmap, an iterable of chunks, a Dask array or a
    :class:`~latentmodels.statistics.SufficientStatistics` (complete data: the fit depends on
    the data only through (n, mean, scatter), see the module docstring); ``partial_fit``
    accumulates chunks and by default refits from all rows seen, ``fit_from_statistics`` fits
    accumulated statistics. With ``missing="em"`` and NaN in X the rows are needed in memory.

    Attributes: ``W_`` (posterior mean, D×L), ``mu_``, ``alpha_`` (posterior-mean ARD precisions,
    in units of 1/x²), ``sigma2_`` = 1/⟨τ⟩, ``scale_`` (s), ``n_effective_``, ``history_``,
    ``history_steps_``, ``n_iter_``, ``converged_``, ``statistics_`` (None after a fit with
    missing values).
    """

    _isotropic = True
    sigma2_ = None

    def __init__(self, n_components: int = 2, *, tol: float = 1e-9, max_iter: int = 5000,
                 a_alpha: float = 1e-3, b_alpha: float = 1e-3, a_tau: float = 1e-3,
                 b_tau: float = 1e-3, beta: float = 1e-3, random_state=None, missing="raise"):
        self.n_components = n_components
        self.tol = tol
        self.max_iter = max_iter
        self.a_alpha = a_alpha
        self.b_alpha = b_alpha
        self.a_tau = a_tau
        self.b_tau = b_tau
        self.beta = beta
        self.random_state = random_state
        self.missing = missing

    # ---- the factor updates (Bishop 1999, section 3), on standardised statistics ----------
    def _E(self):
        """⟨τ⟩ and ⟨WᵀW⟩ = ⟨W⟩ᵀ⟨W⟩ + Σ_d Σ_W,d (Σ_W shared: D Σ_W)."""
        s = self._s
        SW = s["SW"]
        Etau = s["a_tau"] / s["b_tau"]
        EWtW = s["MW"].T @ s["MW"] + (s["MW"].shape[0] * SW if SW.ndim == 2 else SW.sum(axis=0))
        return Etau, EWtW

    def _q_z_operator(self):
        """q(z_n) = N(A (x_n − c), Σ_z): ``Σ_z = (I + ⟨τ⟩⟨WᵀW⟩)⁻¹``, ``A = ⟨τ⟩ Σ_z ⟨W⟩ᵀ``,
        c = ⟨μ⟩ (Bishop 1999 eq. 18; one Cholesky of an L×L matrix)."""
        s = self._s
        Etau, EWtW = self._E()
        L = EWtW.shape[0]
        Sz = gs.chol_solve(gs.cholesky(np.eye(L) + Etau * EWtW, "q(Z) precision"), np.eye(L))
        Sz = (Sz + Sz.T) / 2.0
        return Etau * Sz @ s["MW"].T, s["m_mu"].copy(), Sz

    def _q_z(self, Xs):
        """q(z_n) for standardised rows with the parameter factors fixed."""
        A, c, Sz = self._q_z_operator()
        return (Xs - c) @ A.T, Sz

    @staticmethod
    def _z_moments(data, A, c, Sz):
        """The sums over rows that the updates need, from the data statistics alone.

        With m_n = A (x_n − c) (one shared A, c, Σ_z for every row) and Σxxᵀ = M2 + N x̄x̄ᵀ:
        ``Σ m_n = A (Σx − N c)``, ``Σ x_n m_nᵀ = (Σxxᵀ − Σx cᵀ) Aᵀ``,
        ``Σ m_n m_nᵀ = A (Σxxᵀ − Σx cᵀ − c Σxᵀ + N c cᵀ) Aᵀ`` — linear (resp. quadratic) in the
        data, so q(Z) never has to be formed row by row.
        """
        N, sx, Sxx = data["N"], data["sx"], data["Sxx"]
        Sxc = Sxx - np.outer(sx, c)
        Sm = A @ (sx - N * c)
        Sxm = Sxc @ A.T
        Smm = A @ (Sxc - np.outer(c, sx) + N * np.outer(c, c)) @ A.T
        Smm = (Smm + Smm.T) / 2.0
        L = Sz.shape[0]
        kl_z = 0.5 * (N * np.trace(Sz) + np.trace(Smm) - N * L - N * gs.logdet(Sz))
        return {"Sm": Sm, "Sxm": Sxm, "Smm": Smm, "Sz": Sz, "kl_z": float(kl_z)}

    def _update_Z(self):
        s = self._s
        A, c, Sz = self._q_z_operator()
        s["A"], s["c"], s["Sz"] = A, c, Sz
        s["zm"] = self._z_moments(self._data, A, c, Sz)

    def _update_mu(self):
        """``Σ_μ = (β + N⟨τ⟩)⁻¹``, ``m_μ = ⟨τ⟩ Σ_μ (Σx − ⟨W⟩ Σ m_n)`` (Bishop 1999 eq. 19)."""
        s = self._s
        N = self._data["N"]
        Etau, _ = self._E()
        s["S_mu"] = 1.0 / (self.beta + N * Etau)
        s["m_mu"] = Etau * s["S_mu"] * (self._data["sx"] - s["MW"] @ s["zm"]["Sm"])

    def _update_W(self):
        """``Σ_W = (diag⟨α⟩ + ⟨τ⟩ (N Σ_z + Σ m_n m_nᵀ))⁻¹``,
        ``⟨W⟩ = ⟨τ⟩ (Σ x_n m_nᵀ − m_μ Σ m_nᵀ) Σ_W`` (Bishop 1999 eq. 20)."""
        s = self._s
        N = self._data["N"]
        zm = s["zm"]
        Etau, _ = self._E()
        Ezz = N * zm["Sz"] + zm["Smm"]
        Ealpha = s["a_alpha"] / s["b_alpha"]
        LW = gs.cholesky(np.diag(Ealpha) + Etau * Ezz, "q(W) precision")
        s["SW"] = gs.chol_solve(LW, np.eye(Ezz.shape[0]))
        s["MW"] = Etau * gs.chol_solve(LW, (zm["Sxm"] - np.outer(s["m_mu"], zm["Sm"])).T).T

    def _update_alpha(self):
        """q(α_i) = Gam(a_α + D/2, b_α + ⟨‖w_i‖²⟩/2) (Bishop 1999 eq. 21)."""
        s = self._s
        D = s["MW"].shape[0]
        diag_sw = D * np.diag(s["SW"]) if s["SW"].ndim == 2 else np.einsum("dii->i", s["SW"])
        s["a_alpha"] = np.full(s["MW"].shape[1], self.a_alpha + D / 2.0)
        s["b_alpha"] = self.b_alpha + 0.5 * (np.sum(s["MW"] ** 2, axis=0) + diag_sw)

    def _sq_error_terms(self, data, zm):
        """The terms of Σ_n ⟨‖x_n − W z_n − μ‖²⟩ under q (Bishop 1999, the q(τ) update), from
        (N, Σx, Σxxᵀ) and the z-sums: ``tr Σxxᵀ + N(‖m_μ‖² + D Σ_μ) + tr(⟨WᵀW⟩(NΣ_z + Σmmᵀ))
        + 2 m_μᵀ⟨W⟩Σm − 2 tr(⟨W⟩ᵀ Σ x mᵀ) − 2 m_μᵀ Σx``."""
        s = self._s
        N = data["N"]
        D = s["MW"].shape[0]
        _, EWtW = self._E()
        Ezz = N * zm["Sz"] + zm["Smm"]
        S_mu = float(np.sum(np.broadcast_to(s["S_mu"], (D,))))
        return (float(np.trace(data["Sxx"])), N * (s["m_mu"] @ s["m_mu"] + S_mu),
                float(np.sum(EWtW * Ezz)), 2 * float(s["m_mu"] @ s["MW"] @ zm["Sm"]),
                -2 * float(np.sum(s["MW"] * zm["Sxm"])), -2 * float(data["sx"] @ s["m_mu"]))

    def _update_tau(self):
        """q(τ) = Gam(a_τ + ND/2, b_τ + ½ Σ_n ⟨‖x_n − W z_n − μ‖²⟩) (Bishop 1999 eq. 22)."""
        s = self._s
        N = self._data["N"]
        D = s["MW"].shape[0]
        s["a_tau"] = self.a_tau + N * D / 2.0
        s["b_tau"] = self.b_tau + 0.5 * sum(self._sq_error_terms(self._data, s["zm"]))

    # ---- the ELBO ------------------------------------------------------------------------------
    def _kl_params_terms(self):
        """⟨KL(q(W)‖p(W|α))⟩, KL(q(α)‖p(α)), KL(q(μ)‖p(μ)), KL(q(τ)‖p(τ)), in nats (not per N).

        Σ_W and Σ_μ may be shared (L×L, scalar) or per row of W / per coordinate (D×L×L, D)."""
        s = self._s
        D, L = s["MW"].shape
        SW = s["SW"]
        Ealpha = s["a_alpha"] / s["b_alpha"]
        Elogalpha = special.digamma(s["a_alpha"]) - np.log(s["b_alpha"])
        if SW.ndim == 2:
            diag_sw, logdet_sw = D * np.diag(SW), D * gs.logdet(SW)
        else:
            diag_sw, logdet_sw = np.einsum("dii->i", SW), float(np.sum(gs.logdet(SW)))
        Ew2 = np.sum(s["MW"] ** 2, axis=0) + diag_sw
        e_log_pW = np.sum(0.5 * D * (Elogalpha - gs.LOG_2PI) - 0.5 * Ealpha * Ew2)
        h_W = 0.5 * (D * L * (1 + gs.LOG_2PI) + logdet_sw)
        kl_W = -e_log_pW - h_W
        kl_alpha = np.sum(kl_gamma(s["a_alpha"], s["b_alpha"], self.a_alpha, self.b_alpha))
        kl_mu = gs.kl_diag(s["m_mu"], np.broadcast_to(s["S_mu"], (D,)), 0.0,
                           np.full(D, 1.0 / self.beta))
        kl_tau = kl_gamma(s["a_tau"], s["b_tau"], self.a_tau, self.b_tau)
        return float(kl_W), float(kl_alpha), float(kl_mu), float(kl_tau)

    def _elbo_stats(self, data, zm, *, with_error: bool = False):
        """The ELBO per sample from data statistics and z-sums (shared or per-row Σ_n).

        ``E[log p(X|Z,W,μ,τ)] = ½ND(⟨log τ⟩ − log 2π) − ½⟨τ⟩ Σ_n ⟨‖x_n − W z_n − μ‖²⟩`` and
        ``Σ_n KL(q(z_n)‖N(0, I))`` (``zm["kl_z"]``: the sum of log|Σ_n|, not N log|mean Σ_n|).
        """
        s = self._s
        N = data["N"]
        D = s["MW"].shape[0]
        Etau = s["a_tau"] / s["b_tau"]
        Elogtau = special.digamma(s["a_tau"]) - np.log(s["b_tau"])
        sq = self._sq_error_terms(data, zm)
        ell = 0.5 * N * D * (Elogtau - gs.LOG_2PI) - 0.5 * Etau * sum(sq)
        kl_z = zm["kl_z"]
        klp = self._kl_params_terms()
        e = ELBO(ell / N, kl_z / N, sum(klp) / N)
        if not with_error:
            return e
        err = float_error(0.5 * N * D * Elogtau, 0.5 * N * D * gs.LOG_2PI, 0.5 * Etau * np.abs(sq),
                          kl_z, klp, n_ops=N * D) / N
        return e, err

    @staticmethod
    def _row_data(Xs):
        return {"N": Xs.shape[0], "sx": Xs.sum(axis=0), "Sxx": Xs.T @ Xs}

    @staticmethod
    def _row_z_moments(Xs, q: GaussianQ):
        M = q.mean
        return {"Sm": M.sum(axis=0), "Sxm": Xs.T @ M, "Smm": M.T @ M, "Sz": q.mean_cov(),
                "kl_z": float(Xs.shape[0] * q.kl_to_standard())}

    def _elbo_on(self, Xs, q: GaussianQ, *, with_error: bool = False):
        """The ELBO per sample on standardised rows Xs for a Gaussian q(Z) (shared or per-row Σ_n)."""
        return self._elbo_stats(self._row_data(Xs), self._row_z_moments(Xs, q),
                                with_error=with_error)

    # ---- fitting -----------------------------------------------------------------------------------
    def _standardise(self, X):
        return (X - self._center) / self.scale_

    def _check_hyper(self):
        for name in ("a_alpha", "b_alpha", "a_tau", "b_tau", "beta"):
            check_positive(getattr(self, name), name)
        tol = check_positive(self.tol, "tol")
        max_iter = check_int(self.max_iter, "max_iter")
        return tol, max_iter, check_random_state(self.random_state)

    @staticmethod
    def _check_var(var, scale_text):
        if not (np.isfinite(var) and var > 0):
            raise ValueError(
                f"X has a mean feature variance of {scale_text} which float64 cannot hold (the "
                "noise variance sigma2_ and the ARD precisions would over- or underflow); rescale X"
            )

    def fit(self, X, y=None) -> "VBPCA":
        """Run CAVI over q(Z), q(μ), q(W), q(α), q(τ) until the ELBO settles. Returns self.

        Complete data go through their sufficient statistics (any input of
        :func:`latentmodels.linear_gaussian.statistics_of`); with ``missing="em"`` NaN entries
        are missing values (:meth:`_fit_missing`)."""
        if self._nan_is_missing(X):
            return self._fit_missing(X)
        return self.fit_from_statistics(statistics_of(X, "X"))

    def fit_covariance(self, S, n_samples: int, mean=None) -> "VBPCA":
        """Fit to a (1/N) covariance matrix computed elsewhere (``mean``, default 0, is copied)."""
        mu, S, n = check_statistics(S=S, n_samples=n_samples, mean=mean)
        self._fit_moments(mu, S, n)
        self.statistics_ = SufficientStatistics(n, mu, S * n)
        return self

    def _fit_moments(self, mu, S, N):
        """CAVI from (N, mean, S = M2/N): standardise the statistics (x̃ = (x − x̄)/s, s² = tr S / D,
        so Σx̃ = 0 and Σx̃x̃ᵀ = N S / s²) and run the updates, which see the data only through
        (N, Σx̃, Σx̃x̃ᵀ) (:meth:`_z_moments`)."""
        D = S.shape[0]
        L = check_n_components(self.n_components, D)
        tol, max_iter, rng = self._check_hyper()
        with np.errstate(over="ignore", under="ignore", invalid="ignore"):
            var = float(np.trace(S)) / D
        if var == 0.0:
            raise ValueError("X is constant: every feature has zero variance, nothing to fit")
        self._check_var(var, f"{var:.3g}")
        Ss = S / var
        Ss = (Ss + Ss.T) / 2.0
        data = {"N": int(N), "sx": np.zeros(D), "Sxx": N * Ss}
        # initial q: W from the leading principal directions plus noise, τ from the residual
        lam, U = np.linalg.eigh(Ss)
        lam, U = np.maximum(lam[::-1][:L], 0.0), U[:, ::-1][:, :L]
        MW = U * np.sqrt(lam) + 0.1 * rng.standard_normal((D, L))
        s0 = {"MW": MW, "SW": np.eye(L) * 1e-3, "m_mu": np.zeros(D), "S_mu": 1.0 / N,
              "a_alpha": np.full(L, self.a_alpha + D / 2.0),
              "b_alpha": np.full(L, self.b_alpha) + 0.5 * np.sum(MW ** 2, axis=0),
              "a_tau": self.a_tau + N * D / 2.0, "b_tau": self.b_tau + N * D / 2.0}
        self._center, self.scale_ = np.array(mu, dtype=float), float(np.sqrt(var))
        self._data = data
        blocks = [("q(Z)", self._update_Z), ("q(mu)", self._update_mu), ("q(W)", self._update_W),
                  ("q(alpha)", self._update_alpha), ("q(tau)", self._update_tau)]

        def objective():
            e, err = self._elbo_stats(data, self._s["zm"], with_error=True)
            return e.total, err

        try:
            result = self._ascend(s0, blocks, objective, tol, max_iter)
        finally:
            del self._data
        self._finish(result, var, N, D, jac_per_sample=-D * np.log(self.scale_))
        return self

    def _ascend(self, s0, blocks, objective, tol, max_iter):
        """The shared CAVI loop (:func:`latentmodels.elbo.coordinate_ascent`), ELBO checked after
        every block; converged when the ELBO and ⟨W⟩ (relative) settle."""
        self._s = s0
        cache = {}

        def value():
            v, cache["err"] = objective()
            return v

        prev = {"W": None}

        def param_change():
            W = self._s["MW"]
            moved = np.inf if prev["W"] is None else float(
                np.linalg.norm(W - prev["W"]) / max(np.linalg.norm(W), 1e-300))
            prev["W"] = W.copy()
            return moved

        return coordinate_ascent(blocks, value, tol=tol, max_iter=max_iter, model_name="VBPCA",
                                 error=lambda: cache["err"], param_change=param_change,
                                 param_tol=tol ** (1.0 / 3.0))

    def _finish(self, result, var, N, D, jac_per_sample):
        s = self._s
        scale = self.scale_
        self.W_ = s["MW"] * scale
        self.mu_ = self._center + scale * s["m_mu"]
        self.alpha_ = s["a_alpha"] / s["b_alpha"] / var
        self.sigma2_ = float(s["b_tau"] / s["a_tau"] * var)
        norms = np.sum(s["MW"] ** 2, axis=0)
        self.n_effective_ = int(np.sum(norms > 1e-3 * norms.max()))
        self.history_ = [h + jac_per_sample for h in result.history]
        self.history_steps_ = list(result.steps)
        self.n_iter_ = result.n_iter
        self.converged_ = result.converged
        self.n_features_in_, self.n_samples_ = D, N

    # ---- missing values (Ilin & Raiko 2010, section 3.3 / 4: VB-PCA on observed entries) ------
    @staticmethod
    def _spd_inverse(P, name):
        """Inverses and log-determinants of a stack of SPD matrices, through their Cholesky factors."""
        Lc = gs.cholesky(P, name)
        eye = np.broadcast_to(np.eye(P.shape[-1]), P.shape)
        Li = np.linalg.solve(Lc, eye)
        inv = np.swapaxes(Li, -1, -2) @ Li
        return (inv + np.swapaxes(inv, -1, -2)) / 2.0, -gs.logdet(Lc, is_cholesky=True)

    def _m_update_Z(self):
        """Per row, over its observed coordinates O_n (Ilin & Raiko 2010, eqs. 33–34 with a unit
        prior on z): ``Σ_n = (I + ⟨τ⟩ Σ_{d∈O_n} (m_d m_dᵀ + Σ_W,d))⁻¹``,
        ``m_n = ⟨τ⟩ Σ_n Σ_{d∈O_n} m_d (x_nd − m_μ,d)``. Σ_n is one per missingness pattern."""
        s, m = self._s, self._mis
        D, L = s["MW"].shape
        Etau = s["a_tau"] / s["b_tau"]
        Q = (s["MW"][:, :, None] * s["MW"][:, None, :] + s["SW"]).reshape(D, L * L)
        P = np.eye(L) + Etau * (m["masks"] @ Q).reshape(-1, L, L)
        Sp, logdet_p = self._spd_inverse(P, "q(z_n) precision")
        b = Etau * (m["O"] * (m["Xz"] - s["m_mu"])) @ s["MW"]
        Mz = np.einsum("nij,nj->ni", Sp[m["index"]], b)
        s["Mz"], s["Sp"], s["logdet_p"] = Mz, Sp, logdet_p

    def _m_update_mu(self):
        """``Σ_μ,d = (β + |N_d| ⟨τ⟩)⁻¹``, ``m_μ,d = ⟨τ⟩ Σ_μ,d Σ_{n∈N_d} (x_nd − m_dᵀ m_n)``, N_d the
        rows observing d (Ilin & Raiko 2010, eq. 35 with a Gaussian prior on μ)."""
        s, m = self._s, self._mis
        Etau = s["a_tau"] / s["b_tau"]
        s["S_mu"] = 1.0 / (self.beta + m["n_obs_col"] * Etau)
        s["m_mu"] = Etau * s["S_mu"] * np.sum(m["O"] * (m["Xz"] - s["Mz"] @ s["MW"].T), axis=0)

    def _m_z_second(self):
        """Σ_{n∈N_d} ⟨z_n z_nᵀ⟩ = Σ_{n∈N_d} (m_n m_nᵀ + Σ_n) for every d, (D, L, L)."""
        s, m = self._s, self._mis
        L = s["Mz"].shape[1]
        outer = (s["Mz"][:, :, None] * s["Mz"][:, None, :]).reshape(-1, L * L)
        Sp = s["Sp"].reshape(-1, L * L) * m["counts"][:, None]
        return (m["O"].T @ outer + m["masks"].T.astype(float) @ Sp).reshape(-1, L, L)

    def _m_update_W(self):
        """Per row of W (Ilin & Raiko 2010, eqs. 36–37 with the ARD prior of Bishop 1999):
        ``Σ_W,d = (diag⟨α⟩ + ⟨τ⟩ Σ_{n∈N_d} ⟨z_n z_nᵀ⟩)⁻¹``,
        ``m_d = ⟨τ⟩ Σ_W,d Σ_{n∈N_d} m_n (x_nd − m_μ,d)``."""
        s, m = self._s, self._mis
        Etau = s["a_tau"] / s["b_tau"]
        Ealpha = s["a_alpha"] / s["b_alpha"]
        P = np.diag(Ealpha) + Etau * self._m_z_second()
        SW, _ = self._spd_inverse(P, "q(w_d) precision")
        r = (m["O"] * (m["Xz"] - s["m_mu"])).T @ s["Mz"]            # (D, L)
        s["SW"] = SW
        s["MW"] = Etau * np.einsum("dij,dj->di", SW, r)

    def _m_sq_error(self):
        """Σ_{(n,d) observed} ⟨(x_nd − w_dᵀ z_n − μ_d)²⟩ = (x_nd − m_dᵀ m_n − m_μ,d)² + m_dᵀ Σ_n m_d
        + m_nᵀ Σ_W,d m_n + tr(Σ_n Σ_W,d) + Σ_μ,d (Ilin & Raiko 2010, eq. 38), as its five sums."""
        s, m = self._s, self._mis
        D, L = s["MW"].shape
        R = m["O"] * (m["Xz"] - s["Mz"] @ s["MW"].T - s["m_mu"])
        WW = (s["MW"][:, :, None] * s["MW"][:, None, :]).reshape(D, L * L)
        SWf = s["SW"].reshape(D, L * L)
        Spf = s["Sp"].reshape(-1, L * L) * m["counts"][:, None]
        outer = (s["Mz"][:, :, None] * s["Mz"][:, None, :]).reshape(-1, L * L)
        masks = m["masks"].astype(float)
        return (float(np.sum(R * R)), float(np.sum((masks @ WW) * Spf)),
                float(np.sum((m["O"] @ SWf) * outer)), float(np.sum((masks @ SWf) * Spf)),
                float(m["n_obs_col"] @ np.broadcast_to(s["S_mu"], (D,))))

    def _m_update_tau(self):
        """q(τ) = Gam(a_τ + |O|/2, b_τ + ½ Σ_observed ⟨(x_nd − w_dᵀ z_n − μ_d)²⟩)
        (Ilin & Raiko 2010, eq. 39, in its Gamma form)."""
        s, m = self._s, self._mis
        s["a_tau"] = self.a_tau + m["n_obs"] / 2.0
        s["b_tau"] = self.b_tau + 0.5 * sum(self._m_sq_error())

    def _m_elbo(self):
        """The ELBO on the observed entries, per row: ½|O|(⟨log τ⟩ − log 2π) − ½⟨τ⟩ Σ_O ⟨r²⟩
        − Σ_n KL(q(z_n)‖N(0, I)) − the parameters' KL (:meth:`_kl_params_terms`, per-row Σ_W,d)."""
        s, m = self._s, self._mis
        N, L = s["Mz"].shape
        Etau = s["a_tau"] / s["b_tau"]
        Elogtau = special.digamma(s["a_tau"]) - np.log(s["b_tau"])
        sq = self._m_sq_error()
        ell = 0.5 * m["n_obs"] * (Elogtau - gs.LOG_2PI) - 0.5 * Etau * sum(sq)
        tr_p = np.trace(s["Sp"], axis1=-2, axis2=-1)
        kl_z = 0.5 * (float(m["counts"] @ (tr_p - s["logdet_p"])) + float(np.sum(s["Mz"] ** 2))
                      - N * L)
        klp = self._kl_params_terms()
        total = (ell - kl_z - sum(klp)) / N
        err = float_error(0.5 * m["n_obs"] * Elogtau, 0.5 * m["n_obs"] * gs.LOG_2PI,
                          0.5 * Etau * np.abs(sq), kl_z, klp, n_ops=m["n_obs"] * L) / N
        return total, err

    def _fit_missing(self, X):
        """VB-PCA on the observed entries (NaN = missing at random; Ilin & Raiko 2010, §3.3–4).

        The priors stay in the units of the data: x̃ = (x − x̄)/s with x̄ the observed column means
        and s² the mean over columns of the observed column variances. Cost per iteration:
        O(P (D L² + L³) + N D L + |O| L²) for P missingness patterns (the Σ_n are per pattern,
        the Σ_W,d per column). With no NaN every update is the complete-data one."""
        from .missing import _Patterns, check_missing

        Xf, observed = check_missing(X, "X", min_samples=2)
        N, D = Xf.shape
        L = check_n_components(self.n_components, D)
        tol, max_iter, rng = self._check_hyper()
        O = observed.astype(np.float64)
        n_col = O.sum(axis=0)
        Xz = np.where(observed, Xf, 0.0)
        center = Xz.sum(axis=0) / n_col
        dev = np.where(observed, Xf - center, 0.0)
        amax = float(np.max(np.abs(dev)))
        if amax == 0.0:
            raise ValueError("X is constant: every feature has zero variance, nothing to fit")
        scale = amax * float(np.sqrt(np.mean(np.sum((dev / amax) ** 2, axis=0) / n_col)))
        with np.errstate(over="ignore", under="ignore"):
            var = np.float64(scale) ** 2
        self._check_var(var, f"{scale:.3g}²")
        Xs = dev / scale
        pat = _Patterns(observed)
        self._mis = {"Xz": Xs, "O": O, "masks": pat.masks, "index": pat.index,
                     "counts": pat.counts.astype(float), "n_obs_col": n_col,
                     "n_obs": float(O.sum())}
        # the complete-data start, from the covariance of the mean-filled standardised data
        Ss = Xs.T @ Xs / N
        lam, U = np.linalg.eigh((Ss + Ss.T) / 2.0)
        lam, U = np.maximum(lam[::-1][:L], 0.0), U[:, ::-1][:, :L]
        MW = U * np.sqrt(lam) + 0.1 * rng.standard_normal((D, L))
        n_obs = self._mis["n_obs"]
        s0 = {"MW": MW, "SW": np.broadcast_to(np.eye(L) * 1e-3, (D, L, L)).copy(),
              "m_mu": np.zeros(D), "S_mu": 1.0 / n_col,
              "a_alpha": np.full(L, self.a_alpha + D / 2.0),
              "b_alpha": np.full(L, self.b_alpha) + 0.5 * np.sum(MW ** 2, axis=0),
              "a_tau": self.a_tau + n_obs / 2.0, "b_tau": self.b_tau + n_obs / 2.0}
        self._center, self.scale_ = center, scale
        blocks = [("q(Z)", self._m_update_Z), ("q(mu)", self._m_update_mu),
                  ("q(W)", self._m_update_W), ("q(alpha)", self._update_alpha),
                  ("q(tau)", self._m_update_tau)]
        try:
            result = self._ascend(s0, blocks, self._m_elbo, tol, max_iter)
        finally:
            del self._mis
        # the data term's Jacobian: −log s for every observed entry
        self._finish(result, var, N, D, jac_per_sample=-n_obs / N * np.log(scale))
        self.statistics_ = None
        return self

    # ---- the shared interface -------------------------------------------------------------------
    def noise_variance(self) -> np.ndarray:
        """σ² = 1/⟨τ⟩ repeated D times (a new array)."""
        check_fitted(self, ("W_", "sigma2_"))
        return np.full(self.W_.shape[0], self.sigma2_)

    def posterior(self, X) -> GaussianQ:
        """q(z_n) for new rows with the parameter factors held at their fitted values.

        With ``missing="em"`` and NaN in X: the plug-in posterior over each row's observed
        coordinates (:func:`latentmodels.missing.posterior_missing`)."""
        if self._nan_is_missing(X):
            return super().posterior(X)
        X = self._validate_X(X)
        return GaussianQ(*self._q_z(self._standardise(X)))

    def score_samples(self, X) -> np.ndarray:
        """Plug-in log N(x | ⟨μ⟩, ⟨W⟩⟨W⟩ᵀ + σ²I), σ² = 1/⟨τ⟩, computed on the standardised data
        (minus D log s), so that it does not overflow at any scale. Not the Bayesian marginal.

        With ``missing="em"`` and NaN in X: the plug-in observed-data log-likelihood of each row,
        log N(x_O | μ_O, W_O W_Oᵀ + σ² I) (:func:`latentmodels.missing.observed_score_samples`).
        A Dask array gives a lazy Dask array chunked like X."""
        if is_dask_array(X) or self._nan_is_missing(X):
            return super().score_samples(X)
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
        Complete rows only (with missing values, ``history_[-1]`` is the training ELBO).
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
