"""Tests of latentmodels.blur against independent computations: closed forms, scipy quadrature and
optimisation, scikit-learn's EM, finite differences, and the exact marginal of a linear VAE."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import integrate, ndimage, optimize, stats

from latentmodels.blur import (
    Mixture1D,
    decoder_log_lik,
    decoder_log_lik_and_grad,
    decoder_moments_and_samples,
    elbo_rows,
    fit_gmm_1d,
    forward_kl_gaussian,
    gap_split,
    gradient_energy,
    ideal_decoder_mean,
    ideal_decoder_weights,
    iwae_rows,
    kl_gaussian_to_mixture,
    laplacian_energy,
    linear_gaussian_means_and_samples,
    mean_and_se,
    means_vs_samples,
    noise_laplacian_energy,
    refine_posterior,
    reverse_kl_gaussian,
)
from latentmodels.gaussian import GaussianQ
from latentmodels.vae import VAE


# ---- sharpness -------------------------------------------------------------------------------
def test_laplacian_energy_matches_scipy_on_the_interior(rng):
    X = rng.standard_normal((5, 48))
    ref = [np.mean(ndimage.laplace(x.reshape(6, 8))[1:-1, 1:-1] ** 2) for x in X]
    np.testing.assert_allclose(laplacian_energy(X, shape=(6, 8)), ref, rtol=1e-12)


def test_laplacian_and_gradient_energy_closed_forms():
    i, j = np.meshgrid(np.arange(8.0), np.arange(8.0), indexing="ij")
    # x = i²: the Laplacian is 2 at every pixel; x = a i + b j: the Laplacian is 0, gradients a, b
    assert laplacian_energy((i ** 2).reshape(1, -1))[0] == pytest.approx(4.0)
    plane = (0.3 * i - 0.7 * j).reshape(1, -1)
    assert laplacian_energy(plane)[0] == pytest.approx(0.0, abs=1e-24)
    assert gradient_energy(plane)[0] == pytest.approx(0.3 ** 2 + 0.7 ** 2)
    # a checkerboard ±1: Laplacian ∓8 everywhere
    assert laplacian_energy(((-1.0) ** (i + j)).reshape(1, -1))[0] == pytest.approx(64.0)


@given(st.integers(0, 10_000), st.floats(0.5, 3.0))
def test_averaging_blur_never_sharpens(seed, sigma):
    """Circular Gaussian blur has |H| ≤ 1, so by Parseval the energy of the circular Laplacian cannot
    rise; on the interior stencil the same holds for large images up to edge effects, so check the
    circular version the docstring's argument is about, built here with scipy's wrap mode."""
    r = np.random.default_rng(seed)
    x = r.uniform(size=(16, 16))
    y = ndimage.gaussian_filter(x, sigma, mode="wrap")
    lap = lambda a: np.mean(ndimage.laplace(a, mode="wrap") ** 2)  # noqa: E731
    assert lap(y) <= lap(x) + 1e-12


def test_noise_energy_matches_monte_carlo(rng):
    M = rng.uniform(size=(1, 36))
    V = rng.uniform(0.01, 0.2, size=(1, 36))
    n = 20000
    S = laplacian_energy(M + np.sqrt(V) * rng.standard_normal((n, 36))) - laplacian_energy(M)[0]
    d, se = mean_and_se(S)
    assert abs(d - noise_laplacian_energy(V)[0]) < 4 * se
    # Bernoulli pixels: variance p(1 − p)
    P = rng.uniform(size=(1, 36))
    B = (rng.uniform(size=(n, 36)) < P) * 1.0
    d, se = mean_and_se(laplacian_energy(B) - laplacian_energy(P)[0])
    assert abs(d - noise_laplacian_energy(P * (1 - P))[0]) < 4 * se


def test_means_vs_samples_is_paired(rng):
    M = rng.uniform(size=(30, 64))
    S = M + 0.3 * rng.standard_normal(M.shape)
    r = means_vs_samples(M, S)
    d = laplacian_energy(S) - laplacian_energy(M)
    assert r.difference == pytest.approx(d.mean())
    assert r.difference_se == pytest.approx(d.std(ddof=1) / np.sqrt(30))
    with pytest.raises(ValueError, match="same shape"):
        means_vs_samples(M, S[:5])


def test_linear_gaussian_means_and_samples_moments(rng):
    class FA:  # the attributes a fitted FactorAnalysis exposes
        W_ = rng.standard_normal((6, 2))
        mu_ = rng.standard_normal(6)
        psi_ = rng.uniform(0.1, 1.0, 6)

        def noise_variance(self):
            return self.psi_

    fa = FA()
    n = 20000
    M, S = linear_gaussian_means_and_samples(fa, n, random_state=0)
    R = S - M
    # Var of the residual is ψ; the sample variance's se is ψ √(2/(n−1)) for Gaussian data
    assert np.all(np.abs(R.var(axis=0, ddof=1) - fa.psi_) < 4 * fa.psi_ * np.sqrt(2 / (n - 1)))
    C = np.cov(M, rowvar=False)
    se = np.sqrt((np.outer(np.diag(fa.W_ @ fa.W_.T), np.diag(fa.W_ @ fa.W_.T))
                  + (fa.W_ @ fa.W_.T) ** 2) / n)
    assert np.all(np.abs(C - fa.W_ @ fa.W_.T) < 5 * se + 1e-12)


# ---- the 1-D maximum-likelihood toy ------------------------------------------------------------
TARGET = Mixture1D((0.5, 0.5), (-2.0, 2.0), (0.5, 0.5))


def test_mixture_density_derivative_and_moments():
    x = np.linspace(-4, 4, 9)
    ref = 0.5 * stats.norm.pdf(x, -2, 0.5) + 0.5 * stats.norm.pdf(x, 2, 0.5)
    np.testing.assert_allclose(np.exp(TARGET.logpdf(x)), ref, rtol=1e-12)
    h = 1e-6
    fd = (TARGET.logpdf(x + h) - TARGET.logpdf(x - h)) / (2 * h)
    np.testing.assert_allclose(TARGET.dlogpdf(x), fd, rtol=1e-6, atol=1e-6)
    p = lambda t: np.exp(TARGET.logpdf(t))  # noqa: E731
    m = integrate.quad(lambda t: t * p(t), -np.inf, np.inf)[0]
    v = integrate.quad(lambda t: (t - m) ** 2 * p(t), -np.inf, np.inf)[0]
    assert TARGET.mean() == pytest.approx(m, abs=1e-10)
    assert TARGET.var() == pytest.approx(v, rel=1e-9)


def test_forward_kl_fit_is_moment_matching_and_falls_between_the_modes():
    target = Mixture1D((0.3, 0.7), (-2.0, 1.5), (0.4, 0.6))

    grid = np.linspace(-12, 12, 24001)
    p = np.exp(target.logpdf(grid))

    def cross_entropy(theta):  # −∫ p log q on a fine grid: the ML objective in the infinite-data limit
        return -np.trapezoid(p * stats.norm.logpdf(grid, theta[0], np.exp(theta[1])), grid)

    res = optimize.minimize(cross_entropy, [0.0, 0.0], method="Nelder-Mead",
                            options={"xatol": 1e-9, "fatol": 1e-14, "maxiter": 4000})
    m, s = forward_kl_gaussian(target)
    assert m == pytest.approx(res.x[0], abs=1e-6)
    assert s == pytest.approx(np.exp(res.x[1]), abs=1e-6)
    # symmetric modes at ±2 (sd ½): the ML Gaussian is centred at 0, where the target density is
    # e^{−8} of its value at a mode (closed form: p(0)/p(2) = 2 e^{−8} / (1 + e^{−32}))
    m, s = forward_kl_gaussian(TARGET)
    assert m == pytest.approx(0.0, abs=1e-12) and s == pytest.approx(np.sqrt(4.25))
    ratio = np.exp(TARGET.logpdf(m) - TARGET.logpdf(2.0))
    assert ratio == pytest.approx(2 * np.exp(-8) / (1 + np.exp(-32)), rel=1e-10)


def test_reverse_kl_value_matches_quadrature_and_the_fit_picks_one_mode():
    m0, s0 = 0.3, 1.1
    q = lambda t: stats.norm.pdf(t, m0, s0)  # noqa: E731
    ref = integrate.quad(lambda t: q(t) * (np.log(q(t)) - TARGET.logpdf(t)), -15, 15, limit=200)[0]
    assert kl_gaussian_to_mixture(m0, s0, TARGET) == pytest.approx(ref, rel=1e-7)
    far = Mixture1D((0.5, 0.5), (-4.0, 4.0), (0.5, 0.5))
    for start, mode in ((-1.0, -4.0), (1.0, 4.0)):
        m, s, kl = reverse_kl_gaussian(far, init=(start, 1.0))
        # modes 16 sds apart: the other component matters only where q's tail reaches the midpoint,
        # 8 sds out (mass 6e-16), so to that order the optimum is the component itself with
        # KL = −log π_k = log 2
        assert m == pytest.approx(mode, abs=1e-6)
        assert s == pytest.approx(0.5, abs=1e-6)
        assert kl == pytest.approx(np.log(2), abs=1e-9)
    # at ±2 (8 sds apart) the tail 4 sds out still counts: one mode, slightly pulled and widened
    m, s, kl = reverse_kl_gaussian(TARGET, init=(-1.0, 1.0))
    assert abs(m + 2.0) < 1e-3 and abs(s - 0.5) < 1e-3 and kl < np.log(2)


def test_reverse_kl_recovers_a_gaussian_target_exactly():
    target = Mixture1D((1.0,), (0.7,), (1.3,))
    m, s, kl = reverse_kl_gaussian(target, init=(-1.0, 0.5))
    assert (m, s) == (pytest.approx(0.7, abs=1e-6), pytest.approx(1.3, abs=1e-6))
    assert kl == pytest.approx(0.0, abs=1e-10)


def test_gmm_em_matches_scikit_learn_and_never_decreases():
    from sklearn.mixture import GaussianMixture

    x = TARGET.sample(600, random_state=1)
    fit, hist = fit_gmm_1d(x, 2)
    assert np.all(np.diff(hist) >= -1e-12)
    sk = GaussianMixture(2, tol=1e-12, max_iter=2000, random_state=0).fit(x[:, None])
    order = np.argsort(sk.means_.ravel())
    np.testing.assert_allclose(np.sort(fit.means), sk.means_.ravel()[order], atol=1e-5)
    np.testing.assert_allclose(np.array(fit.sds)[np.argsort(fit.means)],
                               np.sqrt(sk.covariances_.ravel()[order]), atol=1e-5)
    assert hist[-1] == pytest.approx(sk.score(x[:, None]), abs=1e-8)


# ---- Zhao et al.'s ideal decoder ----------------------------------------------------------------
def test_ideal_decoder_two_points_closed_form():
    X = np.array([[0.0, 1.0], [1.0, 0.0]])
    q = GaussianQ.from_diag(np.array([[-1.0], [1.5]]), np.array([[0.5], [2.0]]))
    z = np.linspace(-3, 3, 7)[:, None]
    p1 = stats.norm.pdf(z[:, 0], -1.0, np.sqrt(0.5))
    p2 = stats.norm.pdf(z[:, 0], 1.5, np.sqrt(2.0))
    w1 = p1 / (p1 + p2)
    mean, n_eff = ideal_decoder_mean(z, q, X)
    np.testing.assert_allclose(mean, np.c_[1 - w1, w1], rtol=1e-12)
    np.testing.assert_allclose(n_eff, 1 / (w1 ** 2 + (1 - w1) ** 2), rtol=1e-12)


def test_ideal_decoder_full_covariance_matches_scipy(rng):
    N, L = 7, 3
    mu = rng.standard_normal((N, L))
    A = rng.standard_normal((N, L, L))
    C = A @ np.swapaxes(A, 1, 2) + 0.3 * np.eye(L)
    Z = rng.standard_normal((4, L))
    ref = np.array([[stats.multivariate_normal(mu[n], C[n]).logpdf(z) for n in range(N)] for z in Z])
    ref = np.exp(ref - ref.max(axis=1, keepdims=True))
    ref /= ref.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(ideal_decoder_weights(Z, GaussianQ(mu, C)), ref, rtol=1e-10)
    # far-away codes: log-sum-exp keeps the weights finite (plain exp would give 0/0)
    w = ideal_decoder_weights(np.full((1, L), 60.0), GaussianQ.from_diag(mu, np.full((N, L), 0.01)))
    assert np.all(np.isfinite(w)) and w.sum() == pytest.approx(1.0)


# ---- the lower bound ------------------------------------------------------------------------------
def _linear_vae(rng, D=5, L=2, sigma2=0.3):
    m = VAE(n_latent=L, hidden=(), likelihood="gaussian", decoder_variance="shared",
            dtype=np.float64, random_state=0).initialize(D)
    W = rng.standard_normal((D, L))
    b = rng.standard_normal(D)
    m.params["dec_out.W"][...] = W.T
    m.params["dec_out.b"][...] = b
    m.params["dec_logvar"][...] = np.log(sigma2)
    return m, W, b, sigma2


def _exact(W, b, sigma2, X):
    """log p(x) = log N(x; b, W Wᵀ + σ² I), the posterior N(M⁻¹ Wᵀ (x − b) / σ², M⁻¹),
    M = I + Wᵀ W / σ² (Bishop PRML eqs. 12.35, 12.42)."""
    D, L = W.shape
    lp = stats.multivariate_normal(b, W @ W.T + sigma2 * np.eye(D)).logpdf(X)
    M = np.eye(L) + W.T @ W / sigma2
    Minv = np.linalg.inv(M)
    return lp, (X - b) @ W @ Minv.T / sigma2, Minv, M


@pytest.mark.parametrize("kw", [dict(likelihood="bernoulli"),
                                dict(likelihood="gaussian", decoder_variance="output"),
                                dict(likelihood="categorical", n_levels=3)])
def test_decoder_gradient_matches_finite_differences(rng, kw):
    D, L = 4, 3
    m = VAE(n_latent=L, hidden=(6,), activation="tanh", dtype=np.float64, random_state=1, **kw)
    m.initialize(D)
    X = {"bernoulli": (rng.uniform(size=(5, D)) < 0.5) * 1.0,
         "gaussian": rng.standard_normal((5, D)),
         "categorical": rng.integers(0, 3, (5, D)) * 1.0}[kw["likelihood"]]
    Z = rng.standard_normal((5, L))
    ll, g = decoder_log_lik_and_grad(m, X, Z)
    np.testing.assert_allclose(ll, decoder_log_lik(m, X, Z), rtol=1e-12)
    h = 1e-6
    fd = np.zeros_like(Z)
    for j in range(L):
        e = np.zeros(L)
        e[j] = h
        fd[:, j] = (decoder_log_lik(m, X, Z + e) - decoder_log_lik(m, X, Z - e)) / (2 * h)
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-8)


def test_iwae_with_the_exact_posterior_is_exact(rng):
    m, W, b, s2 = _linear_vae(rng)
    X = rng.standard_normal((6, 5))
    lp, mean, C, _ = _exact(W, b, s2, X)
    # with q = p(z | x) every importance weight equals p(x): the estimate is exact for any K
    np.testing.assert_allclose(iwae_rows(m, X, 3, q=GaussianQ(mean, C), random_state=0), lp, rtol=1e-10)


def test_elbo_rows_matches_the_closed_form_within_monte_carlo_error(rng):
    m, W, b, s2 = _linear_vae(rng)
    X = rng.standard_normal((4, 5))
    q = GaussianQ.from_diag(rng.standard_normal((4, 2)), rng.uniform(0.1, 1.0, (4, 2)))
    # E_q log N(x; W z + b, σ² I) = −½ [D log 2πσ² + (‖x − W m − b‖² + tr(Wᵀ W Σ)) / σ²]
    R = X - q.mean @ W.T - b
    ell = -0.5 * (5 * np.log(2 * np.pi * s2) + (np.sum(R ** 2, 1) + q.cov @ np.diag(W.T @ W)) / s2)
    kl = 0.5 * np.sum(q.cov + q.mean ** 2 - 1 - np.log(q.cov), axis=1)
    reps = np.array([elbo_rows(m, X, q, 50, random_state=s) for s in range(20)])
    se = reps.std(axis=0, ddof=1) / np.sqrt(20)
    assert np.all(np.abs(reps.mean(axis=0) - (ell - kl)) < 4 * se)


def test_refine_posterior_reaches_the_mean_field_optimum(rng):
    """For a Gaussian posterior N(m, Λ⁻¹) the best factorised Gaussian has the exact mean and
    variances 1/Λ_ii (Bishop PRML §10.1.2, eqs. 10.12–10.13); its gap is KL(q_mf ‖ p(z|x))."""
    m, W, b, s2 = _linear_vae(rng)
    X = rng.standard_normal((8, 5))
    lp, mean, C, Lam = _exact(W, b, s2, X)
    q = refine_posterior(m, X, n_iter=1000, n_samples=16, learning_rate=0.05, random_state=0)
    # optimisation accuracy (a convergence criterion, not a Monte Carlo comparison): the exact ELBO
    # deficit to the mean-field optimum, ½ Σ_l [δm_l² Λ_ll + (r_l − 1 − log r_l)], r = v / v*, below
    # 1e-3 nats per row — small against the gaps of 0.1–1 nat the notebook measures. (It bounds the
    # errors: |δm_l| < 0.045 sd_l and |r_l − 1| < 0.065.)
    v_star = 1 / np.diag(Lam)
    r = q.cov / v_star
    deficit = 0.5 * np.sum((q.mean - mean) ** 2 * np.diag(Lam) + r - 1 - np.log(r), axis=1)
    assert np.all(deficit < 1e-3)
    # and it did move: the encoder's q (random weights) was far from the optimum
    q0 = m.posterior(X)
    r0 = q0.cov / v_star
    assert np.all(0.5 * np.sum((q0.mean - mean) ** 2 * np.diag(Lam) + r0 - 1 - np.log(r0), axis=1) > 0.1)


def _exact_elbo(W, b, s2, X, q):
    """ELBO of a linear Gaussian decoder under a diagonal q, closed form (as in the test above)."""
    R = X - q.mean @ W.T - b
    ell = -0.5 * (X.shape[1] * np.log(2 * np.pi * s2) + (np.sum(R ** 2, 1) + q.cov @ np.diag(W.T @ W)) / s2)
    return ell - 0.5 * np.sum(q.cov + q.mean ** 2 - 1 - np.log(q.cov), axis=1)


def test_gap_split_on_a_linear_vae_matches_the_exact_split(rng):
    m, W, b, s2 = _linear_vae(rng)
    X = rng.standard_normal((10, 5))
    lp, mean, C, Lam = _exact(W, b, s2, X)
    g = gap_split(m, X, n_importance=2000, n_elbo_samples=400,
                  refine_kwargs=dict(n_iter=1000, n_samples=16), random_state=0)
    # exact split: approximation gap = KL(N(mean, diag 1/Λ_ii) ‖ N(mean, Λ⁻¹)) = ½[Σ log Λ_ii − log|Λ|]
    # (the same for every row); amortisation gap = ELBO(q_mf) − ELBO(q_encoder), both closed forms.
    # Margins: 4 standard errors of the per-row Monte Carlo differences, plus the refinement's
    # optimisation tolerance of 1e-3 nats per row (test above).
    kl_mf = 0.5 * (np.sum(np.log(np.diag(Lam))) - np.linalg.slogdet(Lam)[1])
    q_mf = GaussianQ.from_diag(mean, np.broadcast_to(1 / np.diag(Lam), mean.shape))
    amort = _exact_elbo(W, b, s2, X, q_mf) - _exact_elbo(W, b, s2, X, m.posterior(X))
    d, se = mean_and_se(g.log_px_rows - lp)
    assert abs(d) < 4 * se
    assert abs(g.approximation_gap - kl_mf) < 4 * g.approximation_gap_se + 1e-3
    d, se = mean_and_se(g.elbo_refined_rows - g.elbo_amortised_rows - amort)
    assert abs(d) < 4 * se + 1e-3
    assert g.amortisation_gap == pytest.approx(np.mean(g.elbo_refined_rows - g.elbo_amortised_rows))


def test_mean_and_se():
    assert mean_and_se([1.0, 2.0, 3.0]) == (pytest.approx(2.0), pytest.approx(1 / np.sqrt(3)))
    with pytest.raises(ValueError):
        mean_and_se([1.0])


@pytest.mark.parametrize("kw", [dict(likelihood="bernoulli"), dict(likelihood="gaussian"),
                                dict(likelihood="categorical", n_levels=4)])
def test_decoder_moments_match_the_samples(rng, kw):
    m = VAE(n_latent=2, hidden=(5,), dtype=np.float64, random_state=2, **kw).initialize(3)
    Z = np.repeat(rng.standard_normal((1, 2)), 20000, axis=0)
    mean, var, x = decoder_moments_and_samples(m, Z, random_state=0)
    np.testing.assert_allclose(mean[0], m.decode(Z[:1])[0], rtol=1e-10)
    se_mean = np.sqrt(var[0] / len(x))
    assert np.all(np.abs(x.mean(axis=0) - mean[0]) < 4 * se_mean)
    # se of a sample variance: sqrt((μ4 − σ⁴)/n), μ4 estimated from the draws
    mu4 = np.mean((x - mean[0]) ** 4, axis=0)
    assert np.all(np.abs(x.var(axis=0) - var[0]) < 4 * np.sqrt((mu4 - var[0] ** 2) / len(x)) + 1e-12)
