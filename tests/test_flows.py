import functools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import integrate, special

from latentmodels import nn
from latentmodels.flows import FlowStack, IAFStep, PlanarFlow, fit_flow_to_density, made_masks, sample_flow

L = 4


def _planar(rng, L=L):
    f = PlanarFlow(L, rng=rng)
    # move away from the small initialisation so that every term of the backward pass matters
    f.params["u"][:] = rng.standard_normal(L)
    f.params["w"][:] = rng.standard_normal(L)
    f.params["b"][:] = rng.standard_normal(1)
    return f


def _iaf(rng, reverse, n_context, L=L, n_hidden=7):
    f = IAFStep(L, n_context, n_hidden, reverse, rng=rng)
    for k, v in f.params.items():
        v[...] = rng.standard_normal(v.shape) * 0.7 * f.masks.get(k, 1.0)
    return f


def _check_all_gradients(flow, n_context, rng, N=6):
    """Finite differences of J = Σ c ⊙ z_out + Σ d · logdet w.r.t. z, h and every parameter."""
    z = rng.standard_normal((N, L))
    c = rng.standard_normal((N, L))
    d = rng.standard_normal(N)
    arrays = dict(flow.params)
    arrays["z"] = z
    if n_context:
        arrays["h"] = rng.standard_normal((N, n_context))

    def f():
        flow.zero_grad()
        z_out, logdet = flow.forward(arrays["z"], arrays.get("h"))
        gz, gh = flow.backward(c, d)
        grads = {k: np.array(v) for k, v in flow.grads.items()}
        grads["z"] = gz
        if n_context:
            grads["h"] = gh
        else:
            assert gh is None
        return float(np.sum(c * z_out) + np.sum(d * logdet)), grads

    errs = nn.gradient_check(f, arrays, h=1e-6, max_entries=None)
    assert set(errs) == set(arrays)
    return errs


def test_planar_gradients():
    errs = _check_all_gradients(_planar(np.random.default_rng(0)), 0, np.random.default_rng(1))
    assert max(errs.values()) < 1e-6, errs


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("n_context", [0, 3])
def test_iaf_gradients(reverse, n_context):
    rng = np.random.default_rng(2)
    errs = _check_all_gradients(_iaf(rng, reverse, n_context), n_context, rng)
    assert max(errs.values()) < 1e-6, errs


@pytest.mark.parametrize("kinds", [["iaf"], ["planar", "iaf_rev"], ["iaf", "planar", "iaf_rev"]])
def test_stack_gradients(kinds):
    rng = np.random.default_rng(3)
    n_context = 2
    make = {"planar": lambda: _planar(rng), "iaf": lambda: _iaf(rng, False, n_context),
            "iaf_rev": lambda: _iaf(rng, True, n_context)}
    stack = FlowStack([make[k]() for k in kinds])
    errs = _check_all_gradients(stack, n_context, rng)
    assert len(errs) == sum(len(f.params) for f in stack.flows) + 2
    assert max(errs.values()) < 1e-6, errs


def test_backward_accumulates_and_zero_grad_resets():
    rng = np.random.default_rng(4)
    f = _iaf(rng, False, 2)
    z, h = rng.standard_normal((5, L)), rng.standard_normal((5, 2))
    g, d = rng.standard_normal((5, L)), rng.standard_normal(5)
    f.forward(z, h)
    f.backward(g, d)
    once = {k: v.copy() for k, v in f.grads.items()}
    f.backward(g, d)
    for k in once:
        np.testing.assert_allclose(f.grads[k], 2 * once[k], rtol=1e-12, atol=0)
    f.zero_grad()
    assert all(not np.any(v) for v in f.grads.values())


def _fd_jacobian(flow, z, h=None, eps=1e-5):
    """(N, L, L) central-difference Jacobians ∂z_out/∂z, one per row."""
    N, D = z.shape
    J = np.empty((N, D, D))
    for j in range(D):
        dz = np.zeros_like(z)
        dz[:, j] = eps
        up = flow.forward(z + dz, h)[0]
        down = flow.forward(z - dz, h)[0]
        J[:, :, j] = (up - down) / (2 * eps)
    return J


@pytest.mark.parametrize("which", ["planar", "iaf", "iaf_rev_ctx", "stack"])
def test_logdet_matches_slogdet_of_finite_difference_jacobian(which):
    rng = np.random.default_rng(5)
    h = rng.standard_normal((8, 3)) if which in ("iaf_rev_ctx", "stack") else None
    flow = {"planar": lambda: _planar(rng),
            "iaf": lambda: _iaf(rng, False, 0),
            "iaf_rev_ctx": lambda: _iaf(rng, True, 3),
            "stack": lambda: FlowStack([_planar(rng), _iaf(rng, False, 3), _planar(rng),
                                        _iaf(rng, True, 3)])}[which]()
    z = rng.standard_normal((8, L))
    _, logdet = flow.forward(z, h)
    sign, ref = np.linalg.slogdet(_fd_jacobian(flow, z, h))
    assert np.all(sign > 0)
    np.testing.assert_allclose(logdet, ref, atol=1e-6, rtol=0)
    assert np.ptp(logdet) > 0.1                 # the check is not against a constant


@pytest.mark.parametrize("reverse", [False, True])
def test_iaf_is_autoregressive_in_its_order(reverse):
    rng = np.random.default_rng(6)
    f = _iaf(rng, reverse, 2, L=5, n_hidden=9)
    z, h = rng.standard_normal((3, 5)), rng.standard_normal((3, 2))
    base = f.forward(z, h)[0]
    order = np.arange(5)[::-1] if reverse else np.arange(5)     # variables, first to last
    for pos, j in enumerate(order):
        zp = z.copy()
        zp[:, j] += 0.8
        out = f.forward(zp, h)[0]
        earlier = order[:pos]
        later = order[pos + 1:]
        # outputs earlier in the order do not see z_j at all: bitwise unchanged
        assert np.array_equal(out[:, earlier], base[:, earlier])
        # z_j itself moves only through σ_j z_j
        np.testing.assert_allclose(out[:, j] - base[:, j], nn.sigmoid(_gate(f, z, h))[:, j] * 0.8,
                                   rtol=1e-10)
        # later outputs do depend on it (the network is not trivially masked)
        if later.size:
            assert np.all(np.abs(out[:, later] - base[:, later]).max(axis=0) > 1e-6)
    J = _fd_jacobian(f, z, h)
    tri = np.triu(np.ones((5, 5)), 1) if not reverse else np.tril(np.ones((5, 5)), -1)
    assert np.abs(J * tri).max() < 1e-9                # lower (natural order) / upper (reversed)
    assert np.abs(J * tri.T).min(axis=0).max() > 0     # the other triangle is populated


def _gate(f, z, h):
    """s from the MADE, recomputed independently of IAFStep.forward."""
    P, M = f.params, f.masks
    a = z @ (P["W1"] * M["W1"]) + P["b1"] + h @ P["V"]
    e = np.where(a > 0, a, np.exp(np.minimum(a, 0)) - 1)
    return e @ (P["Ws"] * M["Ws"]) + P["bs"]


def test_made_masks_connectivity():
    M1, M2, deg = made_masks(4, 6, reverse=True)
    np.testing.assert_array_equal(deg, [4, 3, 2, 1])
    # (M1 @ M2)[j, d] counts paths z_j -> output d: nonzero only where deg(j) < deg(d)
    paths = M1 @ M2
    assert np.all((paths > 0) == (deg[:, None] < deg[None, :]))
    M1, M2, _ = made_masks(1, 3)
    assert M1.sum() == 0 and M2.sum() == 3             # L = 1: only context and bias


def test_iaf_initial_gate_is_near_one():
    f = IAFStep(3, 2, 16, rng=0)
    z = np.random.default_rng(0).standard_normal((50, 3))
    _, logdet = f.forward(z, np.ones((50, 2)))
    # bs = +2 and small output weights: σ ≈ sigmoid(2) ≈ 0.881
    np.testing.assert_allclose(logdet / 3, np.log(special.expit(2.0)), atol=0.05)


@given(u=st.lists(st.floats(-5, 5), min_size=3, max_size=3),
       w=st.lists(st.floats(-5, 5), min_size=3, max_size=3),
       b=st.floats(-5, 5), zs=st.lists(st.floats(-5, 5), min_size=3, max_size=3))
def test_planar_invertibility_condition(u, w, b, zs):
    w = np.asarray(w)
    if np.linalg.norm(w) < 1e-3:
        w = w + 1e-3
    f = PlanarFlow(3)
    f.params["u"][:] = u
    f.params["w"][:] = w
    f.params["b"][:] = b
    uh = f.u_hat()[0]
    assert uh @ w > -1 - 1e-12                           # Rezende & Mohamed, Appendix A
    z = np.asarray(zs)[None, :]
    hp = 1 - np.tanh(z @ w + b) ** 2
    assert np.all(1 + hp * (uh @ w) > 0)
    _, logdet = f.forward(z)
    assert np.all(np.isfinite(logdet))


def test_bad_input():
    f = IAFStep(3, 2, 4)
    with pytest.raises(ValueError, match="z must have shape"):
        f.forward(np.zeros((2, 4)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="h .* is required"):
        f.forward(np.zeros((2, 3)))
    with pytest.raises(RuntimeError, match="before forward"):
        PlanarFlow(2).backward(np.zeros((1, 2)), np.zeros(1))
    with pytest.raises(ValueError, match="same n_latent"):
        FlowStack([PlanarFlow(2), PlanarFlow(3)])
    z = np.ones((2, 3))
    f.forward(z, np.zeros((2, 2)))
    assert np.all(z == 1)                                # caller's array untouched


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_is_kept(dtype):
    stack = FlowStack([PlanarFlow(3, rng=0, dtype=dtype), IAFStep(3, 2, 5, True, rng=1, dtype=dtype)])
    z_out, logdet = stack.forward(np.ones((4, 3)), np.ones((4, 2)))
    gz, gh = stack.backward(np.ones((4, 3), dtype), np.ones(4, dtype))
    assert {a.dtype for a in (z_out, logdet, gz, gh)} == {np.dtype(dtype)}
    assert all(v.dtype == dtype for v in list(stack.params.values()) + list(stack.grads.values()))
    assert FlowStack([]).forward(np.ones((2, 3)))[1].shape == (2,)


# ---- density check on Rezende & Mohamed's energy U1 ---------------------------------------------

def _neg_u1(z):
    """−U1 and its gradient (Rezende & Mohamed 2015, Table 1):
    U1(z) = ½((‖z‖ − 2)/0.4)² − log(e^{−½((z1 − 2)/0.6)²} + e^{−½((z1 + 2)/0.6)²})."""
    r = np.sqrt(np.sum(z * z, axis=1))
    a = np.stack([-0.5 * ((z[:, 0] - 2) / 0.6) ** 2, -0.5 * ((z[:, 0] + 2) / 0.6) ** 2], axis=1)
    U = 0.5 * ((r - 2) / 0.4) ** 2 - special.logsumexp(a, axis=1)
    p = special.softmax(a, axis=1)
    grad = (np.where(r > 0, (r - 2) / 0.16 / np.where(r > 0, r, 1), 0))[:, None] * z
    grad[:, 0] += (p[:, 0] * (z[:, 0] - 2) + p[:, 1] * (z[:, 0] + 2)) / 0.36
    return -U, -grad


@functools.lru_cache(maxsize=1)
def _log_z_u1():
    """log ∫ e^{−U1} by Simpson's rule, on a Cartesian grid and, as a second method, a polar one."""
    x = np.linspace(-5, 5, 801)
    X, Y = np.meshgrid(x, x, indexing="ij")
    f = np.exp(_neg_u1(np.column_stack([X.ravel(), Y.ravel()]))[0]).reshape(X.shape)
    cart = integrate.simpson(integrate.simpson(f, x=x, axis=1), x=x)
    r, th = np.linspace(0, 6, 1201), np.linspace(0, 2 * np.pi, 1201)
    R, T = np.meshgrid(r, th, indexing="ij")
    f = np.exp(_neg_u1(np.column_stack([(R * np.cos(T)).ravel(), (R * np.sin(T)).ravel()]))[0])
    polar = integrate.simpson(integrate.simpson(f.reshape(R.shape) * R, x=th, axis=1), x=r)
    return np.log(cart), np.log(polar)


def test_u1_gradient_and_quadrature():
    z = np.random.default_rng(7).standard_normal((5, 2)) * 2
    _, g = _neg_u1(z)
    eps = 1e-6
    fd = np.stack([(_neg_u1(z + eps * e)[0] - _neg_u1(z - eps * e)[0]) / (2 * eps) for e in np.eye(2)], 1)
    np.testing.assert_allclose(g, fd, rtol=1e-7, atol=1e-7)
    cart, polar = _log_z_u1()
    assert abs(cart - polar) < 1e-8


def test_planar_flow_density_on_u1_matches_quadrature_normaliser():
    """K = 8 planar flows on N(0, I), fitted by reverse KL to e^{−U1} with Rezende & Mohamed's
    annealing. For z ~ q: the ELBO E_q[−U1 − log q] ≤ log Z, and the importance-sampling estimate
    log mean exp(−U1 − log q) → log Z. Both Monte Carlo numbers come with standard errors from the
    samples: sd(log w)/√M for the ELBO, and for log Ẑ the delta method, se = sd(w)/(√M mean(w)).
    A q that dropped one of the two lobes would give log Z − log 2 with a small se and fail."""
    log_z = _log_z_u1()[0]
    rng = np.random.default_rng(0)
    flow = FlowStack([PlanarFlow(2, rng=rng) for _ in range(8)])
    hist = fit_flow_to_density(_neg_u1, flow, n_steps=2000, batch_size=256, learning_rate=1e-2,
                               anneal_steps=1200, random_state=rng)
    assert hist[-100:].mean() > hist[1200:1300].mean()        # still improving after annealing
    z, log_q = sample_flow(flow, 20000, rng)
    lw = _neg_u1(z)[0] - log_q
    M = lw.size
    elbo, se_elbo = lw.mean(), lw.std(ddof=1) / np.sqrt(M)
    w = np.exp(lw - lw.max())
    log_z_is = np.log(w.mean()) + lw.max()
    se_is = w.std(ddof=1) / (np.sqrt(M) * w.mean())
    assert se_is < 0.02                                        # informative
    assert abs(log_z_is - log_z) < 4 * se_is, (log_z_is, se_is, log_z)
    assert elbo < log_z + 3 * se_elbo
    assert log_z - elbo > 3 * se_elbo                          # the bound is not tight for a finite flow
    assert 0.3 < np.mean(z[:, 0] > 0) < 0.7                    # both lobes carry mass


def test_works_after_flatten_parameters():
    """vae.py moves parameters into flat buffers (nn.flatten_parameters): the maps must read their
    dicts afresh and write gradients into the rebound views."""
    rng = np.random.default_rng(8)
    stack = FlowStack([_planar(rng), _iaf(rng, True, 2)])
    z, h = rng.standard_normal((4, L)), rng.standard_normal((4, 2))
    ref = stack.forward(z, h)
    stack.zero_grad()
    stack.backward(np.ones((4, L)), np.ones(4))
    ref_grads = {k: v.copy() for k, v in stack.grads.items()}
    flat_p, flat_g = nn.flatten_parameters({"flow": [(p, g, k) for _, p, g, k in stack.named()]})
    out = stack.forward(z, h)
    np.testing.assert_array_equal(out[0], ref[0])
    flat_g["flow"][:] = 0
    stack.backward(np.ones((4, L)), np.ones(4))
    np.testing.assert_array_equal(np.concatenate([v.ravel() for v in ref_grads.values()]), flat_g["flow"])
    assert np.shares_memory(stack.params["0.u"], flat_p["flow"])


def test_bad_arguments_to_flows_and_the_density_fit_get_errors_naming_them():
    rng = np.random.default_rng(0)

    def target(z):
        return -0.5 * np.sum(z * z, axis=1), -z

    with pytest.raises(ValueError, match="dtype"):
        PlanarFlow(2, rng, dtype=int)              # was: accepted, integer parameters
    with pytest.raises(ValueError, match="n_context=0 and would ignore"):
        IAFStep(2, 0, 8, rng=rng).forward(np.zeros((4, 2)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match="n_hidden"):
        made_masks(3, 0)
    flow = PlanarFlow(2, rng)
    for kw, exc, match in ((dict(n_steps=-1), ValueError, "n_steps"),     # was: NumPy's "negative dimensions"
                           (dict(batch_size=0), ValueError, "batch_size"),  # was: ZeroDivisionError
                           (dict(learning_rate=np.nan), ValueError, "learning_rate"),  # was: NaN flow
                           (dict(anneal_steps=-5), ValueError, "anneal_steps")):
        with pytest.raises(exc, match=match):
            fit_flow_to_density(target, flow, **kw)
    with pytest.raises(ValueError, match="must return shapes"):
        fit_flow_to_density(lambda z: (np.zeros(3), np.zeros((3, 2))), flow, n_steps=2)
    with pytest.raises(ValueError, match="NaN"):
        fit_flow_to_density(lambda z: (z[:, 0] * np.nan, z), flow, n_steps=2)   # was: silent NaN
    with pytest.raises(TypeError, match="must return a pair"):
        fit_flow_to_density(lambda z: 1.0, flow, n_steps=2)
    with pytest.raises(TypeError, match="flow must be"):
        fit_flow_to_density(target, "planar", n_steps=2)
    with pytest.raises(ValueError, match="n must be"):
        sample_flow(flow, -1)
    before = {k: v.copy() for k, v in flow.params.items()}
    assert all(np.array_equal(flow.params[k], before[k]) for k in before)   # refusals did no work
