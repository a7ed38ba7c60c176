import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import linalg

from latentmodels import PPCA, ConvergenceWarning, make_ppca_data, pca
from latentmodels.fa import moments


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
    # The scale of each column converges more slowly: along an eigenvector with eigenvalue λ the
    # EM map w -> λ w (σ²+w²) / (σ²(σ²+w²) + λw²) has derivative 1 - 2σ²(λ-σ²)/λ² at its fixed
    # point (≈ 0.992 for the top direction here), so a per-iteration log-likelihood change below
    # tol leaves a scale error of about sqrt(tol/(1-rate)); 1e-3 bounds it with room.
    # (singular values of W are the rotation-invariant scales)
    np.testing.assert_allclose(np.linalg.svd(em.W_, compute_uv=False),
                               np.linalg.svd(cf.W_, compute_uv=False), rtol=1e-3)


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
