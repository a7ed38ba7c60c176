"""Tests for latentmodels.missing: EM for FA / PPCA with NaN entries."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from latentmodels.fa import FactorAnalysis
from latentmodels.missing import (
    _elbo,
    _expected_statistics,
    _Patterns,
    check_missing,
    fit_missing,
    has_missing,
    impute,
    observed_log_likelihood,
    observed_score_samples,
    posterior_missing,
)
from latentmodels.ppca import PPCA
from latentmodels.validation import ConvergenceWarning


def _data(N=600, D=8, L=2, seed=0, offset=0.0):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((D, L)) * 1.5
    psi = rng.uniform(0.2, 1.0, D)
    mu = offset + 3.0 * rng.standard_normal(D)
    X = mu + rng.standard_normal((N, L)) @ W.T + rng.standard_normal((N, D)) * np.sqrt(psi)
    return X, mu, W, psi


def _mcar(X, frac, seed=1, u=None):
    """Missing completely at random, keeping one entry per row (rows are otherwise refused)."""
    rng = np.random.default_rng(seed)
    u = rng.random(X.shape) if u is None else u
    miss = u < frac
    keep = np.argmin(u, axis=1)                     # the row's least-likely-missing entry
    miss[np.arange(X.shape[0]), keep] = False
    Xm = X.copy()
    Xm[miss] = np.nan
    return Xm


def _reference_loglik(X, mu, W, psi):
    """Per-row log N(x_O | μ_O, C_OO) with scipy, independent of the Woodbury code."""
    C = W @ W.T + np.diag(np.broadcast_to(psi, (X.shape[1],)))
    out = []
    for x in X:
        o = ~np.isnan(x)
        out.append(stats.multivariate_normal(mu[o], C[np.ix_(o, o)]).logpdf(x[o]))
    return np.array(out)


# --------------------------------------------------------------------------------------------
# the observed-data log-likelihood, the posterior and imputation against direct formulas
# --------------------------------------------------------------------------------------------

@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2 ** 32 - 1), frac=st.floats(0.0, 0.8), isotropic=st.booleans())
def test_observed_loglik_equals_per_row_scipy(seed, frac, isotropic):
    X, mu, W, psi = _data(N=40, D=6, L=2, seed=seed % 1000)
    psi = psi.mean() if isotropic else psi
    Xm = _mcar(X, frac, seed=seed)
    ours = observed_score_samples(Xm, mu, W, psi)
    ref = _reference_loglik(Xm, mu, W, psi)
    np.testing.assert_allclose(ours, ref, rtol=1e-10)
    assert np.isclose(observed_log_likelihood(Xm, mu, W, psi), ref.mean(), rtol=1e-10)


def test_impute_and_posterior_equal_gaussian_conditioning():
    X, mu, W, psi = _data(N=30, D=6, L=2, seed=3)
    Xm = _mcar(X, 0.4, seed=4)
    Xm_before = Xm.copy()
    filled = impute(Xm, mu, W, psi)
    means, covs = posterior_missing(Xm, mu, W, psi)
    np.testing.assert_array_equal(Xm, Xm_before)            # input untouched
    C = W @ W.T + np.diag(psi)
    for n, x in enumerate(Xm):
        o, m = ~np.isnan(x), np.isnan(x)
        Coo = C[np.ix_(o, o)]
        # Bishop PRML eq. 2.81: E[x_M | x_O] = μ_M + C_MO C_OO⁻¹ (x_O − μ_O)
        cond = mu[m] + C[np.ix_(m, o)] @ np.linalg.solve(Coo, x[o] - mu[o])
        np.testing.assert_allclose(filled[n, m], cond, rtol=1e-10, atol=1e-12)
        np.testing.assert_array_equal(filled[n, o], x[o])
        # p(z | x_O) by conditioning the joint Gaussian of (z, x_O): cov(z, x_O) = W_Oᵀ
        Wo = W[o]
        np.testing.assert_allclose(means[n], Wo.T @ np.linalg.solve(Coo, x[o] - mu[o]), atol=1e-12)
        np.testing.assert_allclose(covs[n], np.eye(2) - Wo.T @ np.linalg.solve(Coo, Wo), atol=1e-12)


def test_elbo_after_e_step_is_the_log_likelihood_and_below_it_elsewhere():
    """The ELBO formula (with the entropy of the missing entries) against the exact log p(X_obs)."""
    X, mu, W, psi = _data(N=50, D=6, L=2, seed=5)
    Xm = _mcar(X, 0.3, seed=6)
    Xf, obs = check_missing(Xm)
    Xz = np.where(obs, Xf, 0.0)
    st_, loglik = _expected_statistics(Xz, _Patterns(obs), mu, W, psi)
    np.testing.assert_allclose(_elbo(st_, mu, W, psi, 2), loglik.sum(), rtol=1e-12)
    # at another θ the bound lies below log p(X_obs | θ) (KL(q‖p) > 0)
    mu2, W2, psi2 = mu + 0.3, W * 0.8, psi * 1.4
    assert _elbo(st_, mu2, W2, psi2, 2) < observed_score_samples(Xm, mu2, W2, psi2).sum() - 1e-6


# --------------------------------------------------------------------------------------------
# no NaN: the complete-data fit
# --------------------------------------------------------------------------------------------

def _complete_em_step(X, mu, W, psi):
    """One complete-data FA EM step written out from Bishop PRML eqs. 12.66–12.70."""
    N, L = X.shape[0], W.shape[1]
    Xc = X - X.mean(axis=0)
    G = np.linalg.inv(np.eye(L) + W.T @ (W / psi[:, None]))
    Ez = Xc @ (W / psi[:, None]) @ G
    Ezz = N * G + Ez.T @ Ez
    W_new = (Xc.T @ Ez) @ np.linalg.inv(Ezz)
    psi_new = np.diag(Xc.T @ Xc - W_new @ (Ez.T @ Xc)) / N
    return X.mean(axis=0), W_new, psi_new


def test_no_nan_one_step_is_the_complete_data_em_step():
    X, _, _, _ = _data(N=200, D=6, L=2, seed=7, offset=1e3)
    rng = np.random.default_rng(8)
    W0, psi0 = rng.standard_normal((6, 2)), rng.uniform(0.5, 2.0, 6)
    with pytest.warns(ConvergenceWarning):
        r = fit_missing(X, 2, init={"mu": X.mean(axis=0), "W": W0, "psi": psi0}, max_iter=1,
                        tol=1e-300)
    mu1, W1, psi1 = _complete_em_step(X, X.mean(axis=0), W0, psi0)
    np.testing.assert_allclose(r.W, W1, rtol=1e-10)
    np.testing.assert_allclose(r.psi, psi1, rtol=1e-10)
    np.testing.assert_allclose(r.mu, mu1, rtol=1e-12)
    # the recorded ELBOs are log p(X | θ0) and then log p(X | θ1) (complete data)
    C0, C1 = W0 @ W0.T + np.diag(psi0), W1 @ W1.T + np.diag(psi1)
    ll0 = stats.multivariate_normal(X.mean(axis=0), C0).logpdf(X).mean()
    ll1 = stats.multivariate_normal(mu1, C1).logpdf(X).mean()
    np.testing.assert_allclose([r.history[0], r.history[-1]], [ll0, ll1], rtol=1e-11)


def test_no_nan_reaches_the_factor_analysis_and_ppca_optimum():
    # uniquenesses well away from 0, so that plain EM converges in a few hundred iterations
    rng = np.random.default_rng(1)
    W, psi = rng.standard_normal((6, 2)), rng.uniform(0.5, 1.5, 6)
    X = 5.0 + rng.standard_normal((300, 2)) @ W.T + rng.standard_normal((300, 6)) * np.sqrt(psi)
    fa = FactorAnalysis(2, tol=1e-10).fit(X)
    r = fit_missing(X, 2, tol=1e-12, max_iter=5000)
    assert r.converged
    np.testing.assert_allclose(r.log_likelihood, fa.log_likelihood(X), rtol=1e-8)
    np.testing.assert_allclose(r.W @ r.W.T + np.diag(r.psi), fa.get_covariance(), rtol=1e-4, atol=1e-5)
    # PPCA from a random start reaches Tipping & Bishop's closed-form maximum
    p = PPCA(2).fit(X)
    rp = fit_missing(X, 2, noise="isotropic", init="random", random_state=0, tol=1e-13, max_iter=5000)
    np.testing.assert_allclose(rp.log_likelihood, p.log_likelihood(X), rtol=1e-8)
    np.testing.assert_allclose(rp.psi, p.sigma2_, rtol=1e-5)


# --------------------------------------------------------------------------------------------
# with NaN: monotone EM, imputation, consistency
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("noise", ["diagonal", "isotropic"])
def test_history_monotone_and_final_value_is_observed_loglik(noise):
    X, _, _, _ = _data(N=300, D=8, L=2, seed=10, offset=1e6)
    Xm = _mcar(X, 0.3, seed=11)
    r = fit_missing(Xm, 2, noise=noise, tol=1e-10)
    h = np.array(r.history)
    assert r.converged and r.history_labels[-1] == "E" and len(h) > 4
    assert np.all(np.diff(h) >= -1e-9 * np.abs(h[1:]))
    assert h[-1] - h[0] > 1e-3                                   # it did climb
    ref = _reference_loglik(Xm, r.mu, r.W, r.psi).mean()
    np.testing.assert_allclose(r.log_likelihood, ref, rtol=1e-10)
    if noise == "isotropic":
        assert np.ptp(r.psi) == 0.0


@pytest.mark.parametrize("frac", [0.1, 0.3, 0.5])
def test_imputation_beats_mean_imputation(frac):
    X, _, _, _ = _data(N=400, D=8, L=2, seed=12)
    Xm = _mcar(X, frac, seed=13)
    miss = np.isnan(Xm)
    r = fit_missing(Xm, 2, tol=1e-7)
    em = impute(Xm, r.mu, r.W, r.psi)
    mean_fill = np.where(miss, np.nanmean(Xm, axis=0), Xm)
    rmse_em = np.sqrt(np.mean((em - X)[miss] ** 2))
    rmse_mean = np.sqrt(np.mean((mean_fill - X)[miss] ** 2))
    # loadings of scale 1.5 on 2 factors: the factors explain most of each column's variance
    assert rmse_em < 0.8 * rmse_mean


def test_parameters_approach_the_complete_data_fit_as_missingness_falls():
    X, _, _, _ = _data(N=1000, D=8, L=2, seed=14)
    full = fit_missing(X, 2, tol=1e-9)
    C_full = full.W @ full.W.T + np.diag(full.psi)
    u = np.random.default_rng(15).random(X.shape)               # nested masks: one uniform draw
    errors = []
    for frac in (0.5, 0.3, 0.1, 0.02):
        r = fit_missing(_mcar(X, frac, u=u), 2, tol=1e-9)
        errors.append(np.linalg.norm(r.W @ r.W.T + np.diag(r.psi) - C_full) / np.linalg.norm(C_full))
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 0.05


def test_blocks_of_patterns_give_the_same_fit_as_rowwise():
    """Grouping by pattern changes nothing: a duplicated data set gives the same θ."""
    X, _, _, _ = _data(N=120, D=6, L=2, seed=16)
    Xm = _mcar(X, 0.3, seed=17)
    Xm[:60, 0] = np.nan                                          # a shared pattern for many rows
    a = fit_missing(Xm, 2, tol=1e-10)
    b = fit_missing(np.vstack([Xm, Xm]), 2, tol=1e-10)
    np.testing.assert_allclose(a.log_likelihood, b.log_likelihood, rtol=1e-9)
    np.testing.assert_allclose(a.W @ a.W.T, b.W @ b.W.T, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------

def test_rows_and_columns_without_observations_are_refused():
    X = np.arange(12.0).reshape(4, 3) + np.random.default_rng(0).random((4, 3))
    Xr = X.copy()
    Xr[2] = np.nan
    with pytest.raises(ValueError, match=r"no observed entry \(rows \[2\]\)"):
        fit_missing(Xr, 1)
    Xc = X.copy()
    Xc[:, 1] = np.nan
    with pytest.raises(ValueError, match=r"columns \[1\]"):
        fit_missing(Xc, 1)
    Xi = X.copy()
    Xi[0, 0] = np.inf
    with pytest.raises(ValueError, match="infinite"):
        fit_missing(Xi, 1)
    with pytest.raises(TypeError):
        fit_missing(np.array([["a", "b"], ["c", "d"]]), 1)
    with pytest.raises(ValueError, match="n_components"):
        fit_missing(X, 4)
    with pytest.raises(ValueError, match="noise"):
        fit_missing(X, 1, noise="full")
    with pytest.raises(ValueError, match="2-D"):
        impute(np.ones(3), np.zeros(3), np.ones((3, 1)), np.ones(3))


def test_has_missing_reads_only_in_memory_arrays(tmp_path):
    X = np.ones((3, 2))
    assert not has_missing(X)
    X[1, 1] = np.nan
    assert has_missing(X) and has_missing(X.tolist())
    assert not has_missing(iter([X]))                            # an iterable is not consumed
    mm = np.memmap(tmp_path / "m.dat", dtype=float, mode="w+", shape=(3, 2))
    mm[:] = X
    assert not has_missing(mm)


def test_max_iter_warns_and_still_ends_on_an_e_step():
    X, _, _, _ = _data(N=100, D=6, L=2, seed=18)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        r = fit_missing(_mcar(X, 0.2, seed=19), 2, max_iter=3, tol=1e-15)
    assert any("did not converge" in str(x.message) for x in w)
    assert not r.converged and r.n_iter == 3 and r.history_labels == ["E", "M"] * 3 + ["E"]


def test_fixed_noise_reaches_the_closed_form_ppca_with_given_sigma2():
    rng = np.random.default_rng(20)
    X = rng.standard_normal((300, 2)) @ rng.standard_normal((2, 5)) * 2 + rng.standard_normal((300, 5))
    p = PPCA(2, sigma2=0.7).fit(X)
    r = fit_missing(X, 2, noise="fixed", fixed_psi=0.7, init="random", random_state=1, tol=1e-13,
                    max_iter=5000)
    assert np.all(r.psi == 0.7)
    np.testing.assert_allclose(r.log_likelihood, p.log_likelihood(X), rtol=1e-9)
    with pytest.raises(ValueError, match="fixed_psi"):
        fit_missing(X, 2, noise="fixed")


@pytest.mark.parametrize("noise", ["diagonal", "isotropic"])
def test_fit_is_equivariant_under_the_units_of_each_column(noise):
    # ML is equivariant under x_d -> c_d x_d + b_d: psi_d -> c_d^2 psi_d, W_d -> c_d W_d,
    # mu_d -> c_d mu_d + b_d, mean log-likelihood - sum_d n_d log c_d / N (n_d observed entries of
    # column d). Columns in units 1e12 apart used to be refused as "constant" (a variance test
    # relative to the largest column), and entries of 1e150 overflowed their squares.
    rng = np.random.default_rng(0)
    N, D = 120, 5
    W = rng.standard_normal((D, 2))
    X = rng.standard_normal((N, 2)) @ W.T + np.sqrt(rng.uniform(0.3, 1.0, D)) * rng.standard_normal((N, D))
    X[rng.random(X.shape) < 0.2] = np.nan
    X[np.isnan(X).all(axis=1), 0] = 1.0
    if noise == "diagonal":
        c, b = np.array([1e-6, 1.0, 1e6, 3e3, 1e-3]), np.array([0.0, -5.0, 1e6, 0.0, 3.0])
    else:
        c, b = np.full(D, 1e150), np.zeros(D)
    base = fit_missing(X, 2, noise=noise, tol=1e-6)
    scaled = fit_missing(X * c + b, 2, noise=noise, tol=1e-6)
    assert scaled.n_iter == base.n_iter
    np.testing.assert_allclose(scaled.psi / c**2, base.psi, rtol=1e-10)
    np.testing.assert_allclose(scaled.W @ scaled.W.T / np.outer(c, c), base.W @ base.W.T,
                               rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose((scaled.mu - b) / c, base.mu, rtol=1e-9, atol=1e-12)
    shift = -np.sum((~np.isnan(X)).sum(axis=0) * np.log(c)) / N
    np.testing.assert_allclose(scaled.log_likelihood, base.log_likelihood + shift, rtol=1e-12)
    np.testing.assert_allclose(np.diff(scaled.history), np.diff(base.history), atol=1e-10)


def test_a_column_observed_once_is_refused_by_name():
    X, _, _, _ = _data(N=50, D=4)
    X[1:, 2] = np.nan
    with pytest.raises(ValueError, match=r"observed only once \(columns \[2\]\)"):
        fit_missing(X, 1)


def test_impute_keeps_observed_entries_bit_identical_and_the_input_untouched():
    X, mu, W, psi = _data(N=80, D=5, seed=3)
    X = _mcar(X, 0.3).astype(np.float32)
    X[0, np.flatnonzero(~np.isnan(X[0]))[0]] = -0.0          # a signed zero must survive
    before = X.copy()
    out = impute(X, mu, W, psi)
    obs = ~np.isnan(before)
    assert np.array_equal(X, before, equal_nan=True)                 # input not modified
    assert out.dtype == np.float64 and not np.isnan(out).any()
    assert np.array_equal(out[obs], before[obs].astype(np.float64))  # observed: bit-identical
    assert np.array_equal(np.signbit(out[obs]), np.signbit(before[obs]))
    # the filled entries are the Gaussian conditional mean (a second computation, first row with a hole)
    r = int(np.flatnonzero(~obs.all(axis=1))[0])
    o, m = obs[r], ~obs[r]
    C = W @ W.T + np.diag(psi)
    cond = mu[m] + C[np.ix_(m, o)] @ np.linalg.solve(C[np.ix_(o, o)], before[r, o] - mu[o])
    np.testing.assert_allclose(out[r, m], cond, rtol=1e-10)
