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
    "em_elbo", "em_bound_theta", "fa_generative", "ppca_sigma_limit", "mean_field_contours",
    "vbpca_ard", "vae_latent_space",
    "vae_reconstructions", "vae_uncertainty", "image_rows", "codes_vs_prior", "training_curves",
    "density_fits",
    "gradient_variance", "chain_bars", "make_all",
]


def em_elbo(history, steps=None, title="EM on factor analysis: the ELBO after every half-step"):
    """EM's ELBO after each E- and M-step, with log p(x | θ) above it, and the gap on a log scale.

    ``history`` holds L after every step; ``steps`` their labels ("E", "M"; other labels, e.g. an
    acceleration jump, are drawn but not shaded). Without ``steps`` the history is read as
    alternating E, M, E, … . After an E-step the bound is tight (Bishop PRML eq. 9.70 with
    KL = 0), so log p(x | θ) after an M-step is the value of the next E-step; the shaded gap
    between them is KL(q_old ‖ p(z | x, θ_new)), which the next E-step closes. The inset shows that
    gap per iteration on a log axis, where its geometric decay stays visible.
    """
    h = np.asarray(history, dtype=float)
    steps = ["E" if k % 2 == 0 else "M" for k in range(len(h))] if steps is None else list(steps)
    if len(steps) != len(h):
        raise ValueError(f"steps has {len(steps)} labels for {len(h)} history values")
    fig = Figure(figsize=(7.5, 4.4), layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(len(h))
    # log p(x | θ) during step k: the value at the next E-step (tight there)
    logp = np.empty(len(h))
    nxt = h[-1]
    for k in range(len(h) - 1, -1, -1):
        if steps[k] == "E":
            nxt = h[k]
        logp[k] = nxt
    ax.step(x, logp, where="post", color="C3", lw=1.5, label="log p(x | θ)  (exact)")
    ax.plot(x, h, "o-", color="C0", ms=3.5, lw=1, label="ELBO L(q, θ)")
    gaps = []
    for k in range(len(h) - 1):
        if steps[k] == "M" and steps[k + 1] == "E":
            ax.fill_between([k, k + 1], [h[k], h[k + 1]], [logp[k], logp[k + 1]], color="C3",
                            alpha=0.15, lw=0)
            gaps.append(h[k + 1] - h[k])
    ax.set_xlabel("step (E and M alternate)")
    ax.set_ylabel("mean nats per sample")
    ax.set_title(title)
    n_iter = sum(s == "M" for s in steps)
    ax.legend(loc="lower right", fontsize=8,
              title=f"{n_iter} EM iterations; shaded: gap = KL(q ‖ posterior)", title_fontsize=8)
    gaps = np.asarray(gaps)
    if gaps.size and np.all(gaps > 0):
        ins = ax.inset_axes([0.42, 0.42, 0.33, 0.3])
        ins.semilogy(np.arange(1, gaps.size + 1), gaps, "o-", color="C3", ms=2.5, lw=1)
        ins.set_title("gap after each M-step (log scale)", fontsize=7)
        ins.set_xlabel("iteration", fontsize=7)
        ins.tick_params(labelsize=6)
    return fig


def fa_generative(W, mu, psi, n_samples=300, random_state=0):
    """Factor analysis's generative process in 2-D with one factor (Bishop PRML Fig. 12.9's idea).

    z ~ N(0, 1) picks a point μ + W z on the line spanned by W (the *shared*, low-rank part); each
    feature then gets its own independent noise of variance ψ_d (the *unique* part, an axis-aligned
    ellipse around that point). The marginal of x is N(μ, W Wᵀ + Ψ), whose 2σ contour is drawn.
    Returns the figure; the drawn samples are in ``fig.samples`` for checks.
    """
    W = np.asarray(W, float).reshape(2, 1)
    mu, psi = np.asarray(mu, float), np.asarray(psi, float)
    rng = np.random.default_rng(random_state)
    z = rng.standard_normal(n_samples)
    centres = mu + z[:, None] * W[:, 0]
    x = centres + rng.standard_normal((n_samples, 2)) * np.sqrt(psi)
    C = W @ W.T + np.diag(psi)
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    axes = [fig.add_subplot(1, 3, i + 1) for i in range(3)]
    t = np.linspace(-3, 3, 2)
    for ax in axes:
        ax.plot(mu[0] + t * W[0, 0], mu[1] + t * W[1, 0], color="C0", lw=1.5,
                label="μ + W z  (shared part)")
    axes[0].scatter(centres[:, 0], centres[:, 1], s=6, color="C0")
    axes[0].set_title("1. z ~ N(0, 1): a point μ + Wz on the line")
    for k in range(0, n_samples, max(1, n_samples // 12)):
        _ellipse(axes[1], centres[k], np.diag(psi), color="C2", lw=0.8)
    axes[1].scatter(centres[::max(1, n_samples // 12), 0], centres[::max(1, n_samples // 12), 1],
                    s=10, color="C0")
    axes[1].plot([], [], color="C2", label="Ψ: unique noise, 1σ and 2σ")
    axes[1].set_title("2. each feature adds its own noise ψ_d")
    axes[2].scatter(x[:, 0], x[:, 1], s=5, color="C7", label="x = μ + Wz + ε")
    _ellipse(axes[2], mu, C, color="C3", lw=1.5)
    axes[2].plot([], [], color="C3", label="marginal N(μ, WWᵀ + Ψ)")
    axes[2].set_title("3. the marginal: low rank + diagonal")
    r = 3.2 * np.sqrt(C.diagonal().max())
    for ax in axes:
        ax.set_xlim(mu[0] - r, mu[0] + r)
        ax.set_ylim(mu[1] - r, mu[1] + r)
        ax.set_aspect("equal")
        ax.set_xlabel("x₁")
        ax.set_ylabel("x₂")
        ax.legend(loc="lower right", fontsize=7)
    fig.samples = x
    return fig


def em_bound_theta(t, log_lik, bound, t_new=1.0):
    """Bishop PRML Fig. 9.14: log p(x | θ) and the bound L(q_old, θ) along a path in θ-space.

    ``t`` parametrises θ(t) = θ_old + t (θ_new − θ_old); ``log_lik`` and ``bound`` are the two
    curves on that grid. The bound touches log p at θ_old (t = 0), where q_old is the exact
    posterior, and the M-step moves to its maximum (t = ``t_new``).
    """
    t, log_lik, bound = (np.asarray(a, float) for a in (t, log_lik, bound))
    fig = Figure(figsize=(7.5, 4.2), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(t, log_lik, color="C3", lw=2, label="log p(x | θ)")
    ax.plot(t, bound, color="C0", lw=2, label="L(q_old, θ), q_old = p(z | x, θ_old)")
    ax.fill_between(t, bound, log_lik, color="C3", alpha=0.12, lw=0,
                    label="KL(q_old ‖ p(z | x, θ))")
    i0 = int(np.argmin(np.abs(t)))
    ax.plot([0], [log_lik[i0]], "ko", ms=5)
    ax.annotate("θ_old: the bound touches", (0, log_lik[i0]), textcoords="offset points",
                xytext=(8, -16), fontsize=8)
    i1 = int(np.argmin(np.abs(t - t_new)))
    ax.axvline(t_new, color="gray", ls=":", lw=1)
    ax.annotate("θ_new = argmax_θ L(q_old, θ)", (t_new, bound[i1]), textcoords="offset points",
                xytext=(6, -18), fontsize=8)
    ax.set_xlabel("t along θ(t) = θ_old + t (θ_new − θ_old)")
    ax.set_ylabel("mean nats per sample")
    ax.set_title("The EM bound in θ-space (Bishop Fig. 9.14)")
    ax.legend(loc="lower center", fontsize=8)
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
    rho = m.cov_[0, 1] / np.sqrt(m.cov_[0, 0] * m.cov_[1, 1]) if len(m.cov_) == 2 else None
    if rho is not None:
        fig.suptitle("The two KLs are equal for every 2-D Gaussian: both are −½ log(1 − ρ²) "
                     f"= {-0.5 * np.log(1 - rho ** 2):.3f} nats (ρ = {rho:.2f}); "
                     "in 3 or more dimensions they differ", fontsize=9)
    return fig


def vbpca_ard(model, true_dim=None):
    """VB-PCA's posterior-mean ARD precisions ⟨α_i⟩ and column norms ‖⟨w_i⟩‖², on log axes.

    A switched-off column has ⟨w_i⟩ = 0 exactly (or below 1e-12 of the largest norm), which a log
    axis cannot show as a bar: those are drawn as markers on the axis floor, labelled "0", so that
    every component the model was given appears in the figure.
    """
    order = np.argsort(model.alpha_)
    alpha = np.asarray(model.alpha_)[order]
    norms = np.sum(np.asarray(model.W_) ** 2, axis=0)[order]
    fig = Figure(figsize=(8.5, 4), layout="constrained")
    ax1, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    idx = np.arange(1, len(alpha) + 1)
    on = norms > 1e-3 * norms.max()
    colors = np.where(on, "C0", "C7")
    a_floor = 10 ** np.floor(np.log10(alpha.min()) - 0.5)
    ax1.bar(idx, alpha - a_floor, bottom=a_floor, color=colors)
    ax1.set_yscale("log")
    ax1.set_ylim(a_floor, alpha.max() * 3)
    ax1.set_xticks(idx)
    ax1.set_xlabel("component (sorted by ⟨α⟩)")
    ax1.set_ylabel("ARD precision ⟨α_i⟩")
    ax1.set_title("ARD precisions (grey: switched off)")
    positive = norms > 1e-12 * norms.max()
    n_floor = 10 ** np.floor(np.log10(norms[positive].min()) - 1.0)
    ax2.bar(idx[positive], norms[positive] - n_floor, bottom=n_floor, color=colors[positive])
    ax2.plot(idx[~positive], np.full((~positive).sum(), n_floor), "v", color="C7", ms=9,
             clip_on=False, label="‖⟨w_i⟩‖² = 0: switched off")
    for i in idx[~positive]:
        ax2.annotate("0", (i, n_floor), textcoords="offset points", xytext=(0, 8), ha="center",
                     fontsize=8, color="C7")
    ax2.set_yscale("log")
    ax2.set_ylim(n_floor, norms.max() * 3)
    ax2.set_xticks(idx)
    ax2.set_xlabel("component (sorted by ⟨α⟩)")
    ax2.set_ylabel("‖⟨w_i⟩‖²  (data units²)")
    if (~positive).any():
        ax2.legend(loc="upper right", fontsize=8)
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
    ax.set_title("codes: the mean (= mode) of q(z|x) for every digit")
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
    fig.suptitle("Columns 2+ are decoder means E[x | z] (pixel probabilities) at the mean code and at "
                 "codes drawn from q(z | x) — not samples of x.\nA decoder mean at one code averages "
                 "over the images whose posteriors overlap there (Zhao et al. 2017): hence blur",
                 fontsize=8)
    return fig


def image_rows(rows, title=None, shape=None, vmin=0.0, vmax=1.0, cmap="gray_r"):
    """A grid of images, one labelled row per entry of ``rows`` (label → array (n, D))."""
    rows = {k: np.atleast_2d(np.asarray(v, float)) for k, v in rows.items()}
    n_cols = max(len(v) for v in rows.values())
    D = next(iter(rows.values())).shape[1]
    shape = shape or (int(round(np.sqrt(D))),) * 2
    fig = Figure(figsize=(max(4.0, 0.85 * n_cols + 1.2), 0.9 * len(rows) + (0.5 if title else 0.1)),
                 layout="constrained")
    for r, (label, imgs) in enumerate(rows.items()):
        for c in range(n_cols):
            ax = fig.add_subplot(len(rows), n_cols, r * n_cols + c + 1)
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(imgs):
                ax.imshow(imgs[c].reshape(shape), cmap=cmap, vmin=vmin, vmax=vmax)
            else:
                ax.axis("off")
            if c == 0:
                ax.set_ylabel(label, fontsize=7, rotation=0, ha="right", va="center")
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def vae_uncertainty(vae, X, n_samples=500, random_state=0):
    """The MAP code's reconstruction vs the posterior average, and a per-pixel uncertainty map.

    Rows: the data; decode(μ_φ(x)) (the mode of q, the slide's "MAP estimate"); the Monte Carlo
    average E_q[decode(z)] over ``n_samples`` draws z ~ q(z|x); the per-pixel standard deviation of
    decode(z) over those draws (how much the decoder mean moves within the posterior). For a
    non-linear decoder decode(E_q z) ≠ E_q[decode(z)].
    """
    mode = vae.reconstruct(X)
    draws = vae.reconstruct(X, n_samples=n_samples, random_state=random_state)
    sd = draws.std(axis=0)
    fig = image_rows({"data": X, "decode(mean code)": mode, "E_q[decode(z)]": draws.mean(axis=0),
                      "s.d. of decode(z)\n(scale 0–0.5)": sd / 0.5},
                     title=f"MAP code vs {n_samples} posterior samples: the last row is a per-pixel "
                           "uncertainty map (darker = more uncertain)")
    return fig


def codes_vs_prior(codes, title="Latent codes of the training data against the prior N(0, I)"):
    """Scatter of 2-D codes per model (name → (N, 2)), each with the prior's 1σ/2σ circles."""
    fig = Figure(figsize=(4.2 * len(codes), 4.2), layout="constrained")
    for i, (name, Z) in enumerate(codes.items()):
        Z = np.asarray(Z, float)
        ax = fig.add_subplot(1, len(codes), i + 1)
        ax.scatter(Z[:, 0], Z[:, 1], s=3, alpha=0.5, color="C0")
        _ellipse(ax, np.zeros(2), np.eye(2), color="C3", lw=1.5)
        ax.plot([], [], color="C3", label="N(0, I): 1σ, 2σ")
        ax.set_aspect("equal")
        r = max(3.0, np.percentile(np.abs(Z), 99.5))
        ax.set_xlim(-r, r)
        ax.set_ylim(-r, r)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("z₁")
        ax.set_ylabel("z₂")
        ax.legend(loc="upper right", fontsize=7)
    fig.suptitle(title, fontsize=10)
    return fig


def training_curves(curves, ylabel="held-out ELBO (nats per sample)", title=None):
    """Learning curves side by side: name → sequence of values per epoch."""
    fig = Figure(figsize=(7.5, 4), layout="constrained")
    ax = fig.add_subplot()
    for name, c in curves.items():
        ax.plot(np.arange(1, len(c) + 1), c, label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8)
    return fig


def density_fits(grid, target, fits, samples=None, title=None):
    """1-D densities on ``grid``: the ``target`` density (array) and fitted ones (name → array),
    over a histogram of ``samples`` if given (the maximum-likelihood toy of notebook 7)."""
    grid = np.asarray(grid, float)
    fig = Figure(figsize=(7.5, 4), layout="constrained")
    ax = fig.add_subplot()
    if samples is not None:
        ax.hist(np.asarray(samples, float), bins=80, density=True, color="C7", alpha=0.35,
                label="data (histogram)")
    ax.plot(grid, target, color="k", lw=2, label="p(x), the data's density")
    for i, (name, dens) in enumerate(fits.items()):
        ax.plot(grid, dens, lw=1.8, ls=("--", "-.", ":")[i % 3], color=f"C{i}", label=name)
    ax.set_xlabel("x")
    ax.set_ylabel("density")
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
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
    """The chain's table: test log p(x) and test ELBO per model, and the gap between them.

    Left, the two values per model. When the result knows the data's integer levels (every row has
    ``bits_per_pixel``), both are shown as bounds on the discrete pixels in **bits per pixel** — one
    scale for the dequantised densities and the categorical row alike (lower is better); otherwise in
    nats per sample. The axis starts near the smallest value, not at zero, since the models differ by
    a little out of a lot. Right, the gap log p(x) − ELBO in nats on its own axis, where gaps of a
    fraction of a nat stay readable. Legends sit above the bars.
    """
    rows = result.rows
    fig = Figure(figsize=(11, 0.45 * len(rows) + 2.4), layout="constrained")
    gs_ = fig.add_gridspec(1, 2, width_ratios=(2.2, 1))
    ax, axg = fig.add_subplot(gs_[0]), fig.add_subplot(gs_[1])
    y = np.arange(len(rows))
    ll = np.array([r.test_log_lik for r in rows], float)
    el = np.array([r.test_elbo for r in rows], float)
    n_levels = getattr(result, "n_levels", None)
    D = getattr(result, "n_features", None)
    bpp = n_levels is not None and D is not None and all(
        getattr(r, "bits_per_pixel", None) is not None for r in rows)
    if bpp:
        def to_bits(v, r):   # −(log P bound)/(D log 2); dequantised rows pay D log K (Theis et al. 2016)
            shift = D * np.log(n_levels) if getattr(r, "space", "dequantised") == "dequantised" else 0.0
            return -(v - shift) / (D * np.log(2))
        ll = np.array([to_bits(v, r) for v, r in zip(ll, rows)])
        el = np.array([to_bits(v, r) for v, r in zip(el, rows)])
        xlabel = "bits per pixel of the raw levels\n(a bound; lower is better)"
        lab_ll, lab_el = "from test log p(x) (exact, IWAE or plug-in)", "from test ELBO"
    else:
        xlabel = "mean nats per sample\n(higher is better)"
        lab_ll, lab_el = "test log p(x) (exact, IWAE or plug-in)", "test ELBO"
    finite = np.isfinite(np.r_[ll, el])
    lo, hi = np.min(np.r_[ll, el][finite]), np.max(np.r_[ll, el][finite])
    pad = 0.08 * (hi - lo if hi > lo else 1.0)
    left = lo - pad
    ax.barh(y - 0.2, ll - left, 0.4, left=left, color="C3", label=lab_ll)
    ax.barh(y + 0.2, el - left, 0.4, left=left, color="C0", label=lab_el)
    for yi, v in zip(y, ll):
        ax.annotate(f"{v:.3f}" if bpp else f"{v:.1f}", (v, yi - 0.2), textcoords="offset points",
                    xytext=(3, -3), fontsize=7)
    ax.set_xlim(left, hi + 3 * pad)
    ax.set_yticks(y, [r.name for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel(f"{xlabel}; the axis starts at {left:.2f}, not at 0")
    ax.set_title(f"The chain on {result.data}; L = {result.n_components}", fontsize=10)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.07), ncol=2, fontsize=8, frameon=False)
    gap = np.array([r.test_log_lik - r.test_elbo for r in rows], float)
    axg.barh(y, gap, 0.5, color=np.where(gap >= 0, "C2", "C1"))
    axg.axvline(0, color="k", lw=0.8)
    for yi, g in zip(y, gap):
        text = "0 (exact q)" if abs(g) < 1e-9 else f"{g:.2g}"
        axg.annotate(text, (max(g, 0), yi), textcoords="offset points", xytext=(3, -3), fontsize=7)
    axg.set_yticks(y, [""] * len(rows))
    axg.invert_yaxis()
    gmax = np.nanmax(np.abs(gap)) if np.isfinite(gap).any() else 1.0
    axg.set_xlim(min(0.0, np.nanmin(gap)) - 0.05 * gmax, 1.3 * gmax)
    axg.set_xlabel("gap = log p(x) − ELBO\n(nats per sample)")
    axg.set_title("what the approximate q costs", fontsize=10)
    return fig


def make_all(out="figures", *, quick=False, progress=None) -> list:
    """Fit what every figure needs and write them all as PNGs into ``out``. Returns the paths."""
    from .chain import chain_inputs, run_chain
    from .datasets import binarize, load_digits, make_fa_data, make_ppca_data
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
        fa = FactorAnalysis(2, accelerate=False, polish=False, init="random", n_init=1,
                            max_iter=12, random_state=3).fit(X)
    save(em_elbo(fa.history_, getattr(fa, "history_steps_", None)), "em_elbo.png")
    say("PPCA as sigma^2 -> 0 ...")
    Xp, _ = make_ppca_data(400, 10, 2, sigma2=0.5, random_state=0)
    save(ppca_sigma_limit(Xp, 2), "ppca_sigma_limit.png")
    say("mean field vs exact Gaussian ...")
    save(mean_field_contours(), "mean_field_contours.png")
    say("VB-PCA with ARD ...")
    Xv, _ = make_ppca_data(500, 10, 3, sigma2=0.1, random_state=0)
    save(vbpca_ard(VBPCA(9, random_state=0).fit(Xv), true_dim=3), "vbpca_ard.png")
    say("a 2-D VAE on the binarised digits ...")
    pixels, y = load_digits()
    Xd = binarize(pixels / 16.0, random_state=0)   # a Bernoulli decoder's data: log p(x) is a probability
    vae = VAE(2, hidden=(256,), activation="relu", batch_size=64, learning_rate=2e-3,
              random_state=0).fit(Xd, 8 if quick else 150)
    save(vae_latent_space(vae, Xd, y), "vae_latent_space.png")
    save(vae_reconstructions(vae, Xd[::97]), "vae_reconstructions.png")
    say("score-function vs pathwise gradients ...")
    save(gradient_variance(n_samples=5000 if quick else 100_000), "gradient_variance.png")
    say("the chain ...")
    d = chain_inputs("digits", random_state=0)
    if quick:   # a smoke test of the figure: 400 rows, L = 3, a few epochs (numbers mean little)
        rows = np.random.default_rng(0).permutation(d["X"].shape[0])[:400]
        d = dict(d, X=d["X"][rows], levels=d["levels"][rows], data_name="400 digits (quick)")
    save(chain_bars(run_chain(**d, n_components=3 if quick else 10, vae_epochs=4 if quick else 150,
                              quick=quick)), "chain.png")
    return written
