import numpy as np
import pytest

from latentmodels.estimators import (
    pathwise_gradients,
    quadratic,
    quadratic_exact_variances,
    score_function_gradients,
)


@pytest.mark.parametrize("k", [-2.0, 0.0, 1.0, 3.0])
def test_single_sample_variances_match_the_hand_derived_values(k):
    n = 400_000
    f, df = quadratic(k)
    exact = quadratic_exact_variances(k, 1.0, 1.0)
    for name, g in (("score", score_function_gradients(f, 1.0, 1.0, n, random_state=1)),
                    ("pathwise", pathwise_gradients(df, 1.0, 1.0, n, random_state=2))):
        # both unbiased: means within 5 standard errors of the true gradient (2d, 2σ)
        se_mean = np.sqrt(exact[name] / n)
        assert np.all(np.abs(g.mean(0) - exact["true_gradient"]) < 5 * se_mean)
        # sample variances within 5 of their own standard errors: se(s²) = sqrt((m4 - s⁴)/n)
        var = g.var(0, ddof=1)
        m4 = np.mean((g - g.mean(0)) ** 4, axis=0)
        se_var = np.sqrt((m4 - var**2) / n)
        assert np.all(np.abs(var - exact[name]) < 5 * se_var), (name, var, exact[name])
    assert np.all(exact["score"] > exact["pathwise"])


def test_exact_variances_at_mu_sigma_one():
    # the numbers quoted in the module docstring, from the formulas with d = 1, σ = 1
    v = quadratic_exact_variances(0.0)
    np.testing.assert_allclose(v["score"], [30.0, 136.0])
    np.testing.assert_allclose(v["pathwise"], [4.0, 12.0])


def test_bad_sigma_and_mu():
    with pytest.raises(ValueError, match="sigma"):
        pathwise_gradients(lambda x: x, 0.0, -1.0, 10)
    for f in (pathwise_gradients, score_function_gradients):
        with pytest.raises(ValueError, match="mu"):
            f(lambda x: x, float("nan"), 1.0, 10)
        with pytest.raises(TypeError, match="mu"):
            f(lambda x: x, "0", 1.0, 10)


def test_bad_functions_and_settings_get_errors_naming_them():
    """f/df that are not functions, return the wrong shape or NaN, and k/σ out of range used to
    surface as NumPy's broadcast error, a ZeroDivisionError, or silent NaN estimates."""
    f, df = quadratic(0.0)
    with pytest.raises(TypeError, match="f must be a vectorised function"):
        score_function_gradients(3, 1.0, 1.0, 5)
    with pytest.raises(ValueError, match=r"f\(x\) must return one real number per draw"):
        score_function_gradients(lambda x: x[:2], 1.0, 1.0, 5)
    with pytest.raises(ValueError, match=r"df\(x\) returned NaN"):
        pathwise_gradients(lambda x: x * np.nan, 1.0, 1.0, 5)
    with pytest.raises(ValueError, match="sigma"):
        quadratic_exact_variances(0.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="sigma"):
        quadratic_exact_variances(0.0, 1.0, -1.0)      # was: variances of a negative σ, silently
    with pytest.raises(ValueError, match="k must be finite"):
        quadratic_exact_variances(np.nan)
    with pytest.raises(TypeError, match="k must be a real number"):
        quadratic("a")
    # a valid call is unchanged: the score ∂μ estimate is f(x)(x − μ)/σ² on the same draws
    x = 1.0 + 2.0 * np.random.default_rng(3).standard_normal(4)
    np.testing.assert_allclose(score_function_gradients(f, 1.0, 2.0, 4, 3)[:, 0], x ** 2 * (x - 1) / 4)
