import numpy as np
import pytest
from scipy import special, stats

from latentmodels import nn


@pytest.mark.parametrize("name", sorted(nn.ACTIVATIONS))
def test_each_layer_backward_matches_finite_differences(name):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 4)) * 2
    act = nn.ACTIVATIONS[name]()
    w = rng.standard_normal((5, 4))
    act.forward(x)
    g = act.backward(w)
    h = 1e-6
    fd = (np.sum(w * act.forward(x + h)) - np.sum(w * act.forward(x - h))) / (2 * h)
    # elementwise activations: the directional derivative along the all-ones direction
    assert np.isclose(np.sum(g), fd, rtol=1e-6)


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "softplus"])
def test_mlp_gradients(activation):
    rng = np.random.default_rng(1)
    net = nn.MLP([4, 6, 3], activation, activate_last=False, rng=rng)
    X = rng.standard_normal((7, 4))
    T = rng.standard_normal((7, 3))
    params = {name: p[k] for name, p, _, k in net.named()}
    grads = {name: g[k] for name, _, g, k in net.named()}

    def f():
        R = net.forward(X) - T
        net.backward(R)
        return 0.5 * np.sum(R * R), grads

    errs = nn.gradient_check(f, params, max_entries=None)
    assert max(errs.values()) < 1e-7


def test_stable_functions_against_scipy():
    x = np.array([-800.0, -30.0, -1.0, 0.0, 2.0, 40.0, 800.0])
    np.testing.assert_allclose(nn.sigmoid(x), special.expit(x), rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(nn.softplus(x), np.logaddexp(0, x), rtol=1e-12)
    np.testing.assert_allclose(nn.log_sigmoid(x), special.log_expit(x), rtol=1e-12)
    xb = np.array([[0.0, 1.0, 1.0]])
    logits = np.array([[-3.0, 0.5, 50.0]])
    expected = np.sum(stats.bernoulli.logpmf(xb, special.expit(logits)))
    assert np.isclose(nn.bernoulli_loglik(xb, logits)[0], expected, rtol=1e-12)
    m, lv = np.array([0.3, -1.0]), np.array([0.2, -2.0])
    xg = np.array([[1.0, 0.0]])
    assert np.isclose(nn.gaussian_loglik(xg, m, lv)[0],
                      np.sum(stats.norm.logpdf(xg, m, np.exp(0.5 * lv))), rtol=1e-12)
    assert np.all(np.isfinite(nn.bernoulli_loglik(np.ones((1, 2)), np.array([[-1e4, 1e4]]))))


@pytest.mark.parametrize("name", ["sgd", "adam", "adagrad"])
def test_optimisers_minimise_a_quadratic(name):
    A = np.diag([1.0, 10.0])
    p = {"x": np.array([3.0, -2.0])}
    opt = nn.OPTIMIZERS[name](lr={"sgd": 0.05, "adam": 0.05, "adagrad": 0.5}[name])
    for _ in range(3000):
        opt.step(p, {"x": A @ p["x"]})
    np.testing.assert_allclose(p["x"], 0, atol=1e-3)


def test_adam_first_step_is_lr_times_sign():
    # Kingma & Ba: the bias-corrected first step has magnitude lr (for |g| >> eps)
    p = {"x": np.array([1.0, -1.0])}
    nn.Adam(lr=0.1).step(p, {"x": np.array([5.0, -0.3])})
    np.testing.assert_allclose(p["x"], [0.9, -0.9], rtol=1e-6)
    q = {"x": np.array([1.0])}
    nn.Adam(lr=0.1, maximize=True).step(q, {"x": np.array([2.0])})
    assert np.isclose(q["x"][0], 1.1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adam_follows_kingma_and_ba_algorithm_1_in_the_parameters_dtype(dtype):
    # the rescaled moments of nn.Adam against Algorithm 1 written out in float64, 20 steps of
    # varying gradients; the parameters and the optimiser's state keep their dtype
    rng = np.random.default_rng(0)
    p = {"x": rng.standard_normal(50).astype(dtype)}
    ref = p["x"].astype(np.float64)
    m = np.zeros(50)
    v = np.zeros(50)
    opt = nn.Adam(lr=1e-2)
    for t in range(1, 21):
        g = rng.standard_normal(50) * (1 + t)
        opt.step(p, {"x": g.astype(dtype)})
        g = g.astype(dtype).astype(np.float64)
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        ref -= 1e-2 * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
    assert p["x"].dtype == dtype and all(a.dtype == dtype for a in opt.state["x"][:3])
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(p["x"], ref, rtol=tol, atol=tol)


def test_gradient_check_detects_a_wrong_gradient():
    p = {"w": np.array([1.0, 2.0])}

    def f():
        return float(np.sum(p["w"] ** 3)), {"w": 3 * p["w"] ** 2 + np.array([0.0, 0.1])}

    errs = nn.gradient_check(f, p)
    assert errs["w"] > 1e-3


def test_adam_matches_algorithm_1_written_out():
    # Kingma & Ba (2015), Algorithm 1, step by step, against the rearranged in-place update
    rng = np.random.default_rng(0)
    p = {"x": rng.standard_normal(5)}
    ref = p["x"].copy()
    m = np.zeros(5)
    v = np.zeros(5)
    opt = nn.Adam(lr=0.01)
    for t in range(1, 50):
        g = rng.standard_normal(5)
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        ref = ref - 0.01 * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
        opt.step(p, {"x": g})
    np.testing.assert_allclose(p["x"], ref, rtol=1e-12, atol=1e-14)


def test_bad_settings_of_layers_optimisers_and_the_gradient_check_raise():
    with pytest.raises(ValueError, match="n_in"):
        nn.Linear(0, 3)                            # was: a divide-by-zero RuntimeWarning
    with pytest.raises(ValueError, match="lr"):
        nn.Adam(lr=-1e-3)                          # was: accepted (descends when asked to ascend)
    with pytest.raises(ValueError, match="lr"):
        nn.SGD(lr=np.nan)
    with pytest.raises(ValueError, match=r"betas must lie in \[0, 1\)"):
        nn.Adam(betas=(1.5, 0.9))
    with pytest.raises(TypeError, match="betas"):
        nn.Adam(betas=0.9)
    with pytest.raises(ValueError, match="eps"):
        nn.Adagrad(eps=-1.0)
    p = {"a": np.array([1.0, 2.0])}

    def f():
        return float(np.sum(p["a"] ** 2)), {"a": 2 * p["a"]}

    with pytest.raises(ValueError, match="h must be"):
        nn.gradient_check(f, p, h=0.0)             # was: ZeroDivisionError
    # a non-contiguous parameter would be perturbed through a copy: f() unchanged, fd = 0
    q = {"a": np.ones((3, 4))[:, :2]}
    with pytest.raises(ValueError, match="not contiguous"):
        nn.gradient_check(lambda: (float(np.sum(q["a"] ** 2)), {"a": 2 * q["a"]}), q)
    assert nn.gradient_check(f, p)["a"] < 1e-8
