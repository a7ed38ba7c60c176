import itertools

import numpy as np
import pytest
from scipy import linalg

from latentmodels import PPCA, FactorAnalysis, load_digits, make_fa_data, make_ppca_data
from latentmodels.datasets import binarize
from latentmodels.nn import gradient_check
from latentmodels.vae import VAE

# every likelihood × estimator × network depth; the Gaussian also × its three variances × S
COMBOS = [
    (lik, dv, est, S, hidden, act)
    for lik, dv, est, S, (hidden, act) in itertools.product(
        ["bernoulli", "gaussian", "categorical", "continuous_bernoulli"],
        ["shared", "per_feature", "output"], ["A", "B"], [1, 3],
        [((), "relu"), ((5, 4), "softplus")])
    if lik == "gaussian" or (dv == "shared" and S == 3)
]


def _data_for(lik, rng, N=6, D=5):
    """Data on each likelihood's support: binary, real, integer levels 0..3, or in [0, 1]."""
    if lik == "bernoulli":
        return (rng.uniform(size=(N, D)) < 0.5).astype(float)
    if lik == "categorical":
        return rng.integers(0, 4, size=(N, D)).astype(float)
    return rng.uniform(size=(N, D))


def _perturbed(v, rng):
    for p in v.params.values():
        p += 0.1 * rng.standard_normal(p.shape)
    return v


@pytest.mark.parametrize("lik,dv,est,S,hidden,act", COMBOS)
def test_gradient_check_float64(lik, dv, est, S, hidden, act):
    rng = np.random.default_rng(0)
    X = _data_for(lik, rng)
    v = VAE(3, hidden=hidden, activation=act, likelihood=lik, decoder_variance=dv, estimator=est,
            n_levels=4 if lik == "categorical" else None, dtype=np.float64,
            random_state=1).initialize(5, X)
    _perturbed(v, rng)
    eps = rng.standard_normal((S, 6, 3))
    errs = gradient_check(lambda: v.elbo_and_grad(X, eps), v.params, max_entries=None)
    assert max(errs.values()) < 1e-6, errs


def test_alternating_schedule_is_an_e_step_then_an_m_step():
    """One 'full EM' step with SGD equals: φ += lr ∇φ L(ε1); then θ += lr ∇θ L(ε2) at the new φ."""
    X = np.random.default_rng(0).uniform(size=(8, 4))
    kw = dict(hidden=(5,), likelihood="gaussian", optimizer="sgd", learning_rate=0.05,
              schedule="alternating", batch_size=8, dtype=np.float64, random_state=3)
    a = VAE(2, **kw).initialize(4, X)
    b = VAE(2, **kw).initialize(4, X)
    start = {k: v.copy() for k, v in b.params.items()}
    a.fit(X, epochs=1)
    rng = b._rng
    order = rng.permutation(8)
    eps1 = rng.standard_normal((1, 8, 2))
    _, g = b.elbo_and_grad(X[order], eps1)
    for k in b.encoder_names:
        b.params[k] += 0.05 * g[k]
    eps2 = rng.standard_normal((1, 8, 2))
    _, g = b.elbo_and_grad(X[order], eps2)
    for k in b.decoder_names:
        b.params[k] += 0.05 * g[k]
    for k in a.params:
        np.testing.assert_allclose(a.params[k], b.params[k], rtol=1e-12, atol=1e-14)
        assert not np.allclose(a.params[k], start[k])


@pytest.mark.parametrize("epochs", [0, 20])
def test_estimators_a_and_b_agree_in_mean_and_b_has_lower_gradient_variance(epochs):
    """2000 draws of ε: both estimators are unbiased for the same ELBO and gradient; B, with its
    analytic KL, gives the lower-variance gradient at initialisation and after training. (The
    variance of A's *value* falls below B's once q nears the exact posterior, because then
    log p(x, z) − log q(z | x) → log p(x) for every z; the gradient variance is what matters.)"""
    X, _ = make_ppca_data(200, 6, 2, sigma2=0.2, random_state=0)
    v = VAE(2, hidden=(8,), activation="tanh", likelihood="gaussian", batch_size=50,
            learning_rate=1e-2, dtype=np.float64, random_state=0)
    v.initialize(6, X) if epochs == 0 else v.fit(X, epochs)
    rng = np.random.default_rng(1)
    n = 2000
    vals = {"A": [], "B": []}
    grads = {"A": [], "B": []}
    for _ in range(n):
        eps = rng.standard_normal((len(X), 2))
        for est in ("A", "B"):
            v.estimator = est
            val, g = v.elbo_and_grad(X, eps)
            vals[est].append(val)
            grads[est].append(np.concatenate([g[k].ravel() for k in v.params]))
    v.estimator = "B"
    a, b = np.array(vals["A"]), np.array(vals["B"])
    se = np.sqrt(a.var() / n + b.var() / n)
    assert abs(a.mean() - b.mean()) < 5 * se          # same expectation (the ELBO)
    ga, gb = np.array(grads["A"]), np.array(grads["B"])
    se_g = np.sqrt(ga.var(0) / n + gb.var(0) / n)
    assert np.mean(np.abs(ga.mean(0) - gb.mean(0)) < 5 * se_g) > 0.95
    assert gb.var(0).sum() < ga.var(0).sum()


def _trained_small_vae(estimator="B"):
    X, _ = make_ppca_data(200, 6, 2, sigma2=0.2, random_state=0)
    v = VAE(2, hidden=(8,), activation="tanh", likelihood="gaussian", estimator=estimator,
            batch_size=50, learning_rate=1e-2, dtype=np.float64, random_state=0).fit(X, 20)
    return v, X


def test_score_function_gradient_is_unbiased_but_far_noisier():
    v, X = _trained_small_vae()
    X = X[:50]
    rng = np.random.default_rng(2)
    n = 1500
    flat = {"reparam": [], "score": []}
    for _ in range(n):
        eps = rng.standard_normal((50, 2))
        for est in flat:
            g = v.encoder_gradient(X, eps, est)
            flat[est].append(np.concatenate([g[k].ravel() for k in v.encoder_names]))
    r, s = np.array(flat["reparam"]), np.array(flat["score"])
    se = np.sqrt(r.var(0) / n + s.var(0) / n)
    assert np.mean(np.abs(r.mean(0) - s.mean(0)) < 5 * se) > 0.95
    # total variance T = E‖g − E g‖², estimated by the mean of the n squared deviations; its
    # standard error is their standard deviation over √n. The score-function total variance must
    # exceed the pathwise one by more than 5 standard errors of the difference (a Monte Carlo
    # margin, not a ratio picked from the output); grad_variance must agree with these draws.
    dev_r = np.sum((r - r.mean(0)) ** 2, axis=1)
    dev_s = np.sum((s - s.mean(0)) ** 2, axis=1)
    t_r, t_s = dev_r.mean(), dev_s.mean()
    se_diff = np.hypot(dev_r.std(ddof=1), dev_s.std(ddof=1)) / np.sqrt(n)
    assert t_s - t_r > 5 * se_diff, (t_s, t_r, se_diff)
    var_r = sum(a.sum() for a in v.grad_variance(X, "reparam", 200, random_state=0).values())
    assert abs(var_r - t_r) < 5 * dev_r.std(ddof=1) / np.sqrt(200)
    # estimator A's encoder gradient: the same draws through L̃_A (KL sampled) — the mean of the
    # B draws, and a total variance above B's by more than 5 standard errors of the difference
    rng = np.random.default_rng(2)
    a = np.array([np.concatenate([g.ravel() for g in v.encoder_gradient(
        X, rng.standard_normal((50, 2)), "A").values()]) for _ in range(n)])
    se_ab = np.sqrt(a.var(0) / n + r.var(0) / n)
    assert np.mean(np.abs(a.mean(0) - r.mean(0)) < 5 * se_ab) > 0.95
    dev_a = np.sum((a - a.mean(0)) ** 2, axis=1)
    assert dev_a.mean() - t_r > 5 * np.hypot(dev_a.std(ddof=1), dev_r.std(ddof=1)) / np.sqrt(n)


def test_kl_weight_scales_only_the_kl():
    v, X = _trained_small_vae()
    eps = np.random.default_rng(0).standard_normal((len(X), 2))
    full, _ = v.elbo_and_grad(X, eps, kl_weight=1.0)
    recon, _ = v.elbo_and_grad(X, eps, kl_weight=0.0)
    assert np.isclose(recon - full, v.elbo(X).kl_latent, rtol=1e-10)


def test_linear_vae_finds_the_ppca_solution():
    X, _ = make_ppca_data(500, 8, 2, sigma2=0.3, random_state=0)
    pp = PPCA(2).fit(X)
    v = VAE(2, hidden=(), likelihood="gaussian", decoder_variance="shared", batch_size=500,
            learning_rate=1e-2, lr_decay=0.999, dtype=np.float64, random_state=0).fit(X, 5000)
    elbo = v.elbo(X, n_samples=200, random_state=0).total
    assert pp.log_likelihood(X) - 0.05 < elbo <= pp.log_likelihood(X) + 0.01
    assert np.max(linalg.subspace_angles(v.params["dec_out.W"].T, pp.W_)) < 0.01
    # the posterior the encoder learns is (close to) the exact one, so the gap is small
    assert np.isclose(np.exp(v.params["dec_logvar"][0]), pp.sigma2_, rtol=0.05)


def test_linear_vae_with_per_feature_variance_approaches_fa():
    X, _ = make_fa_data(500, 6, 2, psi_range=(0.1, 1.0), random_state=1)
    fa = FactorAnalysis(2).fit(X)
    pp = PPCA(2).fit(X)
    v = VAE(2, hidden=(), likelihood="gaussian", decoder_variance="per_feature", batch_size=500,
            learning_rate=1e-2, lr_decay=0.999, dtype=np.float64, random_state=0).fit(X, 5000)
    elbo = v.elbo(X, n_samples=200, random_state=0).total
    assert fa.log_likelihood(X) - 0.05 < elbo <= fa.log_likelihood(X) + 0.01
    assert elbo > pp.log_likelihood(X)   # it beats the isotropic model, as FA does


def _estimates(f, n=20):
    """n independent Monte Carlo estimates: their mean and the standard error of that mean."""
    draws = np.array([f(seed) for seed in range(n)])
    return draws.mean(), draws.std(ddof=1) / np.sqrt(n)


@pytest.fixture(scope="module")
def digits_vae():
    X, _ = load_digits()
    X = binarize(X / 16.0, random_state=0)
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(X))
    Xtr, Xte = X[idx[:1400]], X[idx[1400:]]
    v = VAE(8, hidden=(64,), batch_size=100, learning_rate=3e-3, random_state=0)
    v.fit(Xtr, 1, X_val=Xte)
    first = _estimates(lambda s: v.elbo(Xte, random_state=s).total)
    v.fit(Xtr, 14, X_val=Xte)
    return v, Xte, first


def test_digits_held_out_elbo_rises(digits_vae):
    v, Xte, (first, se_first) = digits_vae
    assert len(v.val_history_) == 15 and len(v.history_) == 15
    last, se_last = _estimates(lambda s: v.elbo(Xte, random_state=s).total)
    # the rise must exceed 5 standard errors of the two Monte Carlo estimates
    assert last - first > 5 * np.hypot(se_first, se_last)


def test_iwae_is_above_the_elbo_and_rises_with_k(digits_vae):
    v, Xte, _ = digits_vae
    elbo, se_elbo = _estimates(lambda s: v.elbo(Xte, random_state=s).total)
    iw1, se_iw1 = _estimates(lambda s: v.log_likelihood(Xte, n_importance=1, random_state=s))
    # K = 1 is an unbiased estimate of the ELBO itself: equal within Monte Carlo error
    assert abs(iw1 - elbo) < 5 * np.hypot(se_elbo, se_iw1)
    # K = 10 and 100: each above the previous by more than 5 standard errors of the difference
    iw10 = _estimates(lambda s: v.log_likelihood(Xte, n_importance=10, random_state=s), n=5)
    iw100 = _estimates(lambda s: v.log_likelihood(Xte, n_importance=100, random_state=s), n=5)
    assert iw10[0] > elbo + 5 * np.hypot(se_elbo, iw10[1])
    assert iw100[0] > iw10[0] + 5 * np.hypot(iw10[1], iw100[1])


def test_interface_shapes_and_map_code(digits_vae):
    v, Xte, _ = digits_vae
    q = v.posterior(Xte[:5])
    np.testing.assert_allclose(v.transform(Xte[:5]), q.mean)
    assert v.reconstruct(Xte[:5]).shape == (5, 64)
    assert v.reconstruct(Xte[:5], n_samples=4).shape == (4, 5, 64)
    s = v.sample(6, random_state=0)
    assert s.shape == (6, 64) and set(np.unique(s)) <= {0.0, 1.0}
    assert 0 < v.active_units(Xte) <= 8


def test_linear_decoder_mean_of_sampled_reconstructions_is_the_mean_reconstruction():
    X, _ = make_ppca_data(100, 5, 2, random_state=2)
    v = VAE(2, hidden=(), likelihood="gaussian", dtype=np.float64, random_state=0).fit(X, 5)
    samples = v.reconstruct(X[:3], n_samples=20000, random_state=0)
    sd = samples.std(0) / np.sqrt(20000)
    assert np.all(np.abs(samples.mean(0) - v.reconstruct(X[:3])) < 5 * sd + 1e-12)


def test_active_units_match_the_ppca_prediction_and_count_dead_units():
    X, _ = make_ppca_data(500, 8, 2, sigma2=0.1, random_state=3)
    v = VAE(4, hidden=(), likelihood="gaussian", batch_size=500, learning_rate=1e-2,
            dtype=np.float64, random_state=0).fit(X, 3000)
    # PPCA's ML solution with L = 4 gives unit j a posterior-mean variance (λ_j − σ²)/λ_j over the
    # data (W = U(Λ−σ²)^½, E[z|x] = Λ⁻¹(Λ−σ²)^½ Uᵀ(x − μ)); count those above 0.01
    lam = np.sort(np.linalg.eigvalsh(np.cov(X.T, bias=True)))[::-1]
    s2 = lam[4:].mean()
    predicted = int(np.sum((lam[:4] - s2) / lam[:4] > 0.01))
    assert v.active_units(X) == predicted
    v.params["enc_mu.W"][:, 0] = 0.0     # a unit whose mean ignores x is inactive
    assert v.active_units(X) == predicted - 1


def test_save_and_load_round_trip(tmp_path):
    v, X = _trained_small_vae()
    path = tmp_path / "vae.npz"
    v.save(path)
    w = VAE.load(path)
    for k in v.params:
        np.testing.assert_array_equal(v.params[k], w.params[k])
    np.testing.assert_array_equal(v.transform(X), w.transform(X))
    assert w.history_ == v.history_ and w.likelihood == "gaussian"
    w.fit(X, 1)  # training continues
    assert len(w.history_) == len(v.history_) + 1
    # NumPy scalars as hyper-parameters (as GridSearchCV passes them) save too
    u = VAE(np.int64(2), hidden=(np.int64(3),), learning_rate=np.float64(1e-2), random_state=0).fit(
        (X > 0).astype(float), 1)
    u.save(path)
    assert VAE.load(path).n_latent == 2


def test_log_variances_are_clamped_so_nothing_overflows():
    X = np.random.default_rng(0).uniform(size=(10, 4)).astype(np.float32)
    v = VAE(2, hidden=(3,), likelihood="gaussian", decoder_variance="output",
            random_state=0).initialize(4, X)
    v.params["enc_logvar.b"][...] = 500.0
    v.params["dec_logvar.b"][...] = -500.0
    val, grads = v.elbo_and_grad(X, np.zeros((10, 2), np.float32))
    assert np.isfinite(val) and all(np.all(np.isfinite(g)) for g in grads.values())
    assert np.all(grads["enc_logvar.b"] == 0) and np.all(grads["dec_logvar.b"] == 0)


def test_bad_inputs():
    X = (np.random.default_rng(0).uniform(size=(10, 4)) < 0.5).astype(float)
    with pytest.raises(ValueError, match="likelihood"):
        VAE(2, likelihood="poisson").fit(X, 1)
    with pytest.raises(ValueError, match="schedule"):
        VAE(2, schedule="em").fit(X, 1)
    for bad in ("nonsense", None, np.int64, np.float16):
        with pytest.raises(ValueError, match="dtype"):
            VAE(2, dtype=bad).fit(X, 1)
    with pytest.raises(TypeError, match="hidden"):
        VAE(2, hidden="8").fit(X, 1)
    v = VAE(2, hidden=(3,), random_state=0).fit(X, 1)
    with pytest.raises(ValueError, match="eps must have shape"):
        v.elbo_and_grad(X, np.zeros((10, 3)))
    with pytest.raises(ValueError, match="features"):
        v.transform(X[:, :3])
    with pytest.raises(ValueError, match="NaN"):
        v.fit(np.full((3, 4), np.nan), 1)
    X0 = X.copy()
    v.fit(X, 1)
    np.testing.assert_array_equal(X, X0)


def test_elbo_accepts_any_gaussian_q():
    v, X = _trained_small_vae()
    q = v.posterior(X)
    default = v.elbo(X, n_samples=400, random_state=0)
    given = v.elbo(X, q=q, n_samples=400, random_state=1)
    assert np.isclose(given.kl_latent, default.kl_latent, rtol=1e-10)   # both analytic
    # the expected log-likelihoods are two Monte Carlo estimates of the same number
    draws = [v.elbo(X, q=q, random_state=s).expected_log_lik for s in range(30)]
    se = np.std(draws) / np.sqrt(400)
    assert abs(given.expected_log_lik - default.expected_log_lik) < 5 * np.sqrt(2) * se
    # a worse q (the prior for every row) gives a lower bound, as the decomposition says
    prior = type(q)(np.zeros_like(q.mean), np.ones(2), diagonal=True)
    assert prior.kl_to_standard() == 0.0
    assert v.elbo(X, q=prior, n_samples=400, random_state=0).total < default.total
    with pytest.raises(ValueError, match="q has means"):
        v.elbo(X[:5], q=q)


# ---- the refactor: KL weight, histories, standard errors, estimator protocol ----------------------

def test_training_step_uses_beta_and_history_reports_weight_one():
    """One SGD epoch on one batch with kl_weight=β: the step is lr·∇(ELBO with KL·β), while
    history_ holds the same draw's ELBO at weight 1 and kl_history_ the analytic mean KL."""
    X, _ = make_ppca_data(16, 4, 2, random_state=4)
    kw = dict(hidden=(5,), likelihood="gaussian", optimizer="sgd", learning_rate=0.05,
              kl_weight=0.3, batch_size=16, dtype=np.float64, random_state=3)
    a = VAE(2, **kw).fit(X, 1)
    b = VAE(2, **kw).initialize(4, X)
    rng = b._rng
    order = rng.permutation(16)
    eps = rng.standard_normal((1, 16, 2))
    kl = b.elbo(X).kl_latent                          # analytic, no sampling
    elbo1, _ = b.elbo_and_grad(X[order], eps, kl_weight=1.0)
    elbo_b, g = b.elbo_and_grad(X[order], eps)       # the model's β = 0.3
    assert np.isclose(elbo_b - elbo1, 0.7 * kl, rtol=1e-10)
    assert np.isclose(a.history_[0], elbo1, rtol=1e-12)
    assert np.isclose(a.kl_history_[0], kl, rtol=1e-12)
    for k in a.params:
        np.testing.assert_allclose(a.params[k], b.params[k] + 0.05 * g[k], rtol=1e-12, atol=1e-14)


def test_elbo_and_grad_returns_arrays_the_caller_owns():
    v, X = _trained_small_vae()
    eps = np.random.default_rng(0).standard_normal((len(X), 2))
    _, g1 = v.elbo_and_grad(X, eps)
    keep = {k: a.copy() for k, a in g1.items()}
    v.elbo_and_grad(X, -eps)
    for k in g1:
        np.testing.assert_array_equal(g1[k], keep[k])
        assert not np.shares_memory(g1[k], v.grads[k])
    before = v.params["enc_mu.W"].copy()
    g1["enc_mu.W"][...] = 1e9
    np.testing.assert_array_equal(v.params["enc_mu.W"], before)


def test_log_likelihood_with_se_matches_the_exact_marginal_of_a_linear_vae():
    """A linear-Gaussian decoder has the exact marginal N(b, W Wᵀ + σ² I) (Bishop PRML eq. 12.35):
    the IWAE mean is within its Monte Carlo error of it, and the reported se — the spread of the
    per-row estimates over √N — matches the spread of the exact per-row log-densities."""
    from scipy import stats

    X, _ = make_ppca_data(300, 5, 2, sigma2=0.3, random_state=5)
    v = VAE(2, hidden=(), likelihood="gaussian", batch_size=300, learning_rate=2e-2,
            dtype=np.float64, random_state=0).fit(X, 1500)
    W, b = v.params["dec_out.W"].T, v.params["dec_out.b"]
    s2 = np.exp(v.params["dec_logvar"][0])
    exact = stats.multivariate_normal(b, W @ W.T + s2 * np.eye(5)).logpdf(X)
    mean, se = v.log_likelihood_with_se(X, n_importance=200, random_state=0)
    assert np.isclose(mean, v.log_likelihood(X, n_importance=200, random_state=0), rtol=1e-12)
    assert np.isclose(se, exact.std(ddof=1) / np.sqrt(300), rtol=0.02)
    # Monte Carlo error of the mean: the spread of independent estimates on the same rows
    draws = [v.log_likelihood(X, 200, random_state=s) for s in range(1, 9)]
    mc_se = np.std(draws, ddof=1) / np.sqrt(8)
    assert exact.mean() - 0.01 < np.mean(draws) < exact.mean() + 5 * mc_se


def test_estimator_protocol_keeps_arguments_unchanged_and_clones():
    from sklearn.base import clone

    v = VAE(3, hidden=[7], likelihood="categorical", n_levels=5, kl_weight=0.5)
    assert v.hidden == [7] and v.get_params()["hidden"] == [7]
    w = clone(v)
    assert w.get_params() == v.get_params() and w.params is None
    assert "n_levels=5" in repr(v)
    X = np.random.default_rng(0).integers(0, 5, size=(20, 4)).astype(float)
    Z = v.set_params(hidden=(4,)).fit_transform(X, epochs=1)
    assert Z.shape == (20, 3) and v.hidden == (4,)


def test_every_fitted_only_method_raises_not_fitted():
    from latentmodels.validation import NotFittedError

    v = VAE(2, hidden=(3,))
    X = np.zeros((4, 3))
    calls = [lambda: v.elbo(X), lambda: v.elbo_and_grad(X, np.zeros((4, 2))),
             lambda: v.log_likelihood(X), lambda: v.log_likelihood_with_se(X),
             lambda: v.posterior(X), lambda: v.sample_posterior(X), lambda: v.transform(X),
             lambda: v.decode(np.zeros((2, 2))), lambda: v.reconstruct(X), lambda: v.sample(2),
             lambda: v.active_units(X), lambda: v.n_parameters(), lambda: v.save("x.npz"),
             lambda: v.encoder_gradient(X, np.zeros((4, 2))), lambda: v.grad_variance(X)]
    for call in calls:
        with pytest.raises(NotFittedError, match="fit"):
            call()


def test_bernoulli_support_raises_outside_and_warns_once_per_call_on_grey_levels():
    import warnings

    digits = load_digits()[0][:50]
    with pytest.raises(ValueError, match=r"outside \[0, 1\].*binarize"):
        VAE(2, hidden=(3,)).fit(digits, 1)
    with pytest.raises(ValueError, match=r"outside \[0, 1\]"):
        VAE(2, hidden=(3,), likelihood="continuous_bernoulli").fit(digits, 1)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        v = VAE(2, hidden=(3,), batch_size=10, random_state=0).fit(digits / 16, 3)
    msgs = [w for w in rec if "not a log-probability" in str(w.message)]
    assert len(msgs) == 1 and msgs[0].filename == __file__     # the user's line, not the library's
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        VAE(2, hidden=(3,), random_state=0).fit(binarize(digits / 16, random_state=0), 1)
        VAE(2, hidden=(3,), likelihood="continuous_bernoulli", random_state=0).fit(digits / 16, 1)
        v = VAE(2, hidden=(3,), likelihood="categorical", n_levels=17, random_state=0).fit(digits, 1)
    with pytest.raises(ValueError, match="integer"):
        v.elbo(digits + 0.5)
    with pytest.raises(ValueError, match="n_levels"):
        VAE(2, likelihood="categorical").fit(digits, 1)


@pytest.mark.parametrize("value,what", [(1e-200, "underflow"), (1e200, "beyond float32")])
def test_float32_conversion_checks_the_range_first(value, what):
    X = np.random.default_rng(0).standard_normal((10, 3))
    X[3, 1] = value
    with pytest.raises(ValueError, match=f"{what}.*dtype=np.float64"):
        VAE(2, hidden=(3,), likelihood="gaussian").fit(X, 1)
    if value < 1:   # representable in float64: the float64 model trains on it
        VAE(2, hidden=(3,), likelihood="gaussian", dtype=np.float64).fit(X, 1)


def test_categorical_vae_is_a_true_log_probability_that_beats_independent_pixels():
    """On the digits' raw 17 levels, the IWAE estimate is a log-probability (≤ 0 per image) and
    after training exceeds the independent-pixel categorical model (add-one smoothed level counts
    of the training rows, exact) on held-out rows by more than 5 standard errors of the paired
    per-row differences."""
    X = load_digits()[0]
    idx = np.random.default_rng(0).permutation(len(X))
    Xtr, Xte = X[idx[:1400]], X[idx[1400:]]
    v = VAE(8, hidden=(64,), likelihood="categorical", n_levels=17, batch_size=100,
            learning_rate=3e-3, random_state=0).fit(Xtr, 15)
    counts = np.ones((64, 17))
    for d in range(64):
        counts[d] += np.bincount(Xtr[:, d].astype(int), minlength=17)
    logp = np.log(counts / counts.sum(1, keepdims=True))
    indep = logp[np.arange(64), Xte.astype(int)].sum(1)
    rows = v._log_likelihood_rows(v._as_data(Xte), 50, np.random.default_rng(1))
    assert np.all(rows < 0)
    diff = rows - indep
    assert diff.mean() > 5 * diff.std(ddof=1) / np.sqrt(len(diff)), diff.mean()
    s = v.sample(5, random_state=0)
    assert set(np.unique(s)) <= set(range(17))


def _save_and_edit(v, path, edit):
    v.save(path)
    with np.load(path) as d:
        arrays = {k: d[k] for k in d.files}
    import json

    meta = json.loads(str(arrays["meta"]))
    edit(meta, arrays)
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(path, **arrays)


def test_load_refuses_files_that_do_not_match_their_configuration(tmp_path):
    v, X = _trained_small_vae()
    p = tmp_path / "m.npz"

    def broadcastable(meta, arrays):   # (1,) would broadcast into every entry of (8,)
        arrays["param:enc.0.b"] = arrays["param:enc.0.b"][:1]

    def nan(meta, arrays):
        arrays["param:dec_out.W"] = arrays["param:dec_out.W"].copy()
        arrays["param:dec_out.W"][0, 0] = np.nan

    def huge(meta, arrays):
        meta["config"]["hidden"] = [10 ** 12]

    def many_flows(meta, arrays):
        meta["config"]["flow"], meta["config"]["n_flows"] = "planar", 10 ** 12

    def bad_type(meta, arrays):
        meta["config"]["n_latent"] = "2"

    def unknown(meta, arrays):
        meta["config"]["evil"] = 1

    for edit, match in ((broadcastable, "shape"), (nan, "NaN"), (huge, "implies"), (many_flows, "implies"),
                        (bad_type, "n_latent"), (unknown, "unknown")):
        _save_and_edit(v, p, edit)
        with pytest.raises((ValueError, TypeError), match=match):
            VAE.load(p)
    np.savez(p, meta=np.array([object()], dtype=object))
    with pytest.raises(ValueError, match="pickle"):
        VAE.load(p)


# ---- IWAE -------------------------------------------------------------------------------------------

IWAE_COMBOS = [(lik, K, beta) for lik in ("bernoulli", "gaussian", "categorical", "continuous_bernoulli")
               for K, beta in ((1, 1.0), (4, 1.0), (4, 0.5))]


@pytest.mark.parametrize("lik,K,beta", IWAE_COMBOS)
def test_iwae_gradient_check_float64(lik, K, beta):
    rng = np.random.default_rng(0)
    X = _data_for(lik, rng)
    v = VAE(3, hidden=(4,), activation="tanh", likelihood=lik, objective="iwae", n_importance=K,
            kl_weight=beta, n_levels=4 if lik == "categorical" else None,
            decoder_variance="output" if lik == "gaussian" else "shared", dtype=np.float64,
            random_state=1).initialize(5, X)
    _perturbed(v, rng)
    eps = rng.standard_normal((K, 6, 3))
    errs = gradient_check(lambda: v.elbo_and_grad(X, eps), v.params, max_entries=None)
    assert max(errs.values()) < 1e-6, errs


def test_iwae_with_one_sample_is_estimator_a():
    rng = np.random.default_rng(1)
    X = rng.uniform(size=(7, 5))
    kw = dict(hidden=(4,), likelihood="gaussian", dtype=np.float64, random_state=2)
    a = VAE(3, estimator="A", **kw).initialize(5, X)
    w = VAE(3, objective="iwae", n_importance=1, **kw).initialize(5, X)
    eps = rng.standard_normal((1, 7, 3))
    va, ga = a.elbo_and_grad(X, eps)
    vw, gw = w.elbo_and_grad(X, eps)
    assert np.isclose(va, vw, rtol=1e-13)
    for k in ga:
        np.testing.assert_allclose(ga[k], gw[k], rtol=1e-11, atol=1e-14)


def test_iwae_value_is_the_log_mean_of_the_weights():
    """The training objective for fixed ε equals log (1/K) Σ_k w_k computed directly from the
    model's densities (decoder log-likelihood + log N(z; 0, I) − log N(z; μ, σ²)), via scipy."""
    from scipy import special, stats

    rng = np.random.default_rng(2)
    X = rng.uniform(size=(5, 4))
    v = VAE(2, hidden=(3,), likelihood="gaussian", objective="iwae", n_importance=6,
            dtype=np.float64, random_state=0).initialize(4, X)
    eps = rng.standard_normal((6, 5, 2))
    value, _ = v.elbo_and_grad(X, eps)
    q = v.posterior(X)
    sd = np.sqrt(q.cov)
    z = q.mean + sd * eps                                  # (K, N, L)
    logw = np.empty((6, 5))
    for k in range(6):
        m = v.decode(z[k])
        s = np.exp(0.5 * v.params["dec_logvar"][0])
        logw[k] = (stats.norm.logpdf(X, m, s).sum(1) + stats.norm.logpdf(z[k]).sum(1)
                   - stats.norm.logpdf(z[k], q.mean, sd).sum(1))
    expected = np.mean(special.logsumexp(logw, axis=0) - np.log(6))
    assert np.isclose(value, expected, rtol=1e-12)


def test_iwae_bound_is_non_decreasing_in_k(digits_vae):
    """Burda et al. 2016, Theorem 1: E[L_K] ≤ E[L_{K+m}]. Estimated with 12 independent seeds per
    K on the same rows: each step K → K' may not fall by more than 3 standard errors of the
    difference, and K = 1 → 50 must rise by more than 5."""
    v, Xte, _ = digits_vae
    Ks = (1, 2, 5, 50)
    est = {K: _estimates(lambda s, K=K: v.log_likelihood(Xte, n_importance=K, random_state=100 + s),
                         n=12) for K in Ks}
    for a, b in zip(Ks[:-1], Ks[1:]):
        assert est[b][0] - est[a][0] > -3 * np.hypot(est[a][1], est[b][1]), (a, b, est)
    assert est[50][0] - est[1][0] > 5 * np.hypot(est[1][1], est[50][1])


def test_iwae_training_raises_its_bound():
    X = binarize(load_digits()[0][:400] / 16, random_state=0)
    v = VAE(4, hidden=(32,), objective="iwae", n_importance=5, batch_size=50, learning_rate=3e-3,
            random_state=0)
    v.initialize(64, X)
    before = _estimates(lambda s: v.log_likelihood(X, 5, random_state=s), n=5)
    v.fit(X, 5)
    after = _estimates(lambda s: v.log_likelihood(X, 5, random_state=s), n=5)
    assert len(v.history_) == 5 and len(v.kl_history_) == 5
    assert after[0] - before[0] > 5 * np.hypot(before[1], after[1])
    with pytest.raises(ValueError, match="n_mc must be 1"):
        VAE(2, objective="iwae", n_importance=3, n_mc=2).fit(X, 1)


# ---- flow posteriors ----------------------------------------------------------------------------

FLOW_COMBOS = [(flow, obj, lik, hidden)
               for flow, obj, lik, hidden in itertools.product(
                   ["planar", "iaf"], ["elbo", "iwae"], ["bernoulli", "gaussian"], [(), (4,)])
               if lik == "gaussian" or hidden]


@pytest.mark.parametrize("flow,objective,lik,hidden", FLOW_COMBOS)
def test_flow_gradient_check_float64(flow, objective, lik, hidden):
    rng = np.random.default_rng(0)
    X = _data_for(lik, rng)
    S = 3 if objective == "iwae" else 2
    v = VAE(3, hidden=hidden, activation="tanh", likelihood=lik, objective=objective,
            n_importance=S if objective == "iwae" else 1, n_mc=1 if objective == "iwae" else S,
            flow=flow, n_flows=2, flow_hidden=5 if flow == "iaf" else None, kl_weight=0.7, dtype=np.float64,
            random_state=1).initialize(5, X)
    _perturbed(v, rng)
    eps = rng.standard_normal((S, 6, 3))
    errs = gradient_check(lambda: v.elbo_and_grad(X, eps), v.params, max_entries=None)
    assert max(errs.values()) < 1e-6, errs
    assert any(k.startswith("flow.") for k in errs)


@pytest.mark.parametrize("flow", ["planar", "iaf"])
def test_flow_log_density_is_the_change_of_variables(flow):
    """log q(z|x) as the VAE computes it (log p(z) minus its log-ratio) equals
    log N(z₀; μ, σ²) − log|det ∂z/∂z₀| with the Jacobian of the whole flow — context included —
    taken by central differences through the VAE's own forward map and its log-determinant by
    numpy.linalg.slogdet (Rezende & Mohamed 2015, eq. 6), to 1e-6 in float64 (issue 11)."""
    from scipy import stats

    rng = np.random.default_rng(3)
    X = rng.uniform(size=(3, 4))
    v = VAE(3, hidden=(5,), activation="tanh", likelihood="gaussian", flow=flow, n_flows=3,
            dtype=np.float64, random_state=0).initialize(4, X)
    _perturbed(v, rng)
    for k, p in v.params.items():
        if k.startswith("flow."):
            p *= 2.0                 # well away from the identity map
        if k.endswith(".bs"):
            p[...] = 0.0             # IAF gates at ½, not near 1
    n = 4
    z, mu, lv, eps, logdet = v._sample_q(X, n, np.random.default_rng(4))
    log_q = -0.5 * np.sum(np.log(2 * np.pi) + z ** 2, axis=1) - v._log_ratio(z, lv, eps, logdet, n, 3)
    h = v.encoder.forward(X)
    z0 = (mu + np.exp(0.5 * lv) * eps).reshape(-1, 3)
    step = 1e-5
    expected = np.empty(n * 3)
    for r in range(n * 3):
        J = np.empty((3, 3))
        for j in range(3):
            up, down = z0[r:r + 1].copy(), z0[r:r + 1].copy()
            up[0, j] += step
            down[0, j] -= step
            ctx = h[r % 3:r % 3 + 1]
            J[:, j] = (v.flow_.forward(up, ctx)[0] - v.flow_.forward(down, ctx)[0])[0] / (2 * step)
        sd = np.exp(0.5 * lv[r % 3])
        expected[r] = stats.norm.logpdf(z0[r], mu[r % 3], sd).sum() - np.linalg.slogdet(J)[1]
    np.testing.assert_allclose(log_q, expected, rtol=0, atol=1e-6)
    assert np.std(logdet) > 0.01     # the flow is doing something


def test_flow_vae_interface_and_persistence(tmp_path):
    X = binarize(load_digits()[0][:200] / 16, random_state=0)
    v = VAE(3, hidden=(16,), flow="iaf", n_flows=2, batch_size=50, learning_rate=3e-3,
            random_state=0).fit(X, 2)
    assert len(v.kl_history_) == 2 and all(np.isfinite(v.kl_history_))
    with pytest.raises(NotImplementedError, match="not a Gaussian"):
        v.posterior(X)
    assert v.sample_posterior(X[:4], 5, random_state=0).shape == (5, 4, 3)
    # elbo and log_likelihood use the flow: K = 1 IWAE estimates the same number as the ELBO
    el = _estimates(lambda s: v.elbo(X, random_state=s).total, n=10)
    iw = _estimates(lambda s: v.log_likelihood(X, 1, random_state=s), n=10)
    assert abs(el[0] - iw[0]) < 5 * np.hypot(el[1], iw[1])
    rows = v.elbo_samples(X, random_state=7)
    assert np.isclose(rows.mean(), v.elbo(X, random_state=7).total, rtol=1e-6)
    p = tmp_path / "iaf.npz"
    v.save(p)
    w = VAE.load(p)
    np.testing.assert_array_equal(v.transform(X), w.transform(X))
    assert w.flow == "iaf" and w.n_flows == 2
    with pytest.raises(ValueError, match="n_flows"):
        VAE(2, flow="planar").fit(X, 1)
    with pytest.raises(ValueError, match="flow"):
        VAE(2, n_flows=2).fit(X, 1)


# ---- per-row estimates for the chain ------------------------------------------------------------

def test_per_row_estimates_and_linear_marginal():
    v, X = _trained_small_vae()
    rows = v.score_samples(X, 50, random_state=0)
    assert rows.shape == (len(X),)
    assert np.isclose(rows.mean(), v.log_likelihood(X, 50, random_state=0), rtol=1e-12)
    e = v.elbo_samples(X, n_samples=3, random_state=1)
    assert np.isclose(e.mean(), v.elbo(X, n_samples=3, random_state=1).total, rtol=1e-10)
    with pytest.raises(ValueError, match="linear"):
        v.linear_marginal()
    lin = VAE(2, hidden=(), likelihood="gaussian", decoder_variance="per_feature",
              dtype=np.float64, random_state=0).fit(X, 3)
    b, W, psi = lin.linear_marginal()
    assert W.shape == (6, 2) and psi.shape == (6,) and np.all(psi > 0)
    np.testing.assert_array_equal(b, lin.params["dec_out.b"])
    assert np.isfinite(lin.score(X)) and lin.score(X) == lin.score(X)


def test_gaussian_data_whose_squares_overflow_are_refused():
    X = np.random.default_rng(0).standard_normal((10, 3)) * 1e200
    with pytest.raises(ValueError, match="overflow.*rescale"):
        VAE(2, hidden=(3,), likelihood="gaussian", dtype=np.float64).fit(X, 1)


@pytest.mark.parametrize("lik,dv", [("gaussian", "output"), ("gaussian", "shared"), ("bernoulli", "shared"),
                                    ("categorical", "shared"), ("continuous_bernoulli", "shared")])
def test_decoder_log_lik_gradient_in_z_matches_central_differences(lik, dv):
    rng = np.random.default_rng(5)
    X = _data_for(lik, rng)
    v = VAE(3, hidden=(4,), activation="tanh", likelihood=lik, decoder_variance=dv,
            n_levels=4 if lik == "categorical" else None, dtype=np.float64,
            random_state=0).initialize(5, X)
    _perturbed(v, rng)
    Z = rng.standard_normal((6, 3))
    ll, g = v.decoder_log_lik_and_grad(X, Z)
    out, lvx, _ = v._decode(Z)
    np.testing.assert_allclose(ll, v._lik.forward(X, out, lvx), rtol=1e-12)
    fd = np.empty_like(Z)
    for idx in np.ndindex(Z.shape):
        up, down = Z.copy(), Z.copy()
        up[idx] += 1e-6
        down[idx] -= 1e-6
        fd[idx] = (v.decoder_log_lik_and_grad(X, up)[0][idx[0]]
                   - v.decoder_log_lik_and_grad(X, down)[0][idx[0]]) / 2e-6
    assert np.linalg.norm(fd - g) / (np.linalg.norm(fd) + np.linalg.norm(g)) < 1e-7


@pytest.mark.parametrize("beta", [1.0, 0.5])
def test_iwae_dreg_is_unbiased_for_the_iwae_gradient_with_less_encoder_noise(beta):
    """Tucker et al. 2019: same value and decoder gradient as IWAE for every ε (exactly); the
    encoder gradient has the same expectation (600 draws: > 95% of entries within 5 standard
    errors) and a smaller total variance (by more than 5 standard errors of the difference)."""
    X, _ = make_ppca_data(20, 5, 2, sigma2=0.2, random_state=0)
    kw = dict(hidden=(6,), activation="tanh", likelihood="gaussian", n_importance=10,
              kl_weight=beta, dtype=np.float64, random_state=0)
    iw = VAE(2, objective="iwae", **kw).fit(X, 20)
    dr = VAE(2, objective="iwae-dreg", **kw).initialize(5, X)
    for k in iw.params:
        dr.params[k][...] = iw.params[k]
    rng = np.random.default_rng(1)
    n = 600
    gi, gd = [], []
    for _ in range(n):
        eps = rng.standard_normal((10, 20, 2))
        vi, a = iw.elbo_and_grad(X, eps)
        vd, b = dr.elbo_and_grad(X, eps)
        assert vi == vd
        for k in iw.decoder_names:
            np.testing.assert_allclose(a[k], b[k], rtol=1e-12, atol=1e-15)
        gi.append(np.concatenate([a[k].ravel() for k in iw.encoder_names]))
        gd.append(np.concatenate([b[k].ravel() for k in iw.encoder_names]))
    gi, gd = np.array(gi), np.array(gd)
    se = np.sqrt(gi.var(0) / n + gd.var(0) / n)
    assert np.mean(np.abs(gi.mean(0) - gd.mean(0)) < 5 * se) > 0.95
    dev_i = np.sum((gi - gi.mean(0)) ** 2, axis=1)
    dev_d = np.sum((gd - gd.mean(0)) ** 2, axis=1)
    se_diff = np.hypot(dev_i.std(ddof=1), dev_d.std(ddof=1)) / np.sqrt(n)
    assert dev_i.mean() - dev_d.mean() > 5 * se_diff, (dev_i.mean(), dev_d.mean(), se_diff)
    with pytest.raises(ValueError, match="flow=None"):
        VAE(2, objective="iwae-dreg", n_importance=3, flow="planar", n_flows=1).fit(X, 1)


def test_log_likelihood_streams_the_log_sum_exp_over_blocks_of_draws():
    """For K beyond one block (4·10⁶ decoder outputs), the running log-sum-exp over blocks equals
    scipy's logsumexp over the same draws (same random stream, replayed block by block)."""
    from scipy.special import logsumexp

    X = binarize(load_digits()[0][:1] / 16, random_state=0)
    v = VAE(2, hidden=(4,), random_state=0).initialize(64, X)
    K = 100_000                                   # 62500 + 37500 draws for one 64-pixel row
    got = v.score_samples(X, K, random_state=5)[0]
    rng = np.random.default_rng(5)
    lw = []
    for k in (62_500, 37_500):
        z, mu, lv, eps, logdet = v._sample_q(v._as_data(X), k, rng)
        out, lvx, _ = v._decode(z)
        ll = v._loglik(np.tile(X.astype(np.float32), (k, 1)), out, lvx).astype(np.float64)
        lw.append(ll + v._log_ratio(z, lv, eps, logdet, k, 1))
    expected = logsumexp(np.concatenate(lw)) - np.log(K)
    assert np.isclose(got, expected, rtol=1e-12)


# ---- a new user's mistakes and round trips (review of the VAE stack) -------------------------------

def test_settings_that_would_be_ignored_raise_naming_the_argument():
    """A hyper-parameter that the configuration would silently ignore is refused at fit, before
    any work: n_importance without an IWAE objective, flow_hidden without an IAF, a decoder
    variance for a likelihood that has none."""
    X = binarize(load_digits()[0][:20] / 16, random_state=0)
    for kw, match in ((dict(n_importance=5), "n_importance=5 applies to objective='iwae'"),
                      (dict(flow="planar", n_flows=1, flow_hidden=8), "flow_hidden.*flow='iaf'"),
                      (dict(flow_hidden=8), "flow_hidden"),
                      (dict(decoder_variance="output"), "decoder_variance.*likelihood='gaussian'")):
        with pytest.raises(ValueError, match=match):
            VAE(2, hidden=(4,), **kw).fit(X, 1)
    # the same values are accepted where they apply
    VAE(2, hidden=(4,), objective="iwae", n_importance=2, flow="iaf", n_flows=1, flow_hidden=8,
        random_state=0).fit(X, 1)
    VAE(2, hidden=(4,), likelihood="gaussian", decoder_variance="output", random_state=0).fit(X, 1)


def test_method_arguments_of_the_wrong_kind_get_a_clear_error():
    X = binarize(load_digits()[0][:20] / 16, random_state=0)
    v = VAE(2, hidden=(4,), random_state=0).fit(X, 1)
    with pytest.raises(TypeError, match="q must be None .*GaussianQ"):
        v.elbo(X, q="encoder")
    with pytest.raises(ValueError, match="threshold"):
        v.active_units(X, threshold=np.nan)      # was: 0 active units, silently
    with pytest.raises(TypeError, match="threshold"):
        v.active_units(X, threshold="0.01")
    with pytest.raises(TypeError, match="eps must"):
        v.elbo_and_grad(X, "ab")                 # was: NumPy's "could not convert string"
    with pytest.raises(TypeError, match="eps must hold real numbers"):
        v.elbo_and_grad(X, np.full((20, 2), "a"))
    with pytest.raises(TypeError, match="eps must"):
        v.elbo_and_grad(X, None)
    # a list of numbers is fine and gives the array's answer
    eps = np.random.default_rng(1).standard_normal((20, 2))
    assert v.elbo_and_grad(X, eps.tolist())[0] == v.elbo_and_grad(X, eps)[0]


def test_save_load_paths_seed_and_files_that_are_not_vae_files(tmp_path):
    X = binarize(load_digits()[0][:30] / 16, random_state=0)
    v = VAE(2, hidden=(4,), random_state=7).fit(X, 1)
    written = v.save(tmp_path / "model")          # numpy.savez appends .npz
    assert written == str(tmp_path / "model.npz") and (tmp_path / "model.npz").exists()
    w = VAE.load(tmp_path / "model")              # was: FileNotFoundError for the path given to save
    assert w.get_params() == v.get_params()       # was: random_state 7 -> None
    # the restored seed makes continued training reproducible between two loads
    a, b = VAE.load(written).fit(X, 1), VAE.load(written).fit(X, 1)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
    v.set_params(random_state=np.random.default_rng(0))
    assert VAE.load(v.save(tmp_path / "g.npz")).random_state is None   # a Generator is not a setting
    np.save(tmp_path / "arr.npy", np.zeros(3))
    (tmp_path / "notes.txt").write_text("not a model")
    for p in (tmp_path / "arr.npy", tmp_path / "notes.txt"):
        with pytest.raises(ValueError, match="not a VAE file"):   # was: TypeError / a pickle hint
            VAE.load(p)
    with pytest.raises(FileNotFoundError, match="no VAE file"):
        VAE.load(tmp_path / "missing.npz")
    _save_and_edit(VAE(2, hidden=(4,), random_state=7).fit(X, 1), tmp_path / "e.npz",
                   lambda meta, arrays: meta["config"].update(random_state=-1))
    with pytest.raises(ValueError, match="random_state"):
        VAE.load(tmp_path / "e.npz")


ROUND_TRIP = [(lik, flow, obj, dt)
              for lik in ("bernoulli", "gaussian", "categorical", "continuous_bernoulli")
              for flow in (None, "planar", "iaf") for obj in ("elbo", "iwae", "iwae-dreg")
              for dt in (np.float32, np.float64) if not (obj == "iwae-dreg" and flow)]


def test_save_load_round_trips_every_configuration_exactly(tmp_path):
    """likelihood × flow × objective × dtype: the same parameters (values and dtype), the same
    settings, the same estimates for the same seed."""
    rng = np.random.default_rng(0)
    digits = load_digits()[0][:12]
    data = {"bernoulli": binarize(digits / 16, random_state=0), "categorical": digits,
            "continuous_bernoulli": digits / 16, "gaussian": digits + rng.uniform(size=digits.shape)}
    for lik, flow, obj, dt in ROUND_TRIP:
        X = data[lik]
        v = VAE(2, hidden=(3,), likelihood=lik, n_levels=17 if lik == "categorical" else None,
                decoder_variance="per_feature" if lik == "gaussian" else "shared",
                flow=flow, n_flows=2 if flow else 0, objective=obj,
                n_importance=1 if obj == "elbo" else 2, dtype=dt, random_state=3).initialize(64, X)
        _perturbed(v, rng)
        p = tmp_path / "m.npz"
        v.save(p)
        w = VAE.load(p)
        assert w.get_params() == v.get_params(), (lik, flow, obj)
        assert set(w.params) == set(v.params)
        for k in v.params:
            assert w.params[k].dtype == v.params[k].dtype
            np.testing.assert_array_equal(w.params[k], v.params[k])
        assert w.log_likelihood(X, 3, random_state=1) == v.log_likelihood(X, 3, random_state=1)


def test_gaussian_vae_warns_on_data_far_from_unit_scale():
    """The Gaussian VAE is not scale-equivariant (fixed Adam steps, initial weights and the
    log-variance clamp): on dequantised digits × 100 (or × 1e-4) it trained silently to a held-out
    log p(x) (moved back to unit scale) of -1.6e5 (-1.3e6) against -196 at scale 1. It now says
    so at the first fit, pointing at the user's line; standardised data stay silent."""
    import warnings

    rng = np.random.default_rng(0)
    X = load_digits()[0][:40] + rng.uniform(size=(40, 64))
    Xs = (X - X.mean(0)) / X.std()
    for c in (100.0, 1e-4):
        with pytest.warns(UserWarning, match="far from 1.*Standardise X") as rec:
            VAE(2, hidden=(4,), likelihood="gaussian", random_state=0).fit(X * c, 1)
        assert rec[0].filename == __file__
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        VAE(2, hidden=(4,), likelihood="gaussian", random_state=0).fit(Xs, 1)
        VAE(2, hidden=(4,), likelihood="gaussian", random_state=0).fit(X / 16, 1)


def test_changing_a_structural_setting_after_fit_raises_instead_of_training_the_old_networks():
    """fit continues training; set_params(hidden=..., activation=..., likelihood=..., flow=...,
    dtype=...) after fit used to keep training the old networks silently (n_latent gave NumPy's
    broadcast error). Now every fitted-only method names what changed; the optimiser may change."""
    X = binarize(load_digits()[0][:40] / 16, random_state=0)
    for change, match in ((dict(n_latent=3), "n_latent 2 -> 3"), (dict(hidden=(8,)), "hidden"),
                          (dict(activation="tanh"), "activation 'relu' -> 'tanh'"),
                          (dict(likelihood="continuous_bernoulli"), "likelihood"),
                          (dict(flow="planar", n_flows=1), "flow None -> 'planar'"),
                          (dict(dtype=np.float64), "dtype 'float32' -> 'float64'")):
        v = VAE(2, hidden=(4,), random_state=0).fit(X, 1)
        before = {k: p.copy() for k, p in v.params.items()}
        v.set_params(**change)
        for method, args in (("fit", (X, 1)), ("transform", (X,)), ("save", ("unused.npz",)),
                             ("sample", (2,)), ("log_likelihood", (X, 2))):
            with pytest.raises(ValueError, match=match):
                getattr(v, method)(*args)
        assert all(np.array_equal(v.params[k], before[k]) for k in before)   # nothing trained
        v.set_params(**{k: VAE(2, hidden=(4,)).get_params()[k] for k in change})
        v.transform(X)                             # set back: usable again
    v = VAE(2, hidden=(4,), random_state=0).fit(X, 1)
    v.set_params(optimizer="sgd", learning_rate=1e-2).fit(X, 1)   # not structural: continues
    assert type(v.optimizer_).__name__ == "SGD" and v.epochs_ == 2
    from sklearn.base import clone

    w = clone(v.set_params(n_latent=3)).fit(X, 1)  # the documented way to start afresh
    assert w.transform(X).shape == (40, 3)


def test_the_model_keeps_no_reference_to_the_callers_arrays():
    """The first layer (and the likelihood, and an IAF's context for hidden=()) cached its
    input for the backward pass: for a float64 model on float64 data that is the caller's own
    array, kept alive after every public call (a 60000×784 X stayed in memory after del X)."""
    import weakref

    class Tracked(np.ndarray):
        pass

    X = binarize(load_digits()[0][:30] / 16, random_state=0)

    def check(v, kw):
        calls = (lambda Y: v.transform(Y), lambda Y: v.log_likelihood(Y, 2), lambda Y: v.elbo(Y),
                 lambda Y: v.reconstruct(Y), lambda Y: v.elbo_and_grad(Y, np.zeros((30, 2))),
                 lambda Y: v.score(Y), lambda Y: VAE(2, dtype=np.float64, **kw).fit(X, 1, X_val=Y),
                 lambda Y: v.decoder_log_lik_and_grad(Y, np.zeros((30, 2))))
        for call in calls:
            Y = X.copy().view(Tracked)
            ref = weakref.ref(Y)
            call(Y)
            del Y                                  # no cycles: freed at once unless kept
            assert ref() is None

    for kw in (dict(hidden=(4,)), dict(hidden=(), flow="iaf", n_flows=1)):
        v = VAE(2, dtype=np.float64, random_state=0, **kw).fit(X, 1)
        check(v, kw)
    # and the results do not depend on the release: a second call gives the same numbers
    assert v.log_likelihood(X, 3, random_state=1) == v.log_likelihood(X, 3, random_state=1)


def test_pipeline_fit_and_more_arguments_of_the_wrong_kind():
    """sklearn's Pipeline calls fit(X, None): epochs=None raised TypeError, so a VAE could not
    be the last step. encoder_gradient silently used only the first of S draws; sample(mean='no')
    was truthy; a float32 decode of codes beyond float32's range said 'NaN or infinite'."""
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    X, _ = make_ppca_data(40, 4, 2, random_state=0)
    pipe = Pipeline([("scale", StandardScaler()),
                     ("vae", VAE(2, hidden=(4,), likelihood="gaussian", random_state=0))]).fit(X)
    assert pipe.named_steps["vae"].epochs_ == 10 and pipe.transform(X).shape == (40, 2)
    v = pipe.named_steps["vae"]
    with pytest.raises(TypeError, match="number of epochs.*no y"):
        v.fit(X, np.zeros(40))
    with pytest.raises(ValueError, match="single-sample estimate"):
        v.encoder_gradient(X, np.zeros((2, 40, 2)))
    with pytest.raises(TypeError, match="mean must be True"):
        v.sample(2, mean="no")
    with pytest.raises(ValueError, match="beyond float32's range"):
        v.decode(np.full((1, 2), 1e39))
    np.testing.assert_array_equal(v.decode(np.zeros((1, 2))), v.decode([[0.0, 0.0]]))


@pytest.mark.parametrize("optimizer", ["adam", "adagrad", "sgd"])
def test_training_resumed_after_save_and_load_continues_exactly(tmp_path, optimizer):
    """Before, load started a fresh optimiser (Adam's moments and step count lost) and a fresh
    generator, so 2 epochs + save/load + 2 epochs differed from 4 epochs. Now bit-for-bit equal."""
    X = binarize(load_digits()[0][:60] / 16, random_state=0)
    kw = dict(hidden=(4,), optimizer=optimizer, batch_size=20, random_state=3,
              schedule="alternating" if optimizer == "adagrad" else "joint")
    straight = VAE(2, **kw).fit(X, 4)
    half = VAE(2, **kw).fit(X, 2)
    resumed = VAE.load(half.save(tmp_path / "half.npz")).fit(X, 2)
    for k in straight.params:
        np.testing.assert_array_equal(resumed.params[k], straight.params[k])
    assert resumed.history_ == straight.history_
    if optimizer != "adam":
        return
    # the optimiser entries are checked like the parameters
    p = tmp_path / "e.npz"
    for edit, match in ((lambda m, a: a.update({"opt:encoder:v": -a["opt:encoder:v"] - 1}), "negative"),
                        (lambda m, a: a.update({"opt:decoder:m": a["opt:decoder:m"][:-1]}), "shape"),
                        (lambda m, a: a.pop("opt:decoder:m"), "optimiser entries"),
                        (lambda m, a: m.update(optimizer_steps={"encoder": 0, "decoder": 3}), "step count"),
                        (lambda m, a: m.update(rng_state={"bit_generator": "MT19937"}), "rng_state")):
        _save_and_edit(half, p, edit)
        with pytest.raises(ValueError, match=match):
            VAE.load(p)


def test_categorical_accepts_integral_floats_as_the_same_levels():
    """load_digits returns float64 0.0..16.0: integral floats are the same levels as ints (same
    model bit for bit), 3.5 is not a level, and a level ≥ n_levels names n_levels."""
    X = load_digits()[0][:30]
    a = VAE(2, hidden=(3,), likelihood="categorical", n_levels=17, random_state=0).fit(X, 1)
    b = VAE(2, hidden=(3,), likelihood="categorical", n_levels=17, random_state=0).fit(
        X.astype(np.int64), 1)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
    with pytest.raises(ValueError, match="non-integer"):
        a.transform(np.where(X == 3, 3.5, X))
    with pytest.raises(ValueError, match="n_levels=12 needs integers 0..11"):
        VAE(2, hidden=(3,), likelihood="categorical", n_levels=12).fit(X, 1)


def test_every_likelihood_on_the_shipped_digits_as_a_user_would():
    """Each family on the data a user would give it: held-out log p (K = 50) of the binary and
    categorical data is a log-probability (≤ 0); samples, decoder means and reconstructions lie
    in the support; float32 and float64 models from the same seed agree within 5 standard errors
    (over rows) of the float64 estimate; the same seed reproduces the model bit for bit."""
    from latentmodels.datasets import dequantize

    X = load_digits()[0]
    tr, te = X[:300], X[1500:1600]
    cases = {"bernoulli": (binarize(tr / 16, random_state=0), binarize(te / 16, random_state=1), {}),
             "categorical": (tr, te, {"n_levels": 17}),
             "continuous_bernoulli": (tr / 16, te / 16, {}),
             "gaussian": (dequantize(tr, scale=16, random_state=0),
                          dequantize(te, scale=16, random_state=1), {})}
    for lik, (a, b, kw) in cases.items():
        est = {}
        for dt in (np.float32, np.float64):
            v = VAE(3, hidden=(16,), likelihood=lik, dtype=dt, random_state=0, **kw).fit(a, 3)
            est[dt] = v.log_likelihood_with_se(b, 50, random_state=0)
        (m32, _), (m64, se64) = est[np.float32], est[np.float64]
        assert abs(m32 - m64) < 5 * se64, (lik, m32, m64, se64)
        if lik in ("bernoulli", "categorical"):
            assert np.all(v.score_samples(b, 50, random_state=0) <= 0)    # every row, not just the mean
        s = v.sample(200, random_state=0)
        d = v.decode(np.random.default_rng(0).standard_normal((50, 3)))
        r = v.reconstruct(b, 2, random_state=0)
        if lik == "bernoulli":
            assert set(np.unique(s)) <= {0.0, 1.0}
            assert 0 < d.min() and d.max() < 1 and 0 < r.min() <= r.max() < 1
        elif lik == "categorical":
            assert np.array_equal(s, np.round(s)) and s.min() >= 0 and s.max() <= 16
            assert 0 <= d.min() and d.max() <= 16 and 0 <= r.min() and r.max() <= 16
        elif lik == "continuous_bernoulli":
            assert 0 <= s.min() and s.max() <= 1
            assert 0 < d.min() and d.max() < 1 and 0 < r.min() <= r.max() < 1
        twin = VAE(3, hidden=(16,), likelihood=lik, dtype=np.float64, random_state=0, **kw).fit(a, 3)
        assert all(np.array_equal(twin.params[k], v.params[k]) for k in v.params)
