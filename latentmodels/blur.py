r"""Measurements for the lecture's last part: why samples from a VAE look blurry.

The slides give three explanations — maximum likelihood, the restricted family of p(x | z), and the
lower-bound approximation — and this module holds what is needed to put each to an experiment:

- **Sharpness** of images: :func:`laplacian_energy` (mean squared discrete Laplacian, per image) and
  :func:`gradient_energy` (mean squared finite differences); :func:`means_vs_samples` compares the
  decoder's means E[x | z] with draws x ~ p(x | z) at the same codes, and
  :func:`linear_gaussian_means_and_samples` draws both from factor analysis / PPCA.
- **Maximum likelihood in one dimension**: :class:`Mixture1D` (a 1-D Gaussian mixture target),
  :func:`forward_kl_gaussian` (the maximum-likelihood Gaussian = moment matching),
  :func:`reverse_kl_gaussian` (KL(q ‖ p) minimised by Gauss–Hermite quadrature),
  :func:`fit_gmm_1d` (EM for a 1-D mixture).
- **The family of p(x | z)**: :func:`ideal_decoder_mean`, the decoder that is optimal for a fixed
  encoder (Zhao, Song & Ermon 2017), E[x | z] = Σ_n w_n(z) x_n with w_n ∝ q(z | x_n).
- **The lower bound**: :func:`decoder_log_lik` and :func:`decoder_log_lik_and_grad` (a fitted
  VAE's log p(x | z) and its gradient in z), :func:`elbo_rows` and :func:`iwae_rows` for any
  Gaussian q, :func:`refine_posterior` (per-row Gaussian q optimised with the decoder fixed) and
  :func:`gap_split` (log p(x) − ELBO = approximation gap + amortisation gap, Cremer, Li & Duvenaud
  2018).

Every Monte Carlo number comes with its standard error, computed from the samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize, special

from .gaussian import GaussianQ
from .validation import check_array, check_int, check_positive, check_random_state

__all__ = [
    "laplacian_energy", "gradient_energy", "noise_laplacian_energy", "mean_and_se", "means_vs_samples",
    "MeansVsSamples",
    "linear_gaussian_means_and_samples",
    "Mixture1D", "forward_kl_gaussian", "reverse_kl_gaussian", "kl_gaussian_to_mixture",
    "fit_gmm_1d",
    "ideal_decoder_weights", "ideal_decoder_mean",
    "decoder_log_lik", "decoder_log_lik_and_grad", "decoder_moments_and_samples", "elbo_rows",
    "iwae_rows", "refine_posterior",
    "gap_split", "GapSplit",
]

_LOG_2PI = float(np.log(2.0 * np.pi))


# ---------------------------------------------------------------------------------------------
# sharpness
# ---------------------------------------------------------------------------------------------
def _as_images(images, shape, name="images"):
    X = check_array(images, name)
    if shape is None:
        side = int(round(np.sqrt(X.shape[1])))
        if side * side != X.shape[1]:
            raise ValueError(f"{name} has {X.shape[1]} columns, not a square image; pass shape=(h, w)")
        shape = (side, side)
    h, w = (int(s) for s in shape)
    if h * w != X.shape[1]:
        raise ValueError(f"shape={shape} has {h * w} pixels but {name} has {X.shape[1]} columns")
    if h < 3 or w < 3:
        raise ValueError(f"shape={shape}: images need at least 3×3 pixels for a Laplacian")
    return X.reshape(-1, h, w)


def laplacian_energy(images, shape=None) -> np.ndarray:
    r"""Sharpness of each image: the mean squared 5-point discrete Laplacian over interior pixels,

        S(x) = (1 / ((h−2)(w−2))) Σ_{i,j interior} (x_{i−1,j} + x_{i+1,j} + x_{i,j−1} + x_{i,j+1} − 4 x_{ij})²

    ``images`` (N, h·w), rows read in C order; ``shape`` (h, w), default square. Returns (N,).

    Why this measure: blurring is a low-pass filter. The Laplacian's frequency response,
    −(4 − 2 cos ω₁ − 2 cos ω₂), vanishes at zero frequency and grows with frequency, so S weights
    the fine detail that blur removes; for a circular convolution with a kernel whose transfer
    function satisfies |H(ω)| ≤ 1 (any averaging kernel), Parseval's theorem gives S(blur(x)) ≤ S(x)
    exactly (Gonzalez & Woods, *Digital Image Processing*, §3.6 for the operator; the variance of the
    Laplacian is the standard focus measure, Pech-Pacheco et al. 2000). It is not
    scale-invariant (S(c x) = c² S(x)): compare images on one intensity scale (here [0, 1]).
    """
    Y = _as_images(images, shape)
    lap = (Y[:, :-2, 1:-1] + Y[:, 2:, 1:-1] + Y[:, 1:-1, :-2] + Y[:, 1:-1, 2:] - 4.0 * Y[:, 1:-1, 1:-1])
    return np.mean(lap * lap, axis=(1, 2))


def gradient_energy(images, shape=None) -> np.ndarray:
    r"""Mean squared first differences per image (horizontal and vertical, each averaged over its
    (h)(w−1) or (h−1)(w) pairs, then summed): S₁(x) = mean (x_{i,j+1} − x_{ij})² + mean (x_{i+1,j} − x_{ij})².

    The gradient energy (Tenengrad-like focus measure, Pertuz et al. 2013); its frequency weight
    2 − 2 cos ω grows less steeply than the Laplacian's, so it is less dominated by pixel noise.
    Returns (N,)."""
    Y = _as_images(images, shape)
    dx = np.diff(Y, axis=2)
    dy = np.diff(Y, axis=1)
    return np.mean(dx * dx, axis=(1, 2)) + np.mean(dy * dy, axis=(1, 2))


def noise_laplacian_energy(variances, shape=None) -> np.ndarray:
    r"""E[S(m + ε)] − S(m) for independent pixel noise ε with variances v (the rows of
    ``variances``), S = :func:`laplacian_energy`: the cross term has mean zero and each interior
    pixel's Laplacian of the noise has variance v_{i−1,j} + v_{i+1,j} + v_{i,j−1} + v_{i,j+1} + 16 v_ij
    (the squared stencil weights), so

        E[S(m + ε)] − S(m) = mean_interior (v_{i−1,j} + v_{i+1,j} + v_{i,j−1} + v_{i,j+1} + 16 v_ij).

    This is all a factorised p(x | z) can add to its mean: white noise, no structure. Returns (N,)."""
    V = _as_images(variances, shape, "variances")
    return np.mean(V[:, :-2, 1:-1] + V[:, 2:, 1:-1] + V[:, 1:-1, :-2] + V[:, 1:-1, 2:]
                   + 16.0 * V[:, 1:-1, 1:-1], axis=(1, 2))


def mean_and_se(values) -> tuple[float, float]:
    """``(mean, standard error)`` of a 1-D sample: sd(ddof=1)/√n."""
    v = np.asarray(values, dtype=float).ravel()
    if v.size < 2:
        raise ValueError("values needs at least 2 entries for a standard error")
    return float(v.mean()), float(v.std(ddof=1) / np.sqrt(v.size))


@dataclass(frozen=True)
class MeansVsSamples:
    """Sharpness of decoder means and of samples drawn at the same codes, paired per code.

    ``means``, ``samples``: per-image sharpness (N,); ``difference`` = samples − means, with its
    paired standard error ``difference_se``; ``ratio`` = mean(samples) / mean(means)."""

    means: np.ndarray
    samples: np.ndarray
    difference: float
    difference_se: float
    ratio: float


def means_vs_samples(means, samples, shape=None, measure="laplacian") -> MeansVsSamples:
    """Compare the sharpness of decoder means E[x | z_n] with samples x_n ~ p(x | z_n), row n of
    each drawn at the same code z_n (so the comparison is paired). ``measure``: "laplacian"
    (:func:`laplacian_energy`) or "gradient" (:func:`gradient_energy`)."""
    f = {"laplacian": laplacian_energy, "gradient": gradient_energy}.get(measure)
    if f is None:
        raise ValueError(f"measure must be 'laplacian' or 'gradient', got {measure!r}")
    M = check_array(means, "means")
    S = check_array(samples, "samples")
    if M.shape != S.shape:
        raise ValueError(f"means {M.shape} and samples {S.shape} must have the same shape (paired rows)")
    sm, ss = f(M, shape), f(S, shape)
    d, se = mean_and_se(ss - sm)
    return MeansVsSamples(sm, ss, d, se, float(ss.mean() / sm.mean()) if sm.mean() > 0 else np.inf)


def linear_gaussian_means_and_samples(model, n_samples: int, random_state=None):
    """For a fitted factor analysis / PPCA model (``W_``, ``mu_``, ``noise_variance()``): codes
    z ~ N(0, I), the decoder means W z + μ and samples W z + μ + ε, ε ~ N(0, Ψ), at the same codes
    (Bishop PRML eq. 12.33; the same draw as ``model.sample``). Returns ``(means, samples)``."""
    n = check_int(n_samples, "n_samples")
    rng = check_random_state(random_state)
    W, mu, psi = model.W_, model.mu_, np.broadcast_to(model.noise_variance(), model.mu_.shape)
    Z = rng.standard_normal((n, W.shape[1]))
    means = Z @ W.T + mu
    return means, means + rng.standard_normal(means.shape) * np.sqrt(psi)


# ---------------------------------------------------------------------------------------------
# maximum likelihood in one dimension
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Mixture1D:
    """p(x) = Σ_k π_k N(x; μ_k, s_k²), a 1-D Gaussian mixture (the bimodal target of the toy)."""

    weights: tuple
    means: tuple
    sds: tuple

    def __post_init__(self):
        w, m, s = (np.asarray(a, dtype=float).ravel() for a in (self.weights, self.means, self.sds))
        if not (w.size == m.size == s.size) or w.size == 0:
            raise ValueError("weights, means and sds must have the same non-zero length")
        if np.any(w <= 0) or abs(w.sum() - 1) > 1e-12 or np.any(s <= 0):
            raise ValueError("weights must be positive and sum to 1, sds positive")

    def _arrays(self):
        return (np.asarray(self.weights, float), np.asarray(self.means, float),
                np.asarray(self.sds, float))

    def log_components(self, x):
        """log π_k + log N(x; μ_k, s_k²), shape x.shape + (K,)."""
        w, m, s = self._arrays()
        x = np.asarray(x, float)[..., None]
        return np.log(w) - 0.5 * _LOG_2PI - np.log(s) - 0.5 * ((x - m) / s) ** 2

    def logpdf(self, x):
        return special.logsumexp(self.log_components(x), axis=-1)

    def dlogpdf(self, x):
        """d/dx log p(x) = Σ_k r_k(x) (μ_k − x)/s_k², r the responsibilities."""
        w, m, s = self._arrays()
        lc = self.log_components(x)
        r = np.exp(lc - special.logsumexp(lc, axis=-1, keepdims=True))
        return np.sum(r * (m - np.asarray(x, float)[..., None]) / s ** 2, axis=-1)

    def mean(self) -> float:
        w, m, _ = self._arrays()
        return float(np.sum(w * m))

    def var(self) -> float:
        """Var = Σ π_k (s_k² + μ_k²) − (Σ π_k μ_k)² (law of total variance)."""
        w, m, s = self._arrays()
        return float(np.sum(w * (s ** 2 + m ** 2)) - np.sum(w * m) ** 2)

    def sample(self, n, random_state=None):
        rng = check_random_state(random_state)
        w, m, s = self._arrays()
        k = rng.choice(w.size, size=check_int(n, "n"), p=w)
        return m[k] + s[k] * rng.standard_normal(k.size)


def forward_kl_gaussian(target: Mixture1D) -> tuple[float, float]:
    r"""argmin over N(m, s²) of KL(p ‖ q) = the maximum-likelihood Gaussian in the limit of
    infinite data from p: moment matching, m = E_p[x], s² = Var_p[x] (Bishop PRML §10.7, eq. 10.187
    for the exponential family; Murphy 2012 §21.2.2). Returns ``(m, s)``."""
    return target.mean(), float(np.sqrt(target.var()))


def _std_normal_grid(n_grid):
    """Nodes u and trapezoid weights for E_{ε~N(0,1)}[f(ε)] ≈ Σ_i w_i f(u_i) on [−12, 12]
    (the tail beyond 12 has mass 4e−33)."""
    u = np.linspace(-12.0, 12.0, check_int(n_grid, "n_grid", minimum=3))
    w = np.exp(-0.5 * u * u) / np.sqrt(2 * np.pi) * (u[1] - u[0])
    w[[0, -1]] *= 0.5
    return u, w


def kl_gaussian_to_mixture(m, s, target: Mixture1D, n_grid: int = 20001) -> float:
    r"""KL(N(m, s²) ‖ p) = −H[q] − E_q[log p] with H[q] = ½ log(2πe s²) and E_q[log p] by the
    trapezoid rule on z = m + s u, u on a fine grid over [−12, 12]. (Gauss–Hermite converges slowly
    here: log p of a bimodal mixture bends sharply between the modes.)"""
    u, w = _std_normal_grid(n_grid)
    return float(-0.5 * np.log(2 * np.pi * np.e * s * s) - np.sum(w * target.logpdf(m + s * u)))


def reverse_kl_gaussian(target: Mixture1D, init=None, n_grid: int = 20001, tol: float = 1e-13):
    r"""argmin over N(m, s²) of KL(q ‖ p) (the variational direction), by L-BFGS on (m, log s)
    with the objective of :func:`kl_gaussian_to_mixture` and its exact gradient

        ∂KL/∂m = −E_q[(log p)'(z)],   ∂KL/∂log s = −1 − E_q[(log p)'(z) (z − m)]

    (reparameterisation z = m + s ε; the entropy's derivative in log s is 1), both on the same grid.
    The objective has a local minimum near each well-separated mode (Bishop PRML Fig. 10.3, Minka
    2005): ``init`` ``(m0, s0)`` picks the start, default the first component. Returns
    ``(m, s, kl)``."""
    u, wq = _std_normal_grid(n_grid)
    if init is None:
        init = (target.means[0], target.sds[0])
    m0, s0 = float(init[0]), float(init[1])
    check_positive(s0, "init[1] (the starting sd)")

    def f(theta):
        m, s = theta[0], np.exp(theta[1])
        z = m + s * u
        g = target.dlogpdf(z)
        val = -0.5 * np.log(2 * np.pi * np.e) - theta[1] - np.sum(wq * target.logpdf(z))
        grad = np.array([-np.sum(wq * g), -1.0 - np.sum(wq * g * s * u)])
        return val, grad

    res = optimize.minimize(f, np.array([m0, np.log(s0)]), jac=True, method="L-BFGS-B",
                            options={"ftol": tol, "gtol": 1e-11, "maxiter": 1000})
    m, s = float(res.x[0]), float(np.exp(res.x[1]))
    return m, s, float(res.fun)


def fit_gmm_1d(x, n_components: int = 2, n_iter: int = 500, tol: float = 1e-10, random_state=None):
    r"""Maximum-likelihood 1-D Gaussian mixture by EM (Bishop PRML §9.2.2, eqs. 9.23–9.28):

        E: r_nk = π_k N(x_n; μ_k, s_k²) / Σ_j π_j N(x_n; μ_j, s_j²)   (log-sum-exp)
        M: N_k = Σ_n r_nk,  μ_k = Σ_n r_nk x_n / N_k,  s_k² = Σ_n r_nk (x_n − μ_k)² / N_k,  π_k = N_k / N

    Starts from the k/(K+1) quantiles with the overall sd. Returns ``(Mixture1D, history)``, the mean
    log-likelihood per point after each iteration (non-decreasing: EM's guarantee)."""
    x = np.asarray(x, dtype=float).ravel()
    K = check_int(n_components, "n_components")
    if x.size < 2 * K or not np.all(np.isfinite(x)):
        raise ValueError(f"x needs at least {2 * K} finite points for {K} components")
    m = np.quantile(x, (np.arange(K) + 1) / (K + 1))
    s = np.full(K, x.std())
    w = np.full(K, 1.0 / K)
    hist = []
    for _ in range(check_int(n_iter, "n_iter")):
        lc = np.log(w) - 0.5 * _LOG_2PI - np.log(s) - 0.5 * ((x[:, None] - m) / s) ** 2
        lse = special.logsumexp(lc, axis=1, keepdims=True)
        hist.append(float(lse.mean()))
        r = np.exp(lc - lse)
        Nk = r.sum(axis=0)
        m = (r * x[:, None]).sum(axis=0) / Nk
        s = np.sqrt(np.maximum((r * (x[:, None] - m) ** 2).sum(axis=0) / Nk, 1e-300))
        w = Nk / x.size
        if len(hist) > 1 and abs(hist[-1] - hist[-2]) < tol:
            break
    w = w / w.sum()
    return Mixture1D(tuple(w), tuple(m), tuple(s)), hist


# ---------------------------------------------------------------------------------------------
# Zhao et al.'s ideal decoder under a fixed encoder
# ---------------------------------------------------------------------------------------------
def _q_logpdf_matrix(Z, q: GaussianQ) -> np.ndarray:
    """log q(z_m | x_n) for codes Z (M, L) and the N Gaussians of q: (M, N)."""
    Z = np.asarray(Z, dtype=float)
    mu = q.mean
    if q.diagonal:
        var = np.broadcast_to(q.cov, mu.shape)
        # Σ_l [(z − μ)²/v] expanded to three matrix products: O(M N L) memory-free
        iv = 1.0 / var
        quad = (Z * Z) @ iv.T - 2.0 * Z @ (mu * iv).T + np.sum(mu * mu * iv, axis=1)
        return -0.5 * (mu.shape[1] * _LOG_2PI + np.sum(np.log(var), axis=1) + quad)
    C = np.broadcast_to(q.cov, (mu.shape[0], *q.cov.shape[-2:]))
    Lc = np.linalg.cholesky(C)
    diff = Z[None, :, :] - mu[:, None, :]                     # (N, M, L)
    sol = np.linalg.solve(Lc[:, None], diff[..., None])[..., 0]
    logdet = 2.0 * np.sum(np.log(np.diagonal(Lc, axis1=1, axis2=2)), axis=1)
    return (-0.5 * (mu.shape[1] * _LOG_2PI + logdet[:, None] + np.sum(sol * sol, axis=2))).T


def ideal_decoder_weights(Z, q: GaussianQ) -> np.ndarray:
    r"""w_n(z) = q(z | x_n) / Σ_m q(z | x_m) for each code (rows of Z) and each training image n,
    by log-sum-exp: shape (M, N), rows sum to 1. With the encoder fixed, the decoder that maximises
    (1/N) Σ_n E_{q(z|x_n)} log p(x_n | z) over all distributions is p*(x | z) = Σ_n w_n(z) δ(x − x_n)
    — the data distribution conditioned on z under the joint q(z | x) p_data(x) (Zhao, Song & Ermon
    2017, "Towards a deeper understanding of variational autoencoding models", §3)."""
    lq = _q_logpdf_matrix(Z, q)
    return np.exp(lq - special.logsumexp(lq, axis=1, keepdims=True))


def ideal_decoder_mean(Z, q: GaussianQ, X) -> tuple[np.ndarray, np.ndarray]:
    r"""Zhao et al.'s ideal decoder mean E*[x | z] = Σ_n w_n(z) x_n, w_n ∝ q(z | x_n)
    (:func:`ideal_decoder_weights`), for codes Z (M, L), the training images X (N, D) and their
    posteriors q (N Gaussians, e.g. ``vae.posterior(X)``). It is the mean of any decoder family that
    can represent p*(x | z) exactly, e.g. a Gaussian p(x|z) with a free mean function, so a blurry
    E*[x | z] is blur the encoder's overlapping posteriors impose, whatever the decoder.

    Returns ``(means (M, D), effective_number (M,))``, the effective number of images averaged at
    each code, 1 / Σ_n w_n² (Kish's effective sample size; 1 = a single image, sharp)."""
    X = check_array(X, "X")
    if q.mean.shape[0] != X.shape[0]:
        raise ValueError(f"q has {q.mean.shape[0]} rows, X has {X.shape[0]}: q must be posterior(X)")
    Z = check_array(Z, "Z")
    if Z.shape[1] != q.mean.shape[1]:
        raise ValueError(f"Z has {Z.shape[1]} columns, q has {q.mean.shape[1]} latent dimensions")
    w = ideal_decoder_weights(Z, q)
    return w @ X, 1.0 / np.sum(w * w, axis=1)


# ---------------------------------------------------------------------------------------------
# the lower bound: decoder log-likelihood, ELBO / IWAE under any Gaussian q, refinement, gap split
# ---------------------------------------------------------------------------------------------
def _check_vae(model, X):
    X = model._as_data(X)
    return X


def _decoder_ll(model, X, Z):
    out, lvx, _ = model._decode(Z.astype(X.dtype, copy=False))
    return model._lik.forward(X, out, lvx).astype(np.float64)


def decoder_log_lik(model, X, Z) -> np.ndarray:
    """log p(x_n | z) for a fitted VAE: Z (N, L) gives (N,); Z (S, N, L) gives (S, N)."""
    X = _check_vae(model, X)
    Z = np.asarray(Z, dtype=float)
    S = Z.shape[0] if Z.ndim == 3 else None
    Z3 = Z if Z.ndim == 3 else Z[None]
    if Z3.shape[1:] != (X.shape[0], model.n_latent):
        raise ValueError(f"Z must have shape (N, L) or (S, N, L) with N={X.shape[0]}, "
                         f"L={model.n_latent}; got {Z.shape}")
    n = Z3.shape[0]
    ll = _decoder_ll(model, np.tile(X, (n, 1)), Z3.reshape(-1, model.n_latent)).reshape(n, -1)
    return ll if S is not None else ll[0]


def _decoder_ll_grad(model, X, Z):
    public = getattr(model, "decoder_log_lik_and_grad", None)
    if public is not None:
        return public(X, Z)
    from .vae import LOGVAR_MAX, LOGVAR_MIN  # the same backward pass, for VAEs without the method
    Z = Z.astype(X.dtype, copy=False)
    out, lvx, rawx = model._decode(Z)
    ll, g_out, g_lvx = model._lik.forward_backward(X, out, lvx)
    gd = model.dec_out.backward(g_out)
    if model.likelihood == "gaussian" and model.dec_logvar is not None:
        g_lvx = g_lvx * ((rawx > LOGVAR_MIN) & (rawx < LOGVAR_MAX))
        gd = gd + model.dec_logvar.backward(g_lvx)
    gz = model.decoder.backward(gd) if model.decoder is not None else gd
    return ll.astype(np.float64), gz.astype(np.float64)


def decoder_log_lik_and_grad(model, X, Z):
    r"""log p(x_n | z_n) and ∂/∂z_n for a fitted VAE, Z (N, L): ``(ll (N,), grad (N, L))``.

    The decoder's backward pass (chain rule through the output likelihood and the network, as in
    :mod:`latentmodels.vae`), taken to the input z. It overwrites the model's gradient buffers (not
    its parameters); call it on a fitted model, not in the middle of a training step."""
    X = _check_vae(model, X)
    Z = check_array(Z, "Z")
    if Z.shape != (X.shape[0], model.n_latent):
        raise ValueError(f"Z must have shape {(X.shape[0], model.n_latent)}, got {Z.shape}")
    return _decoder_ll_grad(model, X, Z)


def _kl_rows(q: GaussianQ) -> np.ndarray:
    """KL(q_n ‖ N(0, I)) per row = ½ [tr Σ + ‖μ‖² − L − log|Σ|] (Kingma & Welling 2014, App. B)."""
    mu = q.mean
    L = mu.shape[1]
    if q.diagonal:
        v = np.broadcast_to(q.cov, mu.shape)
        return 0.5 * np.sum(v + mu * mu - 1.0 - np.log(v), axis=1)
    C = np.broadcast_to(q.cov, (mu.shape[0], L, L))
    sign, ld = np.linalg.slogdet(C)
    return 0.5 * (np.trace(C, axis1=1, axis2=2) + np.sum(mu * mu, axis=1) - L - ld)


def decoder_moments_and_samples(model, Z, random_state=None):
    r"""For a fitted VAE and codes Z (M, L): the decoder's per-pixel mean E[x | z], variance
    Var[x | z] and one sample x ~ p(x | z) at each code, in the data's units: ``(means, variances,
    samples)``, each (M, D) float64. Variances: p(1 − p) (Bernoulli), e^{log σ²} (Gaussian),
    Σ_k k² p_k − (Σ_k k p_k)² (categorical, levels k = 0..K−1)."""
    from .validation import check_fitted
    check_fitted(model, ("params",))
    Z = check_array(Z, "Z")
    if Z.shape[1] != model.n_latent:
        raise ValueError(f"Z has {Z.shape[1]} columns, the VAE has n_latent={model.n_latent}")
    rng = check_random_state(random_state)
    out, lvx, _ = model._decode(Z.astype(np.dtype(model.dtype)))
    lik = model._lik
    mean = np.asarray(lik.mean(out, lvx), dtype=np.float64)
    if model.likelihood == "bernoulli":
        var = mean * (1.0 - mean)
    elif model.likelihood == "gaussian":
        var = np.broadcast_to(np.exp(np.asarray(lvx, dtype=np.float64)), mean.shape).copy()
    elif model.likelihood == "categorical":
        P = np.asarray(lik.probabilities(out), dtype=np.float64).reshape(*mean.shape, -1)
        k = np.arange(P.shape[-1], dtype=np.float64)
        var = np.sum(P * k * k, axis=-1) - np.sum(P * k, axis=-1) ** 2
    else:
        raise ValueError(f"decoder variances are implemented for bernoulli, gaussian and categorical "
                         f"decoders, not {model.likelihood!r}")
    return mean, var, np.asarray(lik.sample(out, lvx, rng), dtype=np.float64)


def elbo_rows(model, X, q: GaussianQ | None = None, n_samples: int = 100, random_state=None):
    r"""Per-row ELBO of a fitted VAE under a Gaussian q (default the encoder's, ``posterior(X)``):

        L_n = (1/S) Σ_s log p(x_n | z_ns) − KL(q_n ‖ N(0, I)),   z_ns ~ q_n

    (Kingma & Welling 2014, eq. 7, analytic KL). Returns (N,) float64; the Monte Carlo error of each
    row is that of the S-sample average."""
    X = _check_vae(model, X)
    q = model.posterior(X) if q is None else q
    if q.mean.shape != (X.shape[0], model.n_latent):
        raise ValueError(f"q has means of shape {q.mean.shape}, expected {(X.shape[0], model.n_latent)}")
    S = check_int(n_samples, "n_samples")
    rng = check_random_state(random_state)
    ell = np.zeros(X.shape[0])
    chunk = max(1, int(2e6 // (X.shape[0] * max(X.shape[1], model.n_latent))))
    for s0 in range(0, S, chunk):
        n = min(chunk, S - s0)
        Z = q.sample(rng, n_samples=n)
        ell += decoder_log_lik(model, X, Z).sum(axis=0)
    return ell / S - _kl_rows(q)


def _gauss_logpdf_rows(Z, q: GaussianQ):
    """log q_n(z_sn) for Z (S, N, L): (S, N)."""
    mu = q.mean
    if q.diagonal:
        v = np.broadcast_to(q.cov, mu.shape)
        return -0.5 * np.sum(_LOG_2PI + np.log(v) + (Z - mu) ** 2 / v, axis=2)
    C = np.broadcast_to(q.cov, (mu.shape[0], mu.shape[1], mu.shape[1]))
    Lc = np.linalg.cholesky(C)
    diff = np.moveaxis(Z - mu, 0, 1)                       # (N, S, L)
    sol = np.linalg.solve(Lc[:, None], diff[..., None])[..., 0]
    ld = 2.0 * np.sum(np.log(np.diagonal(Lc, axis1=1, axis2=2)), axis=1)
    return (-0.5 * (mu.shape[1] * _LOG_2PI + ld[:, None] + np.sum(sol * sol, axis=2))).T


def iwae_rows(model, X, n_importance: int = 1000, q: GaussianQ | None = None, random_state=None):
    r"""Per-row importance-weighted estimate of log p(x_n) (Burda, Grosse & Salakhutdinov 2016, eq. 8)

        log (1/K) Σ_k p(x_n | z_k) p(z_k) / q_n(z_k),   z_k ~ q_n,

    by log-sum-exp. ``q=None``: the model's own q(z | x) (through its flow, if any; the VAE's
    estimator). A Gaussian ``q`` (e.g. a refined one, or the exact posterior of a linear model — then
    every weight equals p(x) and the estimate is exact for any K). Returns (N,) float64."""
    X = _check_vae(model, X)
    K = check_int(n_importance, "n_importance")
    rng = check_random_state(random_state)
    if q is None:
        score = getattr(model, "score_samples", None)
        if score is not None:
            return np.asarray(score(X, n_importance=K, random_state=rng), dtype=np.float64)
        return np.asarray(model._log_likelihood_rows(X, K, rng), dtype=np.float64)
    if q.mean.shape != (X.shape[0], model.n_latent):
        raise ValueError(f"q has means of shape {q.mean.shape}, expected {(X.shape[0], model.n_latent)}")
    N = X.shape[0]
    chunk = max(1, int(2e6 // (N * max(X.shape[1], model.n_latent))))
    parts = []
    for k0 in range(0, K, chunk):
        n = min(chunk, K - k0)
        Z = q.sample(rng, n_samples=n)
        lw = (decoder_log_lik(model, X, Z) - 0.5 * np.sum(_LOG_2PI + Z * Z, axis=2)
              - _gauss_logpdf_rows(Z, q))
        parts.append(special.logsumexp(lw, axis=0))
    return special.logsumexp(np.stack(parts), axis=0) - np.log(K)


def refine_posterior(model, X, q0: GaussianQ | None = None, n_iter: int = 300, n_samples: int = 8,
                     learning_rate: float = 0.05, random_state=None) -> GaussianQ:
    r"""A per-row diagonal Gaussian q_n = N(m_n, diag e^{v_n}) maximising the ELBO with the decoder
    held fixed — the "optimal" q of the family, free of the encoder's amortisation (Cremer, Li &
    Duvenaud 2018, §3, "local" optimisation of each data point's variational parameters).

    Ascent by Adam (Kingma & Ba 2015) on all rows at once (the objective is a sum of per-row terms,
    Adam's update is element-wise, so each row is optimised independently), from ``q0`` (default the
    encoder's q), with fresh ε ~ N(0, I) (S = ``n_samples``) every step and the step size decayed
    linearly to 0, and the returned q is the average of the iterates of the second half (Polyak &
    Juditsky 1992), which averages out the gradient noise. The pathwise gradient of
    L_n = E_ε[log p(x_n | m + e^{v/2} ε)] − KL(q_n ‖ N(0, I)):

        ∂L/∂m = E[∇_z log p(x|z)] − m,    ∂L/∂v = ½ E[∇_z log p(x|z) ⊙ ε] e^{v/2} − ½ (e^{v} − 1).

    Returns a new :class:`GaussianQ` (diagonal, float64)."""
    X = _check_vae(model, X)
    N, L = X.shape[0], model.n_latent
    q0 = model.posterior(X) if q0 is None else q0
    if q0.mean.shape != (N, L):
        raise ValueError(f"q0 has means of shape {q0.mean.shape}, expected {(N, L)}")
    m = q0.mean.copy()
    v = np.log(np.broadcast_to(q0.cov if q0.diagonal else np.diagonal(np.broadcast_to(
        q0.cov, (N, L, L)), axis1=1, axis2=2), (N, L))).copy()
    n_iter = check_int(n_iter, "n_iter")
    S = check_int(n_samples, "n_samples")
    lr0 = check_positive(learning_rate, "learning_rate")
    rng = check_random_state(random_state)
    Xs = np.tile(X, (S, 1))
    b1, b2, eps_adam = 0.9, 0.999, 1e-8
    state = [np.zeros_like(m), np.zeros_like(m), np.zeros_like(v), np.zeros_like(v)]
    m_avg, v_avg = m.copy(), v.copy()
    for t in range(1, n_iter + 1):
        e = rng.standard_normal((S, N, L))
        sd = np.exp(0.5 * v)
        z = (m + sd * e).reshape(S * N, L)
        _, gz = _decoder_ll_grad(model, Xs, z)
        gz = gz.reshape(S, N, L)
        gm = gz.mean(axis=0) - m
        gv = 0.5 * np.mean(gz * e, axis=0) * sd - 0.5 * (np.exp(v) - 1.0)
        lr = lr0 * (1.0 - (t - 1) / n_iter)
        for p, g, i in ((m, gm, 0), (v, gv, 2)):
            state[i] = b1 * state[i] + (1 - b1) * g
            state[i + 1] = b2 * state[i + 1] + (1 - b2) * g * g
            mhat = state[i] / (1 - b1 ** t)
            vhat = state[i + 1] / (1 - b2 ** t)
            p += lr * mhat / (np.sqrt(vhat) + eps_adam)
        np.clip(v, -15.0, 15.0, out=v)
        if t > n_iter // 2:              # Polyak–Ruppert average of the second half's iterates
            k = t - n_iter // 2
            m_avg += (m - m_avg) / k
            v_avg += (v - v_avg) / k
    return GaussianQ.from_diag(m_avg, np.exp(v_avg))


@dataclass(frozen=True)
class GapSplit:
    r"""log p(x) − ELBO(q_φ) = [log p(x) − ELBO(q*)] + [ELBO(q*) − ELBO(q_φ)]
    = approximation gap + amortisation gap (Cremer, Li & Duvenaud 2018, eqs. 5–6), means per row in
    nats, each with a standard error over rows (paired: the same rows enter every term).

    ``log_px`` is the IWAE estimate with K importance samples (the larger of the estimates with the
    encoder's q and with q* as proposals — both are lower bounds in expectation). The per-row
    values (``*_rows``) and q* itself are kept for paired comparisons."""

    log_px: float
    log_px_se: float
    elbo_amortised: float
    elbo_refined: float
    approximation_gap: float
    approximation_gap_se: float
    amortisation_gap: float
    amortisation_gap_se: float
    n_importance: int
    log_px_rows: np.ndarray
    elbo_amortised_rows: np.ndarray
    elbo_refined_rows: np.ndarray
    q_refined: GaussianQ


def gap_split(model, X, n_importance: int = 1000, n_elbo_samples: int = 200, refine_kwargs=None,
              random_state=None) -> GapSplit:
    """Split a fitted Gaussian-q VAE's gap on X (Cremer et al. 2018) into approximation and
    amortisation parts: q* by :func:`refine_posterior`, the ELBOs by :func:`elbo_rows` with fresh draws
    (not those q* was fitted on), log p(x) by :func:`iwae_rows`. See :class:`GapSplit`."""
    X = _check_vae(model, X)
    rng = check_random_state(random_state)
    q_enc = model.posterior(X)
    q_star = refine_posterior(model, X, q_enc, random_state=rng, **(refine_kwargs or {}))
    e_amort = elbo_rows(model, X, q_enc, n_elbo_samples, rng)
    e_star = elbo_rows(model, X, q_star, n_elbo_samples, rng)
    K = check_int(n_importance, "n_importance")
    lp_enc = iwae_rows(model, X, K, None, rng)
    lp_star = iwae_rows(model, X, K, q_star, rng)
    lp = lp_enc if lp_enc.mean() >= lp_star.mean() else lp_star
    a, a_se = mean_and_se(lp - e_star)
    b, b_se = mean_and_se(e_star - e_amort)
    mp, mp_se = mean_and_se(lp)
    return GapSplit(mp, mp_se, float(e_amort.mean()), float(e_star.mean()), a, a_se, b, b_se, K,
                    lp, e_amort, e_star, q_star)
