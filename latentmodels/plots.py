"""Every figure of the README and the notebooks, one function each.

Each function takes fitted models or data, draws on a new ``matplotlib.figure.Figure`` (no pyplot
state, so it works under any backend) and returns it. :func:`make_all` fits what the figures need
and writes them as PNGs; ``python -m latentmodels figures`` calls it.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Ellipse

__all__ = [
    "em_elbo", "ppca_sigma_limit", "mean_field_contours", "vbpca_ard", "vae_latent_space",
    "vae_reconstructions", "gradient_variance", "chain_bars", "make_all",
]


def em_elbo(history, title="EM on factor analysis: the ELBO after every half-step"):
    """EM's ELBO after each E- and M-step, with log p(x | θ) above it.

    ``history`` alternates E, M, E, M, …; after an E-step the bound is tight, so log p(x | θ_t)
    is the value after the E-step that follows θ_t. The shaded gap after each M-step is
    KL(q_old ‖ p(z | x, θ_new)), which the next E-step closes.
    """
    h = np.asarray(history)
    n_iter = (len(h) - 1) // 2
    fig = Figure(figsize=(7.5, 4.2), layout="constrained")
    ax = fig.add_subplot()
    steps = np.arange(len(h))
    # log p(x | θ) during half-step k: θ after the M-step at or before k, i.e. the next E value
    logp = np.empty(len(h))
    for k in range(len(h)):
        e_idx = k if k % 2 == 0 else k + 1
        logp[k] = h[min(e_idx, len(h) - 1)]
    ax.step(steps, logp, where="post", color="C3", lw=1.5, label="log p(x | θ)  (exact)")
    ax.plot(steps, h, "o-", color="C0", ms=3.5, lw=1, label="ELBO L(q, θ)")
    for k in range(1, len(h) - 1, 2):
        ax.fill_between([k, k + 1], [h[k], h[k + 1]], [logp[k], logp[k + 1]], color="C3",
                        alpha=0.15, lw=0)
    ax.set_xlabel("half-step (E-steps at even numbers, M-steps at odd)")
    ax.set_ylabel("mean nats per sample")
    ax.set_title(title)
    ax.legend(loc="lower right", title=f"{n_iter} EM iterations; shaded: gap = KL(q ‖ posterior)")
    return fig


def ppca_sigma_limit(X, n_components=2, sigma2_grid=None):
    """PPCA's posterior-mean reconstruction → PCA's orthogonal projection as σ² → 0."""
    from scipy import linalg

    from .ppca import PPCA, pca

    sigma2_grid = np.logspace(1, -8, 19) if sigma2_grid is None else np.asarray(sigma2_grid)
    ref = pca(X, n_components)
    proj = ref.reconstruct(X)
    err, angle = [], []
    for s2 in sigma2_grid:
        m = PPCA(n_components, sigma2=float(s2)).fit(X)
        err.append(np.sqrt(np.mean(np.sum((m.reconstruct(X) - proj) ** 2, axis=1))))
        angle.append(np.max(linalg.subspace_angles(m.W_, ref.components.T)))
    fig = Figure(figsize=(7.5, 4.2), layout="constrained")
    ax = fig.add_subplot()
    ax.loglog(sigma2_grid, err, "o-", label="RMS ‖PPCA reconstruction − PCA projection‖")
    lam_min = ref.explained_variance[-1]
    ax.loglog(sigma2_grid, sigma2_grid / lam_min * np.sqrt(np.mean(np.sum(
        (proj - ref.mean) ** 2, axis=1))), "--", color="gray",
        label="σ²/λ_L · RMS‖projection‖ (bound from the closed form)")
    ax.axvline(PPCA(n_components).fit(X).sigma2_, color="C3", ls=":",
               label="σ²_ML (the fitted PPCA)")
    ax.set_xlabel("noise variance σ² (held fixed)")
    ax.set_ylabel("distance in data units")
    ax.set_title("PPCA gives back PCA as σ² → 0  (max principal angle "
                 f"{max(angle):.1e} rad at every σ²)")
    ax.invert_xaxis()
    ax.legend(loc="lower left")
    return fig


def _ellipse(ax, mean, cov, **kw):
    vals, vecs = np.linalg.eigh(cov)
    for k in (1, 2):
        ax.add_patch(Ellipse(mean, 2 * k * np.sqrt(vals[1]), 2 * k * np.sqrt(vals[0]),
                             angle=np.degrees(np.arctan2(vecs[1, 1], vecs[0, 1])), fill=False,
                             **kw))


def mean_field_contours(mean=(0.0, 0.0), precision=((1.0, -0.9), (-0.9, 1.0))):
    """Bishop Fig. 10.2: a correlated Gaussian and its two factorised approximations."""
    from .vi import MeanFieldGaussian

    m = MeanFieldGaussian(np.asarray(mean, float), np.asarray(precision, float),
                          random_state=0).fit()
    fig = Figure(figsize=(9, 4.4), layout="constrained")
    for i, (title, mu, var, kl) in enumerate((
            ("mean field: minimises KL(q ‖ p)", m.mean_, m.var_, m.kl_qp_),
            ("moment matching: minimises KL(p ‖ q)", m.reverse_mean_, m.reverse_var_,
             m.reverse_kl_pq_))):
        ax = fig.add_subplot(1, 2, i + 1)
        _ellipse(ax, m.reverse_mean_, m.cov_, color="C0", lw=2)
        _ellipse(ax, mu, np.diag(var), color="C3", lw=2, ls="--")
        r = 2.5 * np.sqrt(m.cov_.diagonal().max())
        ax.set_xlim(mean[0] - r, mean[0] + r)
        ax.set_ylim(mean[1] - r, mean[1] + r)
        ax.set_aspect("equal")
        ax.set_xlabel("z₁")
        ax.set_ylabel("z₂")
        ax.set_title(f"{title}\nKL = {kl:.3f} nats; q variances {var[0]:.2f}, {var[1]:.2f}")
        ax.plot([], [], color="C0", label="p(z): 1σ and 2σ contours")
        ax.plot([], [], color="C3", ls="--", label="q(z) = q(z₁) q(z₂)")
        ax.legend(loc="upper left", fontsize=8)
    return fig


def vbpca_ard(model, true_dim=None):
    """VB-PCA's posterior-mean ARD precisions ⟨α_i⟩ and column norms ‖⟨w_i⟩‖²."""
    order = np.argsort(model.alpha_)
    alpha = model.alpha_[order]
    norms = np.sum(model.W_ ** 2, axis=0)[order]
    fig = Figure(figsize=(8, 4), layout="constrained")
    ax1, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    idx = np.arange(1, len(alpha) + 1)
    on = norms > 1e-3 * norms.max()
    ax1.bar(idx, alpha, color=np.where(on, "C0", "C7"))
    ax1.set_yscale("log")
    ax1.set_xlabel("component (sorted by ⟨α⟩)")
    ax1.set_ylabel("ARD precision ⟨α_i⟩")
    ax1.set_title("ARD precisions")
    ax2.bar(idx, norms, color=np.where(on, "C0", "C7"))
    ax2.set_yscale("log")
    ax2.set_xlabel("component (sorted by ⟨α⟩)")
    ax2.set_ylabel("‖⟨w_i⟩‖²  (data units²)")
    truth = "" if true_dim is None else f" (true dimension {true_dim})"
    ax2.set_title(f"{model.n_effective_} of {len(alpha)} components on{truth}")
    return fig


def vae_latent_space(vae, X, y, grid=12, span=2.5):
    """A 2-D VAE's codes of the digits coloured by label, and the decoded latent grid."""
    Z = vae.transform(X)
    fig = Figure(figsize=(11, 5.2), layout="constrained")
    ax = fig.add_subplot(1, 2, 1)
    sc = ax.scatter(Z[:, 0], Z[:, 1], c=y, cmap="tab10", s=6, alpha=0.8)
    fig.colorbar(sc, ax=ax, ticks=range(10), label="digit label")
    ax.set_xlabel("z₁ (encoder mean)")
    ax.set_ylabel("z₂ (encoder mean)")
    ax.set_title("q(z|x) means of every digit (MAP codes)")
    ax2 = fig.add_subplot(1, 2, 2)
    side = int(round(np.sqrt(X.shape[1])))
    g = np.linspace(-span, span, grid)
    codes = np.array([[a, b] for b in g[::-1] for a in g])
    imgs = vae.decode(codes).reshape(grid, grid, side, side)
    pad = 2  # white margins, so that digits whose ink reaches the border stay apart
    imgs = np.pad(imgs, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    cell = side + 2 * pad
    canvas = imgs.transpose(0, 2, 1, 3).reshape(grid * cell, grid * cell)
    ax2.imshow(canvas, cmap="gray_r", extent=(-span, span, -span, span))
    ax2.set_xlabel("z₁")
    ax2.set_ylabel("z₂")
    ax2.set_title("decoder mean E[x|z] on a grid of z: the learned manifold")
    return fig


def vae_reconstructions(vae, X, n_rows=6, n_samples=4, random_state=0):
    """Originals, the mean-code reconstruction, and reconstructions from sampled codes."""
    side = int(round(np.sqrt(X.shape[1])))
    mean_rec = vae.reconstruct(X[:n_rows])
    samp = vae.reconstruct(X[:n_rows], n_samples=n_samples, random_state=random_state)
    cols = 2 + n_samples
    fig = Figure(figsize=(1.3 * cols, 1.3 * n_rows + 0.6), layout="constrained")
    titles = ["data", "decode μ(x)"] + [f"decode z~q #{s + 1}" for s in range(n_samples)]
    for r in range(n_rows):
        panels = [X[r], mean_rec[r]] + [samp[s, r] for s in range(n_samples)]
        for c, img in enumerate(panels):
            ax = fig.add_subplot(n_rows, cols, r * cols + c + 1)
            ax.imshow(img.reshape(side, side), cmap="gray_r", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(titles[c], fontsize=8)
    fig.suptitle("Reconstructions are decoder means (pixel probabilities): averages over the "
                 "codes that could explain x — hence blur", fontsize=9)
    return fig


def gradient_variance(ks=(-2.0, -1.0, 0.0, 1.0, 2.0, 3.0), n_samples=100_000, random_state=0):
    """Single-sample variance of score-function vs pathwise gradients of E[(x−k)²], x ~ N(1, 1)."""
    from .estimators import (
        pathwise_gradients,
        quadratic,
        quadratic_exact_variances,
        score_function_gradients,
    )

    ks = np.asarray(ks, float)
    fig = Figure(figsize=(9, 4), layout="constrained")
    for j, label in enumerate(("∂/∂μ", "∂/∂σ")):
        ax = fig.add_subplot(1, 2, j + 1)
        for name, color in (("score", "C3"), ("pathwise", "C0")):
            measured, exact = [], []
            for k in ks:
                f, df = quadratic(k)
                g = (score_function_gradients(f, 1.0, 1.0, n_samples, random_state) if name == "score"
                     else pathwise_gradients(df, 1.0, 1.0, n_samples, random_state))
                measured.append(g[:, j].var())
                exact.append(quadratic_exact_variances(k)[name][j])
            ax.semilogy(ks, exact, "-", color=color, label=f"{name}: exact (hand-derived)")
            ax.semilogy(ks, measured, "o", color=color, label=f"{name}: measured, {n_samples:,} draws")
        ax.set_xlabel("k in f(x) = (x − k)²,  x ~ N(μ=1, σ=1)")
        ax.set_ylabel(f"variance of one-sample estimate of {label}")
        ax.set_title(f"gradient {label} E[f(x)]")
        ax.legend(fontsize=7, loc="upper center")
    return fig


def chain_bars(result):
    """The chain's table as bars: test ELBO and test log p(x) per model (nats per sample)."""
    rows = result.rows
    fig = Figure(figsize=(10, 4.8), layout="constrained")
    ax = fig.add_subplot()
    y = np.arange(len(rows))
    ax.barh(y + 0.2, [r.test_log_lik for r in rows], 0.4, color="C3",
            label="test log p(x) (exact, IWAE or plug-in)")
    ax.barh(y - 0.2, [r.test_elbo for r in rows], 0.4, color="C0", label="test ELBO")
    ax.set_yticks(y, [r.name for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel("mean nats per sample (higher is better)")
    ax.set_title(f"The chain on {result.data}; L = {result.n_components}")
    ax.legend(loc="lower left", fontsize=8)
    return fig


def make_all(out="figures", *, quick=False, progress=None) -> list:
    """Fit what every figure needs and write them all as PNGs into ``out``. Returns the paths."""
    from .chain import chain_data, run_chain
    from .datasets import load_digits, make_fa_data, make_ppca_data
    from .fa import FactorAnalysis
    from .vae import VAE
    from .vi import VBPCA

    say = progress or (lambda msg: None)
    os.makedirs(out, exist_ok=True)
    written = []

    def save(fig, name):
        path = os.path.join(out, name)
        fig.savefig(path, dpi=110)
        written.append(path)

    say("EM on factor analysis ...")
    X, _ = make_fa_data(300, 8, 2, random_state=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fa = FactorAnalysis(2, accelerate=False, polish=False, init="random", max_iter=12,
                            random_state=3).fit(X)
    save(em_elbo(fa.history_), "em_elbo.png")
    say("PPCA as sigma^2 -> 0 ...")
    Xp, _ = make_ppca_data(400, 10, 2, sigma2=0.5, random_state=0)
    save(ppca_sigma_limit(Xp, 2), "ppca_sigma_limit.png")
    say("mean field vs exact Gaussian ...")
    save(mean_field_contours(), "mean_field_contours.png")
    say("VB-PCA with ARD ...")
    Xv, _ = make_ppca_data(500, 10, 3, sigma2=0.1, random_state=0)
    save(vbpca_ard(VBPCA(9, random_state=0).fit(Xv), true_dim=3), "vbpca_ard.png")
    say("a 2-D VAE on the digits ...")
    pixels, y = load_digits()
    Xd = pixels / 16.0
    vae = VAE(2, hidden=(256,), activation="relu", batch_size=64, learning_rate=2e-3,
              random_state=0).fit(Xd, 8 if quick else 150)
    save(vae_latent_space(vae, Xd, y), "vae_latent_space.png")
    save(vae_reconstructions(vae, Xd[::97]), "vae_reconstructions.png")
    say("score-function vs pathwise gradients ...")
    save(gradient_variance(n_samples=5000 if quick else 100_000), "gradient_variance.png")
    say("the chain ...")
    Xc, desc = chain_data("digits", random_state=0)
    save(chain_bars(run_chain(Xc, n_components=10, vae_epochs=15 if quick else 150,
                              quick=quick, data_name=desc)), "chain.png")
    return written
