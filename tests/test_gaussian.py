import numpy as np
import pytest
from conftest import random_spd
from hypothesis import given
from hypothesis import strategies as st
from scipy import integrate, stats

from latentmodels import gaussian as gs
from latentmodels.gaussian import GaussianQ


def test_logpdf_matches_scipy(rng):
    for k in (1, 3, 7):
        C = random_spd(rng, k)
        m = rng.standard_normal(k)
        X = rng.standard_normal((20, k))
        expected = stats.multivariate_normal(m, C).logpdf(X)
        np.testing.assert_allclose(gs.logpdf(X, m, C), np.atleast_1d(expected), rtol=1e-12)


def test_diag_logpdf_matches_scipy(rng):
    v = rng.uniform(0.1, 3, 5)
    m = rng.standard_normal(5)
    X = rng.standard_normal((10, 5))
    np.testing.assert_allclose(
        gs.diag_logpdf(X, m, v), stats.multivariate_normal(m, np.diag(v)).logpdf(X), rtol=1e-12
    )


@given(st.integers(1, 12), st.integers(1, 4), st.integers(0, 10_000))
def test_lowrank_logpdf_matches_full_covariance(D, L, seed):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((D, L))
    psi = rng.uniform(0.01, 2, D)
    mu = rng.standard_normal(D)
    X = rng.standard_normal((6, D)) * 2
    full = stats.multivariate_normal(mu, W @ W.T + np.diag(psi)).logpdf(X)
    np.testing.assert_allclose(gs.lowrank_logpdf(X, mu, W, psi), np.atleast_1d(full), rtol=1e-10)


def test_logdet_and_solve(rng):
    C = random_spd(rng, 6)
    L = gs.cholesky(C)
    assert np.isclose(gs.logdet(C), np.linalg.slogdet(C)[1], rtol=1e-12)
    B = rng.standard_normal((6, 2))
    np.testing.assert_allclose(C @ gs.chol_solve(L, B), B, atol=1e-12)


def test_cholesky_names_the_matrix():
    with pytest.raises(ValueError, match="my matrix is not positive definite"):
        gs.cholesky(np.array([[1.0, 2.0], [2.0, 1.0]]), "my matrix")


def test_kl_full_against_1d_quadrature():
    m1, s1, m0, s0 = 0.3, 0.7, -0.5, 1.4
    p, q = stats.norm(m1, s1), stats.norm(m0, s0)
    numeric, _ = integrate.quad(lambda x: p.pdf(x) * (p.logpdf(x) - q.logpdf(x)), -20, 20)
    got = gs.kl(np.array([m1]), np.array([[s1**2]]), np.array([m0]), np.array([[s0**2]]))
    assert np.isclose(got, numeric, rtol=1e-9)


def test_kl_full_against_monte_carlo(rng):
    k = 3
    S1, S0 = random_spd(rng, k), random_spd(rng, k)
    m1, m0 = rng.standard_normal(k), rng.standard_normal(k)
    x = rng.multivariate_normal(m1, S1, size=400_000)
    log_ratio = stats.multivariate_normal(m1, S1).logpdf(x) - stats.multivariate_normal(m0, S0).logpdf(x)
    # 5 standard errors of the Monte Carlo mean, estimated from the draws themselves
    se = np.std(log_ratio) / np.sqrt(len(x))
    assert abs(gs.kl(m1, S1, m0, S0) - np.mean(log_ratio)) < 5 * se


def test_kl_diag_equals_full_and_standard(rng):
    v1, v0 = rng.uniform(0.2, 2, 4), rng.uniform(0.2, 2, 4)
    m1, m0 = rng.standard_normal(4), rng.standard_normal(4)
    assert np.isclose(gs.kl_diag(m1, v1, m0, v0), gs.kl(m1, np.diag(v1), m0, np.diag(v0)), rtol=1e-12)
    C = random_spd(rng, 4)
    assert np.isclose(gs.kl_to_standard(m1, C), gs.kl(m1, C, np.zeros(4), np.eye(4)), rtol=1e-12)
    assert gs.kl(m1, C, m1, C) == pytest.approx(0.0, abs=1e-12)


def test_entropy_matches_scipy(rng):
    C = random_spd(rng, 5)
    assert np.isclose(gs.entropy(C), stats.multivariate_normal(np.zeros(5), C).entropy(), rtol=1e-12)


def test_gaussian_q_shapes_and_kl(rng):
    mean = rng.standard_normal((7, 3))
    C = random_spd(rng, 3)
    q = GaussianQ(mean, C)
    expected = np.mean([gs.kl_to_standard(m, C) for m in mean])
    assert np.isclose(q.kl_to_standard(), expected, rtol=1e-12)
    var = rng.uniform(0.1, 1, (7, 3))
    qd = GaussianQ.from_diag(mean, var)
    full = GaussianQ(mean, qd.full_cov())
    assert np.isclose(qd.kl_to_standard(), full.kl_to_standard(), rtol=1e-12)
    with pytest.raises(ValueError, match="does not fit"):
        GaussianQ(mean, np.eye(4))


def test_gaussian_q_sample_moments(rng):
    C = random_spd(rng, 2)
    q = GaussianQ(np.array([[1.0, -2.0]]), C)
    z = q.sample(rng, n_samples=200_000)[:, 0, :]
    np.testing.assert_allclose(z.mean(0), [1, -2], atol=5 * np.sqrt(C.diagonal().max() / 2e5))
    np.testing.assert_allclose(np.cov(z.T), C, atol=0.02)


def test_capacitance_gives_woodbury_and_the_determinant_lemma(rng):
    W = rng.standard_normal((7, 3))
    psi = rng.uniform(0.2, 2.0, 7)
    LM, Wp = gs.capacitance(W, psi)
    M = LM @ LM.T
    np.testing.assert_allclose(M, np.eye(3) + W.T @ np.diag(1 / psi) @ W, rtol=1e-12)
    C = W @ W.T + np.diag(psi)
    Ci = np.diag(1 / psi) - Wp @ np.linalg.solve(M, Wp.T)
    np.testing.assert_allclose(Ci, np.linalg.inv(C), rtol=1e-10, atol=1e-12)
    assert np.isclose(np.sum(np.log(psi)) + gs.logdet(M), np.linalg.slogdet(C)[1], rtol=1e-12)


def test_kl_to_standard_terms_is_the_average_of_row_kls(rng):
    covs = np.stack([random_spd(rng, 3) for _ in range(5)])
    means = rng.standard_normal((5, 3))
    q = GaussianQ(means, covs)
    rows = [gs.kl(means[n], covs[n], np.zeros(3), np.eye(3)) for n in range(5)]
    assert np.isclose(q.kl_to_standard(), np.mean(rows), rtol=1e-12)


def test_expected_diag_loglik_against_monte_carlo(rng):
    W = rng.standard_normal((4, 2))
    psi = rng.uniform(0.5, 1.5, 4)
    x, m = rng.standard_normal(4), rng.standard_normal(2)
    cov = random_spd(rng, 2)
    z = rng.multivariate_normal(m, cov, size=200_000)
    vals = stats.multivariate_normal(np.zeros(4), np.diag(psi)).logpdf(x - z @ W.T)
    got = gs.expected_diag_loglik((x - W @ m)[None], psi, W, cov)
    assert abs(vals.mean() - got) < 5 * vals.std() / np.sqrt(len(vals))
