import json
import math

import numpy as np
import pytest

from latentmodels import gaussian as gs
from latentmodels.chain import (
    Z_SE,
    ChainResult,
    ChainRow,
    bits_per_pixel,
    chain_data,
    chain_inputs,
    run_chain,
)
from latentmodels.datasets import make_fa_data

EXPECTED_ROWS = ["FA (EM)", "PPCA (closed form)", "PPCA (EM)", "FA + mean-field q(z|x)",
                 "VB-PCA", "linear VAE (shared σ²)", "linear VAE (per-feature σ²)", "MLP VAE"]


@pytest.fixture
def synthetic(synthetic_cli_run):
    return synthetic_cli_run["result"]


def test_every_row_and_the_lectures_relations_hold(synthetic):
    names = [r.name for r in synthetic.rows]
    for expected in EXPECTED_ROWS:
        assert any(n.startswith(expected) for n in names), expected
    failed = [(c, d) for c, h, d in synthetic.checks() if not h]
    assert not failed, failed
    fa, pp = synthetic.row("FA (EM)"), synthetic.row("PPCA (closed form)")
    assert fa.train_log_lik > pp.train_log_lik          # heteroscedastic noise: FA wins
    assert abs(synthetic.row("PPCA (EM)").train_log_lik - pp.train_log_lik) < 1e-6


def test_iwae_and_iaf_rows_follow_the_mlp_vae(synthetic):
    from latentmodels.chain import _vae_supports

    names = [r.name for r in synthetic.rows]
    mlp = names.index("MLP VAE (Gaussian, 256 tanh)")
    for prefix, kw in (("IWAE-trained VAE", dict(objective="iwae", n_importance=5)),
                       ("IAF VAE", dict(flow="iaf", n_flows=2))):
        if not _vae_supports(**kw):
            continue
        i = next(i for i, n in enumerate(names) if n.startswith(prefix))
        r = synthetic.rows[i]
        assert i > mlp and r.log_lik_kind.startswith("IWAE") and r.gap > -3 * r.gap_se


def test_fa_row_matches_the_true_model_on_held_out_rows(synthetic):
    # the synthetic data and split, regenerated independently of the chain (seed 0, --quick)
    rng = np.random.default_rng(0)
    X, truth = make_fa_data(1000, 20, 4, psi_range=(0.05, 1.0), random_state=rng)
    np.testing.assert_array_equal(X, chain_data("synthetic", random_state=0, quick=True)[0])
    perm = np.random.default_rng(0).permutation(len(X))
    Xte = X[perm[:synthetic.n_test]]
    true_ll = np.mean(gs.lowrank_logpdf(Xte, truth["mu"], truth["W"], truth["psi"]))
    # ML overfits by about (#params)/(2N) = 104/1600 = 0.07 nats per sample; the test mean of
    # log p over 200 rows has a standard error std/√200 ≈ 0.2; 3 SE = 0.6
    per_row = gs.lowrank_logpdf(Xte, truth["mu"], truth["W"], truth["psi"])
    se = per_row.std(ddof=1) / math.sqrt(len(per_row))
    assert abs(synthetic.row("FA (EM)").test_log_lik - true_ll) < 0.07 + 3 * se


def test_linear_vaes_report_their_exact_gaussian_marginal(synthetic):
    for name in ("linear VAE (shared σ²)", "linear VAE (per-feature σ²)"):
        r = synthetic.row(name)
        assert r.log_lik_kind == "exact" and r.test_log_lik_se == 0
        # the IWAE estimate of the same model is a lower bound in expectation: ≤ exact within
        # Z_SE paired standard errors, and within a few nats (it is a good estimator here)
        iw, se = r.iwae_check
        assert iw <= r.test_log_lik + Z_SE * se and r.test_log_lik - iw < 1.0
        assert r.gap > -Z_SE * r.gap_se


def test_exact_marginal_of_a_linear_vae_against_monte_carlo():
    """log N(x | b, W Wᵀ + σ²I) from the decoder weights against a direct Monte Carlo integral
    p(x) = E_z[N(x | W z + b, σ² I)] with 200 000 prior draws (a second method)."""
    from scipy.special import logsumexp

    from latentmodels.chain import _linear_vae_marginal
    from latentmodels.vae import VAE

    X, _ = make_fa_data(200, 4, 1, random_state=0)
    m = VAE(1, hidden=(), likelihood="gaussian", decoder_variance="shared", dtype=np.float64,
            random_state=0).fit(X, 5)
    b, W, var = _linear_vae_marginal(m)
    # the decoder's own parameters give the same marginal (z W + b, σ² = exp(log-variance))
    np.testing.assert_allclose(W, m.params["dec_out.W"].T, rtol=1e-12)
    np.testing.assert_allclose(b, m.params["dec_out.b"], rtol=1e-12)
    np.testing.assert_allclose(var, np.exp(m.params["dec_logvar"]) * np.ones(4), rtol=1e-12)
    exact = gs.lowrank_logpdf(X[:3], b, W, var)
    z = np.random.default_rng(1).standard_normal((200_000, 1))
    means = z @ W.T + b
    for i in range(3):
        logp = -0.5 * np.sum((X[i] - means) ** 2 / var + np.log(2 * np.pi * var), axis=1)
        w = np.exp(logp - logp.max())
        est = logsumexp(logp) - math.log(len(z))
        se = w.std(ddof=1) / math.sqrt(len(z)) / w.mean()      # delta method for log of a mean
        assert abs(est - exact[i]) < Z_SE * se + 1e-12


def test_table_formats(synthetic, synthetic_cli_run):
    md = synthetic.to_markdown()
    assert md.count("\n") == len(synthetic.rows) + 1
    assert "\\|" not in synthetic.to_text()
    lines = synthetic.to_text().splitlines()
    assert len({len(line) for line in lines}) == 1          # every line ends at the last column
    d = json.loads(json.dumps(synthetic.to_dict()))
    assert len(d["rows"]) == len(synthetic.rows) and all(c["holds"] for c in d["checks"])
    assert {"train_elbo", "test_elbo", "test_log_lik", "gap", "gap_se", "bits_per_pixel",
            "n_params", "seconds", "eval_seconds"} <= set(d["rows"][0])
    assert d == json.loads(json.dumps(synthetic_cli_run["json"]))


def test_gap_is_zero_for_exact_posteriors_and_positive_for_vaes(synthetic):
    for r in synthetic.rows:
        if r.name.startswith(("FA (EM)", "PPCA")):
            assert abs(r.gap) < 1e-8 and r.gap_se == 0
        if "VAE" in r.name:
            assert r.gap > 0 and r.gap_se > 0


# ---- bits per pixel -------------------------------------------------------------------------------

def test_bits_per_pixel_of_the_uniform_density_is_log2_of_the_levels():
    # p_x = 1 on [0,1)^D: every integer cell has probability 17^-D, i.e. log2(17) bits per pixel
    assert bits_per_pixel(0.0, 64, 17) == pytest.approx(math.log2(17), abs=1e-12)
    assert bits_per_pixel(-64 * math.log(17), 64) == pytest.approx(math.log2(17), abs=1e-12)
    assert bits_per_pixel(np.zeros(3), 5, 2).shape == (3,)
    with pytest.raises(ValueError, match="n_levels"):
        bits_per_pixel(0.0, 4, 1)


def test_bits_per_pixel_bounds_the_exact_discrete_probability():
    """For an independent Gaussian density on x = (k + u)/17, the exact probability of the
    integer cell is a product of normal CDF differences (an independent computation); the
    dequantised bound −(E_u log p_x − D log 17)/(D log 2) is above its bits and close to them
    when the density is smooth on the scale of a cell."""
    from scipy.stats import norm

    rng = np.random.default_rng(0)
    D, K = 6, 17
    mu, sd = rng.uniform(0.3, 0.7, D), rng.uniform(0.15, 0.3, D)
    k = np.clip(np.round((mu + sd * rng.standard_normal((400, D))) * K - 0.5), 0, K - 1)
    exact = np.sum(np.log(norm.cdf((k + 1) / K, mu, sd) - norm.cdf(k / K, mu, sd)), axis=1)
    u = rng.uniform(size=(400, 200, D))                   # E_u by 200 draws per row
    logpx = np.sum(norm.logpdf((k[:, None] + u) / K, mu, sd), axis=2).mean(axis=1)
    bound = bits_per_pixel(logpx.mean(), D, K)
    truth = bits_per_pixel(exact.mean(), D)
    assert bound >= truth                                     # Jensen, per row and on average
    assert bound - truth < 0.01                               # smooth on the cell scale


def test_bits_per_pixel_in_the_chain_and_the_categorical_row(small_digits_chain):
    res = small_digits_chain
    assert not [c for c, h, _ in res.checks() if not h], res.format_checks()
    fa = res.row("FA (EM)")
    assert fa.bits_per_pixel == pytest.approx(
        (64 * math.log(17) - fa.test_log_lik) / (64 * math.log(2)), rel=1e-12)
    for r in res.rows:
        assert r.bits_per_pixel is not None and 0 < r.bits_per_pixel < 8
    cat = [r for r in res.rows if r.space == "discrete"]
    if not cat:
        pytest.skip("this VAE has no likelihood='categorical' yet: " + " ".join(res.notes))
    (cat,) = cat
    assert cat.test_log_lik < 0                               # a log-probability of pixels
    assert cat.bits_per_pixel == pytest.approx(-cat.test_log_lik / (64 * math.log(2)))
    assert "[discrete]" in res.to_text()


def test_chain_inputs_and_bad_arguments():
    d = chain_inputs("digits", random_state=0)
    X, desc = d["X"], d["data_name"]
    assert X.shape == (1797, 64) and 0 <= X.min() and X.max() < 1 and "dequantised" in desc
    np.testing.assert_array_equal(np.floor(d["levels"]), d["levels"])
    assert np.all((X * 17 >= d["levels"] - 1e-9) & (X * 17 < d["levels"] + 1 + 1e-9))
    np.testing.assert_array_equal(chain_data("digits", random_state=0)[0], X)
    with pytest.raises(ValueError, match="data must be"):
        chain_data("mnist")
    with pytest.raises(ValueError, match="test_fraction"):
        run_chain(X, test_fraction=1.5)
    with pytest.raises(ValueError, match="n_components"):
        run_chain(X, n_components=64)
    with pytest.raises(ValueError, match="levels"):
        run_chain(X, levels=d["levels"])                     # levels without n_levels
    with pytest.raises(ValueError, match="levels"):
        run_chain(X, n_levels=17, levels=d["levels"][:10])


def _fake(rows):
    return ChainResult(rows, "fake", 10, 10, 4, 1)


def _row(name, kind, gap, gap_se, **kw):
    return ChainRow(name, 0.0, 0.0, 0.0, gap, kind, gap, 1, 1, "epochs", 0.0, gap_se=gap_se,
                    test_elbo_se=gap_se, **kw)


def test_monte_carlo_checks_use_the_stated_multiple_of_the_standard_error():
    # a gap of −2 SE is Monte Carlo noise (holds); −4 SE is not (fails)
    ok = _fake([_row("MLP VAE", "IWAE (K=10)", -0.02, 0.01)])
    bad = _fake([_row("MLP VAE", "IWAE (K=10)", -0.04, 0.01)])
    assert Z_SE == 3
    assert ok.all_checks_hold() and not bad.all_checks_hold()
    assert "[FAIL]" in bad.format_checks() and "3 SE" in bad.format_checks()
