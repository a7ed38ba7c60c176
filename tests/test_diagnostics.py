"""Fit statistics against R's factanal and psych::fa.stats; summary text; choosing L."""

import warnings

import numpy as np
import pytest

# Reference cases from R (inputs, factanal's unrotated loadings, R's rotations and fit statistics),
# with the R script that printed them: tests/r_cases.py.
from r_cases import ABILITY_2, HARMAN23_2, HARMAN23_3, HARMAN74_3

from latentmodels.diagnostics import (
    DimensionTable,
    choose_n_components,
    fit_statistics,
    minka_log_evidence,
    rmsea_interval,
    summary,
)

CASES = {"ability_2": ABILITY_2, "harman23_2": HARMAN23_2, "harman23_3": HARMAN23_3,
         "harman74_3": HARMAN74_3}


def _rel(a, b):
    return abs(a - b) / abs(b)


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_factanal(case):
    ref = CASES[case]
    st = fit_statistics(ref["R"], ref["n_obs"], ref["unrotated"], np.asarray(ref["uniquenesses"]))
    assert _rel(st.objective, ref["objective"]) < 1e-6
    assert _rel(st.chi2, ref["STATISTIC"]) < 1e-6
    assert st.dof == ref["dof"]
    assert _rel(st.p_value, ref["PVAL"]) < 1e-6


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_psych(case):
    ref = CASES[case]
    L0 = ref["unrotated"]
    st = fit_statistics(ref["R"], ref["n_obs"], L0, 1 - np.sum(L0**2, axis=1))
    assert _rel(st.objective, ref["psych_objective"]) < 1e-6
    assert _rel(st.chi2, ref["psych_STATISTIC"]) < 1e-6
    assert _rel(st.rmsea, ref["psych_RMSEA"][0]) < 1e-6
    for ours, psych, tight in zip(st.rmsea_interval, ref["psych_RMSEA"][1:], ref["RMSEA_ci_tight"]):
        if tight == 0:
            assert ours == 0 and psych == 0
        else:
            assert _rel(ours, psych) < 1e-6      # psych's own (uniroot at its default tolerance)
            assert _rel(ours, tight) < 1e-10     # the same roots found to full precision
    assert _rel(st.tli, ref["TLI"]) < 1e-6
    assert _rel(st.bic, ref["BIC"]) < 1e-6
    assert _rel(st.null_chi2, ref["null_chisq"]) < 1e-6
    assert st.null_dof == ref["null_dof"]
    assert _rel(st.null_objective, ref["null_model"]) < 1e-6
    # the definitions spelled out
    n, dof = ref["n_obs"], ref["dof"]
    assert st.aic == pytest.approx(st.chi2 - 2 * dof, rel=1e-14)
    assert st.sabic == pytest.approx(st.chi2 - dof * np.log((n + 2) / 24), rel=1e-14)
    assert st.confidence == 0.9


def test_statistics_are_invariant_to_rotation_and_to_the_scale_of_s():
    from latentmodels.rotations import rotate

    ref = HARMAN74_3
    L0, psi = ref["unrotated"], np.asarray(ref["uniquenesses"])
    base = fit_statistics(ref["R"], ref["n_obs"], L0, psi)
    rot = rotate(L0, "oblimin")
    st = fit_statistics(ref["R"], ref["n_obs"], rot.loadings, psi, phi=rot.factor_correlation)
    assert st.chi2 == pytest.approx(base.chi2, rel=1e-10)
    # a covariance D_c R D_c with loadings D_c Λ and uniquenesses c² ψ: the same statistics
    c = np.linspace(0.5, 3.0, 24)
    st2 = fit_statistics(ref["R"] * np.outer(c, c), ref["n_obs"], L0 * c[:, None], psi * c**2)
    for name in ["objective", "chi2", "p_value", "tli", "rmsea", "bic", "null_chi2"]:
        assert getattr(st2, name) == pytest.approx(getattr(base, name), rel=1e-9), name


def test_end_to_end_with_our_factor_analysis():
    """Our ML fit of Harman74 reproduces factanal's χ² and p-value (it reaches the same optimum)."""
    from latentmodels.fa import FactorAnalysis

    ref = HARMAN74_3
    fa = FactorAnalysis(3).fit_covariance(ref["R"], ref["n_obs"])
    st = fit_statistics(ref["R"], ref["n_obs"], fa.W_, fa.psi_)
    assert _rel(st.chi2, ref["STATISTIC"]) < 1e-6
    assert _rel(st.p_value, ref["PVAL"]) < 1e-6


def test_log_likelihood_field_is_the_models_log_likelihood():
    from latentmodels.fa import FactorAnalysis

    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 2)) @ rng.normal(size=(2, 6)) + rng.normal(size=(200, 6))
    fa = FactorAnalysis(2).fit(X)
    Xc = X - X.mean(axis=0)
    st = fit_statistics(Xc.T @ Xc / 200, 200, fa.W_, fa.psi_)
    assert st.log_likelihood == pytest.approx(fa.log_likelihood(X), rel=1e-10)


def test_rmsea_interval_brackets_and_zero_cases():
    from scipy import stats

    lo, hi = rmsea_interval(30.0, 10, 200)
    # the defining equations, checked with scipy's noncentral χ² directly
    assert stats.ncx2.cdf(30.0, 10, hi**2 * 199 * 10) == pytest.approx(0.05, abs=1e-10)
    assert stats.ncx2.cdf(30.0, 10, lo**2 * 199 * 10) == pytest.approx(0.95, abs=1e-10)
    # a χ² below its central 5 % quantile: both bounds 0
    assert rmsea_interval(2.0, 10, 200) == (0.0, 0.0)
    assert all(np.isnan(rmsea_interval(1.0, 0, 100)))


def test_fit_statistics_bad_input():
    ref = ABILITY_2
    L0, psi = ref["unrotated"], np.asarray(ref["uniquenesses"])
    with pytest.raises(ValueError, match="agree"):
        fit_statistics(ref["R"], 112, L0[:5], psi)
    with pytest.raises(ValueError, match="psi"):
        fit_statistics(ref["R"], 112, L0, -psi)
    with pytest.raises(ValueError, match="n_samples"):
        fit_statistics(ref["R"], 1, L0, psi)
    with pytest.raises(ValueError, match="confidence"):
        fit_statistics(ref["R"], 112, L0, psi, confidence=1.5)


# ---- summary ---------------------------------------------------------------------------------

class _Fitted:
    """A stand-in for a fitted, rotated FactorAnalysis (duck typing, as diagnostics.summary reads it)."""

    def __init__(self, ref, method):
        from latentmodels.rotations import rotate

        rot = rotate(ref["unrotated"], method)
        self.W_ = ref["unrotated"]
        self.psi_ = np.asarray(ref["uniquenesses"])
        self.loadings_, self.factor_correlation_ = rot.loadings, rot.factor_correlation
        self.rotation = method
        self.sample_covariance_ = ref["R"]
        self.n_samples_ = ref["n_obs"]


def _row(text, name):
    line = next(ln for ln in text.splitlines() if ln.startswith(name + " "))
    return line[len(name):].split()


def test_summary_orthogonal():
    ref = ABILITY_2
    m = _Fitted(ref, "varimax")
    names = ["general", "picture", "blocks", "maze", "reading", "vocab"]
    text = summary(m, names=names, cutoff=0.2)
    L = m.loadings_
    h2 = np.sum(L**2, axis=1)
    # each variable: its loadings (blank below the cutoff), h2 and u2
    for i, name in enumerate(names):
        cells = _row(text, name)
        shown = [f"{v:.3f}" for v in L[i] if abs(v) >= 0.2]
        assert cells == shown + [f"{h2[i]:.3f}", f"{ref['uniquenesses'][i]:.3f}"]
    ss = np.sum(L**2, axis=0)
    assert _row(text, "SS loadings") == [f"{v:.3f}" for v in ss]
    assert _row(text, "Cumulative Var")[-1] == f"{ss.sum() / 6:.3f}"
    # rows grouped by their largest loading, each group by decreasing size (psych's fa.sort)
    order = [ln.split()[0] for ln in text.splitlines() if ln.split() and ln.split()[0] in names]
    big = np.argmax(np.abs(L), axis=1)
    key = [(big[names.index(v)], -np.abs(L[names.index(v), big[names.index(v)]])) for v in order]
    assert key == sorted(key)
    assert "Factor correlations" not in text
    assert f"chi-square = {ref['STATISTIC']:.4f} on 4 degrees of freedom" in text
    assert "rotation: varimax" in text


def test_summary_oblique_standardises_covariance_input():
    ref = HARMAN74_3
    m = _Fitted(ref, "oblimin")
    text = summary(m, cutoff=0.0, sort=False)
    assert "Factor correlations:" in text and "pattern matrix" in text
    Phi = m.factor_correlation_
    assert _row(text, "F2")[:3] == [f"{v:.3f}" for v in Phi[1]]
    ss = np.einsum("ij,ij->j", m.loadings_ @ Phi, m.loadings_)
    assert _row(text, "SS loadings") == [f"{v:.3f}" for v in ss]
    # the same model on the covariance scale prints the same standardised table
    c = np.linspace(0.5, 3.0, 24)
    m.loadings_ = m.loadings_ * c[:, None]
    m.psi_ = m.psi_ * c**2
    m.sample_covariance_ = ref["R"] * np.outer(c, c)
    assert summary(m, cutoff=0.0, sort=False) == text


def test_summary_needs_loadings():
    with pytest.raises(ValueError, match="fitted model"):
        summary()


# ---- choosing L ------------------------------------------------------------------------------

def test_minka_matches_scikit_learn():
    """A second implementation: scikit-learn's _assess_dimension (PCA(n_components='mle'))."""
    _pca = pytest.importorskip("sklearn.decomposition._pca")
    rng = np.random.default_rng(2)
    spectrum = np.sort(rng.gamma(2.0, size=9))[::-1]
    for k in range(1, 9):
        assert minka_log_evidence(spectrum, k, 57) == pytest.approx(_pca._assess_dimension(spectrum, k, 57),
                                                                     rel=1e-12)
    # k = 0: only the isotropic term −(N d/2) log(mean λ)
    assert minka_log_evidence(spectrum, 0, 57) == pytest.approx(-57 * 9 / 2 * np.log(spectrum.mean()),
                                                                 rel=1e-14)


def _fa_data(n=600, seed=0):
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(8, 2)) * 1.5
    return rng.normal(size=(n, 2)) @ W.T + rng.normal(size=(n, 8)) * np.sqrt(rng.uniform(0.3, 1.0, 8))


# L = 3, 4 overfit two true factors: FA warns of Heywood cases there, as it should
@pytest.mark.filterwarnings("ignore:uniqueness psi_")
def test_choose_n_components_fa():
    from scipy import stats

    X = _fa_data()
    table = choose_n_components(X, 4, "fa", test_fraction=0.25, random_state=0)
    assert isinstance(table, DimensionTable)
    assert list(table.n_components) == [0, 1, 2, 3, 4]
    assert table.n_train == 450 and table.n_test == 150
    assert table.best("bic") == 2
    assert table.best("chi2") == 2
    assert table.best("heldout") == 2
    assert np.all(np.diff(table.log_likelihood) > -1e-9)          # nested models: ℓ̄ cannot fall
    assert list(table.n_parameters) == [16, 24, 31, 37, 42]
    assert "chi2" in str(table)
    # L = 0 is the independent Gaussian, and its χ² the test of independence
    full = choose_n_components(X, 1, "fa", test_fraction=0.0)
    mu, sd = X.mean(axis=0), X.std(axis=0)
    assert full.log_likelihood[0] == pytest.approx(np.mean(np.sum(stats.norm.logpdf(X, mu, sd), axis=1)),
                                                   rel=1e-12)
    S = np.cov(X.T, bias=True)
    null = fit_statistics(S, 600, np.zeros((8, 1)), np.diag(S))
    assert full.chi2[0] == pytest.approx(null.null_chi2, rel=1e-10)
    assert full.dof[0] == 28
    # the table's likelihoods are the fitted models' own
    assert full.log_likelihood[1] == pytest.approx(full.models[1].log_likelihood(X), rel=1e-12)
    assert np.isnan(full.heldout_log_likelihood).all()


def test_choose_n_components_ppca_minka():
    from scipy import stats

    rng = np.random.default_rng(5)
    W = rng.normal(size=(10, 3)) * 2
    X = rng.normal(size=(500, 3)) @ W.T + 0.5 * rng.normal(size=(500, 10))
    table = choose_n_components(X, 6, "ppca", test_fraction=0.0)
    assert table.best("minka") == 3
    assert table.best("bic") == 3
    sk = pytest.importorskip("sklearn.decomposition")
    assert sk.PCA(n_components="mle").fit(X).n_components_ == 3
    mu, S = X.mean(axis=0), np.cov(X.T, bias=True)
    iso = stats.multivariate_normal(mu, np.trace(S) / 10 * np.eye(10))
    assert table.log_likelihood[0] == pytest.approx(np.mean(iso.logpdf(X)), rel=1e-12)
    assert table.log_likelihood[2] == pytest.approx(table.models[2].log_likelihood(X), rel=1e-12)
    assert np.isnan(table.chi2).all()
    assert "Minka" in str(table)


def test_choose_n_components_bad_input():
    X = _fa_data(50)
    with pytest.raises(ValueError, match="model"):
        choose_n_components(X, 2, "pca")
    with pytest.raises(ValueError, match="max_components"):
        choose_n_components(X, 8, "ppca")
    with pytest.raises(ValueError, match="test_fraction"):
        choose_n_components(X, 2, test_fraction=1.0)
    with pytest.raises(ValueError, match="criterion"):
        choose_n_components(X, 1).best("aic")


def test_summary_of_a_ppca_model():
    from latentmodels.ppca import PPCA

    X = _fa_data(200)
    ppca = PPCA(2).fit(X)
    text = summary(ppca)
    sd = np.sqrt(np.sum(ppca.W_**2, axis=1) + ppca.sigma2_)
    u2 = ppca.sigma2_ / sd**2
    assert _row(text, "x1")[-1] == f"{u2[0]:.3f}"
    assert "rotation: none" in text and "chi-square" not in text   # no S stored: no test


def test_choose_n_components_names_constant_columns_for_fa():
    # the digits have 3 constant pixels; FA on them used to fail deep inside (RuntimeWarnings from
    # log(0), then "S has a non-positive variance"), naming an S the user never passed
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 5)) @ rng.standard_normal((5, 5))
    X[:, 3] = 7.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=r"X has 1 feature\(s\) constant .* \(columns \[3\]\)"):
            choose_n_components(X, 2, model="fa", random_state=0)
        tab = choose_n_components(X, 2, model="ppca", random_state=0)   # PPCA is defined there
    assert np.all(np.isfinite(tab.log_likelihood))


def test_fit_statistics_warns_when_n_is_too_small_for_bartletts_correction():
    # N - 1 - (2D + 5)/6 - 2L/3 <= 0: psych reports chi2 = 0, p = 1 ("perfect fit") silently
    rng = np.random.default_rng(1)
    W, psi = rng.standard_normal((7, 2)), rng.uniform(0.2, 1.0, 7)
    S = W @ W.T + np.diag(psi) + 0.05
    with pytest.warns(UserWarning, match="too small for the chi-square test"):
        fit_statistics(S, 5, W, psi)        # 5 - 1 - 19/6 - 4/3 < 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit_statistics(S, 6, W, psi)        # 6 - 1 - 19/6 - 4/3 = 0.5 > 0


def test_no_test_is_printed_at_zero_or_negative_degrees_of_freedom():
    # R: factanal(covmat=cor(attitude)[1:3, 1:3], factors=1, n.obs=30)$dof is 0 and no STATISTIC;
    # factanal(covmat=cor(attitude), factors=4, n.obs=30) stops: "4 factors are too many for 7
    # variables"; psych::fa reports PVAL = NA and no RMSEA in both cases
    rng = np.random.default_rng(2)
    W1, p1 = rng.standard_normal((3, 1)), rng.uniform(0.2, 1.0, 3)
    S1 = W1 @ W1.T + np.diag(p1)
    st0 = fit_statistics(S1, 50, W1, p1)
    assert st0.dof == 0 and np.isnan(st0.p_value) and np.isnan(st0.rmsea) and np.isnan(st0.bic)
    assert "No test" in str(st0) and "saturated" in str(st0) and "p =" not in str(st0)
    W2 = rng.standard_normal((3, 2))
    st_neg = fit_statistics(W2 @ W2.T + np.diag(p1), 50, W2, p1)
    assert st_neg.dof == -2 and np.isnan(st_neg.p_value)
    assert "more free parameters" in str(st_neg) and "RMSEA" not in str(st_neg)


def test_best_names_the_missing_column_instead_of_all_nan_slice():
    # numpy's "All-NaN slice encountered" said nothing about test_fraction=0 or model='fa'
    X = np.random.default_rng(0).standard_normal((60, 4))
    tab = choose_n_components(X, 1, test_fraction=0, random_state=0)
    with pytest.raises(ValueError, match="test_fraction=0"):
        tab.best("heldout")
    with pytest.raises(ValueError, match="model='ppca'"):
        tab.best("minka")
    assert tab.best("bic") in (0, 1)


def test_choose_n_components_refuses_entries_whose_squares_overflow_by_name():
    # X * 1e160 gave a RuntimeWarning (overflow in S) and LinAlgError "Eigenvalues did not converge"
    X = np.random.default_rng(0).standard_normal((40, 4))
    for model in ("fa", "ppca"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(ValueError, match="X has entries up to .* rescale X"):
                choose_n_components(X * 1e160, 1, model=model, random_state=0)


def test_bic_counts_no_more_parameters_than_the_saturated_gaussian():
    # D = 4: L = 3, 4 have dof < 0 and fit the sample covariance exactly (the saturated model,
    # D + D(D+1)/2 = 14 parameters); counting D + DL - L(L-1)/2 + D = 17, 18 over-penalised them
    from scipy import stats

    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 4)) @ rng.standard_normal((4, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                   # Heywood cases at L >= 3
        tab = choose_n_components(X, 4, "fa", test_fraction=0.0)
    assert list(tab.n_parameters) == [8, 12, 14, 14, 14]
    sat = stats.multivariate_normal(X.mean(axis=0), np.cov(X.T, bias=True)).logpdf(X).mean()
    np.testing.assert_allclose(tab.log_likelihood[3:], sat, rtol=1e-6)
    np.testing.assert_allclose(tab.bic[3:], -2 * 40 * sat + 14 * np.log(40), rtol=1e-6)
