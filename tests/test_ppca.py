import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import linalg

from latentmodels.datasets import load_digits, make_ppca_data
from latentmodels.elbo import em_steps
from latentmodels.linear_gaussian import moments
from latentmodels.ppca import PPCA, pca
from latentmodels.validation import ConvergenceWarning, NotFittedError


def data(seed=0, N=400, D=8, L=3, sigma2=0.3):
    return make_ppca_data(N, D, L, sigma2=sigma2, random_state=seed)[0]


def test_closed_form_matches_eigendecomposition():
    X = data()
    _, S = moments(X)
    lam, U = np.linalg.eigh(S)
    lam, U = lam[::-1], U[:, ::-1]
    m = PPCA(3).fit(X)
    assert np.isclose(m.sigma2_, lam[3:].mean(), rtol=1e-12)
    np.testing.assert_allclose(m.W_ @ m.W_.T, U[:, :3] @ np.diag(lam[:3] - m.sigma2_) @ U[:, :3].T,
                               atol=1e-10)


def test_closed_form_is_a_maximum():
    X = data(1)
    m = PPCA(3).fit(X)
    best = m.log_likelihood(X)
    rng = np.random.default_rng(0)
    W0, s0 = m.W_.copy(), m.sigma2_
    for _ in range(30):
        m.W_ = W0 + 1e-3 * rng.standard_normal(W0.shape)
        m.sigma2_ = s0 * (1 + 1e-3 * rng.standard_normal())
        assert m.log_likelihood(X) < best
    m.W_, m.sigma2_ = W0, s0


@given(st.integers(3, 10), st.integers(1, 3), st.integers(0, 10**6))
def test_em_converges_to_the_closed_form(D, L, seed):
    L = min(L, D - 1)
    X = data(seed, N=200, D=D, L=L)
    cf = PPCA(L).fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        em = PPCA(L, method="em", tol=1e-14, max_iter=20000, random_state=seed).fit(X)
    h = np.asarray(em.history_)
    assert np.all(np.diff(h) >= -1e-9 * np.abs(h[1:]))
    assert em.log_likelihood(X) <= cf.log_likelihood(X) + 1e-10
    assert np.isclose(em.log_likelihood(X), cf.log_likelihood(X), rtol=1e-8)
    assert np.isclose(em.sigma2_, cf.sigma2_, rtol=1e-4)
    assert np.max(linalg.subspace_angles(em.W_, cf.W_)) < 1e-3


def test_fixed_sigma2_em_matches_fixed_sigma2_closed_form():
    X = data(2)
    cf = PPCA(3, sigma2=0.05).fit(X)
    em = PPCA(3, sigma2=0.05, method="em", tol=1e-14, random_state=0).fit(X)
    assert em.sigma2_ == 0.05 == cf.sigma2_
    assert np.isclose(em.log_likelihood(X), cf.log_likelihood(X), rtol=1e-10)
    assert np.max(linalg.subspace_angles(em.W_, cf.W_)) < 1e-6
    # EM alone moves the scale of each column at the rate 1 - 2σ²(λ-σ²)/λ² (≈ 0.992 for the top
    # direction here); the exact scale step in the converged subspace removes that error, so the
    # singular values of W (its rotation-invariant scales) match the closed form to round-off
    np.testing.assert_allclose(np.linalg.svd(em.W_, compute_uv=False),
                               np.linalg.svd(cf.W_, compute_uv=False), rtol=1e-9)
    assert "scale" in em.history_steps_


def test_posterior_mean_reconstruction_tends_to_pca_projection():
    X = data(3, sigma2=0.5)
    ref = pca(X, 3)
    proj = ref.reconstruct(X)
    lam = ref.explained_variance
    errors = []
    for s2 in [1e-1, 1e-2, 1e-4, 1e-6, 1e-8]:
        m = PPCA(3, sigma2=s2).fit(X)
        rec = m.reconstruct(X)
        # Closed form (derived in ppca.py's docstring): with W = U(Λ-σ²)^½, the posterior-mean
        # reconstruction shrinks each principal coordinate by (1 - σ²/λ_j), so
        # rec - proj = -σ² U Λ⁻¹ Uᵀ (x - μ).
        expected = proj - s2 * (ref.transform(X) / lam) @ ref.components
        np.testing.assert_allclose(rec, expected, atol=1e-9)
        errors.append(np.max(np.abs(rec - proj)))
        assert np.max(linalg.subspace_angles(m.W_, ref.components.T)) < 1e-6
    assert all(a > b for a, b in zip(errors, errors[1:]))
    assert errors[-1] < 1e-7


def test_roweis_em_with_tiny_sigma2_is_stable_and_finds_pca():
    X = data(4, N=300, D=10, L=3, sigma2=0.2)
    m = PPCA(3, sigma2=1e-12, method="em", tol=1e-15, max_iter=5000, random_state=1).fit(X)
    assert np.all(np.isfinite(m.W_))
    angles = linalg.subspace_angles(m.W_, pca(X, 3).components.T)
    assert np.max(angles) < 1e-6


def test_pca_matches_eigendecomposition_and_ppca():
    X = data(5)
    r = pca(X, 3)
    _, S = moments(X)
    lam, U = np.linalg.eigh(S)
    np.testing.assert_allclose(r.explained_variance, lam[::-1][:3], rtol=1e-10)
    np.testing.assert_allclose(r.components @ r.components.T, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(r.explained_variance, PPCA(3).fit(X).explained_variance_, rtol=1e-10)


def test_rank_deficient_data_is_a_clear_error():
    X = np.random.default_rng(0).standard_normal((50, 2)) @ np.ones((2, 5))
    with pytest.raises(ValueError, match="rank"):
        PPCA(2).fit(X)


def test_n_parameters_counts():
    m = PPCA(2).fit(data(6, D=5, L=2))
    assert m.n_parameters() == 5 * 2 - 1 + 5 + 1


# ---- EM at any σ² ≥ 0 (issue 8) ---------------------------------------------------------------

@pytest.mark.parametrize("sigma2", [10.0, 1.0, 1e-2, 1e-4, 1e-8, 1e-10, 0.0])
def test_em_on_the_digits_finds_the_pca_subspace_at_every_sigma2(sigma2):
    X = load_digits()[0].astype(float)
    ref = pca(X, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")           # no ConvergenceWarning, no other warning
        m = PPCA(5, sigma2=sigma2, method="em", random_state=0).fit(X)
    assert m.converged_ and m.n_iter_ < m.max_iter
    assert np.max(linalg.subspace_angles(m.W_, ref.components.T)) < 1e-8
    em = em_steps(m.history_, m.history_steps_)
    assert np.all(np.diff(em) >= -1e-9 * np.maximum(1, np.abs(em[1:])))
    if sigma2 > 0:   # the scale too: W Wᵀ = U (Λ - σ²) Uᵀ of the closed form
        cf = PPCA(5, sigma2=sigma2).fit(X)
        np.testing.assert_allclose(np.linalg.svd(m.W_, compute_uv=False),
                                   np.linalg.svd(cf.W_, compute_uv=False), rtol=1e-8)


def test_sigma2_zero_is_roweis_em_for_pca():
    X = data(7, N=300, D=9, L=3, sigma2=0.3)
    m = PPCA(3, sigma2=0.0, method="em", random_state=2).fit(X)
    assert m.sigma2_ == 0.0
    assert np.max(linalg.subspace_angles(m.W_, pca(X, 3).components.T)) < 1e-9
    # its objective is -1/2 the mean squared reconstruction error, which the projection attains
    resid = X - m.reconstruct(X)
    assert np.isclose(m.history_[-1], -0.5 * np.mean(np.sum(resid**2, axis=1)), rtol=1e-10)
    proj = pca(X, 3).reconstruct(X)
    np.testing.assert_allclose(m.reconstruct(X), proj, atol=1e-8)
    with pytest.raises(ValueError, match="no density"):
        m.log_likelihood(X)


def test_tiny_sigma2_data_fit_by_em():
    X, _ = make_ppca_data(500, 10, 3, sigma2=1e-10, random_state=0)
    cf = PPCA(3).fit(X)
    em = PPCA(3, method="em", random_state=0).fit(X)
    # log p(x) carries a floating-point error of about D ε tr(S) / σ² nats here (tr(C⁻¹S) is a
    # sum of terms of size S_dd/σ²); the two fits agree within it
    _, S = moments(X)
    bound = 10 * np.finfo(float).eps * np.trace(S) / cf.sigma2_
    assert abs(em.log_likelihood(X) - cf.log_likelihood(X)) < bound
    assert np.isclose(em.sigma2_, cf.sigma2_, rtol=1e-4)


def test_before_fit_raises_not_fitted():
    m = PPCA(2)
    for call in (m.n_parameters, m.noise_variance, m.get_covariance):
        with pytest.raises(NotFittedError):
            call()


def test_partial_fit_equals_fit_and_missing_values_by_em():
    X = data(8, N=240, D=6, L=2)
    full = PPCA(2).fit(X)
    m = PPCA(2)
    for chunk in np.array_split(X, 5):
        m.partial_fit(chunk)                           # refits after every chunk
    assert np.isclose(m.log_likelihood(X), full.log_likelihood(X), rtol=1e-10)
    assert np.isclose(m.sigma2_, full.sigma2_, rtol=1e-10)
    Xm = X.copy()
    Xm[::7, 3] = np.nan
    em = PPCA(2, missing="em").fit(Xm)
    assert np.isclose(em.log_likelihood(Xm), em.history_[-1], rtol=1e-9)
    # with no entry missing the observed-data log-likelihood is the ordinary one
    assert np.isclose(em.log_likelihood(X), np.mean(em.score_samples(X)), rtol=1e-12)


# ---- issue 13: partial_fit over any chunking, and the missing-value path ------------------------

@settings(max_examples=10, deadline=None)
@given(st.lists(st.integers(1, 79), min_size=1, max_size=6), st.sampled_from([0.0, 1e6]),
       st.sampled_from(["closed_form", "em"]), st.integers(0, 3))
def test_partial_fit_over_any_chunking_equals_fit(cuts, offset, method, seed):
    X = data(seed, N=80, D=5, L=2) + offset
    kw = dict(method=method, random_state=0, tol=1e-10)
    full = PPCA(2, **kw).fit(X)
    m = PPCA(2, **kw)
    for chunk in np.split(X, sorted(set(cuts))):
        m.partial_fit(chunk, refit=False)
    m.fit_from_statistics()
    ll = full.log_likelihood(X)
    assert abs(m.log_likelihood(X) - ll) <= 1e-10 * abs(ll)
    assert np.isclose(m.sigma2_, full.sigma2_, rtol=1e-9)
    np.testing.assert_allclose(m.mu_, full.mu_, rtol=1e-14, atol=1e-14 * X.std())  # to round-off
    if method == "closed_form":
        # the offset changes nothing but the mean: the closed form of the centred data
        base = PPCA(2, **kw).fit(X - offset)
        assert np.isclose(base.sigma2_, full.sigma2_, rtol=1e-9)


def test_missing_em_without_nan_is_the_complete_fit():
    X = data(3, N=150, D=6, L=2) + 1e6
    for method in ("closed_form", "em"):
        a = PPCA(2, method=method, random_state=0).fit(X)
        b = PPCA(2, method=method, random_state=0, missing="em").fit(X)
        np.testing.assert_array_equal(a.W_, b.W_)
        assert a.sigma2_ == b.sigma2_ and a.history_ == b.history_
    # the observed-entry EM itself, on complete data, reaches Tipping & Bishop's closed form
    direct = PPCA(2, tol=1e-12, random_state=0)._fit_missing(X)
    closed = PPCA(2).fit(X)
    ll = closed.log_likelihood(X)
    assert abs(direct.log_likelihood(X) - ll) <= 1e-9 * abs(ll)
    assert np.isclose(direct.sigma2_, closed.sigma2_, rtol=1e-6)


def test_missing_em_log_likelihood_is_scipys_and_history_monotone():
    from scipy import stats

    X = data(5, N=80, D=5, L=2)
    rng = np.random.default_rng(5)
    mask = rng.random(X.shape) < 0.25
    mask[np.arange(80), rng.integers(0, 5, 80)] = False
    Xm = np.where(mask, np.nan, X)
    p = PPCA(2, missing="em").fit(Xm)
    h = np.asarray(p.history_)
    assert np.all(np.diff(h) >= -1e-10 * np.abs(h[1:]))
    C = p.get_covariance()
    ref = np.array([stats.multivariate_normal(p.mu_[o], C[np.ix_(o, o)]).logpdf(x[o])
                    for x, o in zip(Xm, ~mask)])
    np.testing.assert_allclose(p.score_samples(Xm), ref, rtol=1e-12)
    assert np.isclose(p.history_[-1], ref.mean(), rtol=1e-10)   # EM ends on an E-step
    err = p.impute(Xm)[mask] - X[mask]
    err_mean = np.broadcast_to(np.nanmean(Xm, axis=0), X.shape)[mask] - X[mask]
    assert np.sqrt(np.mean(err**2)) < 0.8 * np.sqrt(np.mean(err_mean**2))
