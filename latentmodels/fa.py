"""Factor analysis by EM on sufficient statistics (Bishop PRML 12.2.4; Rubin & Thayer 1982).

The model, its posterior, E- and M-steps and ELBO live in :mod:`latentmodels.linear_gaussian`
(shared with PPCA and VB-PCA). This module adds what is particular to FA:

- **Scale-equivariant starts.** The default start is Jöreskog's (1967; also R's ``factanal``),
  ``ψ_d = (1 − L/(2D)) / (S⁻¹)_dd``, clipped to the floor ``min_psi · S_dd``, with W the profile
  maximiser for that Ψ. ``n_init − 1`` further starts draw ψ_d = S_dd · u_d, u_d = 0.01 + 0.98 · Beta(½, ½)
  (the arcsine law: its mass near 0 and 1 reaches the maxima where some uniquenesses are
  near zero, which uniform fractions in the middle rarely find).
  Every start runs EM (accelerated) into a basin, each basin is polished once; the best
  log-likelihood wins, and every start's final value (that of the maximum its EM reached) is kept
  in ``init_log_likelihoods_`` so that users see whether the optimum is unique.
- **Units do not matter.** Each fit runs on the correlation matrix ``R = D^{-½} S D^{-½}``
  (D = diag S) and maps back, ``W = D^½ W̃``, ``Ψ = D Ψ̃``; log-likelihoods and ELBOs shift by
  the Jacobian ``−½ Σ log S_dd``. ML factor analysis is scale-equivariant (Lawley & Maxwell 1971,
  section 2.5), so fitting X · diag(c) gives ψ_d c_d² and the log-likelihood minus Σ log c_d.
- **The profile-likelihood polish** (:func:`profile_polish`), recorded in the history as the
  labelled step "polish".
- **Heywood cases**: a warning for every uniqueness that ends on its floor.
"""

from __future__ import annotations

import numpy as np

from . import gaussian as gs
from . import rotations
from .acceleration import Squarem
from .elbo import AscentResult, check_finite_value, check_no_decrease, float_error, warn_user
from .linear_gaussian import (
    LinearGaussianModel,
    _elbo_terms,
    _gram_change,
    check_statistics,
    e_step,
    elbo_from_moments,
    log_likelihood_from_moments,
    m_step,
    moments,
    run_em,
)
from .missing import fit_missing
from .statistics import SufficientStatistics
from .validation import (
    ConvergenceWarning,
    check_fitted,
    check_int,
    check_n_components,
    check_positive,
    check_random_state,
)

__all__ = ["FactorAnalysis", "profile_polish", "joreskog_start",
           # re-exported from linear_gaussian for older callers
           "LinearGaussianModel", "e_step", "m_step", "elbo_from_moments", "moments", "run_em"]

_sufficient_statistics = check_statistics  # older name, kept for callers

MIN_PSI_NUMERICAL = 1e-12   # the floor used for min_psi = 0: Ψ⁻¹ must stay finite


def joreskog_start(S: np.ndarray, n_components: int) -> np.ndarray:
    """Jöreskog's (1967) starting uniquenesses ψ_d = (1 − L/(2D)) / (S⁻¹)_dd (R ``factanal``).

    ``(S⁻¹)_dd`` is the squared norm of column d of ``L⁻¹`` for ``S = L Lᵀ``. For singular S a
    ridge of 1e-10 · S_dd is added first. The start is scale-equivariant: S → cSc gives c²ψ.
    """
    from scipy.linalg import lapack

    D = S.shape[0]
    d = np.diag(S)
    for ridge in (0.0, 1e-10, 1e-6):
        Lc, info = lapack.dpotrf(S + ridge * np.diag(d), lower=1, clean=1)
        if info == 0:
            break
    else:  # pragma: no cover - S was validated positive semi-definite
        return 0.5 * d
    Linv, info = lapack.dtrtri(Lc, lower=1)          # L⁻¹; S⁻¹ = L⁻ᵀ L⁻¹
    inv_diag = np.einsum("ij,ij->j", Linv, Linv)
    return (1.0 - n_components / (2.0 * D)) / inv_diag


def _top_eig(A: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The n largest eigenvalues (descending) of the symmetric A and their eigenvectors: LAPACK
    ``dsyevr`` on that index range only (its cost beyond the tridiagonal reduction is O(D² n),
    not O(D³) as for all of them)."""
    from scipy import linalg

    D = A.shape[0]
    lam, U = linalg.eigh(A, subset_by_index=[D - n, D - 1], driver="evr", check_finite=False)
    return lam[::-1], U[:, ::-1]


# Below this D the direct eigendecomposition costs less than subspace iteration's fixed overhead
# (measured single-threaded: at D = 24, L = 8 dsyevr 102 µs against 173 µs for three certified
# steps; at D = 48 272 µs against 225 µs; at D = 96 522 µs against 172 µs)
WARM_MIN_FEATURES = 48


def _top_eig_warm(A: np.ndarray, n: int, Q: np.ndarray, *, max_iter: int = 8,
                  rtol: float = 1e-14, certify: bool = True, report: bool = False):
    """:func:`_top_eig` from a guess ``Q`` (D × n) of the leading subspace: subspace iteration
    (Golub & Van Loan, Matrix Computations, 4th ed., 8.2.4) finished by a Rayleigh–Ritz
    projection (8.1.2), falling back to :func:`_top_eig` unless it converges and is certified.

    One step, Q orthonormal: ``Y = A Q``, ``T = Qᵀ Y``; the residual of the subspace is
    ``Y − Q T`` (for the Ritz pairs ``T = V diag(θ) Vᵀ``, ``u_j = Q v_j`` it is ``A u_j − θ_j u_j``
    rotated by V, so its Frobenius norm bounds every Ritz residual); then ``Q ← qr(Y)``. Accepted
    when ``‖Y − Q T‖_F ≤ rtol · max_j T_jj`` (T_jj ≤ θ_max) and the Ritz values are certified to
    be the n largest with a relative gap: ``(θ_min / 2) I − (A − U Θ Uᵀ)`` must have a Cholesky
    factor, which holds exactly when every other eigenvalue of A is below θ_min / 2 (the deflated
    matrix has the remaining eigenvalues and, along U, zeros up to the residual). The sine of the
    largest angle between the Ritz subspace and the leading one is then at most
    ``‖r‖ / (θ_min / 2)`` (Davis–Kahan), near round-off. O(D² n) per step, against the O(D³)
    tridiagonal reduction of ``dsyevr``; eigenvalues descending, as :func:`_top_eig`'s.
    ``certify=False`` skips the certificate (for a start, where any invariant subspace near the
    guess will do). Returns ``(λ, U)``, with ``report=True`` ``(λ, U, warm)``, ``warm`` False when
    the direct method answered.
    """
    from scipy.linalg import lapack

    def orthonormal(Y):
        qr, tau, _, _ = lapack.dgeqrf(Y)
        return lapack.dorgqr(qr, tau)[0]

    Q = orthonormal(Q)
    previous = None
    for k in range(max_iter):
        Y = A @ Q
        T = Q.T @ Y
        res = float(np.linalg.norm(Y - Q @ T))
        target = rtol * float(np.max(np.diag(T)))
        if res <= target:
            theta, V, info = lapack.dsyev((T + T.T) / 2.0, compute_v=1, lower=1)
            if info != 0 or not theta[0] > 0.0:
                break
            U = Q @ V
            if not certify:
                return (theta[::-1], U[:, ::-1], True) if report else (theta[::-1], U[:, ::-1])
            B = -(A - (U * theta) @ U.T)
            B[np.diag_indices_from(B)] += 0.5 * theta[0]
            if lapack.dpotrf(B, lower=1, overwrite_a=1, clean=0)[1] == 0:
                return (theta[::-1], U[:, ::-1], True) if report else (theta[::-1], U[:, ::-1])
            break
        # the residual shrinks by about λ_{n+1}/λ_n a step: give up at once when the steps left
        # cannot reach the target at the rate seen (a small gap: the direct method is cheaper)
        if previous is not None:
            rate = res / previous
            if rate >= 1.0 or res * rate ** (max_iter - 1 - k) > target:
                break
        previous = res
        Q = orthonormal(Y)
    lam, U = _top_eig(A, n)
    return (lam, U, False) if report else (lam, U)


def profile_loadings(S: np.ndarray, psi: np.ndarray, n_components: int,
                     basis: np.ndarray | None = None) -> np.ndarray:
    """The W that maximises the likelihood for fixed Ψ: ``Ψ^½ U_L diag(max(λ_j − 1, 0))^½``,
    where ``Ψ^{-½} S Ψ^{-½} = U diag(λ) Uᵀ`` (Jöreskog 1967; Tipping & Bishop 1999 on the
    whitened data). A small positive floor on λ − 1 keeps W off the EM fixed point W = 0.

    With ``basis`` (D × L, spanning a guess of the leading subspace of ``S̃ = Ψ^{-½} S Ψ^{-½}``),
    the eigenpairs come from subspace iteration started there (:func:`_top_eig_warm`, at most 4
    steps, Ritz residuals below 1e-3 · λ_max, not certified to be the leading subspace: W to
    about 1e-3, enough for a start that EM moves anyway), O(D² L) a step instead of a D × D
    eigendecomposition; where that does not converge (a small gap λ_L / λ_{L+1}), and below
    ``WARM_MIN_FEATURES`` features, where it would cost more, the eigendecomposition is used.
    """
    s = 1.0 / np.sqrt(psi)
    A = S * s[:, None] * s[None, :]
    if basis is None or A.shape[0] < WARM_MIN_FEATURES:
        lam, U = _top_eig(A, n_components)
    else:
        lam, U = _top_eig_warm(A, n_components, basis, max_iter=4, rtol=1e-3, certify=False)
    return np.sqrt(psi)[:, None] * U * np.sqrt(np.maximum(lam - 1.0, 1e-2))


def profile_information(U: np.ndarray) -> np.ndarray:
    """The expected (Fisher) information of the profile log-likelihood in log ψ, per sample:
    ``½ P ∘ P`` with ``P = I − U Uᵀ`` (∘ the elementwise product).

    ``U`` (D × k) holds the whitened leading eigenvectors that carry the factors (those with
    λ > 1). The normal model's information is ``½ tr(C⁻¹ ∂_a C C⁻¹ ∂_b C)``; profiling out W
    and whitening by Ψ^{-½} (where ∂C/∂log ψ_d = ψ_d e_d e_dᵀ becomes e_d e_dᵀ) leaves ``½ M_ab²``
    with M the part of C̃⁻¹ orthogonal to the factors, which at the fit is the projector P
    (Jöreskog 1967, the approximate second derivatives of his Newton–Raphson method; Jennrich &
    Robinson 1969, Psychometrika 34, 111–123). It equals the Hessian of −ℓ when S = C and is
    close to it near the maximum for well-fitting data (the two differ by O(‖S − C‖)).
    """
    P = -(U @ U.T)
    P[np.diag_indices_from(P)] += 1.0
    return 0.5 * P * P


def profile_hessian(A: np.ndarray, n_components: int) -> np.ndarray:
    """The exact Hessian in log ψ of −ℓ, the mean negative profile log-likelihood that
    :func:`profile_polish` minimises, from the whitened ``A = S̃ = Ψ^{-½} S Ψ^{-½}``, by
    first-order perturbation of its eigenpairs (``∂λ_j/∂x_d = −λ_j U_dj²``,
    ``u_kᵀ (∂S̃/∂x_d) u_j = −½ U_dk U_dj (λ_j + λ_k)``, x = log ψ; Magnus & Neudecker 1999,
    Matrix Differential Calculus, 8.8):

        H = ½ [diag(S̃) − (U Λ Uᵀ) ∘ (U Uᵀ) − Σ_{j∈U} (u_j u_jᵀ) ∘ (V diag(a_j) Vᵀ)],
        a_jk = (λ_j − 1)(λ_j + λ_k) / (λ_j − λ_k),

    U, Λ the leading eigenpairs with λ > 1 (those that carry factors), V, λ_k all the others
    (within U the pairs combine to λ_j + λ_k, so only U against V divides by a gap). Needs the
    whole eigendecomposition, O(D³ L): used to finish a fit that the cheaper steps left short,
    where the Fisher information (:func:`profile_information`) is far from it, and from the
    start below ``WARM_MIN_FEATURES`` features, where it is cheap."""
    from scipy import linalg

    lam, U = linalg.eigh(A, check_finite=False)
    lam, U = lam[::-1], U[:, ::-1]
    used = np.zeros(lam.shape[0], dtype=bool)
    used[:n_components] = lam[:n_components] > 1.0
    Uu, lu, V, lv = U[:, used], lam[used], U[:, ~used], lam[~used]
    H = np.diag(np.diag(A)) - ((Uu * lu) @ Uu.T) * (Uu @ Uu.T)
    for j in range(Uu.shape[1]):
        a = (lu[j] - 1.0) * (lu[j] + lv) / (lu[j] - lv)
        H -= np.outer(Uu[:, j], Uu[:, j]) * ((V * a) @ V.T)
    return 0.25 * (H + H.T)             # ½ H, symmetrised against round-off


def _projected_newton(negative, curvature, x, lower, gtol, max_steps=8):
    """Minimise −ℓ(log ψ) subject to log ψ ≥ ``lower`` by projected Newton steps (Bertsekas
    1982, SIAM J. Control Optim. 20, 221–246) with the matrix ``curvature(x)`` for the Hessian
    (the Fisher information :func:`profile_information`: Fisher scoring; or the exact
    :func:`profile_hessian`), from ``x``.

    A coordinate on its bound whose gradient points out of the feasible set (−ℓ would fall
    below it) is held there (the active set); the free ones take the step
    ``x_F ← x_F − H_FF⁻¹ ∇_F(−ℓ)``, projected onto the bound. A step is kept if it lowers −ℓ,
    or, where −ℓ is flat to its round-off, if it lowers the projected gradient (near the
    maximum the gradient still resolves what the function's last digits cannot). Returns
    ``(x, done)``: ``done`` when the projected gradient (the free coordinates' gradient) reached
    ``gtol``; otherwise ``x`` is the last point kept."""
    from scipy.linalg import lapack

    def projected(x, g):
        free = ~((x <= lower) & (g > 0))
        return free, (float(np.max(np.abs(g[free]))) if np.any(free) else 0.0)

    f, g = negative(x)
    free, gmax = projected(x, g)
    for _ in range(max_steps):
        if gmax <= gtol:
            return x, True
        H_ff = curvature(x)[np.ix_(free, free)]
        c, info = lapack.dpotrf(H_ff, lower=1, clean=1)
        if info != 0:                      # not positive definite (e.g. (D − L)² < D): give up
            break
        x_new = x.copy()
        x_new[free] -= lapack.dpotrs(c, g[free], lower=1)[0]
        x_new = np.maximum(x_new, lower)
        f_new, g_new = negative(x_new)
        free_new, gmax_new = projected(x_new, g_new)
        flat = 64.0 * x.shape[0] * np.finfo(float).eps * max(1.0, abs(f))
        if not (f_new < f or (f_new <= f + flat and gmax_new < gmax)):
            break
        x, f, g, free, gmax = x_new, f_new, g_new, free_new, gmax_new
    return x, False


def _floor_jump(negative, x, lower, factor=10.0):
    """Near a Heywood case the profile likelihood in log ψ is flat towards ψ → 0 (its gradient
    there is ψ ∂ℓ/∂ψ → 0), so a quasi-Newton method stops short of the floor. Every ψ_d within
    ``factor`` of its floor whose gradient still points down is set onto the floor at once; the
    move is kept if it lowers −ℓ. Returns the point kept."""
    f, g = negative(x)
    near = (x > lower) & (x < lower + np.log(factor)) & (g > 0)
    if not np.any(near):
        return x
    x_try = np.where(near, lower, x)
    return x_try if negative(x_try)[0] < f else x


def profile_polish(S: np.ndarray, psi: np.ndarray, n_components: int,
                   floor: np.ndarray | float, *, gtol: float = 1e-12, ftol: float = 1e-15,
                   W: np.ndarray | None = None, full_output: bool = False
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Maximise the FA log-likelihood over Ψ with W profiled out (Jöreskog 1967).

    For fixed Ψ, let ``S̃ = Ψ^{-1/2} S Ψ^{-1/2} = U diag(λ) Uᵀ`` (λ descending). The W maximising
    the likelihood is ``W = Ψ^{1/2} U_L diag(max(λ_j − 1, 0))^{1/2}`` and the mean log-likelihood is

        ℓ(Ψ) = −½ [D log 2π + Σ_d log ψ_d + Σ_{j∈U} (log λ_j + 1) + tr S̃ − Σ_{j∈U} λ_j],

    U = {j ≤ L : λ_j > 1} (the other eigenvalues enter as Σ_{j∉U} λ_j = tr S̃ − Σ_{j∈U} λ_j).
    Its gradient in log ψ_d is ``½ Σ_{j∉U} U_dj² (λ_j − 1) = ½ [S̃_dd − 1 − Σ_{j∈U} U_dj² (λ_j − 1)]``
    (the rows of U have unit norm), from ``∂ℓ/∂Ψ = −½ diag(C⁻¹ − C⁻¹ S C⁻¹)``. Only the L
    leading eigenpairs are needed (:func:`_top_eig`). L-BFGS-B ascends ℓ in log ψ with
    ψ ≥ ``floor``, starting at ``psi``, until the projected gradient is below ``gtol`` or the
    relative gain of an iteration below ``ftol``. Returns ``(W, psi)``, with
    ``full_output=True`` ``(W, psi, ℓ)`` (ℓ by the formula above at the returned Ψ).

    Before L-BFGS-B, projected Fisher-scoring steps (:func:`_projected_newton` with the
    information of :func:`profile_information`; below ``WARM_MIN_FEATURES`` features, where it
    is cheap, with the exact Hessian :func:`profile_hessian`) are tried; where they reach the
    projected gradient ``gtol`` L-BFGS-B is not needed. After it, the floor jump (:func:`_floor_jump`) and
    projected Newton steps on the exact Hessian (:func:`profile_hessian`) finish where it stopped
    short.

    The eigenpairs of each evaluation start from those of the previous one (the first from the
    whitened loadings ``W`` at ``psi``, when given) by :func:`_top_eig_warm`, which falls back to
    the full :func:`_top_eig` unless its result is certified; below ``WARM_MIN_FEATURES``
    features, and after two fallbacks running, :func:`_top_eig` is called directly.
    """
    from scipy import optimize

    D = S.shape[0]
    floor = np.broadcast_to(np.asarray(floor, dtype=float), (D,))
    dS = np.diag(S).copy()
    last = {}

    def eig(log_psi):
        if last.get("x") is not None and np.array_equal(last["x"], log_psi):
            return last["eig"]
        s = np.exp(-0.5 * log_psi)
        A = S * s[:, None] * s[None, :]
        # warm: the previous evaluation's eigenvectors (or the whitened start W) span nearly
        # the leading subspace at the nearby log ψ the line search asks for next
        guess = last["eig"][1] if "eig" in last else (None if W is None else W * s[:, None])
        # the direct method for small D, and once subspace iteration has failed twice running
        # (a small gap: each attempt would only add to the direct method's cost)
        if guess is None or D < WARM_MIN_FEATURES or last.get("misses", 0) >= 2:
            lam, U = _top_eig(A, n_components)
        else:
            lam, U, warm = _top_eig_warm(A, n_components, guess, report=True)
            last["misses"] = 0 if warm else last.get("misses", 0) + 1
        last["x"], last["eig"] = np.array(log_psi, copy=True), (lam, U)
        return lam, U

    def negative(log_psi):
        lam, U = eig(log_psi)
        used = lam > 1.0
        diag = dS * np.exp(-log_psi)                       # S̃_dd
        lu = lam[used]
        value = np.sum(log_psi) + np.sum(np.log(lu) + 1.0) + np.sum(diag) - np.sum(lu)
        grad = 0.5 * (1.0 - diag + (U[:, used] ** 2) @ (lu - 1.0))   # of −ℓ, for the minimiser
        return 0.5 * value, grad

    lower = np.log(np.maximum(floor, np.finfo(float).tiny))
    x = np.log(np.maximum(psi, floor))
    def fisher(x):
        lam, U = eig(x)
        return profile_information(U[:, lam > 1.0])

    def exact(x):
        s = np.exp(-0.5 * x)
        return profile_hessian(S * s[:, None] * s[None, :], n_components)

    # below WARM_MIN_FEATURES the exact Hessian costs little more than the information
    x, done = _projected_newton(negative, exact if D < WARM_MIN_FEATURES else fisher, x, lower,
                                gtol)
    if not done:
        bounds = list(zip(lower, [None] * D))
        res = optimize.minimize(negative, x, jac=True, method="L-BFGS-B", bounds=bounds,
                                options={"ftol": ftol, "gtol": gtol, "maxiter": 2000,
                                         "maxls": 50})
        # L-BFGS-B may stop (on ftol) short of a floor or of the interior maximum: finish with
        # the floor jump and projected Newton steps on the exact Hessian
        x = _floor_jump(negative, np.maximum(res.x, lower), lower)
        x = _projected_newton(negative, exact, x, lower, gtol)[0]
    psi = np.exp(x)
    lam, U = eig(x)
    W = np.sqrt(psi)[:, None] * U * np.sqrt(np.maximum(lam - 1.0, 0.0))
    if full_output:
        return W, psi, -0.5 * D * gs.LOG_2PI - float(negative(x)[0])
    return W, psi


class _Trace:
    """The history of an EM run of :func:`_em_quick`, recorded as
    :func:`~latentmodels.elbo.coordinate_ascent` records one: the value after every step with its
    label ("E", "M", "squarem"), a step that lowers it by more than its floating-point error
    raising :class:`~latentmodels.elbo.ELBODecreaseError`. The error (:func:`float_error` of the
    terms) is a callable, evaluated only when a value is below the one before it."""

    def __init__(self, model_name: str):
        self.history: list[float] = []
        self.steps: list[str] = []
        self.model_name = model_name
        self.error = lambda: 0.0
        self.n_iter = 0
        self.converged = False

    def record(self, name: str, value: float, error) -> None:
        value = float(value)
        check_finite_value(value, name, self.n_iter, self.model_name)
        if self.history and value < self.history[-1]:
            check_no_decrease(self.history[-1], value, max(self.error(), error()), name,
                              self.n_iter, self.model_name)
        self.history.append(value)
        self.steps.append(name)
        self.error = error


def _em_quick(S, W, psi, floor, *, tol, param_tol, max_iter, accelerate, basins=(), trace=None):
    """EM (with SQUAREM jumps) on the covariance S: the screen that every start runs before the
    polish, recording its history into ``trace`` (a :class:`_Trace`) when one is given.

    The E- and M-steps are those of :func:`~latentmodels.linear_gaussian.e_step` /
    :func:`~latentmodels.linear_gaussian.m_step` (Bishop PRML eqs. 12.66–12.70), fused so that
    the exact log-likelihood of the current θ comes from the E-step's own factors:
    ``ℓ = −½ [D log 2π + log|Ψ| + log|M| + tr(Ψ⁻¹S) − tr(Ψ⁻¹ W M⁻¹ Wᵀ Ψ⁻¹ S)]`` with
    ``M = I + WᵀΨ⁻¹W`` (Bishop eqs. C.7, C.14); the ELBO after an M-step (the old q, the new θ)
    is :func:`~latentmodels.linear_gaussian.elbo_from_moments` on the E-step's ``S Bᵀ`` and
    ``E[z zᵀ]``. Stops when an iteration raises ℓ by at most
    ``tol · max(1, |ℓ|)`` and the parameters moved by at most ``param_tol`` (the measure of
    ``run_em``), or as soon as ψ comes within 1e-3 (every entry) of the end ψ of one of
    ``basins`` — pairs ``(psi, loglik)`` of maxima found already — while ℓ is still at most that
    maximum's value: EM has entered that basin, whose maximum is known. Returns
    ``(W, psi, loglik, n_iter, basin)``, ``basin`` the index of the basin entered or None.
    """
    from scipy.linalg import lapack

    D, n_comp = W.shape
    dS = np.diag(S).copy()
    eye = np.eye(n_comp)
    const = D * gs.LOG_2PI
    n_ops = 2 * (D + n_comp)

    # the L×L Cholesky factorisations and solves by LAPACK directly (dpotrf / dpotrs): the same
    # arithmetic as gaussian.cholesky / chol_solve without their per-call checks, which cost
    # more than the 10×10 factorisation itself; the L×L inverses G = M⁻¹ and E[zzᵀ]⁻¹ are
    # solved for once and multiplied, O(D L²), instead of D right-hand sides a solve
    def chol(A):
        c, info = lapack.dpotrf(A, lower=1, clean=1)
        if info != 0:
            raise np.linalg.LinAlgError("not positive definite")
        return c

    def solve(c, B):
        return lapack.dpotrs(c, B, lower=1)[0]

    def posterior(W, psi):
        # B = M⁻¹ WᵀΨ⁻¹ = G Wpᵀ is never formed: S Bᵀ = (S Wp) G, B S Bᵀ = G (Wpᵀ S Bᵀ)
        Wp = W / psi[:, None]
        LM = chol(eye + W.T @ Wp)
        G = solve(LM, eye)
        SB = (S @ Wp) @ G
        ll = -0.5 * (const + np.log(psi).sum() + 2.0 * np.log(np.diag(LM)).sum()
                     + (dS / psi).sum() - np.vdot(Wp, SB))
        return LM, G, Wp, SB, ll

    k = D * n_comp

    def unpack(t):
        return t[:k].reshape(D, n_comp), np.maximum(np.exp(t[k:]), floor)

    # each posterior is computed once: SQUAREM's value at the current state is the E-step that
    # follows it, and an accepted proposal's value is the E-step at the proposal
    cur = {"W": W, "psi": psi, "post": None}
    last = {"t": None}

    def current():
        if cur["post"] is None:
            cur["post"] = posterior(cur["W"], cur["psi"])
        return cur["post"]

    def value(t):
        Wt, pt = unpack(t)
        post = posterior(Wt, pt)
        last.update(t=t, W=Wt, psi=pt, post=post)
        return post[4]

    def assign(t):
        if last["t"] is t:
            cur["W"], cur["psi"], cur["post"] = last["W"], last["psi"], last["post"]
        else:
            (cur["W"], cur["psi"]), cur["post"] = unpack(t), None

    squarem = Squarem(lambda: np.concatenate([cur["W"].ravel(), np.log(cur["psi"])]), value,
                      assign, current_value=lambda: current()[4]) if accelerate else None
    recording = trace is not None
    prev_ll = None
    n_iter = 0
    converged = False
    for n_iter in range(1, max_iter + 1):
        jumped = squarem() if squarem is not None and n_iter > 1 else None
        W, psi = cur["W"], cur["psi"]
        LM, G, Wp, SB, ll = current()
        BSB = G @ (Wp.T @ SB)
        Ezz = G + BSB
        W_new = SB @ solve(chol((Ezz + Ezz.T) / 2.0), eye)
        psi_new = np.maximum(dS - np.einsum("ij,ij->i", W_new, SB), floor)
        cur["W"], cur["psi"], cur["post"] = W_new, psi_new, None
        if recording:
            trace.n_iter += 1

            def e_error(psi=psi, LM=LM, Wp=Wp, SB=SB):
                return float_error(const, np.log(psi), 2.0 * np.log(np.diag(LM)), dS / psi,
                                   Wp * SB, n_ops=n_ops)
            if jumped:
                trace.record(jumped, ll, e_error)
            trace.record("E", ll, e_error)
            ell, kl, m_terms = _elbo_terms(S, W_new, psi_new, None, (G + G.T) / 2.0, SB=SB,
                                           BSB=BSB)
            trace.record("M", ell - kl, lambda t=m_terms: float_error(*t, n_ops=n_ops))
        for b, (psi_b, ll_b) in enumerate(basins):
            if ll <= ll_b and np.max(np.abs(psi_new - psi_b)) < 1e-3:
                return W_new, psi_new, ll, n_iter, b
        if prev_ll is not None and ll - prev_ll <= tol * max(1.0, abs(ll)):
            moved = _gram_change(W, W_new) + float(np.max(np.abs(psi_new - psi)) / np.max(psi_new))
            if moved <= param_tol:
                converged = True
                break
        prev_ll = ll
    if recording:
        trace.converged = converged
    return cur["W"], cur["psi"], current()[4], n_iter, None


class FactorAnalysis(LinearGaussianModel):
    """Maximum-likelihood factor analysis by EM on the sample covariance.

    Parameters
    ----------
    n_components : int
        Number of factors L, 1 ≤ L ≤ D.
    tol : float, default 1e-8
        EM stops when an iteration raises the mean log-likelihood by less than
        ``t * max(1, |L|)`` and the parameters moved by less than ``p`` (relative change of
        W Wᵀ plus the largest change of ψ relative to the largest): ``t = tol``, ``p = sqrt(tol)``
        without the polish; with it ``t = sqrt(tol)``, ``p = tol**0.25`` — EM has only to reach
        the maximum's basin, and the quasi-Newton polish converges much faster than EM near a
        Heywood case, where EM crawls.
    max_iter : int, default 10000
        Cap on EM iterations per start; a ``ConvergenceWarning`` if hit.
    min_psi : float, default 1e-6
        Lower bound on each uniqueness as a fraction of that feature's variance S_dd (R's
        ``factanal(lower=0.005)`` is ``min_psi=0.005``). 0 means the numerical floor 1e-12.
        A warning names every feature whose uniqueness ends at the bound (a Heywood case).
    noise : {"diagonal", "isotropic"}, default "diagonal"
        "isotropic" forces Ψ = σ² I, which makes this PPCA fitted by EM (Bishop eq. 12.57).
    accelerate : bool, default True
        SQUAREM jumps between EM iterations (:mod:`latentmodels.acceleration`), each kept only if
        it raises the exact log-likelihood; recorded as "squarem" steps.
    polish : bool, default True
        After EM, an ascent of the profile likelihood in log ψ (:func:`profile_polish`: Fisher
        scoring, or Newton on the exact Hessian below 48 features; L-BFGS-B where that does not
        finish, projected Newton on the exact Hessian after it), kept only if it raises log p(x);
        recorded as the step "polish".
    init : {"joreskog", "ppca", "random"}, default "joreskog"
        The first start: Jöreskog's scale-equivariant uniquenesses, the closed-form PPCA solution
        (Tipping & Bishop 1999; not scale-equivariant), or a random one.
    n_init : int, default 6
        Number of starts: the ``init`` start and ``n_init − 1`` random ones (drawn with
        ``random_state``). The best final log-likelihood is kept. With 6 the default fit reached the
        best of 20 independent random starts on all 100 of scikit-learn's FA test data sets (seeds
        0–99), for random_state None, 1, 2 and 3 alike; with 4 it missed one data set for random_state
        1 and 3 (5 was not tried); re-checked, all 100, after the faster starts and polish of issue
        14. A start whose EM enters the basin of a maximum already polished (every ψ within 1e-3 of
        that basin's EM end or of the maximum itself, its log-likelihood still below the maximum)
        stops there and reports that maximum; any other is polished. The first start's EM is recorded
        for ``history_`` as it runs; should another start win, its EM is re-run recorded. A start
        costs O(D²L) per EM iteration (its loadings come from subspace iteration, also O(D²L) a step),
        a polish O(D²L) per evaluation where the leading eigenvalues stand clear of the rest and an
        O(D³) eigendecomposition where they do not; none depends on N.
    random_state : None, int or numpy.random.Generator
        For the random starts. None means seed 0: the fit is then a deterministic function of the
        data (maximum likelihood is an estimate, not a sample).
    rotation : None or {"varimax", "quartimax", "promax", "oblimin"}, default None
        A rotation of the fitted loadings (:func:`latentmodels.rotations.rotate`) for
        interpretation: ``loadings_``, ``rotation_matrix_`` and ``factor_correlation_`` hold it,
        ``transform`` returns scores of the rotated factors. ``W_`` and every likelihood are
        unchanged (the likelihood is rotation-invariant).
    rotation_kwargs : dict or None
        Passed to :func:`latentmodels.rotations.rotate` (e.g. ``{"normalize": False}``).

    missing : {"raise", "em"}, default "raise"
        What a NaN in X means: an error, or a missing value (see below).

    Input: ``fit`` takes an array, a memmap, an iterable of chunks, a Dask array or a
    :class:`~latentmodels.statistics.SufficientStatistics`; with ``missing="em"`` NaN entries are
    missing values, fitted by EM on the observed entries (:func:`latentmodels.missing.fit_missing`:
    plain EM from its own start, no restarts, SQUAREM or polish). ``partial_fit`` accumulates
    chunks and, by default, refits from all rows seen (a cold start: the same fit as ``fit`` on
    all rows).

    Attributes
    ----------
    W_ (D, L), psi_ (D,), mu_ (D,), history_ (the ELBO after every step of the winning start,
    mean nats per sample), history_steps_ (the label of each: "E", "M", "squarem", "polish"),
    init_log_likelihoods_ (final mean log-likelihood of every start, the ``init`` start first),
    best_init_ (its index), log_likelihood_ (the final training log-likelihood), n_iter_,
    converged_, n_features_in_, n_samples_, statistics_ (the sufficient statistics fitted),
    sample_covariance_ (the (1/N) covariance fitted), loadings_, rotation_matrix_,
    factor_correlation_.
    """

    psi_ = None

    def __init__(self, n_components: int = 1, *, tol: float = 1e-8, max_iter: int = 10000,
                 min_psi: float = 1e-6, noise: str = "diagonal", accelerate: bool = True,
                 polish: bool = True, init: str = "joreskog", n_init: int = 6,
                 random_state=None, rotation=None, rotation_kwargs=None, missing="raise"):
        self.n_components = n_components
        self.tol = tol
        self.max_iter = max_iter
        self.min_psi = min_psi
        self.noise = noise
        self.accelerate = accelerate
        self.polish = polish
        self.init = init
        self.n_init = n_init
        self.random_state = random_state
        self.rotation = rotation
        self.rotation_kwargs = rotation_kwargs
        self.missing = missing

    @property
    def _isotropic(self):
        return self.noise == "isotropic"

    @property
    def _needs_varying_features(self):
        return not self._isotropic

    def noise_variance(self) -> np.ndarray:
        """The noise variances ψ (D,) — a copy."""
        check_fitted(self, ("psi_",))
        return self.psi_.copy()

    def fit_covariance(self, S, n_samples: int, mean=None) -> "FactorAnalysis":
        """Fit by EM to a covariance matrix S computed elsewhere (e.g. a correlation matrix).

        ``S`` should be the maximum-likelihood (1/N) covariance; ``n_samples`` is recorded and
        ``mean`` (default zeros; copied) becomes ``mu_``. Returns self.
        """
        mu, S, n = check_statistics(S=S, n_samples=n_samples, mean=mean)
        self._fit_moments(mu, S, n)
        self.statistics_ = SufficientStatistics(n, mu, S * n)
        return self

    # ---- rotation, scores, diagnostics (thin wrappers over rotations.py / diagnostics.py) ----
    def _rotate(self):
        rot = rotations.rotate(self.W_, self.rotation, **(self.rotation_kwargs or {}))
        self.loadings_ = rot.loadings
        self.rotation_matrix_ = rot.rotation_matrix
        self.factor_correlation_ = rot.factor_correlation

    def transform(self, X, method: str = "regression") -> np.ndarray:
        """Factor scores, (N, L): ``"regression"`` (Thomson 1951; the posterior mean E[z | x] —
        with ``rotation=None`` exactly :meth:`posterior`'s means, NaN and Dask input included) or
        ``"bartlett"`` (weighted least squares, Bartlett 1937), of the rotated factors when a
        ``rotation`` was given (:func:`latentmodels.rotations.factor_scores`)."""
        if method == "regression" and self.rotation in (None, "none"):
            return super().transform(X)
        X = self._validate_X(X)
        return rotations.factor_scores(X, self.mu_, self.loadings_, self.psi_,
                                       phi=self.factor_correlation_, method=method)

    def summary(self, cutoff: float = 0.1, sort: bool = True) -> str:
        """A factanal-style table of loadings, communalities and uniquenesses
        (:func:`latentmodels.diagnostics.summary`)."""
        from .diagnostics import summary

        check_fitted(self, ("W_", "psi_"))
        return summary(self, cutoff=cutoff, sort=sort)

    def fit_statistics(self):
        """χ², RMSEA, TLI, AIC/BIC of the fit (:func:`latentmodels.diagnostics.fit_statistics`)."""
        from .diagnostics import fit_statistics

        check_fitted(self, ("W_", "sample_covariance_"))
        return fit_statistics(self.sample_covariance_, self.n_samples_, self.W_, self.psi_)

    sample_covariance_ = None

    # ---- missing values ------------------------------------------------------------------
    def _fit_missing(self, X):
        min_psi = check_positive(self.min_psi, "min_psi", allow_zero=True)
        r = fit_missing(X, self.n_components, noise="isotropic" if self._isotropic else "diagonal",
                        max_iter=self.max_iter, tol=self.tol,
                        min_psi=max(min_psi, MIN_PSI_NUMERICAL),
                        random_state=0 if self.random_state is None else self.random_state)
        self.W_, self.mu_, self.psi_ = r.W, r.mu, np.asarray(r.psi, dtype=float)
        self.history_, self.history_steps_ = list(r.history), list(r.history_labels)
        self.init_log_likelihoods_ = np.array([r.log_likelihood])
        self.best_init_ = 0
        self.log_likelihood_ = float(r.log_likelihood)
        self.n_iter_, self.converged_ = r.n_iter, r.converged
        self.n_features_in_, self.n_samples_ = r.W.shape[0], r.n_samples
        self.statistics_ = None            # no complete-data statistics to continue from
        self.sample_covariance_ = None
        self._rotate()
        return self

    # ---- starts --------------------------------------------------------------------------
    def _start(self, R, n_comp, kind, rng, floor, basis=None):
        """A start (W, ψ), W the profile loadings for ψ (:func:`profile_loadings`) by subspace
        iteration, seeded for a random start by the whitened span Ψ^{-½} · ``basis`` (the first
        start's loadings), otherwise by a fixed Gaussian sketch."""
        D = R.shape[0]
        if kind == "random":
            # arcsine-distributed fractions of S_dd: mass near 0 reaches the Heywood maxima
            psi = 0.01 + 0.98 * rng.beta(0.5, 0.5, D)
        elif kind == "joreskog":
            psi = joreskog_start(R, n_comp)
        elif kind == "ppca":
            lam, U = np.linalg.eigh(R)
            lam, U = lam[::-1], U[:, ::-1]
            sigma2 = max(lam[n_comp:].mean() if n_comp < D else lam[-1] / 2, 1e-3 * lam[0])
            W = U[:, :n_comp] * np.sqrt(np.maximum(lam[:n_comp] - sigma2, 1e-3 * lam[0]))
            psi = np.full(D, sigma2) if self._isotropic else np.diag(R) - np.sum(W * W, axis=1)
            psi = np.maximum(psi, np.maximum(floor, 1e-3))
            return W, psi
        else:
            raise ValueError(f"init must be 'joreskog', 'ppca' or 'random', got {kind!r}")
        if self._isotropic:
            psi = np.full(D, psi.mean())
        psi = np.maximum(psi, floor)
        if kind == "random" and basis is not None:
            guess = basis / np.sqrt(psi)[:, None]
        else:
            # a Gaussian sketch of the range (Halko, Martinsson & Tropp 2011, SIAM Rev. 53,
            # 217–288), fixed so that the start is a function of the data
            guess = np.random.default_rng(0).standard_normal((D, n_comp))
        return profile_loadings(R, psi, n_comp, basis=guess), psi

    # ---- one start: EM, then the polish ----------------------------------------------------
    def _run_start(self, R, W, psi, n_comp, floor, tol, max_iter, seen):
        noise = "isotropic" if self._isotropic else "diagonal"
        polish = self.polish and not self._isotropic
        # With the polish to finish, EM only has to bring the start into the maximum's basin.
        em_tol, param_tol = (np.sqrt(tol), tol ** 0.25) if polish else (tol, np.sqrt(tol))
        result, W, psi = run_em(R, W, psi, noise=noise, psi_floor=floor, tol=em_tol,
                                max_iter=max_iter, accelerate=self.accelerate,
                                model_name=type(self).__name__, param_tol=param_tol)
        history, steps = list(result.history), list(result.steps)
        loglik = log_likelihood_from_moments(R, W, psi)
        if polish:
            psi_em = psi
            for psi_other, (W_o, psi_o, ll_o) in seen:
                # EM ended where an earlier start's EM ended (every ψ on the correlation scale
                # within 1e-3): the same basin, whose maximum was polished already
                if np.max(np.abs(psi_em - psi_other)) < 1e-3 and ll_o >= loglik:
                    history.append(ll_o)
                    steps.append("polish")
                    return W_o, psi_o, history, steps, result, ll_o
            # stops at a projected gradient of 1e-9 or when an iteration gains < 1e-14 relative:
            # uniquenesses to ~1e-7 (round-off of the likelihood limits the line search beyond)
            W, psi, loglik = self._polish(R, W, psi, loglik, n_comp, floor, history, steps,
                                          gtol=1e-9, ftol=1e-14)
            seen.append((psi_em, (W, psi, loglik)))
        return W, psi, history, steps, result, loglik

    def _screen_and_polish(self, R, kinds, rng, n_comp, floor, tol, max_iter):
        """Every start in turn: EM (:func:`_em_quick`) into a basin, then the polish, once per
        basin: a start whose EM comes within 1e-3 in every ψ of the EM end or of the maximum of
        a basin polished already, below that maximum, stops there and shares it. A start that
        finds a new basin runs EM on towards its maximum first (at most 50 iterations, at the
        full ``tol``), then the quasi-Newton polish.

        ``history_`` is the winner's own E/M/squarem steps up to the basin's tolerance followed
        by the labelled "polish" (which holds the further EM iterations as well): the first
        start's EM is recorded as it runs (:class:`_Trace`); should another start win, its EM is
        re-run recorded by :func:`~latentmodels.linear_gaussian.run_em`."""
        em_tol, param_tol = np.sqrt(tol), tol ** 0.25
        name = type(self).__name__
        starts, finals, traces = [], [], []
        seen = []     # (EM's end ψ, the polished result) of every basin polished so far
        for kind in kinds:
            # random starts seed their loadings' subspace with the first start's loadings
            W0, psi0 = self._start(R, n_comp, kind, rng, floor,
                                   basis=starts[0][0] if starts else None)
            starts.append((W0, psi0))
            trace = _Trace(name) if not traces else None
            traces.append(trace)
            W, psi, loglik, _, hit = _em_quick(R, W0, psi0, floor, tol=em_tol, param_tol=param_tol,
                                               max_iter=max_iter, accelerate=self.accelerate,
                                               basins=[(p, f[2]) for p, f in seen]
                                               + [(f[1], f[2]) for _, f in seen], trace=trace)
            if hit is not None:
                finals.append(seen[hit % len(seen)][1])
                continue
            # a new basin: EM further towards its maximum first (an EM iteration costs less than
            # an evaluation of the profile likelihood), at most 50 iterations (EM crawls near
            # Heywood cases), then the polish
            W_t, psi_t, ll_t, _, _ = _em_quick(R, W, psi, floor, tol=tol, param_tol=np.sqrt(tol),
                                               max_iter=min(max_iter, 50),
                                               accelerate=self.accelerate)
            W_pol, psi_pol, ll_pol = profile_polish(R, psi_t, n_comp, floor, gtol=1e-9,
                                                    ftol=1e-14, W=W_t, full_output=True)
            finals.append((W_pol, psi_pol, ll_pol) if ll_pol > ll_t else (W_t, psi_t, ll_t))
            seen.append((psi, finals[-1]))
        init_ll = [f[2] for f in finals]
        best_index = int(np.argmax(init_ll))
        W, psi, ll = finals[best_index]
        trace = traces[best_index]
        if trace is not None:
            history, steps = trace.history, trace.steps
            result = AscentResult(history=history, n_iter=trace.n_iter,
                                  converged=trace.converged, block_names=steps)
            if not trace.converged:    # the winner's EM only, as run_em warns for a re-run
                warn_user(f"{name} did not converge in max_iter={max_iter} iterations "
                          f"(tol={em_tol:.3g}); increase max_iter or tol", ConvergenceWarning)
        else:   # another start won: its EM again, recorded (run_em warns if it hits max_iter)
            W0, psi0 = starts[best_index]
            result, W_em, psi_em = run_em(R, W0, psi0, noise="diagonal", psi_floor=floor,
                                          tol=em_tol, max_iter=max_iter,
                                          accelerate=self.accelerate, model_name=name,
                                          param_tol=param_tol)
            history, steps = list(result.history), list(result.steps)
            ll_em = log_likelihood_from_moments(R, W_em, psi_em)
            if ll_em > ll:
                W, psi, ll = W_em, psi_em, ll_em
                init_ll[best_index] = ll
        if ll > history[-1]:
            history.append(ll)
            steps.append("polish")
        return ll, W, psi, history, steps, result, best_index, init_ll

    @staticmethod
    def _polish(R, W, psi, loglik, n_comp, floor, history, steps, **options):
        """Run :func:`profile_polish`; keep it (as a labelled step) only if it raises log p(x)."""
        W_pol, psi_pol = profile_polish(R, psi, n_comp, floor, W=W, **options)
        loglik_pol = log_likelihood_from_moments(R, W_pol, psi_pol)
        if loglik_pol > loglik:
            history.append(loglik_pol)
            steps.append("polish")
            return W_pol, psi_pol, loglik_pol
        return W, psi, loglik

    @staticmethod
    def _end_on_e_step(R, W, psi, loglik, history, steps):
        if steps[-1] not in ("E", "polish") or history[-1] != loglik:
            # end on an E-step: the last value is the log-likelihood of the final θ
            history.append(elbo_from_moments(R, W, psi, *e_step(W, psi)).total)
            steps.append("E")

    def _fit_moments(self, mu, S, n_samples):
        D = S.shape[0]
        n_comp = check_n_components(self.n_components, D)
        tol = check_positive(self.tol, "tol")
        max_iter = check_int(self.max_iter, "max_iter")
        n_init = check_int(self.n_init, "n_init")
        min_psi = check_positive(self.min_psi, "min_psi", allow_zero=True)
        if min_psi >= 1.0:
            raise ValueError(f"min_psi is a fraction of each feature's variance and must be < 1, "
                             f"got {min_psi}")
        if self.noise not in ("diagonal", "isotropic"):
            raise ValueError(f"noise must be 'diagonal' or 'isotropic', got {self.noise!r}")
        for flag in ("accelerate", "polish"):
            if not isinstance(getattr(self, flag), (bool, np.bool_)):
                raise TypeError(f"{flag} must be True or False, got {getattr(self, flag)!r}")
        if self.init not in ("joreskog", "ppca", "random"):
            raise ValueError(f"init must be 'joreskog', 'ppca' or 'random', got {self.init!r}")
        # FA is an estimator, not a sampler: with random_state=None the random starts use seed 0,
        # so that a fit is a deterministic function of the data
        rng = check_random_state(0 if self.random_state is None else self.random_state)
        d = np.diag(S)
        # constant: no variance beyond the round-off of centring (a scale-equivariant test)
        constant = np.flatnonzero(d <= (64.0 * np.finfo(float).eps * np.abs(mu)) ** 2)
        if constant.size and not self._isotropic:
            raise ValueError(
                f"X has {constant.size} constant feature(s) (indices {constant[:10].tolist()}): "
                "their uniqueness would be 0 and the likelihood unbounded; drop them or "
                "dequantise the data (latentmodels.dequantize)"
            )
        # work on the correlation scale (isotropic noise: one common scale) and map back
        scale = np.full(D, d.mean()) if self._isotropic else d.copy()
        s = np.sqrt(scale)
        R = S / np.outer(s, s)
        R = (R + R.T) / 2.0
        jacobian = -0.5 * float(np.sum(np.log(scale)))
        floor_frac = max(min_psi, MIN_PSI_NUMERICAL)
        floor = floor_frac * (np.full(D, np.diag(R).mean()) if self._isotropic else np.diag(R))
        if self._isotropic:
            floor = float(floor[0])

        kinds = [self.init] + ["random"] * (n_init - 1)
        if self.polish and not self._isotropic:
            ll, W, psi, history, steps, result, best_index, init_ll = self._screen_and_polish(
                R, kinds, rng, n_comp, floor, tol, max_iter)
        else:
            best = None
            init_ll = []
            seen = []   # (EM's ψ, the start's final result) of the starts polished so far
            for kind in kinds:
                W0, psi0 = self._start(R, n_comp, kind, rng, floor)
                W, psi, history, steps, result, ll = self._run_start(R, W0, psi0, n_comp, floor,
                                                                     tol, max_iter, seen)
                init_ll.append(ll)
                if best is None or ll > best[0]:
                    best = (ll, W, psi, history, steps, result, len(init_ll) - 1)
            ll, W, psi, history, steps, result, best_index = best
        self._end_on_e_step(R, W, psi, ll, history, steps)
        ll = history[-1]
        init_ll[best_index] = ll
        self.W_ = W * s[:, None]
        self.psi_ = psi * scale
        self.mu_ = mu
        self.history_ = [h + jacobian for h in history]
        self.history_steps_ = steps
        self.init_log_likelihoods_ = np.asarray(init_ll) + jacobian
        self.best_init_ = best_index
        self.log_likelihood_ = ll + jacobian
        self.n_iter_ = result.n_iter
        self.converged_ = result.converged
        self.n_features_in_ = D
        self.n_samples_ = n_samples
        self.sample_covariance_ = S.copy()
        self._rotate()
        if not self._isotropic:
            at_floor = np.flatnonzero(psi <= floor * (1.0 + 1e-6))
            for j in at_floor[:10]:
                warn_user(
                    f"uniqueness psi_[{j}] of feature {j} reached its lower bound "
                    f"max(min_psi, 1e-12)*S[{j},{j}] = {floor[j] * scale[j]:.3g}: a Heywood case "
                    "(that feature is explained entirely by the factors); consider fewer "
                    "components",
                    ConvergenceWarning,
                )
        return self
