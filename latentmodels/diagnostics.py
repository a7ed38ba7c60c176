"""Diagnostics for factor analysis and PPCA: fit statistics, summary tables, choosing L.

Fit statistics (as R's ``factanal`` and ``psych::fa`` report them; psych 2.2.9, ``fa.stats``).
With S the sample covariance (or correlation) matrix of N observations of D variables, the
fitted covariance Σ̂ = Λ Φ Λᵀ + Ψ of L factors, and the maximum-likelihood discrepancy

    F = log|Σ̂| − log|S| + tr(Σ̂⁻¹ S) − D                         (Jöreskog 1967; factanal's "objective")

- χ² = (N − 1 − (2D + 5)/6 − 2L/3) · F  (Bartlett's 1950 correction), clipped at 0 as psych does,
  on dof = ((D − L)² − (D + L))/2 degrees of freedom; p = P(χ²_dof > χ²).
- null (independence) model Σ₀ = diag(S): F₀ = −log|R| (R the correlation matrix of S),
  χ²₀ = (N − 1 − (2D + 5)/6) · F₀ on D(D − 1)/2 degrees of freedom.
- TLI (Tucker & Lewis 1973) in psych's form: (M₀ − M)/(M₀ − 1/m) with M₀ = F₀/dof₀, M = F/dof,
  m = N − 1 − (2D + 5)/6 − 2L/3.
- RMSEA (Steiger & Lind 1980) in psych's form: sqrt(max(χ²/(dof·N) − 1/(N − 1), 0)); its 90 %
  interval from the noncentral χ²: the noncentrality λ_U with P(χ²_dof(λ_U) ≤ χ²) = 0.05 and λ_L
  with P(χ²_dof(λ_L) ≤ χ²) = 0.95 (0 when χ² lies below the corresponding central quantile),
  mapped to sqrt(λ/((N − 1) dof)).
- BIC = χ² − dof · log N and SABIC = χ² − dof · log((N + 2)/24) (psych); AIC = χ² − 2 dof, the
  same χ²-form of Akaike's criterion relative to the saturated model (Akaike 1987; psych reports
  no AIC).

Choosing L: :func:`choose_n_components` fits L = 0 … L_max and tabulates the training
log-likelihood, the likelihood BIC = −2 N ℓ̄ + k log N (k free parameters), the held-out
log-likelihood, the χ² test above, and for PPCA Minka's (2000) Laplace approximation to the
evidence (his closing Laplace approximation to p(D | k); the same expression as scikit-learn's
``PCA(n_components="mle")``, which the tests check).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import special
from scipy import stats as sps
from scipy.optimize import brentq

from . import gaussian as gs
from .validation import (
    check_array,
    check_covariance,
    check_int,
    check_magnitude,
    check_positive,
    check_random_state,
    warn,
)

__all__ = ["FitStatistics", "fit_statistics", "summary", "DimensionTable", "choose_n_components",
           "minka_log_evidence", "rmsea_interval"]


# --------------------------------------------------------------------------------------------
# Fit statistics
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FitStatistics:
    """Likelihood-ratio test and fit indices of an L-factor model (see the module docstring)."""

    n_samples: int
    n_features: int
    n_components: int
    objective: float          # F, the ML discrepancy (factanal's criteria["objective"])
    chi2: float               # Bartlett-corrected χ² (factanal's STATISTIC)
    dof: float
    p_value: float
    null_objective: float     # F₀
    null_chi2: float
    null_dof: float
    tli: float
    rmsea: float
    rmsea_interval: tuple     # (lower, upper) at `confidence`
    confidence: float
    bic: float
    sabic: float
    aic: float
    log_likelihood: float     # mean log p(x) per sample (nats) of a N(mean, Σ̂) model at S

    def __str__(self) -> str:
        lo, hi = self.rmsea_interval
        p = "nan" if np.isnan(self.p_value) else f"{self.p_value:.4g}"
        if self.dof <= 0:
            # factanal refuses dof < 0 ("too many factors") and reports no test at dof = 0;
            # psych prints NA for the p-value, RMSEA and BIC
            why = ("the model is saturated" if self.dof == 0 else
                   "the model has more free parameters than the covariance matrix has entries")
            return (
                f"No test of {self.n_components} factor(s) on {self.n_features} variables: "
                f"{self.dof:g} degrees of freedom ({why}).\n"
                f"  chi-square = {self.chi2:.4f}; AIC = {self.aic:.4f}\n"
                f"  null model: chi-square = {self.null_chi2:.4f} on {self.null_dof:g} degrees of freedom"
            )
        return (
            f"Test of the hypothesis that {self.n_components} factor(s) are sufficient:\n"
            f"  chi-square = {self.chi2:.4f} on {self.dof:g} degrees of freedom, p = {p}\n"
            f"  null model: chi-square = {self.null_chi2:.4f} on {self.null_dof:g} degrees of freedom\n"
            f"  RMSEA = {self.rmsea:.4f} ({100 * self.confidence:g}% CI {lo:.4f}, {hi:.4f}); "
            f"TLI = {self.tli:.4f}\n"
            f"  BIC = {self.bic:.4f}; SABIC = {self.sabic:.4f}; AIC = {self.aic:.4f}"
        )


def _ncx2_cdf(x, df, nc):
    return sps.chi2.cdf(x, df) if nc <= 0 else sps.ncx2.cdf(x, df, nc)


def rmsea_interval(chi2: float, dof: float, n_samples: int, confidence: float = 0.90) -> tuple:
    """psych's RMSEA confidence interval from the noncentral χ² (see the module docstring).

    The noncentrality is found by Brent's method on [0, max(N, χ²) + 2N] (psych's bracket,
    enlarged if needed) to full double precision; psych uses R's ``uniroot`` at its default
    tolerance (~1e-4 in λ).
    """
    if not dof > 0:
        return (np.nan, np.nan)
    tail = (1 - confidence) / 2
    upper_end = max(n_samples, chi2) + 2 * n_samples

    def root(p):
        hi = upper_end
        while _ncx2_cdf(chi2, dof, hi) > p:
            hi *= 2
        return brentq(lambda nc: _ncx2_cdf(chi2, dof, nc) - p, 0.0, hi, xtol=1e-14, rtol=1e-15,
                      maxiter=500)

    scale = (n_samples - 1) * dof
    central = sps.chi2.cdf(chi2, dof)
    upper = np.sqrt(root(tail) / scale) if central > tail else 0.0
    lower = np.sqrt(root(1 - tail) / scale) if central > 1 - tail else 0.0
    return (float(lower), float(upper))


def fit_statistics(S, n_samples: int, loadings, psi, *, phi=None, confidence: float = 0.90) -> FitStatistics:
    """χ² test, RMSEA (with interval), TLI, BIC, AIC of the fit Σ̂ = Λ Φ Λᵀ + diag(ψ) to S.

    ``S`` is the matrix the model was fitted to: a sample covariance or a correlation matrix
    (F is unchanged when S and Σ̂ are rescaled together, so either gives the same statistics);
    ``loadings`` (D, L) are W or rotated loadings (with their ``phi``), ``psi`` the uniquenesses.
    The formulas are those of the module docstring (factanal, psych::fa.stats).
    """
    S = check_covariance(S, "S")
    n = check_int(n_samples, "n_samples", minimum=2)
    raw = np.asarray(loadings) if loadings is not None else None
    if raw is not None and raw.ndim == 2 and raw.shape[1] == 0:   # L = 0: the independence model
        Lam = np.zeros(raw.shape)
    else:
        Lam = check_array(loadings, "loadings")
    psi = check_array(psi, "psi", ndim=1)
    D, L = Lam.shape
    if S.shape[0] != D or psi.shape[0] != D:
        raise ValueError(f"S is {S.shape[0]}x{S.shape[0]}, loadings have {D} rows, psi {psi.shape[0]} "
                         "entries: they must agree")
    if np.any(psi <= 0):
        raise ValueError("psi must be positive (uniquenesses)")
    confidence = check_positive(confidence, "confidence")
    if not confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    if phi is not None:
        phi = check_array(phi, "phi")
        Lam = Lam @ gs.cholesky(phi, "phi")     # Λ Φ Λᵀ = (Λ C)(Λ C)ᵀ
    Sigma = Lam @ Lam.T + np.diag(psi)
    C_sigma = gs.cholesky(Sigma, "the fitted covariance")
    C_S = gs.cholesky(S, "S")
    logdet_sigma = gs.logdet(C_sigma, is_cholesky=True)
    trace = float(np.trace(gs.chol_solve(C_sigma, S)))
    F = float(logdet_sigma - gs.logdet(C_S, is_cholesky=True) + trace - D)
    bartlett = n - 1 - (2 * D + 5) / 6
    factor = bartlett - 2 * L / 3
    if not factor > 0:
        # psych then reports χ² = 0, p = 1 (a "perfect fit"), factanal a negative χ²: neither is a test
        warn(f"n_samples={n} is too small for the chi-square test of {L} factor(s) on {D} variables: "
             f"Bartlett's multiplier N - 1 - (2D + 5)/6 - 2L/3 = {factor:.3g} <= 0, so chi2, its "
             "p-value, RMSEA, TLI and BIC are not meaningful", UserWarning)
    chi2 = max(factor * F, 0.0)
    dof = ((D - L) ** 2 - (D + L)) / 2
    p_value = float(sps.chi2.sf(chi2, dof)) if dof > 0 else np.nan
    sd = np.sqrt(np.diag(S))
    F0 = float(-gs.logdet(C_S / sd[:, None], is_cholesky=True))   # −log|R|
    null_dof = D * (D - 1) / 2
    null_chi2 = F0 * bartlett
    if dof > 0:
        M0, M = F0 / null_dof, F / dof
        tli = (M0 - M) / (M0 - 1 / factor)
        rmsea = float(np.sqrt(max(chi2 / (dof * n) - 1 / (n - 1), 0.0)))
        interval = rmsea_interval(chi2, dof, n, confidence)
        bic = chi2 - dof * np.log(n)
        sabic = chi2 - dof * np.log((n + 2) / 24)
    else:
        tli = rmsea = bic = sabic = np.nan
        interval = (np.nan, np.nan)
    aic = chi2 - 2 * dof
    loglik = -0.5 * (D * gs.LOG_2PI + logdet_sigma + trace)
    return FitStatistics(n, D, L, F, float(chi2), float(dof), p_value, F0, float(null_chi2), float(null_dof),
                         float(tli), rmsea, interval, confidence, float(bic), float(sabic), float(aic),
                         float(loglik))


# --------------------------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------------------------

def _sorted_rows(L):
    """psych's fa.sort: group the variables by their largest |loading|, each group by decreasing size."""
    A = np.abs(L)
    best = np.argmax(A, axis=1)
    return np.lexsort((-A[np.arange(L.shape[0]), best], best))


def summary(model=None, *, loadings=None, psi=None, phi=None, S=None, n_samples=None, rotation=None,
            cutoff: float = 0.1, sort: bool = True, names=None, digits: int = 3) -> str:
    """The text a factanal / psych user expects, for a fitted model or for arrays.

    From ``model`` it reads (duck typing) ``loadings_`` (else ``W_``), ``psi_`` (else ``sigma2_``
    repeated), ``factor_correlation_`` (else I), ``rotation``, ``sample_covariance_`` and
    ``n_samples_``; the keyword arrays override them. Loadings and uniquenesses are shown
    standardised (divided by the model standard deviations sqrt(diag Σ̂), so h2 + u2 = 1, as
    factanal on a correlation matrix), rows sorted as psych's ``fa.sort`` when ``sort``, entries
    with |loading| < ``cutoff`` blank. Then SS loadings (diag(Φ ΛᵀΛ) for oblique factors, psych's
    convention), proportion and cumulative variance, factor correlations, and — when S and N are
    known — :func:`fit_statistics`.
    """
    if model is not None:
        def given_or(value, *attributes):     # the argument, else the model's first attribute set
            for attr in attributes:
                if value is None:
                    value = getattr(model, attr, None)
            return value
        loadings = given_or(loadings, "loadings_", "W_")
        psi = given_or(psi, "psi_")
        if psi is None and getattr(model, "sigma2_", None) is not None and loadings is not None:
            psi = np.full(np.shape(loadings)[0], float(model.sigma2_))
        phi = given_or(phi, "factor_correlation_")
        S = given_or(S, "sample_covariance_")
        n_samples = given_or(n_samples, "n_samples_")
        rotation = given_or(rotation, "rotation")
    if loadings is None or psi is None:
        raise ValueError("summary needs a fitted model (with W_ and psi_) or loadings= and psi=")
    Lam = check_array(loadings, "loadings")
    psi = check_array(psi, "psi", ndim=1)
    D, L = Lam.shape
    Phi = np.eye(L) if phi is None else check_array(phi, "phi")
    names = [f"x{i + 1}" for i in range(D)] if names is None else [str(v) for v in names]
    if len(names) != D:
        raise ValueError(f"names has {len(names)} entries, expected {D}")
    sd = np.sqrt(np.einsum("ij,jk,ik->i", Lam, Phi, Lam) + psi)
    Ls, u2 = Lam / sd[:, None], psi / sd**2
    h2 = 1 - u2
    order = _sorted_rows(Ls) if sort else np.arange(D)
    w = max(digits + 4, 6)
    nw = max(max(len(v) for v in names), 14)
    cols = [f"F{k + 1}" for k in range(L)]
    oblique = not np.allclose(Phi, np.eye(L))
    lines = [f"Factor analysis: {L} factor(s), {D} variables"
             + (f", N = {n_samples}" if n_samples is not None else "")
             + f", rotation: {rotation if rotation else 'none'}", ""]
    kind = "pattern matrix" if oblique else "loadings"
    lines.append(f"Standardised {kind} (|loading| < {cutoff:g} blank):")
    lines.append(" " * nw + "".join(f"{c:>{w}}" for c in cols) + f"{'h2':>{w}}{'u2':>{w}}")
    for i in order:
        cells = "".join(f"{'':>{w}}" if abs(v) < cutoff else f"{v:>{w}.{digits}f}" for v in Ls[i])
        lines.append(f"{names[i]:<{nw}}" + cells + f"{h2[i]:>{w}.{digits}f}{u2[i]:>{w}.{digits}f}")
    ss = np.einsum("ij,ij->j", Ls @ Phi, Ls)
    lines += ["", " " * nw + "".join(f"{c:>{w}}" for c in cols)]
    for label, row in [("SS loadings", ss), ("Proportion Var", ss / D),
                       ("Cumulative Var", np.cumsum(ss) / D)]:
        lines.append(f"{label:<{nw}}" + "".join(f"{v:>{w}.{digits}f}" for v in row))
    if oblique:
        lines += ["", "Factor correlations:", " " * nw + "".join(f"{c:>{w}}" for c in cols)]
        for k in range(L):
            lines.append(f"{cols[k]:<{nw}}" + "".join(f"{v:>{w}.{digits}f}" for v in Phi[k]))
    if S is not None and n_samples is not None:
        lines += ["", str(fit_statistics(S, n_samples, Lam, psi, phi=None if phi is None else Phi))]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Choosing the number of components
# --------------------------------------------------------------------------------------------

def minka_log_evidence(eigenvalues, n_components: int, n_samples: int) -> float:
    """Minka's (2000) Laplace approximation to log p(X | k) for PPCA with k components.

    "Automatic choice of dimensionality for PCA" (NIPS 13, and the longer MIT Media Lab tech. report
    514), the Laplace approximation to p(D | k) in which the paper ends (equation numbers differ
    between the two versions, so none is quoted here; the tests check it against scikit-learn's
    ``_assess_dimension``, an independent implementation of the same expression): with λ the
    eigenvalues of the sample covariance in decreasing order, d features, N samples,
    σ̂² = Σ_{j>k} λ_j/(d−k), m = dk − k(k+1)/2, and λ̂_j = λ_j (j ≤ k), σ̂² (j > k),

        log p(X|k) ≈ log p(U) − (N/2) Σ_{j≤k} log λ_j − (N(d−k)/2) log σ̂² + ((m+k)/2) log 2π
                     − ½ log|A_Z| − (k/2) log N,
        log p(U)  = −k log 2 + Σ_{i=1..k} [log Γ((d−i+1)/2) − ((d−i+1)/2) log π],
        log|A_Z| = Σ_{i≤k} Σ_{j>i} [log(λ̂_j⁻¹ − λ̂_i⁻¹) + log(λ_i − λ_j) + log N],

    up to terms that do not depend on k. k = 0 is the isotropic Gaussian (only the σ̂² term).
    """
    lam = np.sort(check_array(eigenvalues, "eigenvalues", ndim=1))[::-1]
    d = lam.shape[0]
    k = check_int(n_components, "n_components", minimum=0)
    N = check_int(n_samples, "n_samples")
    if k >= d:
        raise ValueError(f"n_components must be < the number of eigenvalues {d}, got {k}")
    eps = 1e-15
    if k > 0 and lam[k - 1] < eps:
        return -np.inf
    sigma2 = max(eps, float(np.sum(lam[k:])) / (d - k))
    i = np.arange(1, k + 1)
    half = (d - i + 1) / 2
    log_pu = -k * np.log(2.0) + float(np.sum(special.gammaln(half) - half * np.log(np.pi)))
    log_l = -N / 2 * float(np.sum(np.log(lam[:k]))) - N * (d - k) / 2 * np.log(sigma2)
    m = d * k - k * (k + 1) / 2
    lam_hat = np.concatenate([lam[:k], np.full(d - k, sigma2)])
    log_az = 0.0
    for a in range(k):
        j = np.arange(a + 1, d)
        log_az += float(np.sum(np.log((1 / lam_hat[j] - 1 / lam_hat[a]) * (lam[a] - lam[j])) + np.log(N)))
    return float(log_pu + log_l + (m + k) / 2 * gs.LOG_2PI - log_az / 2 - k / 2 * np.log(N))


@dataclass(frozen=True)
class DimensionTable:
    """The table of :func:`choose_n_components`; each column an array over ``n_components``."""

    model: str
    n_train: int
    n_test: int
    n_components: np.ndarray
    n_parameters: np.ndarray
    log_likelihood: np.ndarray           # mean per training sample, nats
    bic: np.ndarray                      # −2 N ℓ̄ + k log N (lower is better)
    heldout_log_likelihood: np.ndarray   # mean per test sample (nan without a test split)
    chi2: np.ndarray                     # Bartlett-corrected χ² of L factors (FA; nan for PPCA)
    dof: np.ndarray
    p_value: np.ndarray
    minka_log_evidence: np.ndarray       # PPCA only (nan for FA and for L = D)
    models: list = field(repr=False, compare=False, default_factory=list)

    def best(self, criterion: str = "bic") -> int:
        """L chosen by "bic" (min), "heldout" (max held-out ℓ̄), "minka" (max evidence) or
        "chi2" (the smallest L whose χ² test is not rejected at 5 %)."""
        if criterion == "bic":
            return int(self.n_components[np.nanargmin(self.bic)])
        if criterion == "heldout":
            if np.all(np.isnan(self.heldout_log_likelihood)):
                raise ValueError("criterion='heldout' needs held-out rows: this table was made with "
                                 "test_fraction=0; use choose_n_components(..., test_fraction=0.25)")
            return int(self.n_components[np.nanargmax(self.heldout_log_likelihood)])
        if criterion == "minka":
            if np.all(np.isnan(self.minka_log_evidence)):
                raise ValueError("criterion='minka' is Minka's PPCA evidence: it needs a table made "
                                 "with model='ppca'")
            return int(self.n_components[np.nanargmax(self.minka_log_evidence)])
        if criterion == "chi2":
            ok = np.flatnonzero(self.p_value >= 0.05)
            return int(self.n_components[ok[0]]) if ok.size else int(self.n_components[-1])
        raise ValueError(f"criterion must be 'bic', 'heldout', 'minka' or 'chi2', got {criterion!r}")

    def __str__(self) -> str:
        head = f"{'L':>3}{'params':>8}{'loglik':>12}{'BIC':>14}{'held-out':>12}"
        head += f"{'chi2':>12}{'dof':>6}{'p':>11}" if self.model == "fa" else f"{'Minka':>14}"
        rows = [f"{self.model.upper()}: N_train = {self.n_train}, N_test = {self.n_test}", head]
        for t in range(len(self.n_components)):
            r = (f"{self.n_components[t]:>3d}{self.n_parameters[t]:>8d}{self.log_likelihood[t]:>12.4f}"
                 f"{self.bic[t]:>14.2f}{self.heldout_log_likelihood[t]:>12.4f}")
            if self.model == "fa":
                r += f"{self.chi2[t]:>12.3f}{self.dof[t]:>6g}{self.p_value[t]:>11.3g}"
            else:
                r += f"{self.minka_log_evidence[t]:>14.2f}"
            rows.append(r)
        return "\n".join(rows)


def choose_n_components(X, max_components: int, model: str = "fa", *, test_fraction: float = 0.25,
                        random_state=None, **model_kwargs) -> DimensionTable:
    """Fit L = 0 … ``max_components`` and tabulate the criteria for choosing L.

    The rows of X are split at random (``random_state``) into a training part and a held-out
    fraction ``test_fraction`` (0 for none). On the training part: FA (``model="fa"``, L = 0 the
    independent Gaussian N(x̄, diag S)) or PPCA (``"ppca"``, L = 0 the isotropic N(x̄, (tr S/D) I)),
    their mean log-likelihood ℓ̄, BIC = −2 N ℓ̄ + k log N with k = D (means) + D·L − L(L−1)/2
    (loadings modulo rotation) + D (FA) or 1 (PPCA) noise parameters — capped at the saturated
    Gaussian's D + D(D+1)/2, which FA reaches where its dof ((D − L)² − (D + L))/2 < 0 — the held-out mean
    log-likelihood, for FA the Bartlett-corrected χ² test of L factors (:func:`fit_statistics`;
    at L = 0 it is the test of independence), and for PPCA Minka's Laplace evidence
    (:func:`minka_log_evidence`). ``model_kwargs`` go to the model's constructor.
    """
    from .fa import FactorAnalysis
    from .ppca import PPCA

    X = check_magnitude(check_array(X, "X", min_samples=4), "X")   # the models refuse these too
    N, D = X.shape
    if model not in ("fa", "ppca"):
        raise ValueError(f"model must be 'fa' or 'ppca', got {model!r}")
    max_components = check_int(max_components, "max_components", minimum=0)
    if max_components > D or (model == "ppca" and max_components >= D):
        raise ValueError(f"max_components must be <= {D if model == 'fa' else D - 1} for {model} "
                         f"on {D} features, got {max_components}")
    if not isinstance(test_fraction, (int, float)) or not 0 <= test_fraction < 1:
        raise ValueError(f"test_fraction must lie in [0, 1), got {test_fraction!r}")
    rng = check_random_state(random_state)
    perm = rng.permutation(N)
    n_test = int(round(test_fraction * N))
    if N - n_test < 2:
        raise ValueError(f"test_fraction={test_fraction} leaves {N - n_test} training rows; need >= 2")
    X_train, X_test = X[perm[n_test:]], X[perm[:n_test]]
    n = X_train.shape[0]
    mu = X_train.mean(axis=0)
    Xc = X_train - mu
    S = Xc.T @ Xc / n
    if model == "fa":
        # constant in its own units: spread within rounding of the column's magnitude
        const = np.flatnonzero(np.sqrt(np.diag(S)) <= 16 * np.finfo(float).eps
                               * np.max(np.abs(X_train), axis=0))
        if const.size:
            raise ValueError(
                f"X has {const.size} feature(s) constant over the {n} training rows (columns "
                f"{const[:10].tolist()}): factor analysis would give them zero uniqueness and an "
                "unbounded likelihood; drop them (e.g. X[:, X.std(axis=0) > 0]) or use model='ppca'"
            )
    lam = np.linalg.eigvalsh(S)[::-1]
    out = {k: [] for k in ("n_parameters", "ll", "bic", "heldout", "chi2", "dof", "p", "minka")}
    models = []
    for L in range(max_components + 1):
        if L == 0:
            W = np.zeros((D, 0))
            psi = np.diag(S).copy() if model == "fa" else np.full(D, np.trace(S) / D)
            fitted = None
        elif model == "fa":
            fitted = FactorAnalysis(L, **model_kwargs).fit(X_train)
            W, psi = fitted.W_, fitted.psi_
        else:
            fitted = PPCA(L, **model_kwargs).fit(X_train)
            W, psi = fitted.W_, np.full(D, float(fitted.sigma2_))
        models.append(fitted)
        # at most the saturated model's D + D(D+1)/2: beyond it (dof < 0) the covariance family is
        # all of the positive-definite matrices and the extra "parameters" are not identified
        k = min(D + D * L - L * (L - 1) // 2 + (D if model == "fa" else 1), D + D * (D + 1) // 2)
        ll = float(np.mean(gs.lowrank_logpdf(X_train, mu, W, psi))) if L else \
            float(np.mean(gs.diag_logpdf(X_train, mu, psi)))
        out["n_parameters"].append(k)
        out["ll"].append(ll)
        out["bic"].append(-2 * n * ll + k * np.log(n))
        if n_test:
            ho = gs.lowrank_logpdf(X_test, mu, W, psi) if L else gs.diag_logpdf(X_test, mu, psi)
            out["heldout"].append(float(np.mean(ho)))
        else:
            out["heldout"].append(np.nan)
        if model == "fa":
            st = fit_statistics(S, n, W, psi)
            out["chi2"].append(st.chi2)
            out["dof"].append(st.dof)
            out["p"].append(st.p_value)
            out["minka"].append(np.nan)
        else:
            out["chi2"].append(np.nan)
            out["dof"].append(np.nan)
            out["p"].append(np.nan)
            out["minka"].append(minka_log_evidence(lam, L, n))
    arr = {k: np.asarray(v, dtype=float) for k, v in out.items()}
    return DimensionTable(model, n, n_test, np.arange(max_components + 1), arr["n_parameters"].astype(int),
                          arr["ll"], arr["bic"], arr["heldout"], arr["chi2"], arr["dof"], arr["p"],
                          arr["minka"], models)
