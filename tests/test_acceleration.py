import warnings

import numpy as np

from latentmodels.acceleration import Squarem
from latentmodels.elbo import coordinate_ascent
from latentmodels.fa import FactorAnalysis
from latentmodels.validation import ConvergenceWarning


def linear_em(rates, target):
    """A model-free "EM map": θ ← θ + diag(1 − rates)(θ* − θ), monotone for f = −½‖θ − θ*‖²."""
    state = {"theta": np.zeros_like(target)}

    def step():
        state["theta"] = state["theta"] + (1.0 - rates) * (target - state["theta"])

    def value(t):
        return -0.5 * float(np.sum((t - target) ** 2))

    def assign(t):
        state["theta"] = np.array(t, dtype=float)

    return state, step, value, assign


def run(accelerate, rates, target, tol=1e-14):
    state, step, value, assign = linear_em(rates, target)
    sq = Squarem(lambda: state["theta"], value, assign) if accelerate else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        res = coordinate_ascent([("M", step)], lambda: value(state["theta"]), tol=tol,
                                max_iter=20000, error=lambda: 1e-300, jump=sq,
                                param_change=lambda: 0.0)
    return res, state, sq


def test_squarem_cuts_iterations_on_a_slow_linear_map():
    # one coordinate contracts at rate 0.999: plain EM needs ~ log(tol)/log(0.999) ≈ 15000 steps
    rates = np.array([0.999, 0.9, 0.5])
    target = np.array([1.0, -2.0, 3.0])
    plain, s_plain, _ = run(False, rates, target)
    fast, s_fast, sq = run(True, rates, target)
    assert plain.n_iter > 10 * fast.n_iter
    np.testing.assert_allclose(s_fast["theta"], target, atol=1e-6)
    assert sq.n_jumps > 0 and "squarem" in fast.steps
    # every recorded value, jumps included, is non-decreasing (jumps are kept only if they gain)
    assert np.all(np.diff(fast.history) >= 0)


def test_step_control_does_not_depend_on_round_off():
    # First cycle: alpha is clipped to step_max0 = 1, so the proposal IS theta_2. SQUAREM must take
    # it without comparing objective values (which would be equal up to round-off) and grow its
    # step bound deterministically.
    calls = []
    thetas = iter([np.array([0.0]), np.array([0.5]), np.array([0.75])])
    current = {"t": None}

    def theta():
        current["t"] = next(thetas)
        return current["t"]

    def value(t):
        calls.append(t)
        return float(np.random.default_rng(len(calls)).normal() * 1e-14)   # pure noise

    sq = Squarem(theta, value, lambda t: None)
    assert sq() is None and sq() is None and sq() is None   # third call has θ0, θ1, θ2
    assert calls == [] and sq.step_max == 4.0


def test_squarem_proposals_beyond_the_first_follow_the_iterates():
    # the same sequence of iterates gives the same decisions whatever the noise in the objective,
    # as long as the gains are far above it
    rates = np.array([0.99, 0.5])
    target = np.array([2.0, 1.0])
    a, _, sa = run(True, rates, target, tol=1e-10)
    b, _, sb = run(True, rates, target, tol=1e-10)
    assert sa.alphas == sb.alphas and a.n_iter == b.n_iter


def test_fa_squarem_needs_fewer_em_iterations_than_plain_em():
    # a slowly converging FA problem (a near-Heywood feature); both reach the same likelihood
    rng = np.random.default_rng(3)
    W = rng.standard_normal((6, 2))
    W[0] *= 3
    psi = rng.uniform(0.1, 1.0, 6)
    psi[0] = 0.1
    X = rng.standard_normal((400, 2)) @ W.T + rng.standard_normal((400, 6)) * np.sqrt(psi)
    kw = dict(polish=False, n_init=1, tol=1e-8, max_iter=20000)
    plain = FactorAnalysis(2, accelerate=False, **kw).fit(X)
    fast = FactorAnalysis(2, accelerate=True, **kw).fit(X)
    assert fast.n_iter_ < plain.n_iter_ / 2
    # and it stops no lower (both stop short of the maximum: EM crawls here, which is why the
    # default fit adds the polish)
    assert fast.log_likelihood(X) >= plain.log_likelihood(X) - 1e-9
    assert "squarem" in fast.history_steps_


def test_current_value_replaces_the_evaluation_at_the_current_state():
    # the same objective supplied for θ2 by the caller: the same iterates, one evaluation fewer
    # per proposal cycle
    rates = np.array([0.999, 0.9, 0.5])
    target = np.array([1.0, -2.0, 3.0])
    results = []
    for supplied in (False, True):
        state, step, value, assign = linear_em(rates, target)
        calls = {"n": 0}

        def counted(t, value=value, calls=calls):
            calls["n"] += 1
            return value(t)
        sq = Squarem(lambda state=state: state["theta"], counted, assign,
                     current_value=(lambda state=state, value=value: value(state["theta"]))
                     if supplied else None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            res = coordinate_ascent([("M", step)], lambda s=state, v=value: v(s["theta"]),
                                    tol=1e-14, max_iter=20000, error=lambda: 1e-300, jump=sq,
                                    param_change=lambda: 0.0)
        results.append((res, state["theta"].copy(), calls["n"], sq.n_proposals))
    (r0, t0, n0, p0), (r1, t1, n1, p1) = results
    np.testing.assert_array_equal(t0, t1)
    assert r0.history == r1.history and p0 == p1
    # supplied: only the proposals go through `value`; otherwise θ2 is evaluated there as well
    assert n1 == p1 and n0 > n1
