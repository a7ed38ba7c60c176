"""The variational autoencoder (Kingma & Welling 2014), with every gradient derived by hand.

Model: z ~ N(0, I_L); x | z ~ p(x | z, θ), whose parameters a decoder network outputs (Bernoulli
logits, or a Gaussian mean with a log-variance that is shared, per feature, or output by the net).
Amortised q(z | x, φ) = N(μ_φ(x), diag σ²_φ(x)) from an encoder network with two heads.

The sampling step z ~ q blocks the gradient in φ. The reparameterisation z = μ + σ ⊙ ε,
ε ~ N(0, I), moves the randomness into ε so that ∇_φ passes through z (Kingma & Welling §2.4).
Two SGVB estimators of the per-sample ELBO (Kingma & Welling eqs. 6–7, with S = ``n_mc`` draws):

    L̃_A = (1/S) Σ_s [log p(x | z_s) + log p(z_s) − log q(z_s | x)]
    L̃_B = (1/S) Σ_s log p(x | z_s) − KL(q(z | x) ‖ N(0, I))          (KL analytic, App. B)

The backward pass, for one row and one draw (J the objective, l = log p(x | z)):

- decoder outputs: Bernoulli ∂l/∂logit = x − σ(logit); Gaussian ∂l/∂m = (x − m)/v,
  ∂l/∂(log v) = −½ + ½ (x − m)²/v; then back through the decoder to ∂J/∂z
- through z = μ + σ ε: ∂J/∂μ = ∂J/∂z, ∂J/∂(log σ²) = ½ σ ε ⊙ ∂J/∂z
- KL (estimator B): ∂KL/∂μ = μ, ∂KL/∂(log σ²) = ½ (σ² − 1)
- estimator A instead adds ∂log p(z)/∂z = −z, and −log q(z | x) = ½ Σ (log 2π + log σ² + ε²)
  contributes +½ to each ∂/∂(log σ²) (its μ-dependence cancels along the path)
- then back through the two encoder heads and the encoder network.

Log-variances (encoder and decoder) are clamped to [LOGVAR_MIN, LOGVAR_MAX] = [−15, 15] so that
exp never overflows even in float32; the gradient is zero where the clamp is active.
"""

from __future__ import annotations

import json

import numpy as np

from . import nn
from .elbo import ELBO
from .gaussian import GaussianQ
from .validation import (
    check_array,
    check_fitted,
    check_int,
    check_n_features,
    check_positive,
    check_random_state,
)

__all__ = ["VAE", "LOGVAR_MIN", "LOGVAR_MAX"]

LOGVAR_MIN, LOGVAR_MAX = -15.0, 15.0
_LOG_2PI = float(np.log(2 * np.pi))


class _Holder:
    """Owner of a bare parameter array (the shared or per-feature decoder log-variance)."""

    def __init__(self, params, grads):
        self.params, self.grads = params, grads


class VAE:
    """A variational autoencoder trained by hand-derived backpropagation.

    Parameters
    ----------
    n_latent : int
        Latent dimension L.
    hidden : tuple of int, default (400,)
        Hidden layer sizes of the encoder (the decoder mirrors them). ``()`` gives a linear VAE:
        q(z|x) = N(A x + a, diag e^{C x + c}) and p(x|z) = N(W z + b, ...) — the VAE counterpart
        of PPCA (shared variance) or FA (per-feature variance).
    activation : {"relu", "tanh", "sigmoid", "softplus", "identity"}
    likelihood : {"bernoulli", "gaussian"}
    decoder_variance : {"shared", "per_feature", "output"}
        Gaussian only: one learned σ², one per feature, or a decoder head.
    estimator : {"B", "A"}
        Kingma & Welling's SGVB estimator L̃_B (analytic KL) or L̃_A.
    n_mc : int
        Draws of ε per row and step (S above).
    batch_size, learning_rate, optimizer ("adam", "adagrad", "sgd"), lr_decay (per-epoch factor)
    schedule : {"joint", "alternating"}
        "joint" updates encoder and decoder together from one gradient (what is used in practice);
        "alternating" is the lecture's "full EM": a step on φ (E), then a fresh gradient and a
        step on θ (M), for every mini-batch.
    kl_warmup_epochs : int
        Linear KL annealing from 0 to 1 over this many epochs (0 = off); reported ELBOs always
        use weight 1.
    dtype : numpy dtype, default float32 (float64 for gradient checks)
    random_state : None, int or Generator — initial weights, mini-batch order and ε.

    Attributes: ``params`` (name → live array), ``history_`` (mean train ELBO per epoch, nats per
    sample, an estimate from the mini-batches), ``val_history_``, ``epochs_``, ``n_features_in_``.
    """

    def __init__(self, n_latent: int = 2, hidden=(400,), activation: str = "relu",
                 likelihood: str = "bernoulli", decoder_variance: str = "shared",
                 estimator: str = "B", n_mc: int = 1, batch_size: int = 128,
                 learning_rate: float = 1e-3, optimizer: str = "adam", schedule: str = "joint",
                 kl_warmup_epochs: int = 0, lr_decay: float = 1.0, dtype=np.float32,
                 random_state=None):
        self.n_latent = n_latent
        self.hidden = tuple(hidden)
        self.activation = activation
        self.likelihood = likelihood
        self.decoder_variance = decoder_variance
        self.estimator = estimator
        self.n_mc = n_mc
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.optimizer = optimizer
        self.schedule = schedule
        self.kl_warmup_epochs = kl_warmup_epochs
        self.lr_decay = lr_decay
        self.dtype = dtype
        self.random_state = random_state

    params = None
    n_features_in_ = None

    def _config(self) -> dict:
        return {
            "n_latent": self.n_latent, "hidden": list(self.hidden), "activation": self.activation,
            "likelihood": self.likelihood, "decoder_variance": self.decoder_variance,
            "estimator": self.estimator, "n_mc": self.n_mc, "batch_size": self.batch_size,
            "learning_rate": self.learning_rate, "optimizer": self.optimizer,
            "schedule": self.schedule, "kl_warmup_epochs": self.kl_warmup_epochs,
            "lr_decay": self.lr_decay, "dtype": np.dtype(self.dtype).name,
        }

    def _check_config(self):
        check_int(self.n_latent, "n_latent")
        for h in self.hidden:
            check_int(h, "hidden sizes")
        choices = {"activation": tuple(nn.ACTIVATIONS), "likelihood": ("bernoulli", "gaussian"),
                   "decoder_variance": ("shared", "per_feature", "output"),
                   "estimator": ("A", "B"), "optimizer": tuple(nn.OPTIMIZERS),
                   "schedule": ("joint", "alternating")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        check_int(self.n_mc, "n_mc")
        check_int(self.batch_size, "batch_size")
        check_positive(self.learning_rate, "learning_rate")
        check_positive(self.lr_decay, "lr_decay")
        check_int(self.kl_warmup_epochs, "kl_warmup_epochs", minimum=0)
        if np.dtype(self.dtype) not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype}")

    # ---- construction ----------------------------------------------------------------------
    def initialize(self, n_features: int, X=None) -> "VAE":
        """Create fresh parameters for data with ``n_features`` columns. Returns self.

        With ``X``, the decoder's output bias starts at the data mean (its logit for Bernoulli)
        and a Gaussian decoder's log-variance at the log data variance, which helps every model.
        """
        self._check_config()
        D = check_int(n_features, "n_features")
        L, H, dt = self.n_latent, self.hidden, np.dtype(self.dtype)
        rng = check_random_state(self.random_state)
        self._rng = rng
        self.encoder = nn.MLP([D, *H], self.activation, rng=rng, dtype=dt) if H else None
        last = H[-1] if H else D
        self.enc_mu = nn.Linear(last, L, rng=rng, dtype=dt)
        self.enc_logvar = nn.Linear(last, L, rng=rng, dtype=dt, gain=0.1)
        self.decoder = nn.MLP([L, *H[::-1]], self.activation, rng=rng, dtype=dt) if H else None
        dlast = H[0] if H else L
        self.dec_out = nn.Linear(dlast, D, rng=rng, dtype=dt)
        self.dec_logvar = None       # a decoder head (decoder_variance="output")
        self._dec_holder = None      # or a bare parameter ("shared", "per_feature")
        if self.likelihood == "gaussian":
            if self.decoder_variance == "output":
                self.dec_logvar = nn.Linear(dlast, D, rng=rng, dtype=dt, gain=0.1)
            else:
                size = 1 if self.decoder_variance == "shared" else D
                self._dec_holder = _Holder({"dec_logvar": np.zeros(size, dtype=dt)},
                                           {"dec_logvar": np.zeros(size, dtype=dt)})
        if X is not None:
            X = check_array(X, "X")
            mean = X.mean(axis=0)
            if self.likelihood == "bernoulli":
                p = np.clip(mean, 1e-3, 1 - 1e-3)
                self.dec_out.params["b"][...] = np.log(p / (1 - p))
            else:
                self.dec_out.params["b"][...] = mean
                var = np.clip(X.var(axis=0), np.exp(LOGVAR_MIN + 1), np.exp(LOGVAR_MAX - 1))
                if self.decoder_variance == "output":
                    self.dec_logvar.params["b"][...] = np.log(var)
                elif self.decoder_variance == "shared":
                    self._dec_holder.params["dec_logvar"][...] = np.log(var.mean())
                else:
                    self._dec_holder.params["dec_logvar"][...] = np.log(var)
        self.params, self.grads, self._owner = {}, {}, {}
        self._register("enc.", self.encoder)
        self._register_linear("enc_mu.", self.enc_mu)
        self._register_linear("enc_logvar.", self.enc_logvar)
        self._register("dec.", self.decoder)
        self._register_linear("dec_out.", self.dec_out)
        if self.dec_logvar is not None:
            self._register_linear("dec_logvar.", self.dec_logvar)
        if self._dec_holder is not None:
            self.params["dec_logvar"] = self._dec_holder.params["dec_logvar"]
            self.grads["dec_logvar"] = self._dec_holder.grads["dec_logvar"]
            self._owner["dec_logvar"] = (self._dec_holder, "dec_logvar")
        self.encoder_names = [k for k in self.params if k.startswith("enc")]
        self.decoder_names = [k for k in self.params if k.startswith("dec")]
        # one contiguous buffer per network, so the optimiser touches each with a few ufuncs
        groups = {"encoder": [], "decoder": []}
        for name in self.params:
            owner, key = self._owner[name]
            groups["encoder" if name.startswith("enc") else "decoder"].append(
                (owner.params, owner.grads, key))
        self._flat_params, self._flat_grads = nn.flatten_parameters(groups)
        for name in list(self.params):
            owner, key = self._owner[name]
            self.params[name], self.grads[name] = owner.params[key], owner.grads[key]
        self.optimizer_ = nn.OPTIMIZERS[self.optimizer](lr=self.learning_rate, maximize=True)
        self.n_features_in_ = D
        self.history_, self.val_history_ = [], []
        self.epochs_ = 0
        return self

    def _register(self, prefix, mlp):
        if mlp is None:
            return
        for name, params, grads, key in mlp.named(prefix):
            self.params[name] = params[key]
            self.grads[name] = grads[key]
            self._owner[name] = (mlp.linears()[int(name[len(prefix):].split(".")[0])], key)

    def _register_linear(self, prefix, lin):
        for key in ("W", "b"):
            self.params[prefix + key] = lin.params[key]
            self.grads[prefix + key] = lin.grads[key]
            self._owner[prefix + key] = (lin, key)

    def n_parameters(self) -> int:
        check_fitted(self, ("params",))
        return int(sum(p.size for p in self.params.values()))

    # ---- the networks ----------------------------------------------------------------------
    def _encode(self, X):
        h = self.encoder.forward(X) if self.encoder is not None else X
        mu = self.enc_mu.forward(h)
        raw = self.enc_logvar.forward(h)
        return mu, raw, np.clip(raw, LOGVAR_MIN, LOGVAR_MAX)

    def _decode(self, z):
        """Decoder outputs: (logits or means, log-variances or None, raw log-variances)."""
        d = self.decoder.forward(z) if self.decoder is not None else z
        out = self.dec_out.forward(d)
        if self.likelihood == "bernoulli":
            return out, None, None
        if self.dec_logvar is not None:
            raw = self.dec_logvar.forward(d)
        else:
            raw = self._dec_holder.params["dec_logvar"]
            if raw.size == 1:
                # a 0-d value, not shape (1,): NumPy broadcasts a (1,) operand through chained
                # expressions on a slow path (measured 17x slower on a 1438x64 batch)
                raw = raw[0]
        return out, np.clip(raw, LOGVAR_MIN, LOGVAR_MAX), raw

    def _loglik(self, X, out, logvar):
        if self.likelihood == "bernoulli":
            return nn.bernoulli_loglik(X, out)
        return nn.gaussian_loglik(X, out, logvar)

    def _as_data(self, X, name="X"):
        check_fitted(self, ("params",))
        X = check_array(X, name, dtype=np.dtype(self.dtype))
        check_n_features(self, X, name)
        return X

    def _as_eps(self, eps, N):
        eps = np.asarray(eps, dtype=np.dtype(self.dtype))
        if eps.ndim == 2:
            eps = eps[None]
        if eps.ndim != 3 or eps.shape[1:] != (N, self.n_latent):
            raise ValueError(
                f"eps must have shape (N, n_latent) or (n_mc, N, n_latent) with N={N}, "
                f"n_latent={self.n_latent}; got {np.shape(eps)}")
        return eps

    # ---- the ELBO and its gradient ---------------------------------------------------------
    def elbo_and_grad(self, X, eps, kl_weight: float = 1.0):
        """Mean ELBO estimate over the rows of X for the noise ``eps``, and its exact gradient.

        ``eps`` has shape (N, L) or (S, N, L). Returns ``(value, grads)``: grads is a dict with
        the keys of ``params`` holding ∂value/∂param (the live gradient buffers: copy them to keep
        them). The estimator is ``self.estimator`` (see the module docstring for the derivation);
        ``kl_weight`` scales the KL part (KL annealing).
        """
        X = self._as_data(X)
        return self._elbo_and_grad(X, self._as_eps(eps, X.shape[0]), kl_weight)

    def _elbo_and_grad(self, X, eps, kl_weight):
        """elbo_and_grad without input checks, for the training loop (X was checked once)."""
        N, D = X.shape
        S, L = eps.shape[0], eps.shape[2]
        scale = 1.0 / (S * N)
        # forward
        mu, raw, lv = self._encode(X)
        std = np.exp(0.5 * lv)
        z = (mu + std * eps).reshape(S * N, L)
        out, lvx, rawx = self._decode(z)
        Xr = X if S == 1 else np.tile(X, (S, 1))
        if self.likelihood == "bernoulli":
            ll, g_out = nn.bernoulli_loglik_and_grad(Xr, out)
        else:
            r = Xr - out
            inv = np.exp(-lvx)
            r2inv = r * r * inv
            ll = -0.5 * np.sum(_LOG_2PI + lvx + r2inv, axis=-1)
            g_out = r * inv
            g_lvx = 0.5 * (r2inv - 1.0)
        if self.estimator == "B":
            kl = 0.5 * np.sum(mu * mu + np.exp(lv) - 1.0 - lv, axis=1)
            value = float(np.sum(ll, dtype=np.float64) * scale - kl_weight * np.mean(kl, dtype=np.float64))
        else:
            log_pz = -0.5 * np.sum(_LOG_2PI + z * z, axis=1)
            log_qz = -0.5 * np.sum(_LOG_2PI + lv[None] + eps * eps, axis=2).reshape(S * N)
            value = float(np.sum(ll + kl_weight * (log_pz - log_qz), dtype=np.float64) * scale)
        # backward: decoder
        g_out *= scale
        gd = self.dec_out.backward(g_out)
        if self.likelihood == "gaussian":
            g_lvx *= scale
            if self.dec_logvar is not None:
                g_lvx *= (rawx > LOGVAR_MIN) & (rawx < LOGVAR_MAX)
                gd += self.dec_logvar.backward(g_lvx)
            else:
                inside = (rawx > LOGVAR_MIN) & (rawx < LOGVAR_MAX)
                g = np.sum(g_lvx, axis=0) if self.decoder_variance == "per_feature" else np.sum(g_lvx)
                self._dec_holder.grads["dec_logvar"][...] = g * inside
        gz = self.decoder.backward(gd) if self.decoder is not None else gd
        # backward: the reparameterisation z = μ + σ ε (and, for A, log p(z) = −½‖z‖² + c)
        if self.estimator == "A":
            gz = gz - (kl_weight * scale) * z
        gz = gz.reshape(S, N, L)
        g_mu = gz.sum(axis=0)
        g_lv = 0.5 * std * np.sum(gz * eps, axis=0)
        if self.estimator == "B":     # − ∂KL/∂μ, − ∂KL/∂log σ²
            g_mu -= (kl_weight / N) * mu
            g_lv -= (kl_weight / N) * 0.5 * (np.exp(lv) - 1.0)
        else:                         # − log q contributes +½ per dimension (see docstring)
            g_lv += 0.5 * kl_weight / N
        g_lv *= (raw > LOGVAR_MIN) & (raw < LOGVAR_MAX)
        # backward: encoder heads and network
        need = self.encoder is not None
        gh = self.enc_mu.backward(g_mu.astype(X.dtype, copy=False), need_dx=need)
        gl = self.enc_logvar.backward(g_lv.astype(X.dtype, copy=False), need_dx=need)
        if need:
            gh += gl
            self.encoder.backward(gh, need_dx=False)
        return value, self.grads

    def encoder_gradient(self, X, eps, estimator: str = "reparam") -> dict:
        """One single-sample estimate of ∇_φ ELBO (encoder parameters only), copied.

        ``"reparam"``: the pathwise gradient of L̃_B. ``"score"``: the score-function (REINFORCE)
        estimate ``log p(x | z) ∇_φ log q(z | x)`` with z = μ + σε held fixed — ∇_μ log q = ε/σ,
        ∇_{log σ²} log q = ½(ε² − 1) — plus the same analytic KL gradient. Both are unbiased for
        the same gradient (Mohamed et al. 2020, §4–5); only their variances differ.
        """
        X = self._as_data(X)
        N = X.shape[0]
        eps = self._as_eps(eps, N)[0]
        if estimator == "reparam":
            saved = self.estimator
            self.estimator = "B"
            try:
                _, grads = self.elbo_and_grad(X, eps)
            finally:
                self.estimator = saved
            return {k: grads[k].copy() for k in self.encoder_names}
        if estimator != "score":
            raise ValueError(f"estimator must be 'reparam' or 'score', got {estimator!r}")
        mu, raw, lv = self._encode(X)
        std = np.exp(0.5 * lv)
        out, lvx, _ = self._decode(mu + std * eps)
        ll = self._loglik(X, out, lvx)[:, None]
        g_mu = ll * eps / std / N - mu / N
        g_lv = ll * 0.5 * (eps * eps - 1.0) / N - 0.5 * (np.exp(lv) - 1.0) / N
        g_lv *= (raw > LOGVAR_MIN) & (raw < LOGVAR_MAX)
        gh = self.enc_mu.backward(g_mu.astype(X.dtype, copy=False))
        gh += self.enc_logvar.backward(g_lv.astype(X.dtype, copy=False))
        if self.encoder is not None:
            self.encoder.backward(gh)
        return {k: self.grads[k].copy() for k in self.encoder_names}

    def grad_variance(self, X, estimator: str = "reparam", n_draws: int = 100,
                      random_state=None) -> dict:
        """Per-parameter variance of single-sample encoder-gradient estimates over ``n_draws``.

        Returns ``{name: array}`` of variances, same shapes as the encoder parameters.
        """
        X = self._as_data(X)
        rng = check_random_state(random_state)
        n_draws = check_int(n_draws, "n_draws", minimum=2)
        draws = [self.encoder_gradient(X, rng.standard_normal((X.shape[0], self.n_latent)),
                                       estimator) for _ in range(n_draws)]
        return {k: np.var(np.stack([d[k] for d in draws]).astype(np.float64), axis=0, ddof=1)
                for k in self.encoder_names}

    # ---- training --------------------------------------------------------------------------
    def fit(self, X, epochs: int = 10, X_val=None, verbose: bool = False) -> "VAE":
        """Train for ``epochs`` more epochs of mini-batch ascent, continuing from the current
        parameters (initialising them from X on the first call). Returns self."""
        X = check_array(X, "X", dtype=np.dtype(self.dtype))
        if self.params is None:
            self.initialize(X.shape[1], X)
        X = self._as_data(X)
        X_val = None if X_val is None else self._as_data(X_val, "X_val")
        epochs = check_int(epochs, "epochs", minimum=0)
        N = X.shape[0]
        bs = min(self.batch_size, N)
        rng, dt = self._rng, np.dtype(self.dtype)
        opt = self.optimizer_
        for _ in range(epochs):
            opt.lr = self.learning_rate * self.lr_decay ** self.epochs_
            w = 1.0 if self.kl_warmup_epochs == 0 else min(1.0, (self.epochs_ + 1) / self.kl_warmup_epochs)
            order = rng.permutation(N)
            total = 0.0
            for start in range(0, N, bs):
                xb = X[order[start:start + bs]]
                eps = rng.standard_normal((self.n_mc, xb.shape[0], self.n_latent), dtype=dt)
                value, _ = self._elbo_and_grad(xb, eps, w)
                fp, fg = self._flat_params, self._flat_grads
                if self.schedule == "joint":
                    opt.step(fp, fg)
                else:   # "full EM": E-step on φ, then a fresh gradient for the M-step on θ
                    opt.step(fp, fg, ["encoder"])
                    eps = rng.standard_normal(eps.shape, dtype=dt)
                    self._elbo_and_grad(xb, eps, w)
                    opt.step(fp, fg, ["decoder"])
                if w != 1.0:  # report the un-annealed bound
                    value = self.elbo(xb, random_state=rng).total
                total += value * xb.shape[0]
            self.epochs_ += 1
            self.history_.append(total / N)
            if X_val is not None:
                self.val_history_.append(self.elbo(X_val, random_state=rng).total)
            if not np.isfinite(self.history_[-1]):
                raise FloatingPointError(
                    f"the training ELBO became {self.history_[-1]} at epoch {self.epochs_}; "
                    "lower the learning rate")
            if verbose:
                val = f"  val ELBO {self.val_history_[-1]:.3f}" if X_val is not None else ""
                print(f"epoch {self.epochs_:4d}  train ELBO {self.history_[-1]:.3f}{val} "
                      "(nats/sample)", flush=True)
        return self

    # ---- the shared interface ----------------------------------------------------------------
    def elbo(self, X, q: GaussianQ | None = None, n_samples: int = 1, random_state=None) -> ELBO:
        """Estimator B's split of the ELBO, mean per sample: E_q[log p(x|z)] by ``n_samples``
        draws per row, KL(q(z|x) ‖ p(z)) analytic. ``q`` defaults to the encoder's
        q(z|x, φ); any :class:`GaussianQ` (e.g. a refined per-row posterior) may be passed."""
        X = self._as_data(X)
        rng = self._rng if random_state is None else check_random_state(random_state)
        n_samples = check_int(n_samples, "n_samples")
        if q is not None:
            if q.mean.shape != (X.shape[0], self.n_latent):
                raise ValueError(f"q has means of shape {q.mean.shape}, expected "
                                 f"{(X.shape[0], self.n_latent)}")
            Z = q.sample(rng, n_samples=n_samples).astype(X.dtype)
            ell = 0.0
            for z in Z:
                out, lvx, _ = self._decode(z)
                ell += np.mean(self._loglik(X, out, lvx), dtype=np.float64) / n_samples
            return ELBO(ell, q.kl_to_standard())
        mu, _, lv = self._encode(X)
        std = np.exp(0.5 * lv)
        ell = 0.0
        for _ in range(n_samples):
            eps = rng.standard_normal(mu.shape).astype(mu.dtype)
            out, lvx, _ = self._decode(mu + std * eps)
            ell += np.mean(self._loglik(X, out, lvx), dtype=np.float64) / n_samples
        kl = np.mean(0.5 * np.sum(mu * mu + np.exp(lv) - 1.0 - lv, axis=1), dtype=np.float64)
        return ELBO(ell, kl)

    def log_likelihood(self, X, n_importance: int = 1000, random_state=None) -> float:
        """Importance-weighted estimate of mean log p(x) (Burda, Grosse & Salakhutdinov 2016):

            log p(x) ≈ log (1/K) Σ_k p(x | z_k) p(z_k) / q(z_k | x),   z_k ~ q(z | x),

        by log-sum-exp. A lower bound in expectation that rises with K towards log p(x).
        """
        X = self._as_data(X)
        K = check_int(n_importance, "n_importance")
        rng = self._rng if random_state is None else check_random_state(random_state)
        N, D = X.shape
        L = self.n_latent
        rows = max(1, int(4e6 // (K * max(D, L))))
        out_vals = []
        for s in range(0, N, rows):
            xc = X[s:s + rows]
            n = xc.shape[0]
            mu, _, lv = self._encode(xc)
            std = np.exp(0.5 * lv)
            eps = rng.standard_normal((K, n, L)).astype(mu.dtype)
            z = (mu + std * eps).reshape(K * n, L)
            out, lvx, _ = self._decode(z)
            ll = self._loglik(np.tile(xc, (K, 1)), out, lvx).astype(np.float64).reshape(K, n)
            log_pz = -0.5 * np.sum(_LOG_2PI + z.astype(np.float64) ** 2, axis=1).reshape(K, n)
            log_qz = -0.5 * np.sum(_LOG_2PI + lv[None].astype(np.float64)
                                   + eps.astype(np.float64) ** 2, axis=2)
            logw = ll + log_pz - log_qz
            m = logw.max(axis=0)
            out_vals.append(m + np.log(np.mean(np.exp(logw - m), axis=0)))
        return float(np.mean(np.concatenate(out_vals)))

    def posterior(self, X) -> GaussianQ:
        """q(z | x) = N(μ_φ(x), diag σ²_φ(x)), in float64."""
        X = self._as_data(X)
        mu, _, lv = self._encode(X)
        return GaussianQ.from_diag(mu.astype(np.float64), np.exp(lv).astype(np.float64))

    def transform(self, X) -> np.ndarray:
        """The encoder mean μ_φ(x): the MAP code used at test time (no sampling)."""
        X = self._as_data(X)
        return self._encode(X)[0].astype(np.float64)

    def _decode_mean(self, z):
        out, _, _ = self._decode(z)
        return nn.sigmoid(out) if self.likelihood == "bernoulli" else out

    def decode(self, Z) -> np.ndarray:
        """The decoder's mean E[x | z] for latent codes Z (N, L)."""
        check_fitted(self, ("params",))
        Z = check_array(Z, "Z", dtype=np.dtype(self.dtype))
        if Z.shape[1] != self.n_latent:
            raise ValueError(f"Z has {Z.shape[1]} columns, the VAE has n_latent={self.n_latent}")
        return self._decode_mean(Z).astype(np.float64)

    def reconstruct(self, X, n_samples: int | None = None, random_state=None) -> np.ndarray:
        """Decode the mean code (N, D); or, with ``n_samples``, decode that many draws
        z ~ q(z | x) per row (n_samples, N, D), whose spread shows the model's uncertainty."""
        X = self._as_data(X)
        mu, _, lv = self._encode(X)
        if n_samples is None:
            return self._decode_mean(mu).astype(np.float64)
        rng = self._rng if random_state is None else check_random_state(random_state)
        n_samples = check_int(n_samples, "n_samples")
        eps = rng.standard_normal((n_samples, *mu.shape)).astype(mu.dtype)
        z = (mu + np.exp(0.5 * lv) * eps).reshape(-1, self.n_latent)
        return self._decode_mean(z).astype(np.float64).reshape(n_samples, *X.shape)

    def sample(self, n_samples: int = 1, random_state=None, mean: bool = False) -> np.ndarray:
        """Draw x ~ p(x | z), z ~ N(0, I); with ``mean=True`` return E[x | z] instead."""
        check_fitted(self, ("params",))
        rng = check_random_state(random_state)
        n = check_int(n_samples, "n_samples")
        z = rng.standard_normal((n, self.n_latent)).astype(np.dtype(self.dtype))
        out, lvx, _ = self._decode(z)
        m = self._decode_mean(z).astype(np.float64)
        if mean:
            return m
        if self.likelihood == "bernoulli":
            return (rng.uniform(size=m.shape) < m).astype(np.float64)
        return m + np.exp(0.5 * lvx.astype(np.float64)) * rng.standard_normal(m.shape)

    def active_units(self, X, threshold: float = 0.01) -> int:
        """Number of latent units with Var_x(E_q[z_j | x]) > threshold (Burda et al. 2016)."""
        return int(np.sum(np.var(self.transform(X), axis=0) > threshold))

    # ---- persistence -------------------------------------------------------------------------
    def save(self, path) -> None:
        """Write configuration, parameters and history to an ``.npz`` file (no pickle)."""
        check_fitted(self, ("params",))
        arrays = {f"param:{k}": v for k, v in self.params.items()}
        meta = {"config": self._config(), "n_features": self.n_features_in_,
                "history": self.history_, "val_history": self.val_history_,
                "epochs": self.epochs_}
        np.savez(path, meta=np.array(json.dumps(meta)), **arrays)

    @classmethod
    def load(cls, path) -> "VAE":
        """Read a VAE written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            cfg = dict(meta["config"])
            cfg["dtype"] = np.dtype(cfg["dtype"]).type
            model = cls(**cfg).initialize(meta["n_features"])
            for k in model.params:
                model.params[k][...] = data[f"param:{k}"]
        model.history_ = list(meta["history"])
        model.val_history_ = list(meta["val_history"])
        model.epochs_ = meta["epochs"]
        return model
