"""Rotations of factor loadings, and factor scores on rotated loadings.

The factor-analysis likelihood depends on the loadings A (D × L) only through A Aᵀ, so for any
invertible T with unit-length columns the loadings Λ = A (T⁻¹)ᵀ with factor correlation Φ = TᵀT
give the same model covariance, Λ Φ Λᵀ = A Aᵀ. A rotation picks the T that makes Λ simplest by a
criterion Q(Λ). Orthogonal rotations restrict T to orthogonal matrices (then Λ = A T and Φ = I);
oblique ones only to unit-length columns (Jennrich 2002).

Convention (that of GPArotation, Bernaards & Jennrich 2005): ``loadings = A @ inv(T).T`` always —
for orthogonal T that is ``A @ T`` — and ``factor_correlation = T.T @ T``. Rotated factor scores
are ``Tᵀ z`` for unrotated scores z.

Criteria (the catalogue of criteria and gradients of Bernaards & Jennrich 2005; the same
value/gradient pairs as GPArotation's vgQ functions; the tests also check each gradient):

- varimax (Kaiser 1958):     Q = −¼ ‖Λ² − 1 mᵀ‖²_F, m = column means of Λ²;  ∂Q/∂Λ = −Λ ∘ (Λ² − 1 mᵀ)
- quartimax (Carroll 1953):  Q = −¼ Σ Λ⁴;                                   ∂Q/∂Λ = −Λ³
- oblimin(γ) (Carroll 1957; Jennrich 2002): with X = (I − (γ/D) 1 1ᵀ) Λ² (1 1ᵀ − I),
  Q = ¼ Σ Λ² ∘ X,  ∂Q/∂Λ = Λ ∘ X.  γ = 0 is quartimin, 0.5 biquartimin, 1 covarimin.

They are minimised by the gradient-projection algorithm (GPA): Jennrich (2001) for orthogonal T
(project the gradient G = Aᵀ ∂Q/∂Λ onto the tangent space of the orthogonal group, step, and map
back by the polar decomposition), Jennrich (2002) for oblique T (gradient
G = −(Λᵀ ∂Q/∂Λ T⁻¹)ᵀ, projected as G − T diag(1ᵀ(T ∘ G)), step, re-normalise the columns), both
with the step-doubling/halving Armijo line search of Bernaards & Jennrich (2005).

With as many variables as factors (D = L), quartimin (γ = 0) is solved exactly rather than by
GPA: T = Aᵀ with unit columns gives a diagonal pattern and Q = 0, its global minimum (GPA from
T = I can stop at a stationary point with Q > 0, as GPArotation's would).

Promax (Hendrickson & White 1964), as R's ``stats::promax``: varimax, then the target
P = Λ_v ∘ |Λ_v|^(m−1) (m = ``power``, 4 by default), the least-squares U = argmin ‖Λ_v U − P‖,
columns rescaled so that Φ has a unit diagonal, Λ = Λ_v U. The varimax step here is converged;
``stats::promax`` calls ``varimax`` at its default ``eps=1e-5``, so R's promax loadings can differ
from these by ~1e-3 where a factor is weak (2.1e-3 on Harman.8 with 3 factors; 1e-7 once R's
varimax is run to ``eps=1e-14``).

Kaiser normalisation (Kaiser 1958), on by default: the rows of A are divided by their lengths
h_i = (Σ_k A_ik²)^½ (the square roots of the communalities) before rotating and multiplied back
after; T is the same for both. This is what R's ``varimax`` does by default and what
``psych::fa(rotate="promax")`` does (``psych::kaiser``). GPArotation's ``quartimax`` and ``oblimin``
— and hence ``psych::fa(rotate="oblimin")`` — do not normalise by default: pass ``normalize=False``
to reproduce them. For promax, ``normalize=True`` normalises the whole procedure (psych), while
``normalize="varimax"`` normalises only its varimax step (exactly ``stats::promax``).

Column order and sign (psych's ``fa``): each column is flipped so its sum is positive, then the
columns are sorted by decreasing diag(Φ ΛᵀΛ), the variance each factor accounts for (its column
sum of pattern ∘ structure; the sum of squared loadings when Φ = I). T and Φ are permuted and
signed with them, so ``loadings == A @ inv(T).T`` keeps holding.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from . import gaussian as gs
from .validation import ConvergenceWarning, check_array, check_int, check_positive, check_random_state, warn

__all__ = ["Rotation", "rotate", "factor_scores", "criterion", "ORTHOGONAL", "OBLIQUE"]

ORTHOGONAL = ("varimax", "quartimax")
OBLIQUE = ("promax", "oblimin", "quartimin")


@dataclass(frozen=True)
class Rotation:
    """The result of :func:`rotate`.

    Attributes
    ----------
    loadings : (D, L) rotated loadings (the pattern matrix) Λ = A (T⁻¹)ᵀ
    rotation_matrix : (L, L) T
    factor_correlation : (L, L) Φ = TᵀT (identity for orthogonal rotations)
    method : str ("none" for the identity, which keeps A's columns as they are)
    orthogonal : bool
    criterion : float, the criterion Q at the solution (on normalised rows if normalised; nan for
        promax and "none")
    n_iter : int, GPA iterations of the best start
    converged : bool, projected-gradient norm below ``tol``
    """

    loadings: np.ndarray
    rotation_matrix: np.ndarray
    factor_correlation: np.ndarray
    method: str
    orthogonal: bool
    criterion: float
    n_iter: int
    converged: bool

    @property
    def structure(self) -> np.ndarray:
        """Structure matrix Λ Φ: the correlations of the variables with the factors (for a correlation S)."""
        return self.loadings @ self.factor_correlation

    @property
    def explained_variance(self) -> np.ndarray:
        """diag(Φ ΛᵀΛ): the variance each factor accounts for (SS loadings when orthogonal)."""
        return np.einsum("ij,ij->j", self.loadings @ self.factor_correlation, self.loadings)


# --------------------------------------------------------------------------------------------
# The criteria: value and gradient with respect to the rotated loadings
# --------------------------------------------------------------------------------------------

def _varimax(L, gamma):
    L2 = L * L
    Q = L2 - L2.mean(axis=0)
    return -0.25 * float(np.sum(Q * Q)), -L * Q


def _quartimax(L, gamma):
    L3 = L * L * L
    return -0.25 * float(np.sum(L3 * L)), -L3


def _oblimin(L, gamma):
    L2 = L * L
    X = L2.sum(axis=1, keepdims=True) - L2          # Λ² (1 1ᵀ − I)
    if gamma != 0:
        X = X - (gamma / L.shape[0]) * X.sum(axis=0)  # (I − γ/D 1 1ᵀ) ·
    return 0.25 * float(np.sum(L2 * X)), L * X


_CRITERIA = {"varimax": _varimax, "quartimax": _quartimax, "oblimin": _oblimin, "quartimin": _oblimin}


def criterion(loadings, method: str = "varimax", *, gamma: float = 0.0) -> float:
    """The value of a rotation criterion Q(Λ) (see the module docstring; smaller is simpler)."""
    L = check_array(loadings, "loadings")
    if method not in _CRITERIA:
        raise ValueError(f"method must be one of {tuple(_CRITERIA)}, got {method!r}")
    return _CRITERIA[method](L, float(gamma))[0]


# --------------------------------------------------------------------------------------------
# Gradient projection (Jennrich 2001, 2002; Bernaards & Jennrich 2005)
# --------------------------------------------------------------------------------------------

def _gpa(A, T, crit, gamma, orthogonal, tol, max_iter):
    """Minimise crit(A T) over orthogonal T, or crit(A T⁻ᵀ) over T with unit columns, from T.

    Returns (T, Q, n_iter, converged). The line search is the Armijo rule of Bernaards & Jennrich
    (2005). Near the optimum the decrease 0.5 α s² falls below the rounding of Q (s ≈ 1e-8 for Q of
    order 1), where R's GPArotation stalls; then the last accepted step length is reused as long as
    it shrinks the projected gradient by 10 %, and the iteration counts as converged when neither Q nor
    the gradient can be improved in floating point (s is then about 1e-9).
    """

    def evaluate(T):
        if orthogonal:
            L = A @ T
            f, Gq = crit(L, gamma)
            G = A.T @ Gq
            M = T.T @ G
            Gp = G - T @ (0.5 * (M + M.T))
        else:
            Tinv = np.linalg.inv(T)
            L = A @ Tinv.T
            f, Gq = crit(L, gamma)
            G = -(L.T @ Gq @ Tinv).T
            Gp = G - T * np.sum(T * G, axis=0)
        return f, Gp

    def retract(X):
        if orthogonal:
            U, _, Vt = np.linalg.svd(X)
            return U @ Vt
        return X / np.sqrt(np.sum(X * X, axis=0))

    f, Gp = evaluate(T)
    s = float(np.sqrt(np.sum(Gp * Gp)))
    alpha = alpha_good = 1.0
    n_iter = 0
    at_rounding = False
    while s >= tol and n_iter < max_iter:
        n_iter += 1
        alpha *= 2.0
        for _ in range(11):
            T_new = retract(T - alpha * Gp)
            f_new, Gp_new = evaluate(T_new)
            if f_new < f - 0.5 * s * s * alpha:
                alpha_good = alpha
                break
            alpha /= 2.0
        else:
            # Q is flat to rounding here: take the last good step if it shrinks the gradient
            alpha = alpha_good
            T_new = retract(T - alpha * Gp)
            f_new, Gp_new = evaluate(T_new)
            if not np.sqrt(np.sum(Gp_new * Gp_new)) < 0.9 * s:
                at_rounding = True  # neither Q nor the gradient can be improved in floating point
                break
        T, f, Gp = T_new, f_new, Gp_new
        s = float(np.sqrt(np.sum(Gp * Gp)))
    # at rounding: Q's relative precision ~1e-16 limits s to ~1e-8·sqrt(|Q|); 1e-6 is a sanity bound
    return T, f, n_iter, bool(s < tol or (at_rounding and s < 1e-6 * max(1.0, np.sqrt(abs(f)))))


def _check_method(method):
    if method is None:
        return "none"
    if not isinstance(method, str) or method.lower() not in ("none",) + ORTHOGONAL + OBLIQUE:
        raise ValueError(
            f"rotation method must be None or one of {('none',) + ORTHOGONAL + OBLIQUE}, got {method!r}"
        )
    return method.lower()


def _row_norms(A):
    h = np.sqrt(np.sum(A * A, axis=1))
    return np.where(h > 0, h, 1.0)


def _random_orthogonal(rng, n):
    Q, R = np.linalg.qr(rng.standard_normal((n, n)))
    return Q * np.sign(np.diag(R))


def rotate(loadings, method: str | None = "varimax", *, normalize: bool | str = True, gamma: float = 0.0,
           power: float = 4, tol: float = 1e-10, max_iter: int = 1000, random_starts: int = 0,
           random_state=None) -> Rotation:
    """Rotate factor loadings A (D × L) by ``method``; returns a :class:`Rotation`.

    Parameters
    ----------
    loadings : (D, L) array A, e.g. ``FactorAnalysis().fit(X).W_``, PPCA's ``W_`` or PCA loadings.
        Not modified.
    method : None/"none", "varimax", "quartimax" (orthogonal), "oblimin", "quartimin" (= oblimin
        with γ = 0) or "promax" (oblique).
    normalize : bool or "varimax", default True
        Kaiser row normalisation (see the module docstring). "varimax" applies only to promax and
        normalises only its varimax step, as ``stats::promax``.
    gamma : float, default 0
        Oblimin's γ (0 quartimin, 0.5 biquartimin, 1 covarimin).
    power : float, default 4
        Promax's power m (> 1).
    tol : float, default 1e-10
        Stop when the Frobenius norm of the projected gradient falls below ``tol``, computed on the
        loadings scaled to unit mean-square row norm (the rotation does not depend on that scale).
    max_iter : int, default 1000
        Cap on GPA iterations per start; a ``ConvergenceWarning`` if it is hit.
    random_starts : int, default 0
        Extra GPA starts from random orthogonal T (drawn with ``random_state``) besides T = I;
        the start with the lowest criterion wins. Criteria can have local minima, oblimin in
        particular.

    With L = 1 the only freedom is the sign: the column is signed to a positive sum. With
    ``method=None`` the result is the identity (loadings = a copy of A, unsorted, T = Φ = I).
    """
    A = check_array(loadings, "loadings")
    method = _check_method(method)
    if normalize not in (True, False, "varimax") or (normalize == "varimax" and method != "promax"):
        raise ValueError(f"normalize must be True or False (or 'varimax' for promax), got {normalize!r}")
    if not isinstance(gamma, numbers.Real) or isinstance(gamma, bool) or not np.isfinite(gamma):
        raise TypeError(f"gamma must be a finite real number, got {gamma!r}")
    power = check_positive(power, "power")
    if power <= 1:
        raise ValueError(f"power must be > 1 for promax, got {power}")
    tol = check_positive(tol, "tol")
    max_iter = check_int(max_iter, "max_iter")
    random_starts = check_int(random_starts, "random_starts", minimum=0)
    D, n_comp = A.shape
    eye = np.eye(n_comp)
    if method == "none":   # the identity: loadings exactly as given (no sorting, no signs)
        return Rotation(A.copy(), eye.copy(), eye.copy(), "none", True, np.nan, 0, True)
    if n_comp == 1:
        return _finish(A, eye.copy(), method, True, np.nan, 0, True)
    # T does not depend on the scale of A: find it on A / 2^k with 2^k near max|A| (an exact
    # scaling), so that the squares in the row norms and the criteria neither underflow
    # (loadings of 1e-160) nor overflow (1e160)
    big = float(np.max(np.abs(A)))
    if big == 0.0:
        raise ValueError("loadings are all zero: there is nothing to rotate")
    big = float(np.ldexp(1.0, int(np.frexp(big)[1])))
    if method == "promax":
        return _promax(A, A / big, normalize, power, tol, max_iter)

    orthogonal = method in ORTHOGONAL
    A1 = A / big
    h = _row_norms(A1) if normalize is True else np.ones(D)
    An = A1 / h[:, None]
    if not orthogonal and gamma == 0 and D == n_comp:
        # Quartimin with as many variables as factors has an exact minimum Q = 0: with T = Aᵀ
        # (columns scaled to unit length, i.e. the rows of A normalised) the pattern
        # Λ = A T⁻ᵀ is diagonal (Λ_ii = |a_i|), one factor per variable. GPA only creeps
        # towards it (Q ~ 1e-2 after 5000 iterations), since the gradient vanishes cubically.
        sv = np.linalg.svd(An, compute_uv=False)
        if sv[-1] > sv[0] * D * np.finfo(float).eps:
            T = (An / _row_norms(An)[:, None]).T
            return _finish(A, T, method, False, 0.0, 0, True)
    # Every criterion here is homogeneous of degree 4 in the loadings, so its minimiser T does not
    # depend on their scale; the GPA step length does. Work on loadings of unit mean-square row norm
    # (loadings in data units, e.g. FA on unscaled pixels, otherwise need steps the Armijo search's
    # halvings never reach) and report the criterion in the caller's units.
    scale = float(np.sqrt(np.mean(np.sum(An * An, axis=1))))
    if scale == 0.0:
        raise ValueError("loadings are all zero: there is nothing to rotate")
    An = An / scale
    rng = check_random_state(random_state)
    starts = [eye] + [_random_orthogonal(rng, n_comp) for _ in range(random_starts)]
    best = None
    for T0 in starts:
        T, f, n_iter, converged = _gpa(An, T0.copy(), _CRITERIA[method], float(gamma), orthogonal,
                                       tol, max_iter)
        if best is None or f < best[1]:
            best = (T, f, n_iter, converged)
    T, f, n_iter, converged = best
    with np.errstate(over="ignore", under="ignore"):
        f = float(np.float64(f) * np.float64(scale) ** 4
                  * (1.0 if normalize is True else np.float64(big) ** 4))   # in the caller's units
    if not converged:
        why = (f"after {n_iter} iterations (max_iter={max_iter})" if n_iter >= max_iter
               else f"after {n_iter} iterations, where the line search found no decrease")
        warn(f"{method} rotation stopped {why} before the projected gradient (of the loadings scaled "
             f"to unit mean-square row norm) fell below tol={tol:g}; increase max_iter or try "
             f"random_starts", ConvergenceWarning)
    return _finish(A, T, method, orthogonal, f, n_iter, converged)


def _promax(A, A1, normalize, power, tol, max_iter):
    """Promax (Hendrickson & White 1964) as R's stats::promax, with a converged varimax.

    ``A1`` is A divided by a scalar (T is found on it). Φ = (UᵀU)⁻¹ is computed from the R
    factor of U = QR, Φ = R⁻¹R⁻ᵀ, and the loadings as A U, never through U⁻¹, so that nearly
    collinear loadings keep Φ's unit diagonal and Λ Φ Λᵀ = A Aᵀ to ~cond(U)·ε.
    """
    D, n_comp = A.shape
    h = _row_norms(A1) if normalize is True else np.ones(D)
    An = A1 / h[:, None]
    sv = np.linalg.svd(An, compute_uv=False)
    if D < n_comp or not sv[-1] > sv[0] * D * np.finfo(float).eps:
        raise ValueError(
            f"promax needs loadings of full column rank; these {D}x{n_comp} loadings have rank "
            f"{int(np.sum(sv > sv[0] * D * np.finfo(float).eps))} (a zero or repeated column): "
            "drop a factor, or use an orthogonal rotation"
        )
    vm = rotate(An, "varimax", normalize=normalize in (True, "varimax"), tol=tol, max_iter=max_iter)
    # (vm's columns are sorted and signed; the promax target is equivariant to that)
    Lv = An @ vm.rotation_matrix
    target = Lv * np.abs(Lv) ** (power - 1)
    U, *_ = np.linalg.lstsq(Lv, target, rcond=None)
    Rinv = np.linalg.inv(np.linalg.qr(U, mode="r"))            # (UᵀU)⁻¹ = R⁻¹ R⁻ᵀ
    Phi = Rinv @ Rinv.T
    d = np.sqrt(np.diag(Phi))
    U = U * d                                                  # columns rescaled: unit diag(Φ)
    Phi = Phi / np.outer(d, d)
    U_total = vm.rotation_matrix @ U                           # loadings = A U_total
    T = np.linalg.inv(U_total).T                               # so that loadings = A inv(T)ᵀ
    return _finish(A, T, "promax", False, np.nan, vm.n_iter, vm.converged, L=A @ U_total, Phi=Phi)


def _finish(A, T, method, orthogonal, f, n_iter, converged, L=None, Phi=None):
    """Loadings from T (unless given), then psych's sign and column order; T and Φ follow."""
    if L is not None:
        pass
    elif orthogonal:
        L = A @ T
        Phi = np.eye(T.shape[1])
    else:
        L = A @ np.linalg.inv(T).T
        Phi = T.T @ T
    signs = np.where(L.sum(axis=0) < 0, -1.0, 1.0)
    L, T = L * signs, T * signs
    Phi = Phi * np.outer(signs, signs)
    Ls = L / float(np.ldexp(1.0, int(np.frexp(np.max(np.abs(L)))[1])))   # exact; no overflow in L²
    ev = np.einsum("ij,ij->j", Ls @ Phi, Ls)
    order = np.argsort(-ev, kind="stable")
    L, T, Phi = L[:, order], T[:, order], Phi[np.ix_(order, order)]
    if not orthogonal:
        Phi = 0.5 * (Phi + Phi.T)
    return Rotation(np.ascontiguousarray(L), np.ascontiguousarray(T), np.ascontiguousarray(Phi),
                    method, bool(orthogonal), float(f), int(n_iter), bool(converged))


# --------------------------------------------------------------------------------------------
# Factor scores
# --------------------------------------------------------------------------------------------

def factor_scores(X, mu, loadings, psi, *, phi=None, method: str = "regression") -> np.ndarray:
    """Factor scores (N, L) for the rows of X under x = Λ f + μ + ε, Cov f = Φ, ε ~ N(0, diag ψ).

    With M = Λᵀ Ψ⁻¹ Λ and b_n = Λᵀ Ψ⁻¹ (x_n − μ):

    - ``"regression"`` (Thomson 1951; psych's "regression"/Thurstone weights with the model
      covariance): E[f | x] = Φ Λᵀ Σ⁻¹ (x − μ) = (Φ⁻¹ + M)⁻¹ b, Σ = Λ Φ Λᵀ + Ψ (Woodbury).
      With Φ = I it is FA's posterior mean (I + M)⁻¹ Λᵀ Ψ⁻¹ (x − μ) (Bishop PRML eq. 12.66).
    - ``"bartlett"`` (Bartlett 1937): the weighted least-squares f̂ = M⁻¹ b, unbiased given f.

    Both are equivariant: for rotated loadings Λ = A (T⁻¹)ᵀ, Φ = TᵀT they equal Tᵀ times the
    scores under (A, I). Computed by Cholesky solves (Φ = C Cᵀ, (Φ⁻¹ + M)⁻¹ = C (I + Cᵀ M C)⁻¹ Cᵀ).
    """
    X = check_array(X, "X")
    Lam = check_array(loadings, "loadings")
    D, n_comp = Lam.shape
    mu = check_array(mu, "mu", ndim=1)
    psi = check_array(psi, "psi", ndim=1)
    if X.shape[1] != D or mu.shape[0] != D or psi.shape[0] != D:
        raise ValueError(f"X has {X.shape[1]} features, mu {mu.shape[0]}, psi {psi.shape[0]}, "
                         f"loadings {D} rows: they must agree")
    if np.any(psi <= 0):
        raise ValueError("psi must be positive (uniquenesses)")
    if method not in ("regression", "bartlett"):
        raise ValueError(f"method must be 'regression' or 'bartlett', got {method!r}")
    LtPinv = (Lam / psi[:, None]).T            # Λᵀ Ψ⁻¹  (L, D)
    B = (X - mu) @ LtPinv.T                    # rows b_nᵀ
    M = LtPinv @ Lam
    if method == "bartlett":
        return gs.chol_solve(gs.cholesky(M, "loadingsᵀ Ψ⁻¹ loadings"), B.T).T
    if phi is None:
        C = np.eye(n_comp)
    else:
        phi = check_array(phi, "phi")
        if phi.shape != (n_comp, n_comp):
            raise ValueError(f"phi must be {n_comp}x{n_comp}, got shape {phi.shape}")
        C = gs.cholesky(phi, "phi")
    inner = np.eye(n_comp) + C.T @ M @ C
    return (C @ gs.chol_solve(gs.cholesky(inner, "I + Cᵀ M C"), C.T @ B.T)).T
