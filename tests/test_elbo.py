import numpy as np
import pytest

from latentmodels import ELBO, ConvergenceWarning, ELBODecreaseError, coordinate_ascent


def test_elbo_record_total_and_frozen():
    e = ELBO(expected_log_lik=-3.0, kl_latent=0.5, kl_params=0.25)
    assert e.total == -3.75
    assert float(e) == -3.75
    with pytest.raises(AttributeError):
        e.total = 0.0
    assert e.as_dict()["total"] == -3.75


def test_ascent_converges_on_a_concave_quadratic():
    # coordinate ascent on f(a, b) = -(a-1)^2 - (b+2)^2 - a*b, each block exact
    s = {"a": 0.0, "b": 0.0}

    def f():
        return -(s["a"] - 1) ** 2 - (s["b"] + 2) ** 2 - s["a"] * s["b"]

    def block_a():  # argmax_a: -2(a-1) - b = 0
        s["a"] = 1 - s["b"] / 2

    def block_b():  # -2(b+2) - a = 0
        s["b"] = -2 - s["a"] / 2

    res = coordinate_ascent([("a", block_a), ("b", block_b)], f, tol=1e-14, max_iter=500)
    assert res.converged
    # closed-form maximiser: solve [[2,1],[1,2]] [a,b] = [2,-4]
    a, b = np.linalg.solve([[2, 1], [1, 2]], [2, -4])
    assert np.isclose(s["a"], a, atol=1e-6) and np.isclose(s["b"], b, atol=1e-6)
    assert np.all(np.diff(res.history) >= -1e-12)
    assert res.block_names[:2] == ["a", "b"]


def test_ascent_raises_on_decrease():
    s = {"v": 0.0}

    def bad():
        s["v"] -= 1.0

    with pytest.raises(ELBODecreaseError, match="lowered the ELBO"):
        coordinate_ascent([("bad", bad)], lambda: s["v"], tol=1e-9, max_iter=5, initial=0.0)


def test_ascent_warns_at_max_iter():
    s = {"v": 0.0}

    def up():
        s["v"] += 1.0

    with pytest.warns(ConvergenceWarning, match="last ELBO change 1 nats"):
        res = coordinate_ascent([("up", up)], lambda: s["v"], tol=1e-9, max_iter=3)
    assert not res.converged and res.n_iter == 3 and res.history == [1.0, 2.0, 3.0]


def test_ascent_rejects_nan():
    with pytest.raises(FloatingPointError):
        coordinate_ascent([("x", lambda: None)], lambda: float("nan"), tol=1e-9, max_iter=2)
