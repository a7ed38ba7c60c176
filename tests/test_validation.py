import numpy as np
import pytest

from latentmodels import PPCA, FactorAnalysis, NotFittedError
from latentmodels.validation import check_covariance, check_random_state

MODELS = [lambda: FactorAnalysis(2), lambda: PPCA(2), lambda: PPCA(2, method="em")]


@pytest.fixture
def X():
    # two factors plus unique noise: FA(2) is well posed on it (no Heywood warning)
    rng = np.random.default_rng(0)
    return rng.standard_normal((200, 2)) @ rng.standard_normal((2, 5)) + rng.standard_normal((200, 5))


@pytest.mark.parametrize("make", MODELS)
@pytest.mark.parametrize("bad,exc,pattern", [
    (lambda X: np.where(np.arange(X.size).reshape(X.shape) == 7, np.nan, X), ValueError, "NaN"),
    (lambda X: np.where(np.arange(X.size).reshape(X.shape) == 3, np.inf, X), ValueError, "infinite"),
    (lambda X: X[:, 0], ValueError, "2-D"),
    (lambda X: X[None], ValueError, "2-D"),
    (lambda X: X[:1], ValueError, "at least 2 sample"),
    (lambda X: X.astype(str), TypeError, "real numbers"),
    (lambda X: X.astype(complex), TypeError, "complex"),
    (lambda X: None, TypeError, "None"),
])
def test_bad_data_gets_a_clear_error(make, X, bad, exc, pattern):
    with pytest.raises(exc, match=pattern):
        make().fit(bad(X))


@pytest.mark.parametrize("cls", [FactorAnalysis, PPCA])
@pytest.mark.parametrize("n", [0, 6, -1])
def test_n_components_out_of_range(cls, X, n):
    with pytest.raises(ValueError, match="n_components"):
        cls(n).fit(X)


@pytest.mark.parametrize("cls", [FactorAnalysis, PPCA])
def test_n_components_wrong_type(cls, X):
    with pytest.raises(TypeError, match="n_components must be an integer"):
        cls(2.5).fit(X)


def test_ppca_needs_fewer_components_than_features_when_learning_sigma2(X):
    with pytest.raises(ValueError, match="n_components < n_features"):
        PPCA(5).fit(X)
    assert PPCA(5, sigma2=0.1).fit(X).W_.shape == (5, 5)


@pytest.mark.parametrize("make", MODELS)
def test_feature_mismatch_and_not_fitted(make, X):
    model = make()
    for method in ("transform", "log_likelihood", "elbo", "posterior", "score_samples"):
        with pytest.raises(NotFittedError, match="not fitted"):
            getattr(model, method)(X)
    with pytest.raises(NotFittedError):
        model.sample(3)
    model.fit(X)
    with pytest.raises(ValueError, match="has 4 features, but .* fitted with 5"):
        model.transform(X[:, :4])


@pytest.mark.parametrize("S,pattern", [
    (np.array([[1.0, 0.5], [0.2, 1.0]]), "symmetric"),
    (np.array([[1.0, 2.0], [2.0, 1.0]]), "positive semi-definite"),
    (np.ones((2, 3)), "square"),
    (np.array([[1.0, np.nan], [np.nan, 1.0]]), "NaN"),
    (np.diag([1.0, 0.0]), "non-positive variance"),
])
def test_bad_covariance(S, pattern):
    with pytest.raises(ValueError, match=pattern):
        FactorAnalysis(1).fit_covariance(S, n_samples=10)
    with pytest.raises(ValueError, match=pattern):
        check_covariance(S)


def test_fit_covariance_checks_n_samples_and_mean():
    S = np.eye(3)
    with pytest.raises(ValueError, match="n_samples"):
        FactorAnalysis(1).fit_covariance(S, n_samples=1)
    with pytest.raises(ValueError, match="mean has 2 entries"):
        FactorAnalysis(1).fit_covariance(S, n_samples=10, mean=np.zeros(2))


def test_hyperparameters_are_checked(X):
    with pytest.raises(ValueError, match="tol"):
        FactorAnalysis(1, tol=-1).fit(X)
    with pytest.raises(ValueError, match="noise"):
        FactorAnalysis(1, noise="full").fit(X)
    with pytest.raises(ValueError, match="method"):
        PPCA(1, method="svd").fit(X)
    with pytest.raises(ValueError, match="sigma2"):
        PPCA(1, sigma2=-1.0).fit(X)
    with pytest.raises(ValueError, match="constant feature"):
        FactorAnalysis(1).fit(np.hstack([X, np.ones((X.shape[0], 1))]))


def test_random_state_forms():
    g = np.random.default_rng(3)
    assert check_random_state(g) is g
    assert check_random_state(5).integers(100) == np.random.default_rng(5).integers(100)
    with pytest.raises(TypeError, match="random_state"):
        check_random_state("seed")


def test_fit_returns_self_and_sets_fitted_attributes(X):
    fa = FactorAnalysis(2)
    assert fa.fit(X) is fa
    for attr in ("W_", "psi_", "mu_", "history_", "n_iter_", "n_features_in_"):
        assert getattr(fa, attr) is not None
    p = PPCA(2)
    assert p.fit(X) is p and p.sigma2_ > 0


def test_ragged_lists_and_strings_are_refused_by_name():
    from latentmodels.validation import check_array

    with pytest.raises(ValueError, match="X must be a rectangular array"):
        check_array([[1.0, 2.0], [3.0]])
    with pytest.raises(TypeError, match="Y must be an array of numbers"):
        check_array("1 2 3", "Y")
    np.testing.assert_array_equal(check_array([[1, 2], [3, 4]]), np.array([[1.0, 2.0], [3.0, 4.0]]))


def test_check_choice_dtype_int_bounds():
    from latentmodels.validation import check_choice, check_dtype, check_int

    assert check_choice("adam", "optimizer", ("adam", "sgd")) == "adam"
    for bad in ("rmsprop", 3, None, ["adam"], True):
        with pytest.raises(ValueError, match="optimizer must be one of"):
            check_choice(bad, "optimizer", ("adam", "sgd"))
    assert check_dtype("float32") == np.float32 and check_dtype(np.float64) == np.float64
    for bad in (int, "nonsense", np.int64, None, object):
        with pytest.raises(TypeError, match="dtype must be one of float32, float64"):
            check_dtype(bad)
    assert check_int(5, "k", minimum=1, maximum=5) == 5
    with pytest.raises(ValueError, match="k must be <= 4"):
        check_int(5, "k", maximum=4)


def test_check_magnitude_at_the_overflow_limit():
    from latentmodels.validation import check_magnitude

    info = np.finfo(np.float64)
    n = 10
    limit = np.sqrt(info.max / (n * 2))           # the limit for a (10, 2) array
    ok = np.full((n, 2), limit * 0.99)
    assert check_magnitude(ok) is ok and np.isfinite(np.sum(ok * ok))
    bad = np.full((n, 2), limit * 1.01)
    with np.errstate(over="ignore"):
        assert not np.isfinite(np.sum(bad * bad))  # the failure the check prevents
    with pytest.raises(ValueError, match="X has entries up to .* rescale X"):
        check_magnitude(bad)
    with pytest.raises(ValueError, match="below the smallest normal float32"):
        check_magnitude(np.full((3, 2), 1e-40), dtype=np.float32)
    check_magnitude(np.zeros((3, 2)))              # all zeros: nothing to lose
