import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import linalg, stats

from latentmodels import gaussian as gs
from latentmodels import linear_gaussian as lg
from latentmodels.datasets import make_fa_data, make_ppca_data
from latentmodels.fa import FactorAnalysis
from latentmodels.gaussian import GaussianQ
from latentmodels.ppca import PPCA
from latentmodels.vbpca import VBPCA


def problem(seed, D=6, L=2, N=200):
    rng = np.random.default_rng(seed)
    X, _ = make_fa_data(N, D, L, random_state=seed)
    W = rng.standard_normal((D, L))
    psi = rng.uniform(0.2, 1.5, D)
    return X, W, psi


def joint_posterior(W, psi):
    """Exact p(z|x) by conditioning the joint Gaussian of (z, x) (Bishop PRML 2.81-2.82), full D×D."""
    C = W @ W.T + np.diag(psi)
    K = W.T @ np.linalg.inv(C)
    return K, np.eye(W.shape[1]) - K @ W


@given(st.integers(0, 10**6), st.booleans())
def test_e_step_is_the_conditional_of_the_joint_gaussian(seed, isotropic):
    _, W, psi = problem(seed)
    if isotropic:
        psi = np.full_like(psi, psi[0])
    B, G = lg.e_step(W, psi)
    K, post_cov = joint_posterior(W, psi)
    np.testing.assert_allclose(B, K, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(G, post_cov, rtol=1e-9, atol=1e-12)


def test_e_step_at_zero_noise_is_the_orthogonal_projection():
    _, W, _ = problem(1)
    B, G = lg.e_step(W, np.zeros(W.shape[0]))
    np.testing.assert_allclose(B, np.linalg.pinv(W), atol=1e-12)
    assert np.all(G == 0)


def test_elbo_from_moments_equals_the_row_by_row_elbo():
    # for q_n = N(B(x_n - x̄), G) with any B, G: the ELBO on (x̄, S) equals the per-row sum
    X, W, psi = problem(2)
    rng = np.random.default_rng(0)
    B = rng.standard_normal((2, 6))
    A = rng.standard_normal((2, 2))
    G = A @ A.T + 0.1 * np.eye(2)
    mu, S = lg.moments(X)
    M = (X - mu) @ B.T
    rows = []
    for n in range(len(X)):   # E_q log N(x|Wz+μ,Ψ) - KL(q_n||N(0,I)), each row written out
        r = X[n] - mu - W @ M[n]
        ell = stats.multivariate_normal(np.zeros(6), np.diag(psi)).logpdf(r) - 0.5 * np.trace(
            W.T @ np.diag(1 / psi) @ W @ G)
        rows.append(ell - gs.kl(M[n], G, np.zeros(2), np.eye(2)))
    assert np.isclose(lg.elbo_from_moments(S, W, psi, B, G).total, np.mean(rows), rtol=1e-11)


def test_log_likelihood_from_moments_matches_scipy():
    X, W, psi = problem(3)
    mu, S = lg.moments(X)
    ref = stats.multivariate_normal(mu, W @ W.T + np.diag(psi)).logpdf(X).mean()
    assert np.isclose(lg.log_likelihood_from_moments(S, W, psi), ref, rtol=1e-12)


@given(st.integers(0, 10**6))
def test_m_step_maximises_the_elbo_for_fixed_q(seed):
    X, W, psi = problem(seed)
    mu, S = lg.moments(X)
    B, G = lg.e_step(W, psi)
    W1, psi1 = lg.m_step(S, B, G, psi)
    best = lg.elbo_from_moments(S, W1, psi1, B, G).total
    rng = np.random.default_rng(seed)
    for _ in range(10):
        Wp = W1 + 1e-3 * rng.standard_normal(W1.shape)
        pp = psi1 * np.exp(1e-3 * rng.standard_normal(psi1.shape))
        assert lg.elbo_from_moments(S, Wp, pp, B, G).total < best
    # gradient of the ELBO in W vanishes: Ψ⁻¹ (S Bᵀ - W (G + B S Bᵀ)) = 0 (Bishop 12.69)
    np.testing.assert_allclose(S @ B.T, W1 @ (G + B @ S @ B.T), atol=1e-12)


@settings(max_examples=15)
@given(st.integers(0, 10**6), st.sampled_from([None, 0.05, 1e-6]))
def test_ritz_scale_step_never_lowers_the_likelihood_and_is_exact_at_the_pca_subspace(seed, sigma2):
    X, _ = make_ppca_data(150, 7, 2, sigma2=0.3, random_state=seed)
    _, S = lg.moments(X)
    W = np.random.default_rng(seed).standard_normal((7, 2))
    s2 = 0.5 if sigma2 is None else sigma2
    before = lg.log_likelihood_from_moments(S, W, np.full(7, s2))
    step = lg.ritz_scale_step(S, W, sigma2)
    if step is not None:
        W1, s21 = step
        assert lg.log_likelihood_from_moments(S, W1, np.full(7, s21)) >= before - 1e-12
    # in the principal subspace it gives the closed form (Tipping & Bishop 1999)
    lam, U = np.linalg.eigh(S)
    W1, s21 = lg.ritz_scale_step(S, U[:, -2:] @ np.array([[2.0, 1.0], [0.0, 3.0]]), sigma2)
    cf = PPCA(2, sigma2=sigma2).fit(X)
    np.testing.assert_allclose(W1 @ W1.T, cf.W_ @ cf.W_.T, atol=1e-10)
    assert np.isclose(s21, cf.sigma2_, rtol=1e-10)


def test_elbo_error_grows_like_one_over_sigma2():
    # the error bound is ~ n ε Σ|terms|; tr(Ψ⁻¹S) ~ 1/σ² dominates it as σ² → 0
    X, W, _ = problem(4)
    _, S = lg.moments(X)
    e = [lg.elbo_error(S, W, np.full(6, s2), *lg.e_step(W, np.full(6, s2))) for s2 in (1e-2, 1e-6)]
    assert 1e3 < e[1] / e[0] < 1e5


def test_gram_change_is_accurate_below_sqrt_eps():
    W = np.random.default_rng(0).standard_normal((10, 3))
    W2 = W * (1 + 1e-12)
    # W2 W2ᵀ - W Wᵀ = (2e-12 + 1e-24) W Wᵀ exactly
    assert np.isclose(lg._gram_change(W, W2), 2e-12 / (1 + 1e-12) ** 2, rtol=1e-3)


# ---- a q with per-row covariances, in every model's elbo (issue 8) -------------------------------

def per_row_q(rng, N, L):
    mean = rng.standard_normal((N, L))
    A = rng.standard_normal((N, L, L))
    cov = A @ A.transpose(0, 2, 1) / L + 0.2 * np.eye(L)
    return GaussianQ(mean, cov)


# FA on these 40 rows is a Heywood case (ψ_4 on the default floor 1e-6 · S_44): there the
# posterior is nearly singular, the KLs are ~1e6 nats and both sides carry round-off of ~1e-9 of
# that; min_psi=1e-2 keeps the fit (and the identity's two sides) well conditioned
@pytest.mark.parametrize("make", [lambda: FactorAnalysis(2, n_init=1, min_psi=1e-2),
                                  lambda: PPCA(2)])
def test_per_row_q_in_fa_and_ppca_elbo_is_the_exact_kl_gap(make):
    # log p(x) - ELBO(q) = mean_n KL(q_n || p(z_n|x_n)), the posterior from the joint Gaussian
    X, _ = make_ppca_data(40, 5, 2, random_state=0)
    model = make().fit(X)
    q = per_row_q(np.random.default_rng(1), 40, 2)
    gap = model.log_likelihood(X) - model.elbo(X, q).total
    K, post_cov = joint_posterior(model.W_, model.noise_variance())
    post_mean = (X - model.mu_) @ K.T
    kls = [gs.kl(q.mean[n], q.cov[n], post_mean[n], post_cov) for n in range(40)]
    assert np.isclose(gap, np.mean(kls), rtol=1e-9)
    # the KL term is the mean of the per-row KLs to N(0, I): mean log|Σ_n|, not log|mean Σ_n|
    ref = np.mean([gs.kl(q.mean[n], q.cov[n], np.zeros(2), np.eye(2)) for n in range(40)])
    assert np.isclose(model.elbo(X, q).kl_latent, ref, rtol=1e-12)


def test_per_row_q_in_vbpca_elbo():
    X, _ = make_ppca_data(40, 5, 2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        v = VBPCA(2, max_iter=200, random_state=0).fit(X)
    q = per_row_q(np.random.default_rng(2), 40, 2)
    e = v.elbo(X, q)
    ref_kl = np.mean([gs.kl(q.mean[n], q.cov[n], np.zeros(2), np.eye(2)) for n in range(40)])
    assert np.isclose(e.kl_latent, ref_kl, rtol=1e-12)
    # the data term needs only the average covariance: a q with Σ_n replaced by their mean has the
    # same expected log-likelihood, and its KL differs by ½ (mean log|Σ_n| - log|mean Σ_n|) exactly
    q_bar = GaussianQ(q.mean, q.cov.mean(axis=0))
    e_bar = v.elbo(X, q_bar)
    assert np.isclose(e.expected_log_lik, e_bar.expected_log_lik, rtol=1e-12)
    jensen = 0.5 * (np.mean(np.linalg.slogdet(q.cov)[1]) - np.linalg.slogdet(q.cov.mean(0))[1])
    assert np.isclose(e.kl_latent, e_bar.kl_latent - jensen, rtol=1e-10)
    # and its data term against Monte Carlo over q(Z) and q(W, μ, τ) on the standardised data
    rng = np.random.default_rng(3)
    s = v._s
    Xs = v._standardise(X)
    n_mc = 4000
    Lz = np.linalg.cholesky(q.cov)
    Z = q.mean[None] + np.einsum("nij,snj->sni", Lz, rng.standard_normal((n_mc, 40, 2)))
    LW = np.linalg.cholesky(s["SW"])
    Wd = s["MW"][None] + np.einsum("ij,sdj->sdi", LW, rng.standard_normal((n_mc, 5, 2)))
    mu = s["m_mu"] + np.sqrt(s["S_mu"]) * rng.standard_normal((n_mc, 5))
    tau = rng.gamma(s["a_tau"], 1 / s["b_tau"], n_mc)
    resid = Xs[None] - np.einsum("snl,sdl->snd", Z, Wd) - mu[:, None]
    ll = 0.5 * 5 * (np.log(tau) - gs.LOG_2PI) - 0.5 * tau * np.mean(np.sum(resid**2, axis=2), axis=1)
    ll -= 5 * np.log(v.scale_)
    se = ll.std() / np.sqrt(n_mc)
    assert abs(ll.mean() - e.expected_log_lik) < 5 * se


def test_per_row_q_in_vae_elbo_kl():
    # the VAE's elbo accepts any GaussianQ; its KL term against the per-row closed form
    from latentmodels.vae import VAE

    X, _ = make_ppca_data(30, 4, 2, random_state=0)
    vae = VAE(2, hidden=(8,), likelihood="gaussian", dtype=np.float64, random_state=0)
    vae.fit(X, 1)
    q = per_row_q(np.random.default_rng(4), 30, 2)
    ref = np.mean([gs.kl(q.mean[n], q.cov[n], np.zeros(2), np.eye(2)) for n in range(30)])
    assert np.isclose(vae.elbo(X, q, random_state=0).kl_latent, ref, rtol=1e-10)


def test_subspace_change_is_the_sine_of_the_largest_principal_angle():
    rng = np.random.default_rng(5)
    A, B = rng.standard_normal((8, 3)), rng.standard_normal((8, 3))
    assert np.isclose(lg._subspace_change(A, B), np.sin(np.max(linalg.subspace_angles(A, B))),
                      rtol=1e-9)
