import warnings

import numpy as np
import pytest

from latentmodels.elbo import ELBO, ELBODecreaseError, coordinate_ascent, em_steps, float_error
from latentmodels.validation import ConvergenceWarning


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


# ---- the decrease test, the stopping rule, labelled jumps (issue 8) ------------------------------

def test_a_decrease_within_the_stated_floating_point_error_is_noise():
    s = {"v": 0.0}

    def down():
        s["v"] -= 1e-6

    # the objective's own error is 1e-5: a 1e-6 dip is round-off, not a bug
    res = coordinate_ascent([("down", down)], lambda: s["v"], tol=1e-9, max_iter=3, initial=0.0,
                            error=lambda: 1e-5, param_change=lambda: 0.0, param_tol=0.0)
    assert res.converged
    # the same dip with an error of 1e-8 is a derivation bug
    s["v"] = 0.0
    with pytest.raises(ELBODecreaseError, match="floating-point error"):
        coordinate_ascent([("down", down)], lambda: s["v"], tol=1e-9, max_iter=3, initial=0.0,
                          error=lambda: 1e-8)


def test_convergence_waits_for_the_parameters():
    # L is flat from iteration 2 on, but the parameters keep moving by 2^-k (asked once L is
    # flat, i.e. from iteration 2): stop only at 2^-k <= 1e-3, k = 10, iteration 11
    moves = iter(2.0 ** -np.arange(1, 40))
    res = coordinate_ascent([("x", lambda: None)], lambda: 5.0, tol=1e-9, max_iter=100,
                            param_change=lambda: next(moves), param_tol=1e-3)
    assert res.converged and res.n_iter == 11          # 2^-10 < 1e-3 <= 2^-9


def test_jumps_are_labelled_and_checked():
    s = {"v": 0.0}

    def up():
        s["v"] += 1.0

    def jump():
        s["v"] += 0.5
        return "squarem"

    with pytest.warns(ConvergenceWarning):
        res = coordinate_ascent([("E", up), ("M", up)], lambda: s["v"], tol=1e-9, max_iter=3,
                                jump=jump)
    assert res.steps == ["E", "M", "squarem", "E", "M", "squarem", "E", "M"]
    assert res.history == [1, 2, 2.5, 3.5, 4.5, 5, 6, 7]
    assert list(em_steps(res.history, res.steps)) == [1, 2, 3.5, 4.5, 6, 7]

    def bad_jump():
        s["v"] -= 1.0
        return "bad"

    with pytest.raises(ELBODecreaseError, match="bad update"):
        coordinate_ascent([("E", up)], lambda: s["v"], tol=1e-9, max_iter=3, jump=bad_jump)


def test_convergence_warning_points_at_the_callers_line():
    s = {"v": 0.0}

    def up():
        s["v"] += 1.0

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        coordinate_ascent([("up", up)], lambda: s["v"], tol=1e-9, max_iter=2)
    assert len(caught) == 1 and caught[0].filename == __file__


def test_float_error_is_higham_bound():
    # n eps sum|x|: a sum of 1e16 and -1e16 plus 1 has error bound ~ 2 n eps 1e16
    assert float_error(np.array([1e16, -1e16, 1.0]), n_ops=3) == pytest.approx(
        3 * np.finfo(float).eps * (2e16 + 1))
