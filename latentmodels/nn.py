"""Hand-written neural-network pieces: layers with forward and backward side by side, optimisers,
stable log-likelihoods and a finite-difference gradient check. No autograd.

Each layer keeps only what its backward pass needs from the last forward pass. ``backward(g)``
takes ∂J/∂(output), writes ∂J/∂(parameters) into the layer's ``grads`` (preallocated, same
shapes as ``params``) and returns ∂J/∂(input).
"""

from __future__ import annotations

import math

import numpy as np

from .validation import check_int, check_positive, check_random_state

# ---- stable elementwise functions ------------------------------------------------------------

def sigmoid(x):
    """σ(x) = 1/(1 + e^{−x}) without overflow: with e = e^{−|x|}, σ = 1/(1 + e) for x ≥ 0 and
    e/(1 + e) for x < 0, accurate to full relative precision in both tails."""
    e = np.exp(-np.abs(x))
    r = 1.0 / (1.0 + e)
    return np.where(x >= 0, r, e * r)


def softplus(x):
    """log(1 + e^x) = max(x, 0) + log1p(e^{−|x|}), finite for every x."""
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


def log_sigmoid(x):
    """log σ(x) = −softplus(−x)."""
    return -softplus(-x)


def bernoulli_loglik(x, logits):
    """Row-wise Σ_d log Bern(x_d | σ(l_d)) = Σ_d [x_d l_d − softplus(l_d)] (BCE with logits)."""
    return np.sum(x * logits - softplus(logits), axis=-1)


def bernoulli_loglik_and_grad(x, logits):
    """Row-wise Bernoulli log-likelihood and its gradient x − σ(l), sharing one e^{−|l|}:
    softplus(l) = max(l, 0) + log1p(e^{−|l|}) and σ(l) = exp(l − softplus(l)).

    In float32, log(1 + e) replaces log1p(e): NumPy's float32 log1p is not vectorised (7× slower
    than log here), and for e ∈ (0, 1] the absolute error of 1 + e is below 6e-8."""
    sp = np.abs(logits)
    np.negative(sp, out=sp)
    np.exp(sp, out=sp)
    if sp.dtype == np.float32:
        sp += 1.0
        np.log(sp, out=sp)
    else:
        np.log1p(sp, out=sp)
    sp += np.maximum(logits, 0)                       # softplus(l)
    ll = np.sum(x * logits, axis=-1) - np.sum(sp, axis=-1)
    np.subtract(logits, sp, out=sp)
    np.exp(sp, out=sp)                                # σ(l)
    np.subtract(x, sp, out=sp)                        # x − σ(l)
    return ll, sp


def gaussian_loglik(x, mean, log_var):
    """Row-wise Σ_d log N(x_d | m_d, e^{v_d}) = −½ Σ_d [log 2π + v_d + (x_d − m_d)² e^{−v_d}]."""
    r = x - mean
    return -0.5 * np.sum(np.log(2 * np.pi) + log_var + r * r * np.exp(-log_var), axis=-1)


# ---- layers ------------------------------------------------------------------------------------

class Linear:
    """y = x W + b.  Backward: ∂W = xᵀ g, ∂b = Σ_rows g, ∂x = g Wᵀ."""

    def __init__(self, n_in, n_out, *, rng=None, dtype=np.float64, gain=1.0):
        n_in, n_out = check_int(n_in, "n_in"), check_int(n_out, "n_out")
        rng = check_random_state(rng)
        scale = gain / np.sqrt(n_in)
        self.params = {"W": (rng.standard_normal((n_in, n_out)) * scale).astype(dtype),
                       "b": np.zeros(n_out, dtype=dtype)}
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}

    def forward(self, x):
        self.x = x
        return x @ self.params["W"] + self.params["b"]

    def backward(self, g, need_dx=True):
        np.matmul(self.x.T, g, out=self.grads["W"])
        np.sum(g, axis=0, out=self.grads["b"])
        return g @ self.params["W"].T if need_dx else None


class ReLU:
    """y = max(x, 0).  Backward: g ⊙ [x > 0]."""

    def forward(self, x):
        self.mask = x > 0
        return np.maximum(x, 0)

    def backward(self, g):
        return g * self.mask


class Tanh:
    """y = tanh x.  Backward: g ⊙ (1 − y²)."""

    def forward(self, x):
        self.y = np.tanh(x)
        return self.y

    def backward(self, g):
        return g * (1 - self.y * self.y)


class Sigmoid:
    """y = σ(x).  Backward: g ⊙ y (1 − y)."""

    def forward(self, x):
        self.y = sigmoid(x)
        return self.y

    def backward(self, g):
        return g * self.y * (1 - self.y)


class Softplus:
    """y = log(1 + eˣ).  Backward: g ⊙ σ(x)."""

    def forward(self, x):
        self.x = x
        return softplus(x)

    def backward(self, g):
        return g * sigmoid(self.x)


class Identity:
    """y = x.  Backward: g."""

    def forward(self, x):
        return x

    def backward(self, g):
        return g


ACTIVATIONS = {"relu": ReLU, "tanh": Tanh, "sigmoid": Sigmoid, "softplus": Softplus,
               "identity": Identity}


class MLP:
    """Linear → activation, repeated for each size in ``sizes[1:]``.

    ``activate_last=False`` leaves the last Linear without an activation (an output layer).
    Parameters are named ``"{i}.W"``, ``"{i}.b"`` for the i-th Linear.
    """

    def __init__(self, sizes, activation="relu", *, activate_last=True, rng=None,
                 dtype=np.float64):
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        rng = check_random_state(rng)
        gain = np.sqrt(2.0) if activation == "relu" else 1.0
        self.layers = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            self.layers.append(Linear(a, b, rng=rng, dtype=dtype, gain=gain))
            if activate_last or i < len(sizes) - 2:
                self.layers.append(ACTIVATIONS[activation]())

    def linears(self):
        return [layer for layer in self.layers if isinstance(layer, Linear)]

    def named(self, prefix=""):
        """(name, params, grads) of every parameter array, for optimisers and checks."""
        out = []
        for i, lin in enumerate(self.linears()):
            for k in ("W", "b"):
                out.append((f"{prefix}{i}.{k}", lin.params, lin.grads, k))
        return out

    def forward(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, g, need_dx=True):
        """Back-propagate ∂J/∂output; ``need_dx=False`` skips the input gradient of the first
        layer (the data's), a sixth of the matrix products of a one-hidden-layer VAE."""
        for layer in reversed(self.layers[1:]):
            g = layer.backward(g)
        return self.layers[0].backward(g, need_dx=need_dx)


def flatten_parameters(groups):
    """Move parameter and gradient arrays into two contiguous buffers, in place.

    ``groups`` maps a group name to a list of ``(params_dict, grads_dict, key)``; each array is
    copied into one flat buffer and the dict entry replaced by a view of it, so layers keep
    working on the same memory. Returns ``({group: flat params}, {group: flat grads})`` — one
    optimiser call per group then updates every array of the group in a dozen ufunc passes.
    """
    entries = [e for g in groups.values() for e in g]
    total = sum(p[k].size for p, _, k in entries)
    dtype = entries[0][0][entries[0][2]].dtype
    flat_p, flat_g = np.empty(total, dtype), np.zeros(total, dtype)
    out_p, out_g, pos = {}, {}, 0
    for name, group in groups.items():
        start = pos
        for params, grads, key in group:
            n = params[key].size
            flat_p[pos:pos + n] = params[key].ravel()
            params[key] = flat_p[pos:pos + n].reshape(params[key].shape)
            grads[key] = flat_g[pos:pos + n].reshape(grads[key].shape)
            pos += n
        out_p[name], out_g[name] = flat_p[start:pos], flat_g[start:pos]
    return out_p, out_g


# ---- optimisers ---------------------------------------------------------------------------------

class _Optimizer:
    """Updates ``params[name]`` in place from ``grads[name]``; ``maximize=True`` ascends."""

    def __init__(self, lr, maximize=False):
        self.lr = check_positive(lr, "lr")
        self.maximize = maximize
        self.state = {}

    def step(self, params: dict, grads: dict, names=None):
        for name in (params if names is None else names):
            self._update(name, params[name], grads[name])

    def _direction(self, delta, p):
        if self.maximize:
            p += delta
        else:
            p -= delta


class SGD(_Optimizer):
    """p ← p − lr · g (Robbins & Monro 1951)."""

    def _update(self, name, p, g):
        self._direction(self.lr * g, p)


class Adagrad(_Optimizer):
    """Adagrad (Duchi et al. 2011), the optimiser of Kingma & Welling (2014):
    h ← h + g²,  p ← p − lr · g / (√h + ε)."""

    def __init__(self, lr=1e-2, eps=1e-8, maximize=False):
        super().__init__(lr, maximize)
        self.eps = check_positive(eps, "eps")

    def _update(self, name, p, g):
        if name not in self.state:
            self.state[name] = (np.zeros_like(p), np.empty_like(p))
        h, tmp = self.state[name]
        np.multiply(g, g, out=tmp)
        h += tmp
        np.sqrt(h, out=tmp)
        tmp += self.eps
        np.divide(g, tmp, out=tmp)
        tmp *= self.lr
        self._direction(tmp, p)


class Adam(_Optimizer):
    """Adam (Kingma & Ba 2015, Algorithm 1), in place with one scratch buffer per parameter:
    m ← β1 m + (1−β1) g,  v ← β2 v + (1−β2) g²,
    p ← p − lr · (m / (1−β1ᵗ)) / (√(v / (1−β2ᵗ)) + ε).

    Stored instead are m̃ = m/(1−β1) and ṽ = v/(1−β2), so that each moment update is a scale
    and an add (m̃ ← β1 m̃ + g, ṽ ← β2 ṽ + g²), and the step becomes
    p ← p − K · m̃ / (√ṽ + ε/c) with c = √((1−β2)/(1−β2ᵗ)) and K = lr (1−β1) / ((1−β1ᵗ) c) —
    the same update in ten passes over memory instead of twelve."""

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, maximize=False):
        super().__init__(lr, maximize)
        try:
            self.b1, self.b2 = (float(b) for b in betas)
        except (TypeError, ValueError):
            raise TypeError(f"betas must be a pair of numbers in [0, 1), got {betas!r}") from None
        if not (0 <= self.b1 < 1 and 0 <= self.b2 < 1):
            raise ValueError(f"betas must lie in [0, 1) (the moments' decay rates), got {betas!r}")
        self.eps = check_positive(eps, "eps")

    def _update(self, name, p, g):
        if name not in self.state:
            self.state[name] = [np.zeros_like(p), np.zeros_like(p), np.empty_like(p), 0]
        st = self.state[name]
        st[3] += 1
        bc1, bc2 = 1 - self.b1 ** st[3], 1 - self.b2 ** st[3]
        # Python floats: a NumPy float64 scalar is not "weak" (NEP 50) and would make every
        # float32 in-place operation below compute in float64 and cast back, ~7x slower
        c = math.sqrt((1 - self.b2) / bc2)
        m, v, tmp = st[0], st[1], st[2]
        m *= self.b1                      # m̃ ← β1 m̃ + g
        m += g
        np.multiply(g, g, out=tmp)        # ṽ ← β2 ṽ + g²
        v *= self.b2
        v += tmp
        np.sqrt(v, out=tmp)               # K m̃ / (√ṽ + ε/c)
        tmp += self.eps / c
        np.divide(m, tmp, out=tmp)
        tmp *= self.lr * (1 - self.b1) / (bc1 * c)
        self._direction(tmp, p)


OPTIMIZERS = {"adam": Adam, "adagrad": Adagrad, "sgd": SGD}


# ---- checking gradients ------------------------------------------------------------------------

def gradient_check(f, params: dict, *, h: float = 1e-6, max_entries: int | None = 30,
                   random_state=0) -> dict:
    """Compare analytic gradients with central finite differences.

    ``f()`` must return ``(value, grads)`` for the current (live) ``params``, with ``grads`` a
    dict of the same keys and shapes. For each parameter array, up to ``max_entries`` entries
    (all when None) are perturbed by ±h and ``(f(p + h) − f(p − h)) / 2h`` is compared with the
    analytic value. Returns, per name, the relative error
    ``‖g_fd − g‖ / max(‖g_fd‖ + ‖g‖, 1e-12)`` over the checked entries (float64 needed for
    errors near 1e-8).
    """
    h = check_positive(h, "h")
    rng = check_random_state(random_state)
    _, grads = f()
    grads = {k: np.array(v, copy=True) for k, v in grads.items()}
    errors = {}
    for name, p in params.items():
        flat = p.reshape(-1)
        if not np.shares_memory(flat, p):
            raise ValueError(f"params[{name!r}] is not contiguous: perturbing a reshaped copy would "
                             "leave f() unchanged; pass the live (contiguous) parameter arrays")
        idx = np.arange(flat.size)
        if max_entries is not None and flat.size > max_entries:
            idx = rng.choice(flat.size, max_entries, replace=False)
        fd = np.empty(idx.size)
        for j, i in enumerate(idx):
            old = flat[i]
            flat[i] = old + h
            up = f()[0]
            flat[i] = old - h
            down = f()[0]
            flat[i] = old
            fd[j] = (up - down) / (2 * h)
        an = grads[name].reshape(-1)[idx]
        errors[name] = float(np.linalg.norm(fd - an) / max(np.linalg.norm(fd) + np.linalg.norm(an),
                                                            1e-12))
    return errors
