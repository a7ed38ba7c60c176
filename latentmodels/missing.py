"""EM for factor analysis and PPCA when entries of X are missing (NaN).

The model is the linear-Gaussian one of FA and PPCA (Bishop PRML §12.2),

    z ~ N(0, I_L),   x | z ~ N(μ + W z, Ψ),   so   x ~ N(μ, C),  C = W Wᵀ + Ψ,

with Ψ diagonal (FA) or σ² I (PPCA). In row n only the coordinates O_n are observed; M_n are
missing, at random (MAR), so the likelihood of the observed data is

    log p(X_obs | θ) = Σ_n log N(x_{n,O} | μ_O, C_OO),      C_OO = W_O W_Oᵀ + Ψ_O,

which this module evaluates exactly through Woodbury and the determinant lemma (Bishop eqs.
C.7, C.14): with M_n = I + W_Oᵀ Ψ_O⁻¹ W_O and b_n = W_Oᵀ Ψ_O⁻¹ r_n, r_n = x_{n,O} − μ_O,

    log N = −½ [|O_n| log 2π + Σ_{d∈O} log ψ_d + log|M_n| + r_nᵀ Ψ_O⁻¹ r_n − b_nᵀ M_n⁻¹ b_n].

EM treats both z_n and the missing x_{n,M} as hidden (Ghahramani & Hinton 1996, "The EM algorithm
for mixtures of factor analyzers", Tech. Rep. CRG-TR-96-1, §4 for FA; Tipping & Bishop 1999,
J. R. Stat. Soc. B 61, §4.1 and appendix for PPCA; Ilin & Raiko 2010, JMLR 11, §3 for the
observed-coordinate posteriors):

E-step (exact posterior, so the ELBO equals log p(X_obs | θ) afterwards)
    q(z_n) = N(m_n, Σ_n),  Σ_n = M_n⁻¹,  m_n = Σ_n b_n        (Tipping & Bishop 1999 eq. 4.13
                                                                restricted to O_n)
    q(x_{n,M} | z_n) = N(μ_M + W_M z_n, Ψ_M)                  (the model's own conditional)

    Expected sufficient statistics over rows, with z̃ = (z, 1) and θ̃_d = (w_d, μ_d):
        A = Σ_n E[z̃ z̃ᵀ],  B_d = Σ_n E[x_d z̃ᵀ],  s_d = Σ_n E[x_d²]
    where for a missing d: E[x_d z̃ᵀ] = θ̃_d E[z̃ z̃ᵀ] and
    E[x_d²] = ψ_d + θ̃_d E[z̃ z̃ᵀ] θ̃_dᵀ.

M-step (Ghahramani & Hinton 1996 eqs. 14–15 with μ in the augmented loading)
    θ̃_new = B A⁻¹ (rows d),   ψ_d = (s_d − θ̃_new,d B_dᵀ) / N   (FA),
    σ² = mean_d of the same (PPCA), floored at ``min_psi`` × the observed variance of column d.

The ELBO after the M-step (q fixed, θ new) is computed exactly from the same statistics,

    L(q, θ) = Σ_d −½ [N log 2πψ_d + (s_d − 2 θ̃_d B_dᵀ + θ̃_d A θ̃_dᵀ)/ψ_d]
              − ½ [N L log 2π + tr Σ_n E[z zᵀ]] + H[q],
    H[q] = Σ_n ½ (L log 2πe + log|Σ_n|) + Σ_d |{n: d∈M_n}| ½ log 2πe ψ_d(old),

so "EM never goes down" is checked on both half-steps. With no missing entry every step is the
complete-data FA/PPCA EM step (Bishop eqs. 12.66–12.70) and the fit is today's.

Cost per iteration. Rows are grouped by missingness pattern; with P distinct patterns,
one Cholesky of an L×L matrix per pattern, O(P (D L² + L³)), plus O(N D L + N L² + N_mis L²)
for the posterior means and the statistics (N_mis missing entries; the missing-entry sums are
one (D × N)(N × L²) product). For block-structured missingness (P ≪ N) that is near-linear in
the observed entries; for entrywise-random missingness (P ≈ N) it is O(N D L²).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .statistics import is_dask_array
from .validation import ConvergenceWarning, check_int, check_positive, check_random_state

__all__ = [
    "MissingFit",
    "fit_missing",
    "observed_log_likelihood",
    "observed_score_samples",
    "posterior_missing",
    "impute",
    "check_missing",
    "has_missing",
]

_LOG_2PI = float(np.log(2.0 * np.pi))


@dataclass(frozen=True)
class MissingFit:
    """Result of :func:`fit_missing`.

    ``mu`` (D,), ``W`` (D, L), ``psi`` (D,) (constant for isotropic noise); ``log_likelihood`` the
    mean observed-data log-likelihood per row (nats) at the returned θ; ``history`` the mean ELBO
    per row after every half-step (labels in ``history_labels``: "E", "M"; the last is an "E", so
    ``history[-1] == log_likelihood``); ``n_iter`` EM iterations, ``converged``.
    """

    mu: np.ndarray
    W: np.ndarray
    psi: np.ndarray
    log_likelihood: float
    history: list = field(default_factory=list)
    history_labels: list = field(default_factory=list)
    n_iter: int = 0
    converged: bool = False
    n_samples: int = 0
    n_missing: int = 0


# --------------------------------------------------------------------------------------------
# Input
# --------------------------------------------------------------------------------------------

def has_missing(X) -> bool:
    """True if X is an in-memory 2-D float array (or list) with a NaN entry.

    Memmaps, Dask arrays and iterables of chunks give False without being read: the streaming
    path refuses their NaN itself (missing values need the data in memory).
    """
    if isinstance(X, np.memmap) or is_dask_array(X):
        return False
    if not (isinstance(X, (np.ndarray, list, tuple)) or hasattr(X, "__array__")):
        return False
    try:
        arr = np.asarray(X)
    except (ValueError, TypeError):
        return False
    if arr.ndim != 2 or arr.dtype.kind != "f":
        return False
    step = max(1, 2 ** 20 // max(1, arr.shape[1]))          # row blocks: no N×D temporary
    return any(np.isnan(arr[i:i + step]).any() for i in range(0, arr.shape[0], step))


def check_missing(X, name: str = "X", *, min_samples: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Validate X with NaN marking missing entries; return (float64 copy, observed mask).

    Raises TypeError for non-numeric data; ValueError for a wrong shape, an infinite entry, a row
    or a column with no observed entry (naming it).
    """
    arr = np.asarray(X)
    if arr.dtype.kind == "O" or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(f"{name} must hold real numbers (NaN for missing), got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise TypeError(f"{name} must hold real numbers, got complex dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array, got {arr.ndim}-D with shape {arr.shape}")
    if arr.shape[0] < min_samples:
        raise ValueError(f"{name} needs at least {min_samples} sample(s), got {arr.shape[0]}")
    if arr.shape[1] < 1:
        raise ValueError(f"{name} has no features (shape {arr.shape})")
    arr = np.array(arr, dtype=np.float64)          # a copy: the caller's array is never touched
    inf = np.isinf(arr)
    if inf.any():
        i, j = np.argwhere(inf)[0]
        raise ValueError(f"{name} contains an infinite value at index ({i}, {j}); only NaN may "
                         "mark a missing entry")
    observed = ~np.isnan(arr)
    empty_rows = np.flatnonzero(~observed.any(axis=1))
    if empty_rows.size:
        raise ValueError(
            f"{name} has {empty_rows.size} row(s) with no observed entry (rows "
            f"{empty_rows[:10].tolist()}): they carry no information; drop them"
        )
    empty_cols = np.flatnonzero(~observed.any(axis=0))
    if empty_cols.size:
        raise ValueError(
            f"{name} has {empty_cols.size} column(s) with no observed entry (columns "
            f"{empty_cols[:10].tolist()}): their mean and noise are not identified; drop them"
        )
    return arr, observed


def _check_params(mu, W, psi, D):
    mu = np.asarray(mu, dtype=np.float64)
    W = np.asarray(W, dtype=np.float64)
    psi = np.broadcast_to(np.asarray(psi, dtype=np.float64), (D,)).copy()
    if mu.shape != (D,) or W.ndim != 2 or W.shape[0] != D:
        raise ValueError(f"mu must be ({D},) and W ({D}, L); got {mu.shape} and {W.shape}")
    if not np.all(psi > 0):
        raise ValueError("psi must be positive")
    return mu, W, psi


# --------------------------------------------------------------------------------------------
# E-step: per-pattern Cholesky factors, per-row posteriors, exact observed log-likelihood
# --------------------------------------------------------------------------------------------

class _Patterns:
    """Rows grouped by their observed mask: ``masks`` (P, D) bool, ``index`` (N,), ``counts``."""

    def __init__(self, observed):
        masks, index = np.unique(observed, axis=0, return_inverse=True)
        self.masks = masks
        self.index = np.asarray(index).reshape(-1)
        self.counts = np.bincount(self.index, minlength=masks.shape[0])
        self.observed = observed
        self.any_missing = not observed.all()
        self.n_obs = observed.sum(axis=1)
        self.missing_f = (~observed).astype(np.float64) if self.any_missing else None
        self.n_missing_col = (~observed).sum(axis=0)


def _posterior(Xz, pat: _Patterns, mu, W, psi):
    """q(z_n | x_{n,O}) for every row and log N(x_{n,O} | μ_O, C_OO).

    ``Xz`` is X with NaN replaced by 0. Returns (m (N, L), Sigma_p (P, L, L), logdet_M (P,), loglik (N,)).
    Tipping & Bishop 1999 eq. 4.13 on the observed coordinates; Woodbury as in the module docstring.
    """
    D, L = W.shape
    Wp = W / psi[:, None]
    outer = (W[:, :, None] * Wp[:, None, :]).reshape(D, L * L)          # w_d w_dᵀ / ψ_d
    M = pat.masks.astype(np.float64) @ outer
    M = M.reshape(-1, L, L) + np.eye(L)
    try:
        chol = np.linalg.cholesky(M)                                    # one per pattern
    except np.linalg.LinAlgError:  # pragma: no cover - M ⪰ I always
        raise ValueError("I + W_O^T Psi_O^-1 W_O is not positive definite") from None
    eye = np.broadcast_to(np.eye(L), M.shape)
    Linv = np.linalg.solve(chol, eye)                                   # triangular inverses, L×L
    Sigma = np.swapaxes(Linv, 1, 2) @ Linv                              # M⁻¹ = L⁻ᵀ L⁻¹
    logdet_M = 2.0 * np.sum(np.log(np.diagonal(chol, axis1=1, axis2=2)), axis=1)
    R = np.where(pat.observed, Xz - mu, 0.0)
    b = (R / psi) @ W                                                   # W_Oᵀ Ψ_O⁻¹ r_n
    m = np.einsum("nkl,nl->nk", Sigma[pat.index], b)
    quad = np.sum(R * R / psi, axis=1) - np.sum(b * m, axis=1)
    logpsi_o = pat.observed.astype(np.float64) @ np.log(psi)
    loglik = -0.5 * (pat.n_obs * _LOG_2PI + logpsi_o + logdet_M[pat.index] + quad)
    return m, Sigma, logdet_M, loglik


def _expected_statistics(Xz, pat: _Patterns, mu, W, psi):
    """E-step: the expected complete-data statistics (A, B, s), the entropy of q, and log p(X_obs)."""
    N, D = Xz.shape
    L = W.shape[1]
    m, Sigma, logdet_M, loglik = _posterior(Xz, pat, mu, W, psi)
    Ezz = np.tensordot(pat.counts, Sigma, axes=1) + m.T @ m             # Σ_n E[z zᵀ]
    Ez = m.sum(axis=0)
    A = np.empty((L + 1, L + 1))
    A[:L, :L], A[:L, L], A[L, :L], A[L, L] = Ezz, Ez, Ez, N
    B = np.empty((D, L + 1))
    B[:, :L] = Xz.T @ m                                                  # observed x_d E[z]ᵀ
    B[:, L] = Xz.sum(axis=0)
    s = np.sum(Xz * Xz, axis=0)
    n_mis = pat.n_missing_col
    if pat.any_missing:
        # per feature d: Σ over rows where d is missing of E[z̃ z̃ᵀ] (as (L+1)² blocks)
        T = Sigma[pat.index] + m[:, :, None] * m[:, None, :]
        U = (pat.missing_f.T @ T.reshape(N, L * L)).reshape(D, L, L)    # Σ E[z zᵀ]
        Um = pat.missing_f.T @ m                                         # Σ E[z]
        theta = np.hstack([W, mu[:, None]])
        Zt = np.empty((D, L + 1, L + 1))
        Zt[:, :L, :L], Zt[:, :L, L], Zt[:, L, :L], Zt[:, L, L] = U, Um, Um, n_mis
        B += np.einsum("dk,dkl->dl", theta, Zt)                          # θ̃_d E[z̃ z̃ᵀ]
        s += n_mis * psi + np.einsum("dk,dkl,dl->d", theta, Zt, theta)
    entropy = (0.5 * np.sum(pat.counts * (L * (1.0 + _LOG_2PI) - logdet_M))
               + 0.5 * np.sum(n_mis * (1.0 + _LOG_2PI + np.log(psi))))
    return {"A": A, "B": B, "s": s, "N": N, "entropy": entropy, "trace_Ezz": np.trace(Ezz),
            "psi": psi}, loglik


def _m_step(st, noise, floor):
    """Ghahramani & Hinton 1996 eqs. 14–15 (μ in the augmented loading θ̃ = [W, μ])."""
    A, B, s, N = st["A"], st["B"], st["s"], st["N"]
    LA = np.linalg.cholesky(A)
    theta = np.linalg.solve(LA.T, np.linalg.solve(LA, B.T)).T            # B A⁻¹ by Cholesky
    L = A.shape[0] - 1
    if noise == "fixed":                     # Ψ held (PPCA with a given σ²): W, μ only
        return theta[:, L].copy(), theta[:, :L].copy(), st["psi"]
    raw = (s - np.sum(theta * B, axis=1)) / N
    if noise == "isotropic":
        raw = np.full_like(raw, raw.mean())
    psi = np.maximum(raw, floor)
    return theta[:, L].copy(), theta[:, :L].copy(), psi


def _elbo(st, mu, W, psi, L):
    """Σ_n ELBO of q (fixed by the last E-step) at θ = (μ, W, ψ); see the module docstring."""
    A, B, s, N = st["A"], st["B"], st["s"], st["N"]
    theta = np.hstack([W, mu[:, None]])
    quad = s - 2.0 * np.sum(theta * B, axis=1) + np.einsum("dk,kl,dl->d", theta, A, theta)
    ell = -0.5 * np.sum(N * (_LOG_2PI + np.log(psi)) + quad / psi)
    lpz = -0.5 * (N * L * _LOG_2PI + st["trace_Ezz"])
    return ell + lpz + st["entropy"]


# --------------------------------------------------------------------------------------------
# Public functions
# --------------------------------------------------------------------------------------------

def _initial(Xz, observed, L, noise, init, rng):
    N, D = Xz.shape
    mean = Xz.sum(axis=0) / observed.sum(axis=0)
    if isinstance(init, dict):
        mu, W, psi = _check_params(init["mu"], init["W"], init["psi"], D)
        if W.shape[1] != L:
            raise ValueError(f"init['W'] has {W.shape[1]} columns, n_components is {L}")
        if noise == "isotropic" and np.ptp(psi) > 0:
            raise ValueError("init['psi'] must be one value (or constant) when noise='isotropic'")
        return mu, W, psi
    Xc = np.where(observed, Xz - mean, 0.0)                   # mean imputation, centred
    S = Xc.T @ Xc / N
    if init == "random":
        scale = np.sqrt(np.mean(np.diag(S)))
        psi = np.full(D, np.mean(np.diag(S))) if noise == "isotropic" else np.diag(S).copy()
        return mean, rng.standard_normal((D, L)) * scale / np.sqrt(L), psi
    if init != "ppca":
        raise ValueError(f"init must be 'ppca', 'random' or a dict(mu=, W=, psi=), got {init!r}")
    # the same closed-form PPCA start as FactorAnalysis (Tipping & Bishop 1999 eqs. 7–8)
    lam, V = np.linalg.eigh((S + S.T) / 2.0)
    lam, V = lam[::-1], V[:, ::-1]
    sigma2 = max(lam[L:].mean() if L < D else lam[-1] / 2, 1e-3 * lam[0])
    W = V[:, :L] * np.sqrt(np.maximum(lam[:L] - sigma2, 1e-3 * lam[0]))
    psi = np.full(D, sigma2) if noise == "isotropic" else np.diag(S) - np.sum(W * W, axis=1)
    return mean, W, np.maximum(psi, 1e-3 * np.diag(S))


def fit_missing(X, n_components: int, *, noise: str = "diagonal", max_iter: int = 10000,
                tol: float = 1e-8, min_psi: float = 1e-6, init="ppca", random_state=None,
                fixed_psi=None, decrease_rtol: float = 1e-9) -> MissingFit:
    """Maximum-likelihood FA (``noise="diagonal"``) or PPCA (``"isotropic"``) on X with NaN entries.

    ``noise="fixed"`` keeps Ψ at ``fixed_psi`` (a scalar σ² or (D,)) and fits μ and W only (PPCA
    with a given σ²).

    EM on the observed entries (Ghahramani & Hinton 1996; Tipping & Bishop 1999 §4.1; see the
    module docstring for every formula and the cost per iteration, O(P(DL² + L³) + N D L +
    N_mis L²) for P missingness patterns). Stops when an iteration raises the mean observed
    log-likelihood by less than ``tol * max(1, |L|)`` (a ``ConvergenceWarning`` at ``max_iter``);
    raises ``RuntimeError`` if a half-step lowers the ELBO by more than ``decrease_rtol·max(1,|L|)``.

    ``init``: "ppca" (closed-form PPCA on the mean-imputed covariance, as FactorAnalysis starts),
    "random" (uses ``random_state``) or a dict with ``mu``, ``W``, ``psi``. Uniquenesses are
    floored at ``min_psi`` × the observed variance of each column (a warning if one ends there).
    Complete data (no NaN) give the complete-data EM iterates exactly.
    """
    from .validation import warn

    if noise not in ("diagonal", "isotropic", "fixed"):
        raise ValueError(f"noise must be 'diagonal', 'isotropic' or 'fixed', got {noise!r}")
    Xf, observed = check_missing(X, "X", min_samples=2)
    N, D = Xf.shape
    if isinstance(n_components, bool) or not isinstance(n_components, (int, np.integer)) \
            or not 1 <= n_components <= D:
        raise ValueError(f"n_components must be an integer in [1, {D}], got {n_components!r}")
    L = int(n_components)
    max_iter = check_int(max_iter, "max_iter")
    tol = check_positive(tol, "tol")
    min_psi = check_positive(min_psi, "min_psi")
    rng = check_random_state(random_state)
    # Work in standardised units: relative to the observed column means (keeps s_d − θ̃B_d free
    # of cancellation) and divided by the observed standard deviations (one common scale for
    # isotropic or fixed noise). ML is equivariant under x_d → c_d x_d + b_d (ψ_d → c_d² ψ_d,
    # log-likelihood − Σ_d n_d log c_d / N), so the start, the floors and the stopping rule are
    # then the same for data in any units, and squares of entries of 1e200 cannot overflow.
    n_obs = observed.sum(axis=0)
    big = np.max(np.abs(np.where(observed, Xf, 0.0)), axis=0)           # > 0 unless all zero
    big = np.where(big > 0, big, 1.0)
    centre = np.where(observed, Xf / big, 0.0).sum(axis=0) / n_obs * big
    Xz = np.where(observed, (Xf - centre) / big, 0.0)
    sd = np.sqrt(np.sum(Xz * Xz, axis=0) / n_obs) * big                 # observed sd, caller's units
    # constant per column, in that column's own units (a test against the largest variance of
    # all columns would call a column in small units constant): spread within rounding of its
    # magnitude, or a single observed entry
    constant = np.flatnonzero((sd <= 16 * np.finfo(float).eps * big) | (n_obs < 2))
    if constant.size and noise == "diagonal":
        raise ValueError(
            f"X has {constant.size} feature(s) constant on their observed entries or observed only "
            f"once (columns {constant[:10].tolist()}): their uniqueness would be 0 and the "
            "likelihood unbounded; drop them"
        )
    if noise == "diagonal":
        scale = sd
    else:
        top = sd.max()
        if not top > 0:
            raise ValueError("X is constant on its observed entries: there is no variance to model")
        scale = np.full(D, top * np.sqrt(np.mean((sd / top) ** 2)))      # rms sd, overflow-free
    Xz = Xz * (big / scale)
    var_obs = np.sum(Xz * Xz, axis=0) / n_obs                            # 1 for diagonal noise
    jacobian = -float(np.sum(n_obs * np.log(scale))) / N                 # per row, nats
    floor = min_psi * (var_obs.mean() if noise == "isotropic" else var_obs)
    if isinstance(init, dict):
        init = dict(init, mu=(np.asarray(init["mu"], dtype=np.float64) - centre) / scale,
                    W=np.asarray(init["W"], dtype=np.float64) / scale[:, None],
                    psi=np.asarray(init["psi"], dtype=np.float64) / scale ** 2)
    mu, W, psi = _initial(Xz, observed, L, noise, init, rng)
    if noise == "fixed":
        if fixed_psi is None:
            raise ValueError("noise='fixed' needs fixed_psi (the noise variance to keep)")
        psi = np.broadcast_to(np.asarray(fixed_psi, dtype=np.float64), (D,)).copy()
        if not np.all(psi > 0):
            raise ValueError(f"fixed_psi must be positive, got {fixed_psi!r}")
        psi = psi / scale ** 2
    pat = _Patterns(observed)

    history, labels = [], []
    previous = None
    converged = False
    ll_prev = None
    n_iter = 0

    def record(value, label, it):
        nonlocal previous
        value = value / N
        if not np.isfinite(value):
            raise FloatingPointError(f"fit_missing: the ELBO became {value} after the {label}-step")
        if previous is not None and value < previous - decrease_rtol * max(1.0, abs(previous)):
            raise RuntimeError(
                f"fit_missing: the {label}-step lowered the ELBO from {previous!r} to {value!r} at "
                f"iteration {it}; EM cannot do that, so an update is mis-derived"
            )
        history.append(value + jacobian)
        labels.append(label)
        previous = value

    for n_iter in range(1, max_iter + 1):
        st, loglik = _expected_statistics(Xz, pat, mu, W, psi)
        ll = float(np.sum(loglik))
        record(ll, "E", n_iter)
        if ll_prev is not None and ll / N - ll_prev / N <= tol * max(1.0, abs(ll / N)):
            converged = True
            n_iter -= 1          # this E-step only evaluated the last M-step's θ
            break
        ll_prev = ll
        mu, W, psi = _m_step(st, noise, floor)
        record(_elbo(st, mu, W, psi, L), "M", n_iter)
    else:
        st, loglik = _expected_statistics(Xz, pat, mu, W, psi)
        record(float(np.sum(loglik)), "E", n_iter)
        warn(f"fit_missing did not converge in max_iter={max_iter} iterations (tol={tol}); "
             "increase max_iter or tol", ConvergenceWarning)
    at_floor = np.flatnonzero(psi <= floor * (1 + 1e-9))
    if noise == "diagonal":
        for d in at_floor[:10]:
            warn(f"uniqueness psi[{d}] reached its lower bound min_psi * (observed variance of "
                 f"column {d}): a Heywood case; consider fewer components", ConvergenceWarning)
    return MissingFit(mu=mu * scale + centre, W=W * scale[:, None], psi=psi * scale ** 2,
                      log_likelihood=history[-1],
                      history=history, history_labels=labels, n_iter=n_iter,
                      converged=converged, n_samples=N, n_missing=int((~observed).sum()))


def observed_score_samples(X, mu, W, psi) -> np.ndarray:
    """Per-row ``log N(x_{n,O} | μ_O, W_O W_Oᵀ + Ψ_O)`` in nats (NaN marks missing), by Woodbury.

    ``psi`` may be a scalar (isotropic noise). Cost O(P(DL² + L³) + N D L) for P patterns.
    """
    Xf, observed = check_missing(X, "X")
    mu, W, psi = _check_params(mu, W, psi, Xf.shape[1])
    Xz = np.where(observed, Xf, 0.0)
    return _posterior(Xz, _Patterns(observed), mu, W, psi)[3]


def observed_log_likelihood(X, mu, W, psi) -> float:
    """Mean observed-data log-likelihood per row, (1/N) Σ_n log N(x_{n,O} | μ_O, C_OO), in nats."""
    return float(np.mean(observed_score_samples(X, mu, W, psi)))


def posterior_missing(X, mu, W, psi) -> tuple[np.ndarray, np.ndarray]:
    """q(z_n | x_{n,O}) = N(m_n, Σ_n): means (N, L) and covariances (N, L, L) (Tipping & Bishop 4.13)."""
    Xf, observed = check_missing(X, "X")
    mu, W, psi = _check_params(mu, W, psi, Xf.shape[1])
    pat = _Patterns(observed)
    m, Sigma, _, _ = _posterior(np.where(observed, Xf, 0.0), pat, mu, W, psi)
    return m, Sigma[pat.index]


def impute(X, mu, W, psi) -> np.ndarray:
    """X with each NaN replaced by E[x_{n,M} | x_{n,O}] = μ_M + W_M m_n (a new array).

    Equal to the Gaussian conditional mean μ_M + C_MO C_OO⁻¹ (x_O − μ_O) (Bishop PRML eq. 2.81),
    computed through the posterior of z in O(L) per missing entry after the E-step.
    """
    Xf, observed = check_missing(X, "X")
    mu, W, psi = _check_params(mu, W, psi, Xf.shape[1])
    m, _, _, _ = _posterior(np.where(observed, Xf, 0.0), _Patterns(observed), mu, W, psi)
    filled = mu + m @ W.T
    return np.where(observed, Xf, filled)
