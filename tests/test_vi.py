import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import integrate, special, stats

from latentmodels import gaussian as gs
from latentmodels.datasets import make_fa_data, make_ppca_data
from latentmodels.fa import FactorAnalysis
from latentmodels.ppca import PPCA
from latentmodels.vi import MeanFieldGaussian, NormalGammaVI, kl_gamma, mean_field_q


def monotone(h):
    h = np.asarray(h)
    return np.all(np.diff(h) >= -1e-9 * np.maximum(1, np.abs(h[1:])))


# ---- Normal-Gamma (Bishop 10.1.3) -----------------------------------------------------------

@given(st.integers(1, 200), st.floats(-5, 5), st.floats(0.05, 5), st.floats(0.1, 10),
       st.floats(0.1, 10), st.integers(0, 10**6))
def test_normal_gamma_history_never_decreases_and_bounds_the_evidence(n, mu0, lam0, a0, b0, seed):
    x = np.random.default_rng(seed).normal(1.0, 2.0, n)
    m = NormalGammaVI(mu0, lam0, a0, b0).fit(x)
    assert monotone(m.history_)
    assert m.elbo().total <= m.log_evidence() + 1e-12
    # q(mu)'s mean is the exact posterior mean (Bishop eq. 10.26 vs the conjugate update)
    assert np.isclose(m.mu_N_, m.exact_posterior()["mu"], rtol=1e-12, atol=1e-12)


def test_log_evidence_matches_numerical_integration():
    x = np.array([0.3, 1.2, -0.4, 0.9])
    m = NormalGammaVI(0.5, 2.0, 2.0, 1.5).fit(x)

    sx, sxx, n = x.sum(), (x**2).sum(), len(x)
    log_gamma_prior = 2.0 * np.log(1.5) - special.gammaln(2.0)

    def joint(tau, mu):  # p(x | mu, tau) p(mu | tau) p(tau), written out from the model
        sq = sxx - 2 * mu * sx + n * mu * mu
        return np.exp(0.5 * n * np.log(tau / (2 * np.pi)) - 0.5 * tau * sq
                      + 0.5 * np.log(2.0 * tau / (2 * np.pi)) - tau * (mu - 0.5) ** 2
                      + log_gamma_prior + np.log(tau) - 1.5 * tau)

    evidence, _ = integrate.dblquad(joint, -6, 6, 1e-12, 20, epsabs=0, epsrel=1e-9)
    assert np.isclose(m.log_evidence() * len(x), np.log(evidence), rtol=1e-6)


def test_gap_is_the_kl_to_the_exact_posterior_by_monte_carlo():
    rng = np.random.default_rng(0)
    x = rng.normal(0.5, 1.5, 10)
    m = NormalGammaVI(0.0, 0.5, 1.0, 1.0).fit(x)
    gap = (m.log_evidence() - m.elbo().total) * len(x)
    post = m.exact_posterior()
    S = 400_000
    tau = rng.gamma(m.a_N_, 1 / m.b_N_, S)
    mu = rng.normal(m.mu_N_, 1 / np.sqrt(m.lambda_N_), S)
    log_q = (stats.norm.logpdf(mu, m.mu_N_, 1 / np.sqrt(m.lambda_N_))
             + stats.gamma.logpdf(tau, m.a_N_, scale=1 / m.b_N_))
    log_p = (stats.norm.logpdf(mu, post["mu"], 1 / np.sqrt(post["lambda"] * tau))
             + stats.gamma.logpdf(tau, post["a"], scale=1 / post["b"]))
    d = log_q - log_p
    se = d.std() / np.sqrt(S)
    assert abs(d.mean() - gap) < 5 * se       # within 5 Monte Carlo standard errors
    assert gap > 0


def test_gap_shrinks_as_n_grows():
    rng = np.random.default_rng(1)
    gaps = []
    for n in (5, 50, 500, 5000):
        m = NormalGammaVI().fit(rng.normal(1.0, 0.5, n))
        gaps.append(m.log_evidence() - m.elbo().total)
    assert all(a > b > 0 for a, b in zip(gaps, gaps[1:]))


def test_kl_gamma_matches_quadrature():
    p, q = stats.gamma(3.0, scale=1 / 2.0), stats.gamma(1.5, scale=1 / 0.7)
    numeric, _ = integrate.quad(lambda t: p.pdf(t) * (p.logpdf(t) - q.logpdf(t)), 0, 60)
    assert np.isclose(kl_gamma(3.0, 2.0, 1.5, 0.7), numeric, rtol=1e-8)


# ---- factorised Gaussian (Bishop 10.1.2) -------------------------------------------------------

@given(st.integers(2, 5), st.integers(0, 10**6))
def test_mean_field_gaussian_fixed_point_is_bishops_closed_form(k, seed):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((k, k))
    Lam = A @ A.T + 0.3 * np.eye(k)
    mu = rng.standard_normal(k)
    m = MeanFieldGaussian(mu, Lam, tol=1e-15, max_iter=100_000, random_state=seed).fit()
    assert monotone(m.history_)
    np.testing.assert_allclose(m.var_, 1 / np.diag(Lam), rtol=1e-12)
    np.testing.assert_allclose(m.mean_, mu, atol=1e-5 * (1 + np.abs(mu).max()))
    # mean field under-estimates every marginal variance; moment matching gets them exactly
    cov = np.linalg.inv(Lam)
    assert np.all(m.var_ <= np.diag(cov) + 1e-12)
    np.testing.assert_allclose(m.reverse_var_, np.diag(cov), rtol=1e-10)
    # each solution is best for its own KL direction
    assert m.kl_qp_ <= m.reverse_kl_qp_ + 1e-9
    assert m.reverse_kl_pq_ <= m.kl_pq_ + 1e-9
    assert np.isclose(m.elbo().total, -m.kl_qp_, rtol=1e-8, atol=1e-10)


# ---- the mean-field q(z|x) of factor analysis ---------------------------------------------------

@pytest.mark.filterwarnings("ignore::latentmodels.ConvergenceWarning")
@given(st.integers(3, 8), st.integers(2, 3), st.integers(0, 10**6))
def test_mean_field_q_for_fa_is_a_lower_bound_with_the_kl_gap(D, L, seed):
    # the gap equals KL(q || exact posterior) for any q, converged or not, so a short run suffices
    X, _ = make_fa_data(60, D, L, random_state=seed)
    fa = FactorAnalysis(L).fit(X)
    # rotate W: same likelihood, but the exact posterior covariance is no longer diagonal
    R = np.linalg.qr(np.random.default_rng(seed).standard_normal((L, L)))[0]
    fa.W_ = fa.W_ @ R
    q, history = mean_field_q(fa, X, max_iter=100)
    assert monotone(history)
    ll, e = fa.log_likelihood(X), fa.elbo(X, q).total
    assert e <= ll + 1e-10
    exact = fa.posterior(X)
    kl = np.mean([gs.kl(q.mean[n], np.diag(q.cov), exact.mean[n], exact.cov) for n in range(len(X))])
    assert np.isclose(ll - e, kl, rtol=1e-6, atol=1e-9)


def test_mean_field_q_is_exact_when_the_posterior_is_diagonal():
    X, _ = make_ppca_data(200, 8, 3, random_state=0)
    pp = PPCA(3).fit(X)                # closed form: W^T W is diagonal
    assert np.allclose(pp.posterior(X).cov, np.diag(np.diag(pp.posterior(X).cov)))
    q, _ = mean_field_q(pp, X)
    assert abs(pp.log_likelihood(X) - pp.elbo(X, q).total) < 1e-10
    np.testing.assert_allclose(q.mean, pp.transform(X), atol=1e-8)


# ---- bad input (issue 9) -----------------------------------------------------------------------

def test_mean_field_q_of_a_wrong_model_is_a_type_error():
    with pytest.raises(TypeError, match="model must be a fitted linear-Gaussian model"):
        mean_field_q(NormalGammaVI(), np.zeros((3, 2)))


def test_normal_gamma_on_huge_values_is_a_clear_value_error():
    x = np.random.default_rng(0).normal(size=20) * 1e200
    with pytest.raises(ValueError, match="too large"):
        NormalGammaVI().fit(x)


def test_mean_field_gaussian_refuses_a_non_symmetric_precision():
    with pytest.raises(ValueError, match="symmetric"):
        MeanFieldGaussian(np.zeros(2), np.array([[2.0, 0.5], [0.0, 1.0]])).fit()


def test_vi_models_store_init_arguments_unchanged():
    prec = [[2.0, 0.3], [0.3, 1.0]]
    m = MeanFieldGaussian([0.0, 1.0], prec, tol=1e-9)
    assert m.get_params()["precision"] is prec and m.get_params()["tol"] == 1e-9
    assert NormalGammaVI(1.0, 2.0, 3.0, 4.0).get_params() == dict(
        mu0=1.0, lambda0=2.0, a0=3.0, b0=4.0, tol=1e-12, max_iter=1000)


def test_vbpca_is_still_importable_from_vi():
    from latentmodels.vbpca import VBPCA
    from latentmodels.vi import VBPCA as OldName

    assert OldName is VBPCA
