"""The decoder families p(x | z): each a small class with its forward and backward side by side.

A decoder network outputs, per row, the parameters of p(x | z): Bernoulli or continuous-Bernoulli
logits (D columns), categorical logits (D · n_levels columns), or a Gaussian mean (D columns) with
a log-variance supplied separately (shared, per feature, or a second head; the VAE owns that
parameter and clamps it). Every class offers

- ``forward(x, out, logvar=None)`` → log p(x | z) per row, summed over the D pixels (nats),
  caching what the backward pass needs;
- ``backward()`` → ``(∂ll/∂out, ∂ll/∂logvar or None)``, row by row (the gradient of each row's
  log-likelihood with respect to that row's outputs; the caller weights rows: 1/N for the ELBO,
  the normalised importance weights for IWAE);
- ``forward_backward`` for both in one call (the Bernoulli's is one fused float32 kernel);
- ``check_data(X, name, summary=None)`` (``summary`` from :func:`data_summary`, to share one
  pass over the data with the finiteness check): raises ``ValueError`` on data outside the
  support; returns a warning text when the value would not be a log-probability (Bernoulli on
  grey levels), else ``None``;
- ``mean`` (E[x | z]), ``sample``, and ``init_bias`` (a decoder output bias that starts the model
  at the data's marginal).

A value is a log-probability only on the support the family is normalised on (DESIGN.md,
Numerics): the Bernoulli on {0, 1}, the categorical on the integers 0..n_levels−1, the continuous
Bernoulli on [0, 1] (a density), the Gaussian on ℝ (a density).
"""

from __future__ import annotations

import numpy as np

from . import nn

__all__ = ["Bernoulli", "Gaussian", "Categorical", "ContinuousBernoulli", "make_likelihood",
           "LIKELIHOODS", "data_summary", "cb_log_normalizer", "cb_log_normalizer_grad", "cb_mean"]

_LOG_2PI = float(np.log(2 * np.pi))
_TAYLOR = 0.1   # |logit| below which the continuous Bernoulli uses its Taylor series


def data_summary(X, rows: int = 256):
    """(min, max, any value strictly between 0 and 1) of X in one pass over cache-sized chunks
    (about 3× faster than three whole-array passes on 60000×784 float32). NaN propagates into
    min and max, so non-finite data show as a non-finite min or max."""
    flat = np.ascontiguousarray(X).reshape(-1)
    step = max(1, rows * (X.shape[1] if X.ndim == 2 else 1))
    lo, hi, frac = np.inf, -np.inf, False
    a, b = np.empty(min(step, flat.size), bool), np.empty(min(step, flat.size), bool)
    for s in range(0, flat.size, step):
        c = flat[s:s + step]
        n = c.size
        lo, hi = float(np.minimum(lo, c.min())), float(np.maximum(hi, c.max()))  # NaN propagates
        if not frac:
            np.greater(c, 0, out=a[:n])
            np.less(c, 1, out=b[:n])
            a[:n] &= b[:n]
            frac = bool(a[:n].any())
    return lo, hi, frac


def _range(X, summary):
    if summary is None:
        return float(np.min(X)), float(np.max(X))
    return summary[0], summary[1]


def _require_unit_interval(X, name, summary, family, advice):
    """Raise unless every entry of X lies in [0, 1], the support of ``family``; returns the range."""
    lo, hi = _range(X, summary)
    if lo < 0 or hi > 1:
        raise ValueError(
            f"{name} has values in [{lo:.4g}, {hi:.4g}], outside [0, 1], the support of the "
            f"{family} likelihood; {advice}")
    return lo, hi


class Bernoulli:
    """p(x | l) = σ(l)^x (1 − σ(l))^{1−x} on x ∈ {0, 1}, parameterised by the logit l.

    forward:  log p = x l − softplus(l)                       (binary cross-entropy with logits)
    backward: ∂/∂l  = x − σ(l)                                 (Bishop PRML eq. 4.91, per unit)

    On x ∈ (0, 1) the same formula is finite but not a log-probability of anything: summed over
    the 17 grey levels of the digits, p^x (1−p)^{1−x} has mass between 1.1 and 8.5 per pixel
    (Loaiza-Ganem & Cunningham 2019, §2). Hence the warning from :meth:`check_data`.
    """

    name = "bernoulli"
    has_logvar = False

    def n_outputs(self, n_features):
        return n_features

    def check_data(self, X, name="X", summary=None):
        _require_unit_interval(
            X, name, summary, "Bernoulli",
            "rescale it (e.g. X / X.max()) and binarise it with latentmodels.datasets.binarize, "
            "or use likelihood='categorical' (integer levels) or 'gaussian'")
        frac = summary[2] if summary is not None else bool(np.any((X > 0) & (X < 1)))
        if frac:
            return (f"{name} holds values strictly between 0 and 1: the Bernoulli likelihood of "
                    "such data is not a log-probability (not normalised on [0, 1]), so the ELBO and "
                    "log_likelihood reported are not bounds on log p(x). Binarise the data with "
                    "latentmodels.datasets.binarize, or use likelihood='continuous_bernoulli'")
        return None

    def init_bias(self, X):
        p = np.clip(X.mean(axis=0), 1e-3, 1 - 1e-3)
        return np.log(p / (1 - p))

    def forward(self, x, out, logvar=None):
        self._x, self._out = x, out
        return nn.bernoulli_loglik(x, out)

    def backward(self):
        return self._x - nn.sigmoid(self._out), None

    def forward_backward(self, x, out, logvar=None):
        """The fused kernel of :func:`nn.bernoulli_loglik_and_grad` (one e^{−|l|} shared);
        the returned gradient overwrites no input."""
        ll, g = nn.bernoulli_loglik_and_grad(x, out)
        return ll, g, None

    def mean(self, out, logvar=None):
        return nn.sigmoid(out)

    def sample(self, out, logvar, rng):
        m = self.mean(out).astype(np.float64)
        return (rng.uniform(size=m.shape) < m).astype(np.float64)


class Gaussian:
    """p(x | m, v) = N(x | m, e^v) per pixel, v the log-variance (shared, per pixel or per row).

    forward:  log p = −½ Σ_d [log 2π + v_d + (x_d − m_d)² e^{−v_d}]
    backward: ∂/∂m_d = (x_d − m_d) e^{−v_d},   ∂/∂v_d = ½ [(x_d − m_d)² e^{−v_d} − 1]
              (Bishop PRML eqs. 2.118 and 2.122 written for one pixel; the gradient in v is
              returned element by element, the caller sums it for a shared or per-feature v.)
    """

    name = "gaussian"
    has_logvar = True

    def n_outputs(self, n_features):
        return n_features

    def check_data(self, X, name="X", summary=None):
        return None

    def init_bias(self, X):
        return X.mean(axis=0)

    def forward(self, x, out, logvar):
        r = x - out
        inv = np.exp(-logvar)
        r2inv = r * r * inv
        self._r, self._inv, self._r2inv = r, inv, r2inv
        return -0.5 * np.sum(_LOG_2PI + logvar + r2inv, axis=-1)

    def backward(self):
        return self._r * self._inv, 0.5 * (self._r2inv - 1.0)

    def forward_backward(self, x, out, logvar):
        ll = self.forward(x, out, logvar)
        g_out, g_lv = self.backward()
        return ll, g_out, g_lv

    def mean(self, out, logvar=None):
        return out

    def sample(self, out, logvar, rng):
        m = out.astype(np.float64)
        return m + np.exp(0.5 * np.asarray(logvar, dtype=np.float64)) * rng.standard_normal(m.shape)


class Categorical:
    """p(x_d = k | l_d) = softmax(l_d)_k per pixel, x_d ∈ {0, …, K−1}, K = ``n_levels``.

    The decoder outputs D·K logits per row, pixel d's K logits contiguous (columns dK … dK+K−1).

    forward:  log p = Σ_d [l_{d, x_d} − log Σ_k e^{l_{d,k}}]        (≤ 0: a true log-probability)
    backward: ∂/∂l_{d,k} = [k = x_d] − softmax(l_d)_k

    Derivation of the backward pass: ∂/∂l_{d,k} of l_{d,x_d} is the indicator [k = x_d]; of the
    log-sum-exp it is e^{l_{d,k}} / Σ_j e^{l_{d,j}} = softmax(l_d)_k (Bishop PRML eq. 4.106 is the
    softmax's derivative, eq. 4.109 the resulting cross-entropy gradient y − t, here for one
    pixel). The log-sum-exp subtracts max_k l_{d,k} first.
    """

    name = "categorical"
    has_logvar = False

    def __init__(self, n_levels):
        self.n_levels = int(n_levels)

    def n_outputs(self, n_features):
        return n_features * self.n_levels

    def check_data(self, X, name="X", summary=None):
        K = self.n_levels
        lo, hi = _range(X, summary)
        if lo < 0 or hi > K - 1:
            raise ValueError(
                f"{name} has values in [{lo:.4g}, {hi:.4g}]; the categorical likelihood with "
                f"n_levels={K} needs integers 0..{K - 1} (raise n_levels, or map the levels to "
                "0..n_levels-1)")
        if np.any(X != np.round(X)):
            raise ValueError(
                f"{name} holds non-integer values; the categorical likelihood needs integer levels "
                f"0..{K - 1} (for data in [0, 1] use likelihood='continuous_bernoulli', or "
                "quantise with np.round(X * (n_levels - 1)))")
        return None

    def init_bias(self, X):
        """log of the per-pixel level frequencies (add-one smoothed), so that the model starts
        at the pixels' independent marginals."""
        K = self.n_levels
        idx = X.astype(np.int64)
        counts = np.ones((X.shape[1], K))
        for d in range(X.shape[1]):
            counts[d] += np.bincount(idx[:, d], minlength=K)
        return np.log(counts / counts.sum(axis=1, keepdims=True)).ravel()

    def _logits(self, out):
        return out.reshape(out.shape[0], -1, self.n_levels)

    def forward(self, x, out, logvar=None):
        lg = self._logits(out)
        idx = x.astype(np.int64)[..., None]
        m = lg.max(axis=-1, keepdims=True)
        e = np.exp(lg - m)
        s = e.sum(axis=-1, keepdims=True)
        lse = (m + np.log(s))[..., 0]
        picked = np.take_along_axis(lg, idx, axis=-1)[..., 0]
        self._soft, self._idx = e / s, idx
        return np.sum(picked - lse, axis=-1)

    def backward(self):
        g = -self._soft
        np.put_along_axis(g, self._idx, np.take_along_axis(g, self._idx, axis=-1) + 1.0, axis=-1)
        return g.reshape(g.shape[0], -1), None

    def forward_backward(self, x, out, logvar=None):
        ll = self.forward(x, out)
        g, _ = self.backward()
        return ll, g, None

    def probabilities(self, out):
        """softmax per pixel: (N, D, K), each pixel's K probabilities summing to 1."""
        lg = self._logits(out)
        e = np.exp(lg - lg.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    def mean(self, out, logvar=None):
        """E[x_d | z] = Σ_k k p_{d,k}."""
        return self.probabilities(out) @ np.arange(self.n_levels, dtype=out.dtype)

    def sample(self, out, logvar, rng):
        p = self.probabilities(out.astype(np.float64))
        cdf = np.cumsum(p, axis=-1)
        u = rng.uniform(size=p.shape[:-1] + (1,))
        return np.minimum(np.sum(cdf < u, axis=-1), self.n_levels - 1).astype(np.float64)


def cb_log_normalizer(logits):
    """log C(λ) of the continuous Bernoulli, as a function of the logit l = log(λ/(1−λ)).

    Loaiza-Ganem & Cunningham (2019), eq. (7): C(λ) = 2 artanh(1 − 2λ) / (1 − 2λ) for λ ≠ ½ and
    C(½) = 2. With λ = σ(l): 1 − 2λ = −tanh(l/2) and artanh(1 − 2λ) = −l/2, so

        C = l / tanh(l/2),   log C = log|l| − log(1 − e^{−|l|}) + log(1 + e^{−|l|}),

    computed with expm1/log1p for |l| ≥ 0.1. Near λ = ½ (l → 0) both forms are 0/0; there the
    Taylor series log C = log 2 + l²/12 − 7 l⁴/1440 + 31 l⁶/90720 − 127 l⁸/4838400 + O(l¹⁰)
    (of log(l/(2 tanh(l/2))), e.g. by sympy.series) is used: at |l| = 0.1 its first omitted term
    is below 1e-17.
    """
    l = np.asarray(logits)
    a = np.abs(l)
    small = a < _TAYLOR
    safe = np.where(small, 1.0, a)
    far = np.log(safe) - np.log(-np.expm1(-safe)) + np.log1p(np.exp(-safe))
    ls = np.where(small, l, 0.0)       # the series only where it is used (l² overflows float32 at 1.8e19)
    l2 = ls * ls
    near = np.log(2.0) + l2 * (1 / 12 + l2 * (-7 / 1440 + l2 * (31 / 90720 - l2 * 127 / 4838400)))
    return np.where(small, near, far).astype(l.dtype, copy=False)


def cb_log_normalizer_grad(logits):
    """d log C / dl = 1/l − 1/sinh(l) (differentiate log l − log tanh(l/2): the second term
    gives ½ sech²(l/2) / tanh(l/2) = 1/sinh l). Near l = 0 the difference cancels; there the
    series l/6 − 7 l³/360 + 31 l⁵/15120 − 127 l⁷/604800 + O(l⁹) is used. 1/sinh l is written
    2 sign(l) e^{−|l|} / (1 − e^{−2|l|}) so that nothing overflows."""
    l = np.asarray(logits)
    a = np.abs(l)
    small = a < _TAYLOR
    safe = np.where(small, 1.0, a)
    inv_sinh = 2.0 * np.exp(-safe) / (-np.expm1(-2.0 * safe))
    far = np.sign(l) * (1.0 / safe - inv_sinh)
    ls = np.where(small, l, 0.0)
    l2 = ls * ls
    near = ls * (1 / 6 + l2 * (-7 / 360 + l2 * (31 / 15120 - l2 * 127 / 604800)))
    return np.where(small, near, far).astype(l.dtype, copy=False)


def cb_mean(logits):
    """E[x] of the continuous Bernoulli: λ/(2λ − 1) + 1/(2 artanh(1 − 2λ))
    (Loaiza-Ganem & Cunningham 2019, §3), which in the logit is 1/(1 − e^{−l}) − 1/l; near l = 0
    the series ½ + l/12 − l³/720 + l⁵/30240 − l⁷/1209600. (λ itself is not the mean.)

    With a = |l|, 1/(1 − e^{−l}) is −1/expm1(−a) for l > 0 and e^{−a}/expm1(−a) for l < 0, so no
    exponential overflows at any logit (a clip at ±700 gave 1 − 1/700 instead of 1 − 1/l)."""
    l = np.asarray(logits)
    small = np.abs(l) < _TAYLOR
    safe = np.where(small, 1.0, l)
    a = np.abs(safe)
    em = np.expm1(-a)                  # in (−1, 0): no overflow, no division by zero
    far = np.where(safe > 0, -1.0 / em, np.exp(-a) / em) - 1.0 / safe
    ls = np.where(small, l, 0.0)
    l2 = ls * ls
    near = 0.5 + ls * (1 / 12 + l2 * (-1 / 720 + l2 * (1 / 30240 - l2 / 1209600)))
    return np.where(small, near, far).astype(l.dtype, copy=False)


class ContinuousBernoulli:
    """The continuous Bernoulli (Loaiza-Ganem & Cunningham 2019): a density on x ∈ [0, 1],

        p(x | λ) = C(λ) λ^x (1 − λ)^{1−x},   λ = σ(l),

    forward:  log p = x l − softplus(l) + log C(l)                 (C from :func:`cb_log_normalizer`)
    backward: ∂/∂l  = x − σ(l) + 1/l − 1/sinh(l)                   (:func:`cb_log_normalizer_grad`)

    Unlike the Bernoulli on grey levels, this integrates to 1 over [0, 1], so its ELBO is a bound
    on a log-density. Its mean is :func:`cb_mean`, not λ.
    """

    name = "continuous_bernoulli"
    has_logvar = False

    def n_outputs(self, n_features):
        return n_features

    def check_data(self, X, name="X", summary=None):
        _require_unit_interval(X, name, summary, "continuous Bernoulli",
                               "rescale it (e.g. X / X.max())")
        return None

    # the Bernoulli's start, logit of the clipped feature means (a start only: λ is not the mean)
    init_bias = Bernoulli.init_bias

    def forward(self, x, out, logvar=None):
        self._x, self._out = x, out
        return nn.bernoulli_loglik(x, out) + np.sum(cb_log_normalizer(out), axis=-1)

    def backward(self):
        return self._x - nn.sigmoid(self._out) + cb_log_normalizer_grad(self._out), None

    def forward_backward(self, x, out, logvar=None):
        ll, g = nn.bernoulli_loglik_and_grad(x, out)
        ll = ll + np.sum(cb_log_normalizer(out), axis=-1)
        g += cb_log_normalizer_grad(out)
        return ll, g, None

    def mean(self, out, logvar=None):
        return cb_mean(out)

    def sample(self, out, logvar, rng):
        """Inverse CDF (the CDF of Loaiza-Ganem & Cunningham 2019, written in the logit):
        F(x) = (λ^x (1−λ)^{1−x} + λ − 1)/(2λ − 1) = (e^{l x} − 1)/(e^{l} − 1) inverts to
        x = log(1 + u (e^l − 1)) / l; written for a = −|l| ≤ 0 (no overflow) and mirrored by
        the symmetry x ~ CB(l) ⇔ 1 − x ~ CB(−l)."""
        l = out.astype(np.float64)
        u = rng.uniform(size=l.shape)
        a = -np.abs(l)
        safe = np.where(a == 0, -1.0, a)
        y = np.where(a == 0, u, np.log1p(u * np.expm1(safe)) / safe)
        return np.clip(np.where(l > 0, 1.0 - y, y), 0.0, 1.0)


LIKELIHOODS = ("bernoulli", "gaussian", "categorical", "continuous_bernoulli")


def make_likelihood(name, n_levels=None):
    """The likelihood object for ``name`` (one of :data:`LIKELIHOODS`)."""
    if name == "bernoulli":
        return Bernoulli()
    if name == "gaussian":
        return Gaussian()
    if name == "continuous_bernoulli":
        return ContinuousBernoulli()
    if name == "categorical":
        return Categorical(n_levels)
    raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {name!r}")
