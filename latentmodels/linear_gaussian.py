"""The shared core of factor analysis, PPCA and VB-PCA: the linear-Gaussian latent model.

The generative model (Bishop PRML eqs. 12.31–12.33, 12.64):

    z ~ N(0, I_L),    x | z ~ N(W z + μ, Ψ),    Ψ = diag(ψ_1, …, ψ_D)
    ⇒ x ~ N(μ, C),    C = W Wᵀ + Ψ                                       (Bishop 12.35–12.36)

FA leaves Ψ diagonal, PPCA sets Ψ = σ² I (Bishop 12.33). The exact posterior is Gaussian
(Bishop 12.66–12.68; 12.42 for PPCA), with G the posterior covariance:

    G = (I + Wᵀ Ψ⁻¹ W)⁻¹,     E[z | x] = B (x − μ),   B = G Wᵀ Ψ⁻¹,     E[z zᵀ | x] = G + E[z] E[z]ᵀ

Both EM steps depend on the data only through the mean x̄ and the (biased) covariance
S = (1/N) Σ (x_n − x̄)(x_n − x̄)ᵀ, so after one pass over X each iteration costs O(D² L), whatever
N is. The sample averages the M-step needs are (1/N) Σ (x_n − x̄) E[z_n]ᵀ = S Bᵀ and
(1/N) Σ E[z_n z_nᵀ] = G + B S Bᵀ, and the M-step (Bishop 12.69–12.70; 12.56–12.57 for PPCA) is

    W_new = S Bᵀ (G + B S Bᵀ)⁻¹,       Ψ_new = diag(S − W_new B S)    (PPCA: σ² = tr(·)/D).

With Ψ = σ² I the E-step is written ``M = WᵀW + σ² I``, ``B = M⁻¹ Wᵀ``, ``G = σ² M⁻¹``
(Bishop 12.41–12.42), which stays defined at σ² = 0: there it is Roweis's (1998) EM for PCA,
``E: Z = (WᵀW)⁻¹ Wᵀ (x − μ)``, ``M: W = S Bᵀ (B S Bᵀ)⁻¹``, coordinate descent on the squared
reconstruction error (the σ² → 0 limit of −σ² · ELBO).

This module holds those formulas once, the EM loop that runs them (with SQUAREM from
:mod:`latentmodels.acceleration` and, for isotropic noise, the exact scale step in the current
subspace), and the :class:`LinearGaussianModel` base class that gives every fitted model the
common interface (``log_likelihood``, ``posterior``, ``elbo(X, q)``, ``sample`` …).
"""

from __future__ import annotations

import numpy as np

from . import gaussian as gs
from .acceleration import Squarem
from .elbo import ELBO, coordinate_ascent, float_error, warn_user
from .gaussian import GaussianQ
from .missing import has_missing, impute, observed_score_samples, posterior_missing
from .statistics import SufficientStatistics, is_dask_array, map_rows, sufficient_statistics
from .validation import (
    Estimator,
    check_array,
    check_covariance,
    check_fitted,
    check_int,
    check_magnitude,
    check_n_features,
    check_random_state,
)

__all__ = ["moments", "check_statistics", "statistics_of", "e_step", "m_step", "elbo_from_moments",
           "elbo_error", "log_likelihood_from_moments", "reconstruction_objective", "ritz_scale_step",
           "run_em", "LinearGaussianModel"]


# --------------------------------------------------------------------------------------------
# Sufficient statistics
# --------------------------------------------------------------------------------------------

def moments(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sample mean x̄ and biased covariance S = (1/N) Σ (x_n − x̄)(x_n − x̄)ᵀ, centred first.

    The product is one symmetric rank-N update (BLAS ``dsyrk``: half the flops of a general
    product), exactly symmetric.
    """
    from scipy.linalg import blas

    mean = X.mean(axis=0)
    Xc = X - mean
    A = Xc.T if Xc.flags.c_contiguous else np.asfortranarray(Xc).T   # (D, N), Fortran order
    upper = blas.dsyrk(1.0 / X.shape[0], A, trans=0, lower=0)
    S = np.triu(upper) + np.triu(upper, 1).T
    return mean, S


def _checked_in_memory(X, name: str = "X"):
    """``X`` checked as :func:`check_array` and :func:`_check_scale` would, for the common case
    of a float64 2-D ndarray with at least two rows, in the two reductions max and min only:
    NaN propagates into both and ±inf shows in one, so finite extremes mean finite entries and
    the separate isfinite pass is not needed. Anything else (other types, non-finite entries)
    goes through those two checks, which raise the precise errors."""
    if _fast_path(X):
        hi, lo = float(np.max(X)), float(np.min(X))
        if np.isfinite(hi) and np.isfinite(lo):
            return _check_scale(X, name, big=max(abs(hi), abs(lo)))
    return _check_scale(check_array(X, name, min_samples=2), name)


def _fast_path(X) -> bool:
    return (type(X) is np.ndarray and X.dtype == np.float64 and X.ndim == 2
            and X.shape[0] >= 2 and X.shape[1] >= 1)


def checked_moments(X, name: str = "X") -> tuple[np.ndarray, np.ndarray, int]:
    """``(mean, S, N)`` of X (:func:`moments`), with every check of :func:`_checked_in_memory`,
    for a float64 ndarray without a pass of its own: the checks are read off the results.

    - Non-finite entries: NaN and ±inf propagate into the column sums, so a finite mean and a
      finite diagonal of S mean finite entries (an overflowing sum shows as inf as well).
    - Magnitude: the largest entry satisfies ``max |m_d| ≤ big ≤ max_d (|m_d| + sqrt(N S_dd))``
      (as ``(x_nd − m_d)² ≤ N S_dd``) and ``big ≥ max_d sqrt(S_dd)`` (the root-mean-square
      deviation is at most twice the largest magnitude, halved here): when the bounds put big
      safely inside the limits of :func:`_check_scale` nothing more is needed.

    Anything else — other types, or a bound that does not decide — takes the checks of
    :func:`_checked_in_memory` first, which raise the precise errors, then :func:`moments`.
    """
    if _fast_path(X):
        n = X.shape[0]
        with np.errstate(all="ignore"):
            mean, S = moments(X)
            d = np.diag(S)
            am = np.abs(mean)
            upper = float(np.max(am + np.sqrt(n * d)))
            lower = max(float(np.max(am)), 0.5 * float(np.sqrt(np.max(d))))
        if (np.isfinite(upper) and upper <= np.sqrt(np.finfo(float).max / X.size)
                and lower >= 1e8 * np.sqrt(np.finfo(float).tiny)):
            return mean, S, n
    X = _checked_in_memory(X, name)
    mean, S = moments(X)
    return mean, S, X.shape[0]


def _check_scale(X: np.ndarray, name: str = "X", big: float | None = None) -> np.ndarray:
    """Refuse data whose second moments over- or underflow float64 (two reductions, no copy;
    none when ``big``, the largest magnitude, is given)."""
    if big is None:
        big = max(abs(float(np.max(X))), abs(float(np.min(X))))
    if big > np.sqrt(np.finfo(float).max / X.size):
        check_magnitude(X, name)               # raises, naming X and the limit
    if 0.0 < big < 1e8 * np.sqrt(np.finfo(float).tiny):
        raise ValueError(
            f"{name} has no entry larger than {big:.3g} in magnitude: its squares underflow float64 "
            f"(below {np.finfo(float).tiny:.3g}); rescale {name}, e.g. divide by its standard deviation"
        )
    return X


def check_statistics(X=None, S=None, n_samples=None, mean=None, *, from_covariance=None):
    """Validate data X, or a covariance S with ``n_samples`` and an optional ``mean``.

    Which one is meant is ``from_covariance`` (default: S was given). Returns ``(mean, S, n)`` as
    new arrays that the model owns (the caller's are never kept).
    """
    if from_covariance is None:
        from_covariance = S is not None
    if not from_covariance:
        return checked_moments(X, "X")
    S = np.array(check_covariance(S, "S"), dtype=float, copy=True)
    n_samples = check_int(n_samples, "n_samples", minimum=2)
    if mean is None:
        mu = np.zeros(S.shape[0])
    else:
        mu = np.array(check_array(mean, "mean", ndim=1), dtype=float, copy=True)
        if mu.shape[0] != S.shape[0]:
            raise ValueError(f"mean has {mu.shape[0]} entries, S is {S.shape[0]}x{S.shape[0]}")
    return mu, (S + S.T) / 2.0, n_samples


def statistics_of(X, name: str = "X") -> SufficientStatistics:
    """One pass over X — an array, a memmap, an iterable of 2-D chunks, a Dask array, or already a
    :class:`~latentmodels.statistics.SufficientStatistics` — into (n, mean, centred m2), refusing
    magnitudes whose second moments overflow float64."""
    if isinstance(X, SufficientStatistics):
        return X
    if X is None:
        raise TypeError(f"{name} must be an array of numbers, got None")
    if isinstance(X, (list, tuple)) and not (len(X) and np.ndim(X[0]) == 2):
        X = check_array(X, name, min_samples=2)       # rows as lists, not a list of chunks
    if isinstance(X, np.ndarray) and not isinstance(X, np.memmap):
        # in memory: one centred pass and one dsyrk (:func:`moments`), the fastest exact route
        mean, S, n = checked_moments(X, name)
        return SufficientStatistics(n, mean, S * n)
    stats = sufficient_statistics(X, name, min_samples=2)
    if not np.all(np.isfinite(stats.m2)):
        raise ValueError(f"{name} has entries whose squares overflow float64; rescale {name}, e.g. "
                         "divide by its standard deviation")
    return stats


# --------------------------------------------------------------------------------------------
# E-step, M-step, ELBO on (S, W, Ψ)
# --------------------------------------------------------------------------------------------

def _isotropic(psi: np.ndarray) -> bool:
    return bool(np.all(psi == psi[0]))


def e_step(W: np.ndarray, psi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The exact posterior q(z | x) = N(B (x − μ), G) (Bishop PRML eqs. 12.66–12.68, 12.41–12.42).

    Diagonal Ψ: ``G = M⁻¹``, ``B = M⁻¹ Wᵀ Ψ⁻¹`` with ``M = I + Wᵀ Ψ⁻¹ W`` from
    :func:`latentmodels.gaussian.capacitance`. Isotropic Ψ = σ² I (including σ² = 0):
    ``B = (WᵀW + σ² I)⁻¹ Wᵀ``, ``G = σ² (WᵀW + σ² I)⁻¹``. Returns ``(B, G)``: B (L, D), G (L, L).
    """
    n_comp = W.shape[1]
    if _isotropic(psi):
        s2 = float(psi[0])
        Lm = gs.cholesky(W.T @ W + s2 * np.eye(n_comp), "W^T W + sigma2 I")
        Minv = gs.chol_solve(Lm, np.eye(n_comp))
        B = gs.chol_solve(Lm, W.T)
        G = s2 * Minv
    else:
        LM, Wp = gs.capacitance(W, psi)
        G = gs.chol_solve(LM, np.eye(n_comp))
        B = gs.chol_solve(LM, Wp.T)
    return B, (G + G.T) / 2.0


def m_step(S: np.ndarray, B: np.ndarray, G: np.ndarray, psi: np.ndarray, *,
           noise: str = "diagonal", psi_floor: np.ndarray | float = 0.0
           ) -> tuple[np.ndarray, np.ndarray]:
    """The M-step from S and the E-step's (B, G) (Bishop PRML eqs. 12.69–12.70, 12.56–12.57).

    - ``W_new = S Bᵀ (G + B S Bᵀ)⁻¹``
    - ``noise="diagonal"`` (FA): ``Ψ_new = max(diag(S − W_new B S), psi_floor)`` — per feature
      the ELBO is −½(log ψ + r/ψ), unimodal with its maximum at r, so flooring is the
      constrained maximum;
    - ``noise="isotropic"`` (PPCA): ``σ²_new = tr(S − W_new B S) / D``, returned as a vector;
    - ``noise="fixed"``: Ψ is held at ``psi`` (EM for W alone; Roweis 1998 at σ² = 0).
    """
    SB = S @ B.T                               # (1/N) Σ (x_n − x̄) E[z_n]ᵀ
    Ezz = G + B @ SB                           # (1/N) Σ E[z_n z_nᵀ]
    W = gs.chol_solve(gs.cholesky((Ezz + Ezz.T) / 2.0, "E[z z^T]"), SB.T).T
    if noise == "fixed":
        return W, psi
    resid = np.diag(S) - np.sum(W * SB, axis=1)  # diag(S − W_new B S)
    if noise == "isotropic":
        resid = np.full_like(resid, resid.mean())
    elif noise != "diagonal":
        raise ValueError(f"noise must be 'diagonal', 'isotropic' or 'fixed', got {noise!r}")
    return W, np.maximum(resid, psi_floor)


def _elbo_terms(S, W, psi, B, G, SB=None, BSB=None):
    """The ELBO's two parts and its terms (for :func:`float_error`); ``SB = S Bᵀ`` and
    ``BSB = B S Bᵀ`` may be passed when the caller has them already."""
    D, n_comp = W.shape
    if SB is None:
        SB = S @ B.T
    if BSB is None:
        BSB = B @ SB
    WtPW, Wp = gs.weighted_gram(W, psi)
    t_s = np.diag(S) / psi
    t_cross = 2.0 * Wp * SB
    t_quad = WtPW * (BSB + G)
    ell_terms = (D * gs.LOG_2PI, np.log(psi), t_s, t_cross, t_quad)
    ell = -0.5 * (D * gs.LOG_2PI + np.sum(np.log(psi)) + np.sum(t_s) - np.sum(t_cross) + np.sum(t_quad))
    log_det_G = gs.logdet(G)
    kl = gs.kl_to_standard_terms(np.trace(G), np.trace(BSB), log_det_G, n_comp)
    return ell, kl, ell_terms + (np.diag(G), np.diag(BSB), n_comp, log_det_G)


def elbo_from_moments(S: np.ndarray, W: np.ndarray, psi: np.ndarray, B: np.ndarray,
                      G: np.ndarray) -> ELBO:
    """Mean ELBO per sample of data with covariance S, for q(z|x) = N(B(x − x̄), G), μ = x̄.

    With ``m_n = B (x_n − μ)`` (Bishop PRML 9.4, 12.2.4; the terms of
    :func:`latentmodels.gaussian.expected_diag_loglik` and ``kl_to_standard_terms`` written on S):

    - ``E_q[log p(x|z)] = −½ [D log 2π + log|Ψ| + tr(Ψ⁻¹ S) − 2 tr(Ψ⁻¹ W B S)
      + tr(Wᵀ Ψ⁻¹ W (B S Bᵀ + G))]``
    - ``KL(q ‖ p(z)) = ½ [tr G + tr(B S Bᵀ) − L − log|G|]``

    When (B, G) is the E-step of (W, Ψ) this is the exact log-likelihood.
    """
    ell, kl, _ = _elbo_terms(S, W, psi, B, G)
    return ELBO(ell, kl)


def elbo_error(S, W, psi, B, G) -> float:
    """Floating-point error bound (nats) of :func:`elbo_from_moments` (see :func:`float_error`)."""
    D, n_comp = W.shape
    _, _, terms = _elbo_terms(S, W, psi, B, G)
    return float_error(*terms, n_ops=2 * (D + n_comp))


def log_likelihood_from_moments(S, W, psi) -> float:
    """Exact mean log p(x) of data with covariance S at μ = x̄: −½[D log 2π + log|C| + tr(C⁻¹S)].

    Computed as the ELBO at the exact posterior (Bishop PRML eq. 9.70 with KL(q‖p) = 0).
    """
    return elbo_from_moments(S, W, psi, *e_step(W, psi)).total


def reconstruction_objective(S, W, B) -> float:
    """−½ mean ‖x_n − x̄ − W B (x_n − x̄)‖² = −½ [tr S − 2 tr(W B S) + tr(WᵀW B S Bᵀ)].

    The objective of Roweis's (1998) EM for PCA (the σ² → 0 limit of σ² · ELBO, up to a constant).
    """
    SB = S @ B.T
    return -0.5 * (np.trace(S) - 2.0 * np.sum(W * SB) + np.sum((W.T @ W) * (B @ SB)))


def _reconstruction_error(S, W, B) -> float:
    SB = S @ B.T
    D, n_comp = W.shape
    return float_error(np.diag(S), 2.0 * W * SB, (W.T @ W) * (B @ SB), n_ops=2 * (D + n_comp))


def ritz_scale_step(S, W, sigma2=None):
    """The exact maximum of the PPCA likelihood over W with columns in span(W) (and σ² if None).

    With Q an orthonormal basis of span(W) and ``QᵀSQ = V diag(θ) Vᵀ``, every admissible W is
    ``Q A`` and ``C = Q AAᵀ Qᵀ + σ² I``; the likelihood is maximised by ``AAᵀ + σ² I =
    V diag(max(θ, σ²)) Vᵀ`` (the argument of Tipping & Bishop 1999, section 3.2, restricted to the
    subspace), i.e. ``W = Q V diag(max(θ − σ², 0))^½``. With σ² learned, ``σ² = tr((I − QQᵀ) S) /
    (D − L)`` when that is below every θ (else None is returned: no step). Returns ``(W, σ²)``.
    """
    D, n_comp = W.shape
    Q, _ = np.linalg.qr(W)
    T = Q.T @ S @ Q
    theta, V = np.linalg.eigh((T + T.T) / 2.0)
    if sigma2 is None:
        if n_comp >= D:
            return None
        s2 = max(float(np.trace(S) - np.trace(T)) / (D - n_comp), 0.0)
        if not s2 < theta.min():
            return None
    else:
        s2 = float(sigma2)
    return Q @ V * np.sqrt(np.maximum(theta - s2, 0.0)), s2


def _gram_change(W0, W1) -> float:
    """‖W1 W1ᵀ − W0 W0ᵀ‖_F / ‖W1 W1ᵀ‖_F in O(D L²).

    With ``[W1, W0] = Q R`` (thin QR), ``W1 W1ᵀ − W0 W0ᵀ = Q R J Rᵀ Qᵀ``, J = diag(I, −I), whose
    Frobenius norm is that of the 2L×2L matrix ``R J Rᵀ`` — accurate to round-off, unlike the
    expansion tr(A²) + tr(B²) − 2 tr(AB), which cancels below a relative change of √ε.
    """
    n_comp = W1.shape[1]
    _, Rf = np.linalg.qr(np.hstack([W1, W0]))
    J = np.concatenate([np.ones(n_comp), -np.ones(W0.shape[1])])
    diff = (Rf * J) @ Rf.T
    R1 = Rf[:n_comp, :n_comp]
    ref = np.linalg.norm(R1.T @ R1) if n_comp else 0.0
    return float(np.linalg.norm(diff) / max(ref, np.finfo(float).tiny))


def _subspace_change(W0, W1) -> float:
    """sin of the largest principal angle between span(W0) and span(W1) (spectral norm)."""
    Q0, _ = np.linalg.qr(W0)
    Q1, _ = np.linalg.qr(W1)
    s = np.linalg.svd(Q0.T @ Q1, compute_uv=False)
    return float(np.sqrt(max(1.0 - float(np.min(s)) ** 2, 0.0)))


def run_em(S, W, psi, *, noise="diagonal", psi_floor=0.0, tol=1e-8, max_iter=10000,
           accelerate=False, model_name="EM", param_tol=None, scale_step=False):
    """EM for FA or PPCA on the covariance S (Bishop PRML 12.2.4, 9.4), on the shared ascent loop.

    The E- and M-steps are handed to :func:`latentmodels.elbo.coordinate_ascent`, which records
    the ELBO (:func:`elbo_from_moments`; at σ² = 0 :func:`reconstruction_objective`) after each
    and raises if either lowers it by more than its floating-point error (:func:`elbo_error`).
    Convergence also needs the parameters to stop moving: the relative change of W Wᵀ plus the
    largest change of ψ relative to the largest ψ (σ² = 0: the sine of the largest principal angle
    between successive subspaces) at most ``param_tol`` (default ``tol``).

    ``accelerate`` adds a SQUAREM jump (:class:`latentmodels.acceleration.Squarem`) on
    (W, log ψ) before E-steps, kept only when it raises the exact log-likelihood.
    ``scale_step`` (isotropic noise only) adds :func:`ritz_scale_step` once the subspace has
    settled (its change below 1e-3): EM finds the subspace, the step sets the scale exactly, which
    EM alone approaches at the rate 1 − 2σ²(λ − σ²)/λ² → 1 as σ² → 0.
    Jumps are recorded under the labels "squarem" and "scale".

    Returns ``(AscentResult, W, psi)``.
    """
    D, n_comp = W.shape
    zero_noise = noise == "fixed" and float(psi[0]) == 0.0
    state = {"W": W, "psi": psi, "B": None, "G": None, "prev": None, "last": (W, psi),
             "subspace": None}

    def refresh():
        state["B"], state["G"] = e_step(state["W"], state["psi"])

    def expectation():
        refresh()

    def maximisation():
        state["W"], state["psi"] = m_step(S, state["B"], state["G"], state["psi"], noise=noise,
                                          psi_floor=psi_floor)
        # the parameters at the end of this and of the previous iteration (jumps included)
        state["prev"], state["last"] = state["last"], (state["W"], state["psi"])
        if scale_step and state["prev"] is not None:
            state["subspace"] = _subspace_change(state["prev"][0], state["W"])

    if zero_noise:
        def objective():
            return reconstruction_objective(S, state["W"], state["B"])

        def error():
            return _reconstruction_error(S, state["W"], state["B"])
    else:
        def objective():
            ell, kl, terms = _elbo_terms(S, state["W"], state["psi"], state["B"], state["G"])
            state["error"] = float_error(*terms, n_ops=2 * (D + n_comp))
            return ell - kl

        def error():
            return state["error"]

    def param_change():
        if state["prev"] is None:
            return np.inf
        (W0, psi0), (W1, psi1) = state["prev"], state["last"]
        if zero_noise:
            return _subspace_change(W0, W1)
        return _gram_change(W0, W1) + float(np.max(np.abs(psi1 - psi0)) / np.max(psi1))

    # --- jumps between EM iterations -----------------------------------------------------
    learn_noise = noise != "fixed"
    k = D * n_comp

    def theta():
        parts = [state["W"].ravel()]
        if learn_noise:
            parts.append(np.log(state["psi"][:1] if noise == "isotropic" else state["psi"]))
        return np.concatenate(parts)

    def unpack(t):
        Wt = t[:k].reshape(D, n_comp)
        if not learn_noise:
            return Wt, state["psi"]
        lp = t[k:]
        p = np.exp(np.full(D, lp[0]) if noise == "isotropic" else lp)
        return Wt, np.maximum(p, psi_floor)

    def value(t):
        Wt, pt = unpack(t)
        if zero_noise:
            return reconstruction_objective(S, Wt, e_step(Wt, pt)[0])
        return log_likelihood_from_moments(S, Wt, pt)

    def assign(t):
        state["W"], state["psi"] = unpack(t)
        refresh()

    squarem = Squarem(theta, value, assign) if accelerate else None

    def jump():
        label = squarem() if squarem is not None else None
        if scale_step and not zero_noise and state.get("subspace") is not None \
                and state["subspace"] < 1e-3:
            step = ritz_scale_step(S, state["W"], None if learn_noise else float(state["psi"][0]))
            if step is not None:
                W_new, s2 = step
                state["W"], state["psi"] = W_new, np.full(D, s2)
                refresh()
                if squarem is not None:
                    squarem.buffer = [theta()]
                label = "scale" if label is None else label + "+scale"
        return label

    result = coordinate_ascent([("E", expectation), ("M", maximisation)], objective, tol=tol,
                               max_iter=max_iter, model_name=model_name, error=error,
                               param_change=param_change,
                               param_tol=tol if param_tol is None else param_tol,
                               jump=jump if (accelerate or scale_step) else None)
    return result, state["W"], state["psi"]


# --------------------------------------------------------------------------------------------
# What every fitted linear-Gaussian model offers
# --------------------------------------------------------------------------------------------

class LinearGaussianModel(Estimator):
    """A fitted linear-Gaussian latent model x = W z + μ + ε, z ~ N(0, I), ε ~ N(0, diag(noise)).

    Subclasses set ``W_``, ``mu_`` and ``n_features_in_`` in ``fit`` and define
    :meth:`noise_variance` (FA: ``psi_``; PPCA: ``sigma2_`` repeated) and ``_isotropic``.
    """

    W_ = None
    mu_ = None
    n_features_in_ = None
    statistics_ = None
    _isotropic = False
    _needs_varying_features = False   # True where a constant feature makes the likelihood unbounded

    def noise_variance(self) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    # ---- fitting from data, chunks, statistics, or data with missing entries ------------------
    def _nan_is_missing(self, X) -> bool:
        """NaN entries are missing values only with ``missing="em"``; otherwise they are refused."""
        mode = getattr(self, "missing", "raise")
        if mode not in ("raise", "em"):
            raise ValueError(f"missing must be 'raise' or 'em', got {mode!r}")
        return mode == "em" and has_missing(X)

    def fit(self, X, y=None):
        """Fit to X: an array, a memmap, an iterable of 2-D chunks or a Dask array (one pass into
        sufficient statistics, :mod:`latentmodels.statistics`). With ``missing="em"``, NaN entries
        are missing values (EM on the observed entries, :mod:`latentmodels.missing`). Returns self."""
        if self._nan_is_missing(X):
            return self._fit_missing(X)
        try:
            statistics = statistics_of(X, "X")
        except ValueError as error:
            if "NaN" in str(error) and getattr(self, "missing", None) == "raise":
                raise ValueError(f"{error}; if NaN marks missing entries, pass missing='em' "
                                 "(EM on the observed entries)") from None
            raise
        return self.fit_from_statistics(statistics)

    def fit_from_statistics(self, statistics=None):
        """Fit to a :class:`~latentmodels.statistics.SufficientStatistics` (default: the ones
        accumulated by :meth:`partial_fit`). Returns self."""
        if statistics is None:
            check_fitted(self, ("statistics_",))
            statistics = self.statistics_
        if not isinstance(statistics, SufficientStatistics):
            raise TypeError("statistics must be a latentmodels.statistics.SufficientStatistics, "
                            f"got {type(statistics).__name__}")
        if statistics.n < 2:
            raise ValueError(f"statistics must hold at least 2 rows, got n={statistics.n}")
        S = statistics.covariance(ddof=0)
        self._fit_moments(np.array(statistics.mean + statistics.mean_lo, dtype=float),
                          (S + S.T) / 2.0, int(statistics.n))
        self.statistics_ = statistics
        return self

    def partial_fit(self, X_chunk, y=None, *, refit: bool = True):
        """Add a chunk of rows to the accumulated statistics (Chan–Golub–LeVeque merge) and, with
        ``refit=True`` (the default, as scikit-learn's partial_fit leaves a usable model), refit
        from all rows seen so far — a cold start from the statistics, the same deterministic fit as
        ``fit`` on all rows, costing one EM on D×D statistics whatever the number of rows. For many
        small chunks pass ``refit=False`` and call :meth:`fit_from_statistics` once at the end.

        While the rows seen so far cannot be fitted although more rows may fix that (a feature that
        has not varied yet, e.g. a pixel that is 0 in the first chunk of images), the refit waits:
        a warning says so, and the model is fitted by the first ``partial_fit`` whose accumulated
        rows allow it (fitted-only methods raise ``NotFittedError`` meanwhile)."""
        prev = self.statistics_
        chunk = sufficient_statistics(X_chunk, "X_chunk", min_samples=1 if prev is None else 0,
                                      n_features=None if prev is None else prev.n_features)
        self.statistics_ = chunk if prev is None else prev.merge(chunk)
        if refit and self.statistics_.n >= 2:
            reason = self._not_yet_fittable(self.statistics_)
            if reason is None:
                self.fit_from_statistics()
            else:
                warn_user(f"{type(self).__name__}.partial_fit: not refitted yet: {reason} in the "
                          f"{self.statistics_.n} rows seen so far; the model is fitted as soon as the "
                          "accumulated rows allow it", UserWarning)
        return self

    def _not_yet_fittable(self, statistics) -> str | None:
        """Why the accumulated rows cannot be fitted yet (constant features), or None."""
        d = np.diag(statistics.m2) / statistics.n
        constant = np.flatnonzero(d <= (64.0 * np.finfo(float).eps * np.abs(statistics.mean)) ** 2)
        if constant.size == d.size:
            return "every feature is constant"
        if constant.size and self._needs_varying_features:   # FA's per-feature ψ would be 0
            return f"feature(s) {constant[:10].tolist()} have not varied"
        return None

    def _fit_missing(self, X):  # pragma: no cover - models override
        raise ValueError(f"{type(self).__name__} does not handle missing values (NaN) in X")

    def impute(self, X):
        """X with each NaN replaced by E[x_missing | x_observed] under the fitted model (a new array;
        Bishop PRML eq. 2.81)."""
        check_fitted(self, ("W_", "mu_", "n_features_in_"))
        return impute(X, self.mu_, self.W_, self._noise())

    def _validate_X(self, X, name: str = "X") -> np.ndarray:
        check_fitted(self, ("W_", "mu_", "n_features_in_"))
        X = check_array(X, name)
        check_n_features(self, X, name)
        return X

    def _noise(self) -> np.ndarray:
        psi = self.noise_variance()
        if np.any(psi <= 0):
            raise ValueError(
                f"{type(self).__name__} has zero noise variance (sigma2_ = 0, the PCA limit): "
                "W Wᵀ is singular, so p(x) has no density and the ELBO is −∞; fit with a "
                "positive sigma2 for likelihoods"
            )
        return psi

    @property
    def n_components_(self) -> int:
        check_fitted(self, ("W_",))
        return self.W_.shape[1]

    def n_parameters(self) -> int:
        """Free parameters: D·L loadings − L(L−1)/2 rotations + D means + noise variances."""
        check_fitted(self, ("W_",))
        D, n_comp = self.W_.shape
        n_noise = 1 if self._isotropic else D
        return D * n_comp - n_comp * (n_comp - 1) // 2 + D + n_noise

    # ---- the marginal p(x) ---------------------------------------------------------------
    def get_covariance(self) -> np.ndarray:
        """The model covariance C = W Wᵀ + Ψ of the marginal p(x) (Bishop PRML eq. 12.36)."""
        check_fitted(self, ("W_",))
        return self.W_ @ self.W_.T + np.diag(self.noise_variance())

    def score_samples(self, X) -> np.ndarray:
        """log p(x_n) for each row, exact: ``log N(x | μ, W Wᵀ + Ψ)`` by Woodbury (Bishop 12.35).

        NaN entries are missing values: the row's observed-data log-likelihood. A Dask array gives
        a lazy Dask array chunked like X."""
        if is_dask_array(X):
            check_fitted(self, ("W_", "mu_", "n_features_in_"))
            return map_rows(X, self.score_samples)
        if self._nan_is_missing(X):
            check_fitted(self, ("W_", "mu_", "n_features_in_"))
            return observed_score_samples(X, self.mu_, self.W_, self._noise())
        X = self._validate_X(X)
        return gs.lowrank_logpdf(X, self.mu_, self.W_, self._noise())

    def log_likelihood(self, X) -> float:
        """Mean log p(x) per sample in nats, exact (observed-data log-likelihood with NaN)."""
        return float(np.mean(self.score_samples(X)))

    def score(self, X, y=None) -> float:
        """Average log-likelihood of the samples, as scikit-learn's ``FactorAnalysis.score``."""
        return self.log_likelihood(X)

    # ---- the posterior ---------------------------------------------------------------------
    def posterior(self, X) -> GaussianQ:
        """The exact posterior p(z | x) = N(B (x − μ), G) (Bishop PRML eqs. 12.66–12.68)."""
        if self._nan_is_missing(X):   # q(z_n | x_n,observed): per-row covariances
            check_fitted(self, ("W_", "mu_", "n_features_in_"))
            return GaussianQ(*posterior_missing(X, self.mu_, self.W_, self._noise()))
        X = self._validate_X(X)
        B, G = e_step(self.W_, self.noise_variance())
        return GaussianQ((X - self.mu_) @ B.T, G)

    def transform(self, X) -> np.ndarray:
        """Posterior means E[z | x], shape (N, L) (lazy for a Dask array)."""
        if is_dask_array(X):
            check_fitted(self, ("W_", "mu_", "n_features_in_"))
            return map_rows(X, self.transform, n_outputs=self.W_.shape[1])
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
        ``E_q[log p(x|z)]`` by :func:`latentmodels.gaussian.expected_diag_loglik` (it needs only
        the row-average of Σ_n) and ``KL(q_n ‖ N(0, I))`` averaged over rows by
        :meth:`GaussianQ.kl_to_standard` (the mean of log|Σ_n|). At the exact posterior the total
        equals :meth:`log_likelihood`; for any other q it is lower by KL(q ‖ p(z | x)).
        """
        X = self._validate_X(X)
        psi = self._noise()
        if q is None:
            q = self.posterior(X)
        if not isinstance(q, GaussianQ):
            raise TypeError(f"q must be a latentmodels.gaussian.GaussianQ, got {type(q).__name__}")
        n_comp = self.W_.shape[1]
        if q.mean.shape != (X.shape[0], n_comp):
            raise ValueError(f"q has means of shape {q.mean.shape}, expected {(X.shape[0], n_comp)}")
        R = X - self.mu_ - q.mean @ self.W_.T
        ell = gs.expected_diag_loglik(R, psi, self.W_, q.mean_cov())
        return ELBO(ell, q.kl_to_standard())
