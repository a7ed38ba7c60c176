"""Posterior families beyond the diagonal Gaussian: planar flows and inverse autoregressive flows.

Why flows: the third explanation of blurry VAE samples
------------------------------------------------------
The VAE maximises the ELBO, not log p(x). The two differ by KL(q(z|x) || p(z|x)), so training
pushes the *decoder* towards models whose true posterior p(z|x) is easy for the encoder's family
to match. With a diagonal Gaussian q, that favours decoders whose posteriors are nearly Gaussian and
axis-aligned, which in practice means decoders that explain x with a smooth, averaged mean: blur
(the lecture's third explanation, citing Kingma et al. 2016). Enrich the family and the penalty
shrinks.

A normalising flow does that cheaply. Draw z₀ ~ q₀(z|x) = N(μ(x), diag σ²(x)) as before, then push
it through K invertible maps z_k = f_k(z_{k−1}). The change-of-variables formula (Rezende & Mohamed
2015, §3.1) gives the density of the result exactly:

    log q_K(z_K | x) = log q₀(z₀ | x) − Σ_k log |det ∂f_k/∂z_{k−1}|,

so the ELBO E_q[log p(x, z_K) − log q_K(z_K|x)] only needs each map's log-determinant
(``logdet`` below), evaluated at the sampled points. The maps are chosen so that this
determinant costs O(L) instead of O(L³):

* :class:`PlanarFlow` — f(z) = z + û tanh(wᵀz + b), a rank-one "ridge" bend; its Jacobian is
  I + û ψᵀ, whose determinant is 1 + ûᵀψ (matrix determinant lemma).
* :class:`IAFStep` — an affine autoregressive map whose shift and gate are computed from the
  *earlier* coordinates by a masked network (MADE), so the Jacobian is triangular and its
  log-determinant is the sum of the log-diagonal.
* :class:`FlowStack` — a sequence of either, log-determinants summed.

Interface (every class): ``params`` and ``grads`` dicts (name → array), ``named(prefix)`` giving
``(name, params, grads, key)`` tuples in the style of :meth:`latentmodels.nn.MLP.named`,
``forward(z, h=None) -> (z_out, logdet)`` with ``z`` (N, L), the encoder context ``h`` (N, C) (used by
IAF steps; others ignore it) and ``logdet`` (N,), and ``backward(grad_z_out, grad_logdet) -> (grad_z,
grad_h)``, which *adds* the parameter gradients into ``grads`` using the cache of the last forward
(``grad_h`` is None for maps without context). ``zero_grad()`` resets ``grads``.

Choice: the flow parameters are global (one set per map, learned with the decoder), not amortised
(emitted by the encoder per data point); only the IAF steps see x, through the context h. That is
Kingma et al.'s design for IAF and the simpler of Rezende & Mohamed's two options for planar flows.
"""

from __future__ import annotations

import numpy as np

from .nn import Adam, log_sigmoid, sigmoid, softplus
from .validation import check_int, check_positive, check_random_state

__all__ = ["PlanarFlow", "IAFStep", "FlowStack", "made_masks", "fit_flow_to_density", "sample_flow"]


def _check_dtype(dtype):
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or dt.name not in ("float32", "float64"):
        raise ValueError(f"dtype must be np.float32 or np.float64, got {dtype!r}")
    return dt


def _check_z(z, n_latent, dtype, name="z"):
    z = np.array(z, dtype=dtype, copy=True)          # never keep the caller's array
    if z.ndim != 2 or z.shape[1] != n_latent:
        raise ValueError(f"{name} must have shape (n_samples, {n_latent}), got {z.shape}")
    if not np.all(np.isfinite(z)):
        raise ValueError(f"{name} contains NaN or inf")
    return z


def _check_grads(grad_z_out, grad_logdet, shape, dtype):
    g = np.asarray(grad_z_out, dtype=dtype)
    if g.shape != shape:
        raise ValueError(f"grad_z_out must have shape {shape} (that of the last forward's z_out), "
                         f"got {g.shape}")
    if grad_logdet is None:
        gl = np.zeros(shape[0], dtype=dtype)
    else:
        gl = np.asarray(grad_logdet, dtype=dtype)
        if gl.shape != (shape[0],):
            raise ValueError(f"grad_logdet must have shape ({shape[0]},), got {gl.shape}")
    return g, gl


class _Flow:
    """Shared bookkeeping: named parameters, zero_grad, the forward cache guard."""

    n_context = 0

    def named(self, prefix=""):
        """(name, params, grads, key) of every parameter array, as :meth:`nn.MLP.named`."""
        return [(f"{prefix}{k}", self.params, self.grads, k) for k in self.params]

    def zero_grad(self):
        for g in self.grads.values():
            g[...] = 0

    def _cached(self):
        if getattr(self, "_cache", None) is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        return self._cache


# ---- planar flow ------------------------------------------------------------------------------

class PlanarFlow(_Flow):
    r"""Planar flow f(z) = z + û h(wᵀz + b), h = tanh (Rezende & Mohamed 2015, §4.1, eq. 10).

    Parameters ``u``, ``w`` (L,) and ``b`` (1,), global (not amortised).

    Invertibility (their Appendix A). f is invertible when wᵀû ≥ −1; the unconstrained u is mapped to

        û = u + (m(wᵀu) − wᵀu) w / ‖w‖²,    m(a) = −1 + softplus(a),

    so that wᵀû = m(wᵀu) > −1 exactly. (‖w‖ = 0 is excluded: the map is then the identity shift
    z + û tanh(b) but û is undefined; the random initialisation never starts there.)

    Log-determinant (their eq. 11–12). With a = wᵀz + b and ψ = h'(a) w, the Jacobian is I + û ψᵀ,
    and by the matrix determinant lemma det = 1 + ûᵀψ = 1 + h'(a) m(wᵀu), which is > 0 since
    h' = 1 − tanh² ∈ (0, 1] and m > −1. Hence logdet = log(1 + h'(a) m).

    Backward. For J with ḡ = ∂J/∂z_out and ℓ̄ = ∂J/∂logdet (per row), using h'' = −2 h h':
      ∂J/∂a   = (ḡ·û) h'(a) + ℓ̄ m h''(a) / det
      ∂J/∂z   = ḡ + (∂J/∂a) w,           ∂J/∂b = Σ_n ∂J/∂a_n
      ∂J/∂û   = Σ_n ḡ_n tanh(a_n),        ∂J/∂m = Σ_n ℓ̄_n h'(a_n) / det_n
    and through û(u, w) with c = m − wᵀu, s = m'(wᵀu) = σ(wᵀu), r = ∂J/∂û · w / ‖w‖²:
      ∂J/∂u  = ∂J/∂û + (s − 1) r w + (∂J/∂m) s w
      ∂J/∂w += Σ_n (∂J/∂a_n) z_n + (s − 1) r u + c ∂J/∂û / ‖w‖² − 2 c r w / ‖w‖² + (∂J/∂m) s u.
    """

    def __init__(self, n_latent, rng=None, dtype=np.float64, *, init_scale=0.1):
        if int(n_latent) != n_latent or n_latent < 1:
            raise ValueError(f"n_latent must be a positive integer, got {n_latent!r}")
        self.dtype = _check_dtype(dtype)
        rng = check_random_state(rng)
        self.n_latent = int(n_latent)
        L = self.n_latent
        self.params = {"u": (init_scale * rng.standard_normal(L)).astype(dtype),
                       "w": (init_scale * rng.standard_normal(L)).astype(dtype),
                       "b": np.zeros(1, dtype=dtype)}
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self._cache = None

    def u_hat(self):
        """The constrained û (a new array) and the scalars used by the backward pass."""
        u, w = self.params["u"], self.params["w"]
        uw = float(u @ w)
        ww = float(w @ w)
        m = -1.0 + float(softplus(uw))
        return u + ((m - uw) / ww) * w, uw, ww, m

    def forward(self, z, h=None):
        """z_out = z + û tanh(wᵀz + b), logdet = log(1 + (1 − tanh²(wᵀz + b)) m(wᵀu)); h is ignored."""
        z = _check_z(z, self.n_latent, self.dtype)
        uh, uw, ww, m = self.u_hat()
        a = z @ self.params["w"] + self.params["b"][0]
        t = np.tanh(a)
        hp = 1 - t * t
        det = 1 + hp * m
        z_out = z + t[:, None] * uh
        self._cache = (z, uh, uw, ww, m, t, hp, det)
        return z_out, np.log(det)

    def backward(self, grad_z_out, grad_logdet=None):
        z, uh, uw, ww, m, t, hp, det = self._cached()
        g, gl = _check_grads(grad_z_out, grad_logdet, z.shape, self.dtype)
        u, w = self.params["u"], self.params["w"]
        ga = (g @ uh) * hp + gl * (m * (-2 * t * hp) / det)
        grad_z = g + ga[:, None] * w
        g_uh = t @ g
        g_m = float(np.sum(gl * hp / det))
        s = float(sigmoid(uw))
        c = m - uw
        r = float(g_uh @ w) / ww
        self.grads["b"] += np.sum(ga)
        self.grads["u"] += g_uh + ((s - 1) * r + g_m * s) * w
        self.grads["w"] += (z.T @ ga + ((s - 1) * r + g_m * s) * u + (c / ww) * g_uh
                            - (2 * c * r / ww) * w)
        return grad_z, None


# ---- inverse autoregressive flow --------------------------------------------------------------

def made_masks(n_latent, n_hidden, reverse=False):
    """MADE masks (Germain et al. 2015, eq. 12–13) for one hidden layer.

    Input degrees: variable d gets the position of d in the autoregressive order (1..L), i.e.
    d + 1, or L − d when ``reverse``. Hidden unit k gets degree m(k) ∈ {1, …, L − 1}, assigned
    cyclically (deterministic, every degree used when n_hidden ≥ L − 1); for L = 1 all hidden units
    get degree 0 (they see only the context). Masks:
        input → hidden   M1[d, k] = [m(k) ≥ deg(d)]
        hidden → output  M2[k, d] = [deg(d) > m(k)]
    so output d depends on z_j only through paths with deg(j) ≤ m(k) < deg(d): strictly earlier
    variables. Returns (M1 (L, H), M2 (H, L), deg (L,)).
    """
    L, H = check_int(n_latent, "n_latent"), check_int(n_hidden, "n_hidden")
    deg = np.arange(1, L + 1)
    if reverse:
        deg = deg[::-1].copy()
    if L > 1:
        hid = np.arange(H) % (L - 1) + 1
    else:
        hid = np.zeros(H, dtype=int)
    M1 = (hid[None, :] >= deg[:, None]).astype(float)
    M2 = (deg[None, :] > hid[:, None]).astype(float)
    return M1, M2, deg


class IAFStep(_Flow):
    r"""One inverse autoregressive flow step (Kingma et al. 2016, §4 and the pseudo-code of
    their Algorithm 1, the numerically stable LSTM-type update), with a one-hidden-layer MADE
    (Germain et al. 2015).

    Autoregressive network, context h from the encoder entering the hidden layer unmasked:
        a  = z (W1 ⊙ M1) + h V + b1,        e = ELU(a)
        m  = e (Wm ⊙ M2) + bm,              s = e (Ws ⊙ M2) + bs
    Update:  σ = sigmoid(s),  z_out = σ ⊙ z + (1 − σ) ⊙ m.
    Because m_d and s_d depend only on variables earlier than d in the order (masks, see
    :func:`made_masks`), ∂z_out/∂z is triangular with diagonal σ (lower triangular in the natural
    order, upper with ``reverse=True``), so logdet = Σ_d log σ_d (Kingma et al. §4, the "l ← l − Σ log σ"
    line of Algorithm 1). Alternate ``reverse`` between steps so each variable gets to depend
    on every other one.

    Initialisation: ``bs = gate_bias`` (default +2, Kingma et al.'s advice "close to +1 or +2") so
    σ starts near 1 and the step near the identity; output weights small (×0.1).

    Activation: ELU (Clevert et al. 2016), because it is C¹ (finite-difference checks are clean,
    unlike ReLU's kink), does not saturate for positive inputs (unlike tanh) and keeps a gradient
    for negative ones (no dead units): ELU(a) = a for a > 0, eᵃ − 1 otherwise; ELU'(a) = 1 or
    ELU(a) + 1.

    Backward, with ḡ = ∂J/∂z_out and ℓ̄ = ∂J/∂logdet (per row):
      ∂J/∂m = ḡ ⊙ (1 − σ),   ∂J/∂s = ḡ ⊙ (z − m) ⊙ σ(1 − σ) + ℓ̄ (1 − σ)     [d log σ/ds = 1 − σ]
      ∂J/∂e = ∂J/∂m (Wm ⊙ M2)ᵀ + ∂J/∂s (Ws ⊙ M2)ᵀ,   ∂J/∂a = ∂J/∂e ⊙ ELU'(a)
      ∂J/∂z = ḡ ⊙ σ + ∂J/∂a (W1 ⊙ M1)ᵀ,             ∂J/∂h = ∂J/∂a Vᵀ
      ∂W1 = (zᵀ ∂J/∂a) ⊙ M1, ∂V = hᵀ ∂J/∂a, ∂b1 = Σ_n ∂J/∂a, ∂Wm = (eᵀ ∂J/∂m) ⊙ M2, ∂bm = Σ_n ∂J/∂m,
      and likewise for Ws, bs. Masked entries of the weights are zero and get zero gradient.
    """

    def __init__(self, n_latent, n_context=0, n_hidden=32, reverse=False, rng=None, dtype=np.float64,
                 *, gate_bias=2.0):
        for name, v, lo in (("n_latent", n_latent, 1), ("n_context", n_context, 0),
                            ("n_hidden", n_hidden, 1)):
            if int(v) != v or v < lo:
                raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
        self.dtype = _check_dtype(dtype)
        rng = check_random_state(rng)
        self.n_latent, self.n_context, self.n_hidden = int(n_latent), int(n_context), int(n_hidden)
        self.reverse = bool(reverse)
        L, C, H = self.n_latent, self.n_context, self.n_hidden
        M1, M2, self.degrees = made_masks(L, H, self.reverse)
        self.masks = {"W1": M1.astype(dtype), "Wm": M2.astype(dtype), "Ws": M2.astype(dtype)}
        fan_in = max(int(M1.sum(axis=0).max()) + C, 1)
        p = {"W1": rng.standard_normal((L, H)) / np.sqrt(fan_in) * M1,
             "b1": np.zeros(H),
             "Wm": 0.1 * rng.standard_normal((H, L)) / np.sqrt(H) * M2,
             "bm": np.zeros(L),
             "Ws": 0.1 * rng.standard_normal((H, L)) / np.sqrt(H) * M2,
             "bs": np.full(L, float(gate_bias))}
        if C:
            p["V"] = rng.standard_normal((C, H)) / np.sqrt(fan_in)
        self.params = {k: v.astype(dtype) for k, v in p.items()}
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self._cache = None

    def _check_h(self, h, n):
        if not self.n_context:
            if h is not None:
                raise ValueError("this IAFStep was built with n_context=0 and would ignore the "
                                 "context h; build it with n_context=h.shape[1], or pass h=None")
            return None
        if h is None:
            raise ValueError(f"h (the context, shape (n_samples, {self.n_context})) is required: "
                             f"this IAFStep was built with n_context={self.n_context}")
        h = _check_z(h, self.n_context, self.dtype, name="h")
        if h.shape[0] != n:
            raise ValueError(f"h must have as many rows as z ({n}), got {h.shape[0]}")
        return h

    def forward(self, z, h=None):
        """z_out = σ ⊙ z + (1 − σ) ⊙ m with [m, s] = MADE(z, h), σ = sigmoid(s); logdet = Σ log σ."""
        z = _check_z(z, self.n_latent, self.dtype)
        h = self._check_h(h, z.shape[0])
        P, M = self.params, self.masks
        W1m, Wmm, Wsm = P["W1"] * M["W1"], P["Wm"] * M["Wm"], P["Ws"] * M["Ws"]
        a = z @ W1m + P["b1"]
        if h is not None:
            a += h @ P["V"]
        e = np.where(a > 0, a, np.expm1(np.minimum(a, 0)))
        m = e @ Wmm + P["bm"]
        s = e @ Wsm + P["bs"]
        sig = sigmoid(s)
        z_out = sig * z + (1 - sig) * m
        logdet = np.sum(log_sigmoid(s), axis=1)
        self._cache = (z, h, a, e, m, sig, W1m, Wmm, Wsm)
        return z_out, logdet

    def backward(self, grad_z_out, grad_logdet=None):
        z, h, a, e, m, sig, W1m, Wmm, Wsm = self._cached()
        g, gl = _check_grads(grad_z_out, grad_logdet, z.shape, self.dtype)
        G, M = self.grads, self.masks
        one_m = 1 - sig
        g_m = g * one_m
        g_s = g * (z - m) * sig * one_m + gl[:, None] * one_m
        G["Wm"] += (e.T @ g_m) * M["Wm"]
        G["bm"] += g_m.sum(axis=0)
        G["Ws"] += (e.T @ g_s) * M["Ws"]
        G["bs"] += g_s.sum(axis=0)
        g_a = (g_m @ Wmm.T + g_s @ Wsm.T) * np.where(a > 0, 1.0, e + 1)
        G["W1"] += (z.T @ g_a) * M["W1"]
        G["b1"] += g_a.sum(axis=0)
        grad_z = g * sig + g_a @ W1m.T
        grad_h = None
        if h is not None:
            G["V"] += h.T @ g_a
            grad_h = g_a @ self.params["V"].T
        return grad_z, grad_h


# ---- stacks -----------------------------------------------------------------------------------

class FlowStack(_Flow):
    """z_K = f_K ∘ … ∘ f_1 (z₀), logdet = Σ_k logdet_k (Rezende & Mohamed 2015, §3.1).

    Backward runs the maps in reverse order; every map receives the same ∂J/∂logdet (the total
    is a sum), and the context gradients of the maps that take h are summed (h feeds each of them).
    ``params``/``grads`` are views named ``"{k}.{name}"`` built on each access from the maps' own
    dicts, so they stay valid after :func:`latentmodels.nn.flatten_parameters` rebinds them.
    An empty stack is the identity with logdet 0.
    """

    def __init__(self, flows):
        self.flows = list(flows)
        for f in self.flows:
            if not isinstance(f, _Flow):
                raise TypeError(f"flows must be flow objects (PlanarFlow, IAFStep, FlowStack), got "
                                f"{type(f).__name__}")
        Ls = {f.n_latent for f in self.flows}
        if len(Ls) > 1:
            raise ValueError(f"all flows must have the same n_latent, got {sorted(Ls)}")
        self.n_latent = Ls.pop() if Ls else None
        self.n_context = max([f.n_context for f in self.flows], default=0)

    def __len__(self):
        return len(self.flows)

    @property
    def params(self):
        return {f"{i}.{k}": v for i, f in enumerate(self.flows) for k, v in f.params.items()}

    @property
    def grads(self):
        return {f"{i}.{k}": v for i, f in enumerate(self.flows) for k, v in f.grads.items()}

    def named(self, prefix=""):
        return [t for i, f in enumerate(self.flows) for t in f.named(f"{prefix}{i}.")]

    def zero_grad(self):
        for f in self.flows:
            f.zero_grad()

    def forward(self, z, h=None):
        if not self.flows:
            z = np.array(z, copy=True)
            if z.ndim != 2:
                raise ValueError(f"z must have shape (n_samples, n_latent), got {z.shape}")
            return z, np.zeros(z.shape[0], dtype=z.dtype)
        total = 0
        for f in self.flows:
            z, ld = f.forward(z, h)
            total = total + ld
        self._ran = True
        return z, total

    def backward(self, grad_z_out, grad_logdet=None):
        if not self.flows:
            return np.array(grad_z_out, copy=True), None
        if not getattr(self, "_ran", False):
            raise RuntimeError("FlowStack.backward called before forward")
        g, grad_h = grad_z_out, None
        for f in reversed(self.flows):
            g, gh = f.backward(g, grad_logdet)
            if gh is not None:
                grad_h = gh if grad_h is None else grad_h + gh
        return g, grad_h


# ---- fitting a flow to an unnormalised density ------------------------------------------------

def _check_flow(flow):
    if not isinstance(flow, _Flow):
        raise TypeError(f"flow must be a PlanarFlow, IAFStep or FlowStack, got {type(flow).__name__}")


def _call_target(log_target, z):
    """log_target(z) checked: a pair (log p̃ (N,), ∇ log p̃ (N, L)) of finite real arrays."""
    out = log_target(z)
    if not isinstance(out, tuple) or len(out) != 2:
        raise TypeError("log_target(z) must return a pair (log p(z) of shape (N,), its gradient "
                        f"of shape (N, L)), got {type(out).__name__}")
    lp, grad = np.asarray(out[0], dtype=np.float64), np.asarray(out[1], dtype=np.float64)
    if lp.shape != z.shape[:1] or grad.shape != z.shape:
        raise ValueError(f"log_target(z) for z of shape {z.shape} must return shapes {z.shape[:1]} "
                         f"and {z.shape}, got {lp.shape} and {grad.shape}")
    if not (np.all(np.isfinite(lp)) and np.all(np.isfinite(grad))):
        raise ValueError("log_target(z) returned NaN or infinite values at draws of the flow")
    return lp, grad


def sample_flow(flow, n, random_state=None, h=None):
    """Draw n points z_K = flow(z₀), z₀ ~ N(0, I), and their log-density
    log q_K(z_K) = log N(z₀; 0, I) − logdet (Rezende & Mohamed 2015, §3.1). Returns (z, log_q)."""
    _check_flow(flow)
    n = check_int(n, "n")
    rng = check_random_state(random_state)
    L = flow.n_latent
    z0 = rng.standard_normal((n, L))
    log_q0 = -0.5 * np.sum(z0 * z0, axis=1) - 0.5 * L * np.log(2 * np.pi)
    z, logdet = flow.forward(z0, h)
    return z, log_q0 - logdet


def fit_flow_to_density(log_target, flow, *, n_steps=1000, batch_size=256, learning_rate=1e-2,
                        anneal_steps=0, random_state=None):
    """Fit q_K = flow(N(0, I)) to an unnormalised density p̃ = e^{log_target} by stochastic
    maximisation of the ELBO  E_q[log p̃(z) − log q_K(z)] = log Z − KL(q_K || p̃/Z)
    (reverse KL, Rezende & Mohamed 2015 §6.1), with pathwise gradients and Adam.

    ``log_target(z)`` returns ``(log p̃(z) (N,), ∇_z log p̃(z) (N, L))``. Since
    log q_K(z_K) = log q₀(z₀) − logdet and q₀ does not depend on the parameters,
    ∂ELBO/∂z_K = ∇ log p̃(z_K) / N and ∂ELBO/∂logdet = 1/N per sample. Modifies ``flow`` in place
    and returns the per-step ELBO estimates (an array of length n_steps, of the annealed target
    while annealing).

    ``anneal_steps > 0`` fits β log p̃ with the inverse temperature β_t = min(1, 0.01 + t/anneal_steps)
    (Rezende & Mohamed 2015, §6.1): early on the target is nearly flat, so q spreads over every mode
    before they sharpen; reverse KL alone is mode-seeking and drops separated modes.
    """
    if not callable(log_target):
        raise TypeError(f"log_target must be a function of z, got {log_target!r}")
    _check_flow(flow)
    n_steps = check_int(n_steps, "n_steps")
    batch_size = check_int(batch_size, "batch_size")
    learning_rate = check_positive(learning_rate, "learning_rate")
    anneal_steps = check_int(anneal_steps, "anneal_steps", minimum=0)
    rng = check_random_state(random_state)
    opt = Adam(lr=learning_rate, maximize=True)
    history = np.empty(n_steps)
    for step in range(n_steps):
        z, log_q = sample_flow(flow, batch_size, rng)
        lp, grad = _call_target(log_target, z)
        beta = min(1.0, 0.01 + step / anneal_steps) if anneal_steps > 0 else 1.0
        history[step] = np.mean(beta * lp - log_q)
        flow.zero_grad()
        flow.backward((beta / batch_size) * grad, np.full(batch_size, 1.0 / batch_size))
        opt.step(flow.params, flow.grads)
    return history
