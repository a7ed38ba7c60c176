"""Mini-batch training of the VAE: the epoch loop, the two schedules, KL weight and warm-up, and
progress reports.

The loop knows the model only through a small protocol (all of it in :class:`~latentmodels.vae.VAE`):
``_rng`` (a Generator), ``optimizer_`` (an in-place optimiser from :mod:`latentmodels.nn`),
``_flat_params`` / ``_flat_grads`` (``{"encoder": flat, "decoder": flat}`` views of every
parameter and its gradient), ``_n_eps()`` (draws of ε per row), ``_objective(xb, eps, kl_weight)``
returning ``(value at kl_weight, value at weight 1, mean KL)`` and writing the gradient of the first
into the gradient buffers, and ``_elbo_value(X, rng)`` for the validation bound.

Schedules (the lecture's "joint" vs "full EM"):

- ``"joint"``: one gradient of the objective in (φ, θ), one optimiser step on both;
- ``"alternating"``: per mini-batch, a step on the encoder (and flow) parameters φ — the E-step,
  raising the bound towards log p(x) for the current θ — then a fresh ε, a fresh gradient at the new
  φ, and a step on the decoder parameters θ — the M-step.

KL weight (β-VAE, Higgins et al. 2017) and warm-up (Bowman et al. 2016; Sønderby et al. 2016):
the training objective is E_q[log p(x|z)] − β_t KL(q ‖ p) with β_t = β · min(1, (t + 1)/T) in
epoch t (T = ``kl_warmup_epochs``; β_t = β when T = 0). For IWAE and flow posteriors, where the KL
is not separate, β_t multiplies log p(z) − log q(z|x) inside each sample's log-weight. The bound
recorded in ``history_`` is always at weight 1, so that it stays a bound on log p(x).
"""

from __future__ import annotations

import numpy as np

from .validation import check_int, check_positive

__all__ = ["kl_weight_at", "learning_rate_at", "train"]


def kl_weight_at(epoch: int, kl_weight: float, warmup_epochs: int) -> float:
    """β_t = β · min(1, (t + 1) / T) for epoch t (counted from 0); β when T = 0."""
    epoch = check_int(epoch, "epoch", minimum=0)
    kl_weight = check_positive(kl_weight, "kl_weight", allow_zero=True)
    warmup_epochs = check_int(warmup_epochs, "warmup_epochs", minimum=0)
    if warmup_epochs == 0:
        return float(kl_weight)
    return float(kl_weight) * min(1.0, (epoch + 1) / warmup_epochs)


def learning_rate_at(epoch: int, learning_rate: float, decay: float) -> float:
    """lr_t = lr · decay^t (per-epoch exponential decay; decay = 1 keeps it constant)."""
    epoch = check_int(epoch, "epoch", minimum=0)
    learning_rate = check_positive(learning_rate, "learning_rate")
    decay = check_positive(decay, "decay")
    return learning_rate * decay ** epoch


def _report(model, X_val, verbose):
    if not verbose or model.epochs_ % int(verbose) != 0:
        return
    val = f"  val ELBO {model.val_history_[-1]:.3f}" if X_val is not None else ""
    what = "ELBO" if model.objective == "elbo" else "IWAE bound"
    print(f"epoch {model.epochs_:4d}  train {what} {model.history_[-1]:.3f}  "
          f"KL {model.kl_history_[-1]:.3f}{val} (nats/sample)", flush=True)


def train(model, X, epochs: int, X_val=None, verbose=False):
    """Run ``epochs`` epochs of mini-batch ascent on the model's objective, in place.

    ``X`` (and ``X_val``) must already be checked and in the model's dtype. Appends per epoch to
    ``model.history_`` (mean training objective at KL weight 1 over the mini-batches, nats per
    sample), ``model.kl_history_`` (mean KL(q(z|x) ‖ p(z)) over the mini-batches: analytic for a
    Gaussian q, a Monte Carlo estimate E_q[log q − log p] for flows) and, with ``X_val``,
    ``model.val_history_`` (ELBO on X_val). ``verbose``: print every epoch (True) or every
    ``verbose``-th epoch (an int). Raises ``FloatingPointError`` if the bound stops being finite.
    """
    N = X.shape[0]
    bs = min(model.batch_size, N)
    rng, dt = model._rng, X.dtype
    opt = model.optimizer_
    fp, fg = model._flat_params, model._flat_grads
    S, L = model._n_eps(), model.n_latent
    joint = model.schedule == "joint"
    for _ in range(epochs):
        opt.lr = learning_rate_at(model.epochs_, model.learning_rate, model.lr_decay)
        w = kl_weight_at(model.epochs_, model.kl_weight, model.kl_warmup_epochs)
        order = rng.permutation(N)
        total = kl_total = 0.0
        for start in range(0, N, bs):
            xb = X[order[start:start + bs]]
            eps = rng.standard_normal((S, xb.shape[0], L), dtype=dt)
            _, value, kl = model._objective(xb, eps, w)
            if joint:
                opt.step(fp, fg)
            else:   # "full EM": E-step on φ, then a fresh gradient for the M-step on θ
                opt.step(fp, fg, ["encoder"])
                eps = rng.standard_normal(eps.shape, dtype=dt)
                model._objective(xb, eps, w)
                opt.step(fp, fg, ["decoder"])
            total += value * xb.shape[0]
            kl_total += kl * xb.shape[0]
        model.epochs_ += 1
        model.history_.append(total / N)
        model.kl_history_.append(kl_total / N)
        if X_val is not None:
            model.val_history_.append(model._elbo_value(X_val, rng))
        if not np.isfinite(model.history_[-1]):
            raise FloatingPointError(
                f"the training bound became {model.history_[-1]} at epoch {model.epochs_}; "
                "lower the learning rate")
        _report(model, X_val, verbose)
    return model
