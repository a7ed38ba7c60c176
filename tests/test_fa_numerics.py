"""The numerical kernels of the FA fit, each against an independent method: the warm-started
leading eigenpairs against LAPACK's full eigendecomposition, the Fisher information and the
exact Hessian of the profile likelihood against finite differences of its analytic gradient,
the checks folded into the covariance pass against the explicit checks."""

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from latentmodels.datasets import make_fa_data
from latentmodels.fa import (
    FactorAnalysis,
    _top_eig,
    _top_eig_warm,
    profile_hessian,
    profile_information,
)
from latentmodels.linear_gaussian import _checked_in_memory, checked_moments, moments


def spd_with_spectrum(rng, D, lam):
    Q, _ = np.linalg.qr(rng.standard_normal((D, D)))
    return (Q * lam) @ Q.T, Q


@settings(max_examples=40, deadline=None)
@given(st.integers(6, 60), st.integers(1, 5), st.floats(0.02, 4.0), st.integers(0, 2**31 - 1),
       st.floats(0.0, 1.0))
def test_warm_top_eigenpairs_equal_lapacks(D, n, log_gap, seed, noise):
    # leading n eigenvalues spread above `gap` (1.05 to 1e4) times the rest; the guess is the
    # true subspace perturbed by `noise` (0: exact; 1: as large as the subspace itself). Large
    # gaps are answered by subspace iteration, small ones by the fallback: both must be right
    n = min(n, D - 1)
    gap = 10.0 ** log_gap
    rng = np.random.default_rng(seed)
    rest = rng.uniform(0.1, 1.0, D - n)
    lead = gap * rest.max() * rng.uniform(1.0, 3.0, n)
    A, Q = spd_with_spectrum(rng, D, np.concatenate([lead, rest]))
    guess = Q[:, :n] + noise * rng.standard_normal((D, n))
    lam, U = _top_eig_warm(A, n, guess)
    lam_ref = np.sort(np.linalg.eigvalsh(A))[::-1][:n]
    np.testing.assert_allclose(lam, lam_ref, rtol=1e-12, atol=0)
    P_ref = Q[:, :n] @ Q[:, :n].T
    assert np.max(np.abs(U @ U.T - P_ref)) < 1e-10
    assert np.max(np.abs(U.T @ U - np.eye(n))) < 1e-12
    assert np.all(np.diff(lam) <= 0)


def test_warm_path_answers_without_the_direct_method_when_the_gap_is_large(monkeypatch):
    import latentmodels.fa as fa

    def refuse(A, n):
        raise AssertionError("fell back to the direct eigendecomposition")

    rng = np.random.default_rng(5)
    D, n = 100, 10
    A, Q = spd_with_spectrum(rng, D, np.concatenate([rng.uniform(100, 300, n),
                                                     rng.uniform(0.5, 1.5, D - n)]))
    lam_ref = np.sort(np.linalg.eigvalsh(A))[::-1][:n]
    monkeypatch.setattr(fa, "_top_eig", refuse)
    lam, U = fa._top_eig_warm(A, n, Q[:, :n] + 1e-3 * rng.standard_normal((D, n)))
    np.testing.assert_allclose(lam, lam_ref, rtol=1e-12)
    assert np.max(np.abs(U @ U.T - Q[:, :n] @ Q[:, :n].T)) < 1e-10


def test_warm_start_from_a_wrong_subspace_still_gives_the_leading_pairs():
    # a guess orthogonal to the leading eigenvector: subspace iteration alone would need many
    # steps (or miss it); the certificate refuses and the direct method answers
    rng = np.random.default_rng(0)
    D = 20
    A, Q = spd_with_spectrum(rng, D, np.concatenate([[50.0, 1.2], np.linspace(0.1, 1.0, D - 2)]))
    lam, U = _top_eig_warm(A, 2, Q[:, 1:3])
    lam_ref, U_ref = _top_eig(A, 2)
    np.testing.assert_allclose(lam, lam_ref, rtol=1e-12)
    assert np.max(np.abs(U @ U.T - U_ref @ U_ref.T)) < 1e-10


def _profile_gradient(R, x, L):
    """The analytic gradient in log ψ of −ℓ (profile_polish's docstring), by numpy's eigh."""
    s = np.exp(-0.5 * x)
    A = R * s[:, None] * s[None, :]
    lam, U = np.linalg.eigh(A)
    lam, U = lam[::-1][:L], U[:, ::-1][:, :L]
    used = lam > 1
    return 0.5 * (1.0 - np.diag(A) + (U[:, used] ** 2) @ (lam[used] - 1.0))


def _fd_hessian(R, x, L, h=1e-5):
    D = x.shape[0]
    H = np.zeros((D, D))
    for i in range(D):
        e = np.zeros(D)
        e[i] = h
        H[:, i] = (_profile_gradient(R, x + e, L) - _profile_gradient(R, x - e, L)) / (2 * h)
    return (H + H.T) / 2


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_profile_hessian_matches_finite_differences_of_the_gradient(seed):
    X, _ = make_fa_data(300, 12, 3, random_state=seed)
    S = np.cov(X.T, bias=True)
    d = np.sqrt(np.diag(S))
    R = S / np.outer(d, d)
    rng = np.random.default_rng(seed)
    x = np.log(rng.uniform(0.2, 0.8, 12))           # away from any maximum: a general point
    s = np.exp(-0.5 * x)
    H = profile_hessian(R * s[:, None] * s[None, :], 3)
    H_fd = _fd_hessian(R, x, 3)
    assert np.max(np.abs(H - H_fd)) < 1e-7 * np.max(np.abs(H_fd))


def test_fisher_information_is_the_hessian_when_the_model_holds_exactly():
    # S = W Wᵀ + Ψ (the population covariance) at the true Ψ: the expected and the observed
    # information coincide (the two differ by terms in S − C)
    rng = np.random.default_rng(4)
    D, L = 10, 3
    W = rng.standard_normal((D, L))
    psi = rng.uniform(0.2, 1.0, D)
    C = W @ W.T + np.diag(psi)
    x = np.log(psi)
    s = np.exp(-0.5 * x)
    lam, U = _top_eig(C * s[:, None] * s[None, :], L)
    fisher = profile_information(U[:, lam > 1])
    H_fd = _fd_hessian(C, x, L)
    assert np.max(np.abs(fisher - H_fd)) < 1e-7
    np.testing.assert_allclose(profile_hessian(C * s[:, None] * s[None, :], L), fisher,
                               atol=1e-12)


def test_default_fit_reaches_a_zero_profile_gradient_on_well_conditioned_data():
    # Fisher scoring ends the polish: the exact (numpy eigh) profile gradient is below its gtol
    X, _ = make_fa_data(5000, 40, 5, random_state=3)
    fa = FactorAnalysis(5).fit(X)
    S = np.cov(X.T, bias=True)
    d = np.diag(S)
    R = S / np.sqrt(np.outer(d, d))
    g = _profile_gradient(R, np.log(fa.psi_ / d), 5)
    assert np.max(np.abs(g)) < 1e-8
    assert fa.history_steps_[-1] in ("polish", "E")


# ---- the covariance pass with its checks read off the results ------------------------------

def _explicit(X):
    X = _checked_in_memory(X, "X")
    return moments(X)


@settings(max_examples=60, deadline=None)
@given(st.integers(-170, 170), st.integers(-170, 170), st.integers(0, 2**31 - 1),
       st.sampled_from(["none", "nan", "inf", "-inf", "huge", "zero_column"]))
def test_checked_moments_agrees_with_the_explicit_checks(scale_exp, offset_exp, seed, defect):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((30, 4)) * 10.0 ** scale_exp + 10.0 ** offset_exp
    if defect == "nan":
        X[3, 1] = np.nan
    elif defect == "inf":
        X[0, 2] = np.inf
    elif defect == "-inf":
        X[5, 0] = -np.inf
    elif defect == "huge":
        X[7, 3] = 1e300
    elif defect == "zero_column":
        X[:, 2] = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            expected = _explicit(X)
        except (ValueError, TypeError) as err:
            with pytest.raises(type(err)) as caught:
                checked_moments(X)
            assert str(caught.value) == str(err)
            return
        mean, S, n = checked_moments(X)
    assert n == 30
    np.testing.assert_array_equal(mean, expected[0])
    np.testing.assert_array_equal(S, expected[1])
