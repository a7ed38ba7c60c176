import itertools

import mpmath
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import integrate, special, stats

from latentmodels.likelihoods import (
    Bernoulli,
    Categorical,
    ContinuousBernoulli,
    Gaussian,
    cb_log_normalizer,
    cb_log_normalizer_grad,
    cb_mean,
    make_likelihood,
)

# logits near λ = ½ (both sides of the Taylor switch at |l| = 0.1) and far from it
LOGITS = [-500.0, -40.0, -3.0, -0.5, -0.1, -0.0999, -1e-3, -1e-8, 0.0, 1e-12, 1e-5, 0.05, 0.09999,
          0.1, 0.10001, 0.7, 5.0, 35.0, 700.0]


def _mp_log_c(l):
    """log C(λ) = log(2 artanh(1 − 2λ)/(1 − 2λ)), λ = σ(l), at 60 + |l| digits (Loaiza-Ganem &
    Cunningham 2019, eq. 7; 1 − 2λ must not round to ±1), straight from the λ form; C(½) = 2."""
    with mpmath.workdps(60 + int(abs(float(l)))):
        lam = 1 / (1 + mpmath.exp(-mpmath.mpf(l)))
        a = 1 - 2 * lam
        if a == 0:
            return mpmath.log(2)
        return mpmath.log(2 * mpmath.atanh(a) / a)


@pytest.mark.parametrize("l", LOGITS)
def test_cb_log_normalizer_against_the_closed_form_in_lambda(l):
    expected = float(_mp_log_c(l))
    got = float(cb_log_normalizer(np.array([l]))[0])
    assert abs(got - expected) <= 1e-14 * max(1.0, abs(expected)), (l, got, expected)


def _mp_dlog_c(l):
    """d log C/dl = (d log C/dλ) · dλ/dl, differentiated in the λ form: with a = 1 − 2λ,
    log C = log 2 + log artanh(a) − log a, so d/dλ = −2 [1/((1 − a²) artanh a) − 1/a], and
    dλ/dl = λ(1 − λ). At 60 + |l| digits; 0 at λ = ½ (C is even about ½)."""
    with mpmath.workdps(60 + int(abs(float(l)))):
        lam = 1 / (1 + mpmath.exp(-mpmath.mpf(l)))
        a = 1 - 2 * lam
        if a == 0:
            return mpmath.mpf(0)
        return -2 * (1 / ((1 - a * a) * mpmath.atanh(a)) - 1 / a) * lam * (1 - lam)


@pytest.mark.parametrize("l", LOGITS)
def test_cb_log_normalizer_derivative_against_the_lambda_form(l):
    expected = float(_mp_dlog_c(l))
    got = float(cb_log_normalizer_grad(np.array([l]))[0])
    assert abs(got - expected) <= 1e-13 * max(1.0, abs(expected)), (l, got, expected)


@pytest.mark.parametrize("l", [-40.0, -3.0, -0.1, -1e-6, 0.0, 1e-9, 0.0999, 0.1, 2.0, 30.0])
def test_cb_density_integrates_to_one_and_has_its_stated_mean(l):
    cb = ContinuousBernoulli()
    out = np.array([[l]])

    def density(x):
        return np.exp(cb.forward(np.array([[x]]), out)[0])

    # the density is e^{l x} up to a constant: quadrature at full precision, split at ½ for
    # the steep |l| = 40 case
    mass = sum(integrate.quad(density, a, b, epsabs=1e-13, epsrel=1e-13)[0]
               for a, b in ((0, 0.5), (0.5, 1)))
    assert abs(mass - 1.0) < 1e-10, mass
    m = sum(integrate.quad(lambda x: x * density(x), a, b, epsabs=1e-13, epsrel=1e-13)[0]
            for a, b in ((0, 0.5), (0.5, 1)))
    assert abs(m - cb_mean(out)[0, 0]) < 1e-10


def test_cb_samples_follow_the_cdf():
    # F(x) = (λ^x (1−λ)^{1−x} + λ − 1)/(2λ − 1) = (e^{l x} − 1)/(e^l − 1); empirical CDF within
    # 5 binomial standard errors at each of a few points, for several logits
    rng = np.random.default_rng(0)
    n = 40000
    cb = ContinuousBernoulli()
    for l in (-6.0, -0.05, 0.0, 0.3, 8.0):
        x = cb.sample(np.full((n, 1), l), None, rng)[:, 0]
        assert np.all((x >= 0) & (x <= 1))
        for t in (0.1, 0.5, 0.9):
            F = t if l == 0 else np.expm1(l * t) / np.expm1(l)
            se = np.sqrt(F * (1 - F) / n)
            assert abs(np.mean(x <= t) - F) < 5 * se + 1e-12, (l, t)


def test_categorical_probabilities_sum_to_one_over_every_image():
    # D = 2 pixels, K = 3 levels: the 9 images' probabilities sum to 1 per row
    rng = np.random.default_rng(1)
    cat = Categorical(3)
    out = rng.standard_normal((4, 6)) * 5
    images = np.array(list(itertools.product(range(3), repeat=2)), dtype=float)
    total = np.zeros(4)
    for img in images:
        ll = cat.forward(np.tile(img, (4, 1)), out)
        assert np.all(ll <= 0)
        total += np.exp(ll)
    np.testing.assert_allclose(total, 1.0, atol=1e-10, rtol=0)
    np.testing.assert_allclose(cat.probabilities(out).sum(-1), 1.0, atol=1e-12, rtol=0)


def test_categorical_against_scipy_log_softmax_and_extreme_logits():
    rng = np.random.default_rng(2)
    cat = Categorical(4)
    out = rng.standard_normal((3, 8)) * 3
    out[0, :4] = [1000.0, -1000.0, 0.0, 999.0]
    x = rng.integers(0, 4, size=(3, 2)).astype(float)
    lsm = special.log_softmax(out.reshape(3, 2, 4), axis=-1)
    expected = np.take_along_axis(lsm, x.astype(int)[..., None], -1)[..., 0].sum(-1)
    np.testing.assert_allclose(cat.forward(x, out), expected, rtol=1e-12)
    assert np.all(np.isfinite(cat.forward(x, out)))
    # E[x] = Σ k p_k
    np.testing.assert_allclose(cat.mean(out), np.exp(lsm) @ np.arange(4), rtol=1e-12)


def test_bernoulli_and_gaussian_against_scipy():
    x = np.array([[0.0, 1.0, 1.0, 0.0]])
    logits = np.array([[-3.0, 0.5, 40.0, 2.0]])
    expected = stats.bernoulli.logpmf(x, special.expit(logits)).sum()
    assert np.isclose(Bernoulli().forward(x, logits)[0], expected, rtol=1e-12)
    ll, g, _ = Bernoulli().forward_backward(x, logits)
    assert np.isclose(ll[0], expected, rtol=1e-12)
    np.testing.assert_allclose(g, x - special.expit(logits), rtol=1e-12)
    m, lv = np.array([[0.3, -1.0]]), np.array([[0.2, -2.0]])
    xg = np.array([[1.0, 0.0]])
    assert np.isclose(Gaussian().forward(xg, m, lv)[0],
                      stats.norm.logpdf(xg, m, np.exp(0.5 * lv)).sum(), rtol=1e-12)


LIKS = [("bernoulli", None, lambda r, s: (r.uniform(size=s) < 0.5).astype(float)),
        ("gaussian", None, lambda r, s: r.standard_normal(s)),
        ("continuous_bernoulli", None, lambda r, s: r.uniform(size=s)),
        ("categorical", 5, lambda r, s: r.integers(0, 5, size=s).astype(float))]


@pytest.mark.parametrize("name,K,draw", LIKS)
def test_backward_matches_central_differences(name, K, draw):
    rng = np.random.default_rng(3)
    lik = make_likelihood(name, K)
    N, D = 4, 3
    x = draw(rng, (N, D))
    out = rng.standard_normal((N, lik.n_outputs(D))) * 2
    out[0, 0] = 0.03          # inside the continuous Bernoulli's Taylor region
    lv = rng.standard_normal((N, D)) * 0.5 if name == "gaussian" else None
    _, g_out, g_lv = lik.forward_backward(x, out, lv)
    # forward then backward gives the same gradients as the fused call
    lik.forward(x, out, lv)
    np.testing.assert_allclose(lik.backward()[0], g_out, rtol=1e-12, atol=1e-15)
    h = 1e-6
    for arr, g in ((out, g_out), (lv, g_lv)):
        if arr is None:
            continue
        fd = np.empty_like(arr)
        for idx in np.ndindex(arr.shape):
            old = arr[idx]
            arr[idx] = old + h
            up = lik.forward(x, out, lv).sum()
            arr[idx] = old - h
            down = lik.forward(x, out, lv).sum()
            arr[idx] = old
            fd[idx] = (up - down) / (2 * h)
        err = np.linalg.norm(fd - g) / (np.linalg.norm(fd) + np.linalg.norm(g))
        assert err < 1e-8, (name, err)


def test_support_checks():
    b, cb, cat = Bernoulli(), ContinuousBernoulli(), Categorical(17)
    with pytest.raises(ValueError, match=r"outside \[0, 1\]"):
        b.check_data(np.array([[0.0, 16.0]]), "X")
    with pytest.raises(ValueError, match=r"outside \[0, 1\]"):
        cb.check_data(np.array([[-0.5, 0.5]]), "X")
    assert b.check_data(np.array([[0.0, 1.0]]), "X") is None
    assert "not a log-probability" in b.check_data(np.array([[0.0, 0.5]]), "X")
    assert cb.check_data(np.array([[0.0, 0.5]]), "X") is None
    assert cat.check_data(np.array([[0.0, 16.0]]), "X") is None
    with pytest.raises(ValueError, match="integer"):
        cat.check_data(np.array([[0.5, 1.0]]), "X")
    with pytest.raises(ValueError, match="n_levels=17"):
        cat.check_data(np.array([[0.0, 17.0]]), "X")
    with pytest.raises(ValueError, match="n_levels=17"):
        cat.check_data(np.array([[-1.0, 3.0]]), "X")
    with pytest.raises(ValueError, match="likelihood must be one of"):
        make_likelihood("poisson")


@given(st.floats(-60, 60, allow_nan=False))
def test_cb_normaliser_is_even_and_at_least_log2(l):
    # C(λ) = C(1 − λ), i.e. even in the logit; its minimum is C(½) = 2
    a = cb_log_normalizer(np.array([l, -l]))
    assert abs(a[0] - a[1]) <= 1e-15 * max(1.0, abs(a[0]))
    assert a[0] >= np.log(2.0) - 1e-15
    g = cb_log_normalizer_grad(np.array([l, -l]))
    assert abs(g[0] + g[1]) <= 1e-15 * max(1.0, abs(g[0]))


def _mp_cb_mean(l):
    """E[x] = λ/(2λ − 1) + 1/(2 artanh(1 − 2λ)), λ = σ(l) (Loaiza-Ganem & Cunningham 2019, §3),
    straight from the λ form at 80 + |l| digits (1 − 2λ must not round to ±1)."""
    with mpmath.workdps(80 + int(min(abs(float(l)), 2000))):
        lam = 1 / (1 + mpmath.exp(-mpmath.mpf(l)))
        return lam / (2 * lam - 1) + 1 / (2 * mpmath.atanh(1 - 2 * lam))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cb_functions_at_extreme_logits_are_exact_and_warn_nothing(dtype):
    """Decoder logits far beyond ±88 (float32's exp range) or ±1.8e19 (where l² overflows): the
    mean against the λ form in mpmath (a clip at ±700 gave 1 − 1/700 at l = 800 before), and no
    overflow RuntimeWarning from any of the three functions."""
    l = np.array([-1e30, -1e20, -1500.0, -800.0, -90.0, 90.0, 800.0, 1500.0, 1e20, 1e30], dtype=dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):    # underflow to 0 is fine
        m, c, g = cb_mean(l), cb_log_normalizer(l), cb_log_normalizer_grad(l)
    rtol = 1e-6 if dtype == np.float32 else 1e-13
    for li, mi in zip(l, m):
        if abs(li) <= 1500:
            np.testing.assert_allclose(mi, float(_mp_cb_mean(float(li))), rtol=rtol)
    # far from ½: mean → 1 − 1/l (l > 0) or −1/l (l < 0), log C → log|l|, d log C/dl → 1/l
    np.testing.assert_allclose(m, np.where(l > 0, 1.0, 0.0) - 1.0 / l.astype(np.float64), rtol=rtol)
    np.testing.assert_allclose(c, np.log(np.abs(l.astype(np.float64))), rtol=rtol)
    np.testing.assert_allclose(g, 1.0 / l.astype(np.float64), rtol=rtol)
    assert m.dtype == c.dtype == g.dtype == dtype
