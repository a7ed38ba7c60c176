import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from latentmodels import gaussian as gs
from latentmodels.datasets import make_ppca_data
from latentmodels.gaussian import GaussianQ
from latentmodels.ppca import PPCA
from latentmodels.validation import NotFittedError
from latentmodels.vbpca import VBPCA


def monotone(h):
    h = np.asarray(h)
    return np.all(np.diff(h) >= -1e-9 * np.maximum(1, np.abs(h[1:])))


@pytest.mark.parametrize("seed,N,D,L_true", [(1, 500, 8, 2), (3, 1000, 10, 1)])
def test_vbpca_switches_off_unsupported_components(seed, N, D, L_true):
    X, _ = make_ppca_data(N, D, L_true, sigma2=0.1, random_state=seed)
    v = VBPCA(D - 1, random_state=seed).fit(X)
    assert v.n_effective_ == L_true
    assert monotone(v.history_)
    # switched-off columns have far larger ARD precisions than the kept ones
    order = np.argsort(v.alpha_)
    assert v.alpha_[order[L_true]] > 100 * v.alpha_[order[L_true - 1]]
    assert np.isclose(v.sigma2_, 0.1, rtol=0.2)


@settings(max_examples=10)
@given(st.integers(3, 7), st.integers(1, 3), st.integers(20, 80), st.integers(0, 10**6),
       st.floats(-100, 100))
def test_vbpca_history_never_decreases(D, L, N, seed, log10_scale):
    X = np.random.default_rng(seed).standard_normal((N, D)) * np.arange(1, D + 1) * 10.0**log10_scale
    v = VBPCA(min(L, D), max_iter=100, tol=1e-10, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        v.fit(X)
    assert monotone(v.history_)


def test_vbpca_elbo_terms_match_monte_carlo():
    """Every analytic expectation of the ELBO against a Monte Carlo estimate from q."""
    X0, _ = make_ppca_data(40, 5, 2, sigma2=0.2, random_state=4)
    v = VBPCA(3, random_state=0, max_iter=50, tol=1e-6).fit(X0)
    # the factors live on the standardised data (x - x̄)/s, where the priors are stated
    X = v._standardise(X0)
    s = v._s
    N, D = X.shape
    L = s["MW"].shape[1]
    Mz = (X - s["c"]) @ s["A"].T          # the fit's last q(Z): m_n = A (x_n − c)
    rng = np.random.default_rng(0)
    S = 20_000
    LW = np.linalg.cholesky(s["SW"])
    W = s["MW"][None] + np.einsum("ij,sdj->sdi", LW, rng.standard_normal((S, D, L)))
    mu = s["m_mu"] + np.sqrt(s["S_mu"]) * rng.standard_normal((S, D))
    tau = rng.gamma(s["a_tau"], 1 / s["b_tau"], S)
    alpha = rng.gamma(s["a_alpha"], 1 / s["b_alpha"], (S, L))
    Lz = np.linalg.cholesky(s["Sz"])
    Z = Mz[None] + rng.standard_normal((S, N, L)) @ Lz.T
    resid = X[None] - np.einsum("snl,sdl->snd", Z, W) - mu[:, None, :]
    log_lik = (0.5 * N * D * (np.log(tau) - gs.LOG_2PI) - 0.5 * tau * np.sum(resid**2, axis=(1, 2)))
    e = v._elbo_on(X, GaussianQ(Mz, s["Sz"]))
    # the statistics form of the same ELBO (the one fit maximises) agrees with the row form
    e_stats = v._elbo_stats(v._row_data(X), v._z_moments(v._row_data(X), s["A"], s["c"], s["Sz"]))
    assert np.isclose(e_stats.total, e.total, rtol=1e-12)

    def close(samples, value):
        se = samples.std() / np.sqrt(len(samples))
        assert abs(samples.mean() - value) < 5 * se + 1e-12, (samples.mean(), value, se)

    close(log_lik / N, e.expected_log_lik)
    # KL(q(W) || p(W|alpha)) averaged over q(alpha), by sampling log q(W) - log p(W|alpha)
    log_qW = sum(stats.multivariate_normal(s["MW"][d], s["SW"]).logpdf(W[:, d]) for d in range(D))
    log_pW = (np.sum(0.5 * D * (np.log(alpha) - gs.LOG_2PI), axis=1)
              - 0.5 * np.sum(alpha * np.sum(W**2, axis=1), axis=1))
    log_qa = np.sum(stats.gamma.logpdf(alpha, s["a_alpha"], scale=1 / s["b_alpha"]), axis=1)
    log_pa = np.sum(stats.gamma.logpdf(alpha, v.a_alpha, scale=1 / v.b_alpha), axis=1)
    log_qmu = np.sum(stats.norm.logpdf(mu, s["m_mu"], np.sqrt(s["S_mu"])), axis=1)
    log_pmu = np.sum(stats.norm.logpdf(mu, 0, 1 / np.sqrt(v.beta)), axis=1)
    log_qt = stats.gamma.logpdf(tau, s["a_tau"], scale=1 / s["b_tau"])
    log_pt = stats.gamma.logpdf(tau, v.a_tau, scale=1 / v.b_tau)
    kl_params = (log_qW - log_pW) + (log_qa - log_pa) + (log_qmu - log_pmu) + (log_qt - log_pt)
    close(kl_params / N, e.kl_params)
    log_qz = np.sum(stats.multivariate_normal(np.zeros(L), s["Sz"]).logpdf(
        (Z - Mz[None]).reshape(-1, L)).reshape(S, N), axis=1)
    log_pz = np.sum(stats.norm.logpdf(Z), axis=(1, 2))
    close((log_qz - log_pz) / N, e.kl_latent)


def test_vbpca_interface():
    X, _ = make_ppca_data(300, 6, 2, sigma2=0.1, random_state=5)
    v = VBPCA(4, random_state=0).fit(X)
    assert v.transform(X).shape == (300, 4)
    assert v.sample(7, random_state=0).shape == (7, 6)
    assert np.isclose(v.elbo(X).total, v.history_[-1], rtol=1e-6)
    assert v.elbo(X).kl_params > 0
    # the plug-in log-likelihood is close to PPCA's maximum likelihood with the right L
    assert abs(v.log_likelihood(X) - PPCA(2).fit(X).log_likelihood(X)) < 0.05
    with pytest.raises(ValueError, match="features"):
        v.transform(X[:, :5])


# ---- priors in the units of the data (issue 8) ----------------------------------------------------

@pytest.mark.parametrize("a,b", [(1.0, 0.0), (1000.0, 5000.0), (1e-4, 0.0), (1e150, 0.0)])
def test_vbpca_plug_in_likelihood_is_ppcas_at_any_scale(a, b):
    X0, _ = make_ppca_data(200, 6, 2, sigma2=0.2, random_state=1)
    X = a * X0 + b
    v = VBPCA(2, random_state=0).fit(X)
    p = PPCA(2).fit(X)
    assert abs(v.log_likelihood(X) - p.log_likelihood(X)) < 0.05
    np.testing.assert_allclose(v.mu_, X.mean(axis=0), rtol=1e-3)   # no shrinkage towards 0
    assert np.isclose(v.sigma2_, p.sigma2_, rtol=0.05)


def test_vbpca_fit_is_affine_equivariant():
    # the same CAVI path up to round-off, so a loose tolerance is enough for the claim
    X, _ = make_ppca_data(100, 5, 2, sigma2=0.3, random_state=2)
    a = VBPCA(2, tol=1e-6, random_state=0).fit(X)
    b = VBPCA(2, tol=1e-6, random_state=0).fit(3e7 * X + 12.0)
    np.testing.assert_allclose(b.W_ @ b.W_.T, 9e14 * (a.W_ @ a.W_.T), rtol=1e-8)
    assert np.isclose(b.sigma2_, 9e14 * a.sigma2_, rtol=1e-8)
    # ELBO and log-likelihood shift by the Jacobian -D log|a|
    jac = -5 * np.log(3e7)
    assert np.isclose(b.history_[-1], a.history_[-1] + jac, rtol=1e-10)
    assert np.isclose(b.log_likelihood(3e7 * X + 12.0), a.log_likelihood(X) + jac, rtol=1e-10)


def test_vbpca_before_fit_raises_not_fitted():
    v = VBPCA(2)
    for call in (v.n_parameters, v.noise_variance, lambda: v.transform(np.zeros((2, 3)))):
        with pytest.raises(NotFittedError):
            call()


# ---- sufficient statistics: partial_fit, fit_from_statistics, chunks (issue 13) -----------------

def _vb(**k):
    return VBPCA(**{"n_components": 2, "tol": 1e-6, "random_state": 0, **k})


@settings(max_examples=8)
@given(st.lists(st.integers(1, 59), min_size=1, max_size=5), st.sampled_from([0.0, 1e6]),
       st.integers(0, 3))
def test_vbpca_partial_fit_over_any_chunking_equals_fit(cuts, offset, seed):
    X0, _ = make_ppca_data(60, 5, 2, sigma2=0.2, random_state=seed)
    X = X0 + offset
    full = _vb().fit(X)
    m = _vb()
    for chunk in np.split(X, sorted(set(cuts))):
        m.partial_fit(chunk, refit=False)
    m.fit_from_statistics()
    ll = full.log_likelihood(X)
    assert abs(m.log_likelihood(X) - ll) <= 1e-10 * abs(ll)
    assert np.isclose(m.sigma2_, full.sigma2_, rtol=1e-8)
    # and the fit is the fit of the unshifted data, shifted (the priors follow the data)
    if offset:
        base = _vb().fit(X0)
        assert abs(base.log_likelihood(X0) - ll) <= 1e-8 * abs(ll)


def test_vbpca_fit_accepts_chunks_memmaps_and_statistics(tmp_path):
    X, _ = make_ppca_data(80, 5, 2, sigma2=0.2, random_state=3)
    full = _vb().fit(X)
    ll = full.log_likelihood(X)
    mm = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.float64, shape=X.shape)
    mm[:] = X
    mm.flush()
    for source in (iter(np.array_split(X, 3)), np.load(tmp_path / "x.npy", mmap_mode="r"),
                   full.statistics_):
        assert np.isclose(_vb().fit(source).log_likelihood(X), ll, rtol=1e-10)
    # refit=True after every chunk leaves the model of all rows seen
    m = _vb()
    for chunk in np.array_split(X, 4):
        m.partial_fit(chunk)
    assert np.isclose(m.log_likelihood(X), ll, rtol=1e-10)
    # fit_covariance: the same statistics given as (S, n, mean)
    S = np.cov(X.T, bias=True)
    assert np.isclose(_vb().fit_covariance(S, 80, X.mean(axis=0)).log_likelihood(X), ll, rtol=1e-9)
    with pytest.raises(NotFittedError):
        _vb().fit_from_statistics()


# ---- missing values: VB on the observed entries (Ilin & Raiko 2010; issue 13) --------------------

def _mcar(X, frac, rng):
    """X with a fraction ``frac`` of entries set to NaN at random, every row and column keeping one."""
    u = rng.random(X.shape)
    mask = u < frac
    keep_row = rng.integers(0, X.shape[1], X.shape[0])
    mask[np.arange(X.shape[0]), keep_row] = False
    mask[rng.integers(0, X.shape[0], X.shape[1]), np.arange(X.shape[1])] = False
    Xm = X.copy()
    Xm[mask] = np.nan
    return Xm, mask


@settings(max_examples=8)
@given(st.integers(3, 6), st.integers(1, 3), st.integers(15, 50), st.floats(0.05, 0.5),
       st.integers(0, 10**6), st.floats(-50, 50))
def test_vbpca_missing_elbo_never_decreases(D, L, N, frac, seed, log10_scale):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, D)) * np.arange(1, D + 1) * 10.0**log10_scale
    Xm, _ = _mcar(X, frac, rng)
    v = VBPCA(min(L, D), max_iter=60, tol=1e-10, random_state=seed, missing="em")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        v.fit(Xm)
    assert monotone(v.history_)
    assert np.all(np.isfinite(v.W_)) and v.sigma2_ > 0


def test_vbpca_missing_path_without_nan_is_the_complete_fit():
    X, _ = make_ppca_data(120, 5, 2, sigma2=0.2, random_state=7)
    X = 40.0 * X + 1e6
    full = VBPCA(3, tol=1e-7, random_state=0).fit(X)
    # the public path: no NaN, nothing missing — the same fit
    em = VBPCA(3, tol=1e-7, random_state=0, missing="em").fit(X)
    np.testing.assert_array_equal(em.W_, full.W_)
    # the observed-entry updates themselves, run on complete data, are the complete-data updates
    direct = VBPCA(3, tol=1e-7, random_state=0)._fit_missing(X)
    assert direct.n_iter_ == full.n_iter_
    ll = full.log_likelihood(X)
    assert abs(direct.log_likelihood(X) - ll) <= 1e-10 * abs(ll)
    assert abs(direct.history_[-1] - full.history_[-1]) <= 1e-10 * abs(full.history_[-1])
    np.testing.assert_allclose(direct.W_ @ direct.W_.T, full.W_ @ full.W_.T, rtol=1e-8, atol=1e-8 * 1600)
    assert np.isclose(direct.sigma2_, full.sigma2_, rtol=1e-10)
    np.testing.assert_allclose(direct.alpha_, full.alpha_, rtol=1e-8)


def test_vbpca_missing_log_likelihood_is_scipys_per_row_observed_likelihood():
    rng = np.random.default_rng(2)
    X, _ = make_ppca_data(60, 5, 2, sigma2=0.3, random_state=2)
    Xm, mask = _mcar(X, 0.3, rng)
    v = VBPCA(2, tol=1e-6, random_state=0, missing="em").fit(Xm)
    C = v.W_ @ v.W_.T + v.sigma2_ * np.eye(5)
    ref = np.array([stats.multivariate_normal(v.mu_[o], C[np.ix_(o, o)]).logpdf(x[o])
                    for x, o in zip(Xm, ~mask)])
    np.testing.assert_allclose(v.score_samples(Xm), ref, rtol=1e-12, atol=1e-12)
    assert np.isclose(v.log_likelihood(Xm), ref.mean(), rtol=1e-12)
    # impute fills exactly the NaN with the Gaussian conditional mean μ_M + C_MO C_OO⁻¹ (x_O − μ_O)
    filled = v.impute(Xm)
    np.testing.assert_array_equal(filled[~mask], X[~mask])
    for n in range(0, 60, 7):
        o, mis = ~mask[n], mask[n]
        cond = v.mu_[mis] + C[np.ix_(mis, o)] @ np.linalg.solve(C[np.ix_(o, o)], Xm[n, o] - v.mu_[o])
        np.testing.assert_allclose(filled[n, mis], cond, rtol=1e-10, atol=1e-12)


def test_vbpca_imputation_beats_mean_and_approaches_complete_fit():
    X, _ = make_ppca_data(150, 6, 2, sigma2=0.1, random_state=4)
    full = VBPCA(3, tol=1e-6, random_state=0).fit(X)
    C_full = full.get_covariance()
    u = np.random.default_rng(4).random(X.shape)
    gaps = []
    for frac in (0.5, 0.3, 0.1, 0.02):
        mask = u < frac                      # nested masks: fewer holes as frac falls
        assert not np.any(mask.all(axis=0)) and not np.any(mask.all(axis=1))
        Xm = np.where(mask, np.nan, X)
        v = VBPCA(3, tol=1e-6, random_state=0, missing="em").fit(Xm)
        err = v.impute(Xm)[mask] - X[mask]
        err_mean = np.broadcast_to(np.nanmean(Xm, axis=0), X.shape)[mask] - X[mask]
        rmse, rmse_mean = np.sqrt(np.mean(err**2)), np.sqrt(np.mean(err_mean**2))
        if frac >= 0.1:
            assert rmse < 0.7 * rmse_mean, (frac, rmse, rmse_mean)
        gaps.append(np.linalg.norm(v.get_covariance() - C_full) / np.linalg.norm(C_full))
    assert np.all(np.diff(gaps) < 0), gaps
    assert gaps[-1] < 0.05


def test_vbpca_missing_refuses_empty_rows_columns_and_nan_by_default():
    X, _ = make_ppca_data(30, 4, 1, sigma2=0.2, random_state=0)
    Xr = X.copy()
    Xr[3] = np.nan
    with pytest.raises(ValueError, match="row"):
        VBPCA(1, missing="em").fit(Xr)
    Xc = X.copy()
    Xc[:, 2] = np.nan
    with pytest.raises(ValueError, match="column"):
        VBPCA(1, missing="em").fit(Xc)
    Xm = X.copy()
    Xm[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN|missing"):
        VBPCA(1).fit(Xm)
    with pytest.raises(ValueError, match="missing"):
        VBPCA(1, missing="drop").fit(Xm)


def test_vbpca_dask_fit_and_lazy_scoring_equal_in_memory():
    da = pytest.importorskip("dask.array")
    X, _ = make_ppca_data(90, 5, 2, sigma2=0.2, random_state=6)
    X = X + 1e6
    full = _vb().fit(X)
    Xd = da.from_array(X, chunks=(25, 5))
    with __import__("dask").config.set(scheduler="threads"):
        v = _vb().fit(Xd)
        lazy = v.score_samples(Xd)
        assert isinstance(lazy, da.Array) and lazy.chunks[0] == Xd.chunks[0]
        scores = lazy.compute()
        Z = v.transform(Xd).compute()
    ll = full.log_likelihood(X)
    assert abs(v.log_likelihood(X) - ll) <= 1e-10 * abs(ll)
    np.testing.assert_allclose(scores, v.score_samples(X), rtol=1e-12)
    np.testing.assert_allclose(Z, v.transform(X), rtol=1e-12, atol=1e-12)
