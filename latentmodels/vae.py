r"""The variational autoencoder (Kingma & Welling 2014), with every gradient derived by hand.

Model: z ~ N(0, I_L); x | z ~ p(x | z, θ), whose parameters a decoder network outputs (the
families of :mod:`latentmodels.likelihoods`: Bernoulli, Gaussian, categorical, continuous Bernoulli).
Amortised q(z | x, φ): a diagonal Gaussian N(μ_φ(x), diag σ²_φ(x)) from an encoder with two heads,
optionally pushed through K planar or IAF maps (:mod:`latentmodels.flows`).

The sampling step z ~ q blocks the gradient in φ. The reparameterisation z₀ = μ + σ ⊙ ε,
ε ~ N(0, I), moves the randomness into ε so that ∇_φ passes through z (Kingma & Welling §2.4); a
flow then gives z = f_K ∘ … ∘ f_1(z₀) with log q(z | x) = log N(z₀; μ, σ²) − Σ_k log|det ∂f_k|
(Rezende & Mohamed 2015, eq. 6). Write log w = log p(x | z) + log p(z) − log q(z | x) for one draw.

**ELBO** (``objective="elbo"``), two SGVB estimators (Kingma & Welling eqs. 6–7, S = ``n_mc``):

    L̃_A = (1/S) Σ_s log w_s
    L̃_B = (1/S) Σ_s log p(x | z_s) − KL(q(z | x) ‖ N(0, I))      (KL analytic, their App. B;
                                                                   Gaussian q only)

**IWAE** (``objective="iwae"``, Burda, Grosse & Salakhutdinov 2016, eq. 8), K = ``n_importance``:

    L_K = log (1/K) Σ_k w_k,     computed as m + log (1/K) Σ_k e^{log w_k − m}, m = max_k log w_k.

Its gradient: ∇ L_K = Σ_k w_k ∇ log w_k / Σ_j w_j = Σ_k w̃_k ∇ log w_k, with w̃ = softmax(log w)
the normalised importance weights (Burda et al. eq. 14; the chain rule through log Σ exp). So the
IWAE gradient is the ELBO-A per-sample gradient ∇ log w_k with each sample weighted by w̃_k instead
of 1/S: the same backward pass, with per-row coefficients. For K = 1, L_1 = L̃_A.

**IWAE-DReG** (``objective="iwae-dreg"``, Tucker, Lawson, Gu & Maddison 2019, eq. 7): the same
bound and decoder gradient, and a lower-variance estimator of its encoder gradient. Split
∇_φ log w_k into the path part (∂ log w_k/∂z_k)(∂z_k/∂φ), with log q evaluated at fixed φ, and the
score part −β ∂ log q_φ(z_k|x)/∂φ at fixed z_k. The score part has expectation
E[Σ_k w̃_k · score_k] = −β E[Σ_k (w̃_k − w̃_k²)(∂ log w_k/∂z_k)(∂z_k/∂φ)] (reparameterise
E_{z_k}[f(z_k) ∇_φ log q(z_k)] = E[∂f/∂z_k ∂z_k/∂φ] with f = w̃_k, ∂w̃_k/∂log w_k = w̃_k(1 − w̃_k)),
so ∇_φ L_K = E[Σ_k ((1 − β) w̃_k + β w̃_k²)(∂ log w_k/∂z_k)(∂z_k/∂φ)]: the score term, whose noise
grows with K, is gone. The path derivative of −log q(z|x) at fixed φ is +(z − μ)/σ² = ε/σ.
Unbiased for the same gradient as IWAE (tested by Monte Carlo), not the gradient of the
fixed-ε value, so it is not finite-difference checked.

The backward pass, per row and draw, with c the draw's coefficient (1/(S·N) for the ELBO,
w̃_k / N for IWAE) and l = log p(x | z):

- decoder outputs: c · ∂l/∂(outputs) from the likelihood's backward; then through the decoder to ∂/∂z
- A, IWAE and flows: log p(z) = −½‖z‖² + const adds −c z to ∂/∂z
- flows: ∂/∂logdet = +c (−log q contains +logdet); the flow's backward gives ∂/∂z₀ and, for
  IAF, ∂/∂h for the context h (the encoder's last hidden layer)
- through z₀ = μ + σ ε: ∂/∂μ = ∂/∂z₀, ∂/∂(log σ²) = ½ σ ε ⊙ ∂/∂z₀
- B: the analytic KL gives −∂KL/∂μ = −μ/N, −∂KL/∂(log σ²) = −½ (σ² − 1)/N
- A, IWAE and flows: −log N(z₀; μ, σ²) = ½ Σ (log 2π + log σ² + ε²) at fixed ε adds +½ c per
  dimension to ∂/∂(log σ²) (its μ-dependence cancels along the path); Σ_draws c = 1/N per row
- then back through the two encoder heads and the encoder network.

The KL weight β (``kl_weight``) multiplies the KL term (B) or log p(z) − log q(z | x) (A, IWAE,
flows) in the training objective; every reported bound uses weight 1.

Log-variances (encoder and decoder) are clamped to [LOGVAR_MIN, LOGVAR_MAX] = [−15, 15] so that
exp never overflows even in float32; the gradient is zero where the clamp is active.
"""

from __future__ import annotations

import functools
import json
import numbers
import os
import sys
import warnings
import zipfile

import numpy as np

from . import nn, training
from .elbo import ELBO
from .gaussian import GaussianQ
from .likelihoods import LIKELIHOODS, data_summary, make_likelihood
from .validation import (
    Estimator,
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
_F32 = np.finfo(np.float32)
_F32_MAX, _F32_TINY = float(_F32.max), float(_F32.tiny)


# the range of the data's root-mean-square feature standard deviation outside which a Gaussian VAE
# warns (a decade either side of unit scale: with the default Adam step 1e-3 and five epochs, held-out
# log p(x) of dequantised digits scaled by c, moved back to c = 1 by + 64 log c, was -196 at c = 1
# (s = 3.7) and -484 at c = 5, -775 at c = 0.01, -1.3e6 at c = 1e-4)
_GAUSSIAN_SCALE = (0.1, 10.0)

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _warn_user(message, category=UserWarning):
    """Warn with the stack level of the first frame outside this package (the user's call)."""
    frame, level = sys._getframe(1), 2
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)


_CACHES = ("x", "mask", "y", "_x", "_out", "_r", "_inv", "_r2inv", "_soft", "_idx", "_cache")


def _releasing(method):
    """Run a public method, then drop the forward caches of every layer, flow and likelihood, so
    that the model keeps no reference to the caller's arrays (the first layer caches its input
    for the backward pass; for a float64 model and float64 data that input is the caller's X)."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        finally:
            self._release()
    return wrapper


class _Holder:
    """Owner of a bare parameter array (the shared or per-feature decoder log-variance)."""

    def __init__(self, params, grads):
        self.params, self.grads = params, grads


def _hidden_tuple(hidden):
    if isinstance(hidden, numbers.Integral) and not isinstance(hidden, bool):
        hidden = (hidden,)
    try:
        hidden = tuple(hidden)
    except TypeError:
        raise TypeError(f"hidden must be a tuple of layer sizes, got {hidden!r}") from None
    for h in hidden:
        check_int(h, "hidden sizes")
    return tuple(int(h) for h in hidden)


class VAE(Estimator):
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
    likelihood : {"bernoulli", "gaussian", "categorical", "continuous_bernoulli"}
        Bernoulli needs data in [0, 1] and is a log-probability only on binary data (it warns
        otherwise: binarise with :func:`latentmodels.datasets.binarize`); categorical needs integer
        levels 0..n_levels−1; continuous Bernoulli is a density on [0, 1]; Gaussian on ℝ.
    n_levels : int, categorical only (e.g. 17 for the digits' raw 0..16).
    decoder_variance : {"shared", "per_feature", "output"}
        Gaussian only: one learned σ², one per feature, or a decoder head.
    estimator : {"B", "A"}
        Kingma & Welling's SGVB estimator L̃_B (analytic KL) or L̃_A (objective "elbo" with a
        Gaussian q; flows have no analytic KL and always use A's form).
    n_mc : int
        Draws of ε per row and step for the ELBO (S above); must be 1 for IWAE.
    objective : {"elbo", "iwae", "iwae-dreg"}; n_importance : int
        Train the ELBO, or the IWAE bound L_K with K = ``n_importance`` samples per row (with the
        doubly-reparameterised encoder gradient for "iwae-dreg"; Gaussian q only).
    flow : {None, "planar", "iaf"}; n_flows : int; flow_hidden : int or None
        q(z|x): the diagonal Gaussian (None), or that Gaussian pushed through ``n_flows`` planar maps
        (Rezende & Mohamed 2015) or IAF steps (Kingma et al. 2016, order reversed between steps,
        context from the encoder's last hidden layer — the data x for ``hidden=()``; MADE hidden
        width ``flow_hidden``, default max(2 L, 16)).
    kl_weight : float, default 1 (β)
        Weight of the KL term in the training objective (β-VAE); reported bounds use weight 1.
    batch_size, learning_rate, optimizer ("adam", "adagrad", "sgd"), lr_decay (per-epoch factor)
    schedule : {"joint", "alternating"}
        "joint" updates encoder and decoder together from one gradient (what is used in practice);
        "alternating" is the lecture's "full EM": a step on φ (E), then a fresh gradient and a
        step on θ (M), for every mini-batch (see :mod:`latentmodels.training`).
    kl_warmup_epochs : int
        Linear KL annealing from 0 to β over this many epochs (0 = off).
    dtype : numpy dtype, default float32 (float64 for gradient checks)
    random_state : None, int or Generator — initial weights, mini-batch order and ε.

    Attributes: ``params`` (name → live array), ``history_`` (mean training bound per epoch at KL
    weight 1 — the ELBO, or the IWAE bound for objective "iwae" — nats per sample, an estimate from
    the mini-batches), ``kl_history_`` (mean KL(q ‖ p(z)) per epoch), ``val_history_``,
    ``epochs_``, ``n_features_in_``.
    """

    def __init__(self, n_latent: int = 2, hidden=(400,), activation: str = "relu",
                 likelihood: str = "bernoulli", n_levels=None, decoder_variance: str = "shared",
                 estimator: str = "B", n_mc: int = 1, objective: str = "elbo",
                 n_importance: int = 1, flow=None, n_flows: int = 0,
                 flow_hidden=None, kl_weight: float = 1.0, batch_size: int = 128,
                 learning_rate: float = 1e-3, optimizer: str = "adam", schedule: str = "joint",
                 kl_warmup_epochs: int = 0, lr_decay: float = 1.0, dtype=np.float32,
                 random_state=None):
        self.n_latent = n_latent
        self.hidden = hidden
        self.activation = activation
        self.likelihood = likelihood
        self.n_levels = n_levels
        self.decoder_variance = decoder_variance
        self.estimator = estimator
        self.n_mc = n_mc
        self.objective = objective
        self.n_importance = n_importance
        self.flow = flow
        self.n_flows = n_flows
        self.flow_hidden = flow_hidden
        self.kl_weight = kl_weight
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

    # ---- configuration -----------------------------------------------------------------------
    def _config(self) -> dict:
        cfg = {}
        for k in self._param_names():
            value = getattr(self, k)
            if isinstance(value, numbers.Integral) and not isinstance(value, bool):
                value = int(value)          # NumPy integers are not JSON-serialisable
            elif isinstance(value, numbers.Real) and not isinstance(value, bool):
                value = float(value)
            cfg[k] = value
        # an int seed (or None) is kept, so that a loaded model's get_params() equals the saved
        # one's; a Generator's state is not a hyper-parameter and is written as None
        rs = self.random_state
        cfg["random_state"] = (int(rs) if isinstance(rs, numbers.Integral) and not isinstance(rs, bool)
                               else None)
        cfg["hidden"] = list(_hidden_tuple(self.hidden))
        cfg["dtype"] = np.dtype(self.dtype).name
        return cfg

    _STRUCTURE = ("n_latent", "hidden", "activation", "likelihood", "n_levels", "decoder_variance",
                  "flow", "n_flows", "flow_hidden", "dtype")

    def _structure(self) -> dict:
        cfg = self._config()
        return {k: cfg[k] for k in self._STRUCTURE}

    def _check_fitted(self):
        """NotFittedError before fit; ValueError if a setting that shapes the networks was changed
        (set_params) after they were built — the parameters would no longer match it."""
        check_fitted(self, ("params",))
        built = getattr(self, "_built", None)
        if built is None:
            return
        try:
            now = self._structure()
        except (TypeError, ValueError):
            self._check_config()          # raises, naming the bad setting
            raise
        changed = {k: (built[k], now[k]) for k in built if built[k] != now[k]}
        if changed:
            what = ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changed.items())
            raise ValueError(
                f"the VAE's networks were built for other settings ({what}); its parameters do "
                "not fit the new ones. Call initialize(n_features) or clone the VAE "
                "(sklearn.base.clone) to start afresh, or set the settings back")

    def _check_config(self):
        """Validate every hyper-parameter (types and ranges); called by initialize and fit."""
        check_int(self.n_latent, "n_latent")
        self._hidden = _hidden_tuple(self.hidden)
        choices = {"activation": tuple(nn.ACTIVATIONS), "likelihood": LIKELIHOODS,
                   "decoder_variance": ("shared", "per_feature", "output"),
                   "estimator": ("A", "B"), "optimizer": tuple(nn.OPTIMIZERS),
                   "schedule": ("joint", "alternating"), "objective": ("elbo", "iwae", "iwae-dreg")}
        for name, allowed in choices.items():
            value = getattr(self, name)
            if not isinstance(value, str) or value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        if self.likelihood == "categorical":
            if self.n_levels is None:
                raise ValueError("likelihood='categorical' needs n_levels, the number of integer "
                                 "levels 0..n_levels-1 (e.g. n_levels=17 for the digits' 0..16)")
            check_int(self.n_levels, "n_levels", minimum=2)
        elif self.n_levels is not None:
            raise ValueError(f"n_levels applies to likelihood='categorical' only; got "
                             f"n_levels={self.n_levels!r} with likelihood={self.likelihood!r}")
        check_int(self.n_mc, "n_mc")
        check_int(self.n_importance, "n_importance")
        if self.objective == "elbo" and self.n_importance != 1:
            raise ValueError(
                f"n_importance={self.n_importance} applies to objective='iwae' or 'iwae-dreg' "
                "(the training bound's K); objective='elbo' would ignore it. Pass objective='iwae' "
                "to train the IWAE bound, or n_mc for more ELBO draws (log_likelihood takes its "
                "own n_importance)")
        if self.likelihood != "gaussian" and self.decoder_variance != "shared":
            raise ValueError(
                f"decoder_variance={self.decoder_variance!r} applies to likelihood='gaussian' only; "
                f"likelihood={self.likelihood!r} has no variance (leave decoder_variance='shared')")
        if self.objective != "elbo" and self.n_mc != 1:
            raise ValueError(f"objective={self.objective!r} draws n_importance samples per row; n_mc "
                             f"must be 1, got {self.n_mc}")
        if self.flow not in (None, "planar", "iaf"):
            raise ValueError(f"flow must be None (a Gaussian q), 'planar' or 'iaf', got {self.flow!r}")
        check_int(self.n_flows, "n_flows", minimum=0)
        if self.objective == "iwae-dreg" and self.flow is not None:
            raise ValueError("objective='iwae-dreg' is implemented for a Gaussian q (flow=None); "
                             "use objective='iwae' with a flow")
        if self.flow is None and self.n_flows != 0:
            raise ValueError(f"n_flows={self.n_flows} needs flow='planar' or 'iaf' "
                             "(flow=None, a Gaussian q, has no flow maps)")
        if self.flow is not None and self.n_flows < 1:
            raise ValueError(f"flow={self.flow!r} needs n_flows >= 1, got {self.n_flows}")
        if self.flow_hidden is not None:
            check_int(self.flow_hidden, "flow_hidden")
            if self.flow != "iaf":
                raise ValueError(f"flow_hidden={self.flow_hidden!r} is the MADE width of an IAF "
                                 f"step; it applies to flow='iaf' only (got flow={self.flow!r})")
        check_positive(self.kl_weight, "kl_weight", allow_zero=True)
        check_int(self.batch_size, "batch_size")
        check_positive(self.learning_rate, "learning_rate")
        check_positive(self.lr_decay, "lr_decay")
        check_int(self.kl_warmup_epochs, "kl_warmup_epochs", minimum=0)
        try:
            dt = None if self.dtype is None else np.dtype(self.dtype)
        except TypeError:
            dt = None
        # (np.dtype(x) == None is True for float64, so None is tested by identity)
        if dt is None or dt.name not in ("float32", "float64"):
            raise ValueError(f"dtype must be np.float32 or np.float64, got {self.dtype!r}")

    def _n_context(self, n_features):
        return self._hidden[-1] if self._hidden else n_features

    def _flow_width(self):
        return int(self.flow_hidden) if self.flow_hidden is not None else max(2 * self.n_latent, 16)

    def _expected_shapes(self, D):
        """name → shape of every parameter, from the (checked) configuration alone: what
        :meth:`initialize` allocates, computed without allocating (used by :meth:`load`)."""
        L, H = int(self.n_latent), self._hidden
        lik = make_likelihood(self.likelihood, self.n_levels)
        shapes = {}
        sizes = [D, *H]
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            shapes[f"enc.{i}.W"], shapes[f"enc.{i}.b"] = (a, b), (b,)
        last = H[-1] if H else D
        for head in ("enc_mu.", "enc_logvar."):
            shapes[head + "W"], shapes[head + "b"] = (last, L), (L,)
        if self.flow is not None:
            Hf, C = self._flow_width(), self._n_context(D)
            for k in range(self.n_flows):
                p = f"flow.{k}."
                if self.flow == "planar":
                    shapes.update({p + "u": (L,), p + "w": (L,), p + "b": (1,)})
                else:
                    shapes.update({p + "W1": (L, Hf), p + "b1": (Hf,), p + "Wm": (Hf, L),
                                   p + "bm": (L,), p + "Ws": (Hf, L), p + "bs": (L,),
                                   p + "V": (C, Hf)})
        sizes = [L, *H[::-1]]
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            shapes[f"dec.{i}.W"], shapes[f"dec.{i}.b"] = (a, b), (b,)
        dlast, Dout = (H[0] if H else L), lik.n_outputs(D)
        shapes["dec_out.W"], shapes["dec_out.b"] = (dlast, Dout), (Dout,)
        if self.likelihood == "gaussian":
            if self.decoder_variance == "output":
                shapes["dec_logvar.W"], shapes["dec_logvar.b"] = (dlast, D), (D,)
            else:
                shapes["dec_logvar"] = (1 if self.decoder_variance == "shared" else D,)
        return shapes

    # ---- construction ----------------------------------------------------------------------
    def initialize(self, n_features: int, X=None) -> "VAE":
        """Create fresh parameters for data with ``n_features`` columns. Returns self.

        With ``X``, the decoder's output bias starts at the data's marginal (the logit of the
        pixel means; the log level frequencies for categorical) and a Gaussian decoder's
        log-variance at the log data variance, which helps every model.
        """
        self._check_config()
        D = check_int(n_features, "n_features")
        L, H, dt = self.n_latent, self._hidden, np.dtype(self.dtype)
        rng = check_random_state(self.random_state)
        self._rng = rng
        self._lik = make_likelihood(self.likelihood, self.n_levels)
        if X is not None:
            X = self._prepare(X, "X")
            if X.shape[1] != D:
                raise ValueError(f"X has {X.shape[1]} features, n_features={D}")
        self.encoder = nn.MLP([D, *H], self.activation, rng=rng, dtype=dt) if H else None
        last = H[-1] if H else D
        self.enc_mu = nn.Linear(last, L, rng=rng, dtype=dt)
        self.enc_logvar = nn.Linear(last, L, rng=rng, dtype=dt, gain=0.1)
        self.flow_ = None
        if self.flow is not None:
            from . import flows as _flows  # imported only when a flow posterior is asked for
        if self.flow == "planar":
            self.flow_ = _flows.FlowStack([_flows.PlanarFlow(L, rng, dt) for _ in range(self.n_flows)])
        elif self.flow == "iaf":
            self.flow_ = _flows.FlowStack([
                _flows.IAFStep(L, self._n_context(D), self._flow_width(), reverse=bool(k % 2),
                               rng=rng, dtype=dt) for k in range(self.n_flows)])
        self.decoder = nn.MLP([L, *H[::-1]], self.activation, rng=rng, dtype=dt) if H else None
        dlast = H[0] if H else L
        self.dec_out = nn.Linear(dlast, self._lik.n_outputs(D), rng=rng, dtype=dt)
        self.dec_logvar = None       # a decoder head (decoder_variance="output")
        self._dec_holder = None      # or a bare parameter ("shared", "per_feature")
        if self.likelihood == "gaussian":
            if self.decoder_variance == "output":
                self.dec_logvar = nn.Linear(dlast, D, rng=rng, dtype=dt, gain=0.1)
            else:
                size = 1 if self.decoder_variance == "shared" else D
                self._dec_holder = _Holder({"dec_logvar": np.zeros(size, dtype=dt)},
                                           {"dec_logvar": np.zeros(size, dtype=dt)})
        # every parameter as (name, params dict, grads dict, key), encoder side first
        entries = []
        if self.encoder is not None:
            entries += self.encoder.named("enc.")
        for prefix, lin in (("enc_mu.", self.enc_mu), ("enc_logvar.", self.enc_logvar)):
            entries += [(prefix + k, lin.params, lin.grads, k) for k in ("W", "b")]
        if self.flow_ is not None:
            entries += self.flow_.named("flow.")
        n_enc = len(entries)
        if self.decoder is not None:
            entries += self.decoder.named("dec.")
        entries += [("dec_out." + k, self.dec_out.params, self.dec_out.grads, k) for k in ("W", "b")]
        if self.dec_logvar is not None:
            entries += [("dec_logvar." + k, self.dec_logvar.params, self.dec_logvar.grads, k)
                        for k in ("W", "b")]
        if self._dec_holder is not None:
            entries.append(("dec_logvar", self._dec_holder.params, self._dec_holder.grads,
                            "dec_logvar"))
        names = [e[0] for e in entries]
        self.encoder_names, self.decoder_names = names[:n_enc], names[n_enc:]
        # one contiguous buffer per network, so the optimiser touches each with a few ufuncs
        groups = {"encoder": [e[1:] for e in entries[:n_enc]],
                  "decoder": [e[1:] for e in entries[n_enc:]]}
        self._flat_params, self._flat_grads = nn.flatten_parameters(groups)
        self.params = {name: p[k] for name, p, _, k in entries}
        self.grads = {name: g[k] for name, _, g, k in entries}
        self.optimizer_ = nn.OPTIMIZERS[self.optimizer](lr=self.learning_rate, maximize=True)
        self._built = self._structure()
        self.n_features_in_ = D
        self.history_, self.kl_history_, self.val_history_ = [], [], []
        self.epochs_ = 0
        if X is not None:
            self._init_from_data(X)
        return self

    def _release(self):
        """Drop the cached forward-pass arrays (see :func:`_releasing`)."""
        objs = [getattr(self, "_lik", None)]
        for net in (getattr(self, "encoder", None), getattr(self, "decoder", None)):
            if net is not None:
                objs += net.layers
        objs += [getattr(self, k, None) for k in ("enc_mu", "enc_logvar", "dec_out", "dec_logvar")]
        flow = getattr(self, "flow_", None)
        if flow is not None:
            objs += flow.flows
        for obj in objs:
            if obj is not None:
                for name in _CACHES:
                    if getattr(obj, name, None) is not None:
                        setattr(obj, name, None)

    def n_parameters(self) -> int:
        self._check_fitted()
        return int(sum(p.size for p in self.params.values()))

    # ---- input checks ------------------------------------------------------------------------
    def _prepare(self, X, name="X"):
        """X as a finite 2-D array of the model's dtype, inside the likelihood's support.

        For float32 models the range is checked in float64 before the cast: nonzero magnitudes
        below float32's smallest normal number (1.2e-38) or above its largest (3.4e38) raise
        instead of turning into zeros or infinities. A Bernoulli on non-binary data warns (once
        per public call), attributed to the user's line."""
        dt = np.dtype(self.dtype)
        src = getattr(X, "dtype", None)
        if dt == np.float32 and not (src is not None and src.kind == "f" and src.itemsize <= 4):
            X = check_array(X, name, dtype=np.float64)
            a = np.abs(X)
            big = float(a.max())
            if big > _F32_MAX:
                raise ValueError(
                    f"{name} has values of magnitude up to {big:.3g}, beyond float32's range "
                    f"({_F32_MAX:.3g}) — they would become infinite. Rescale {name}, or "
                    "pass dtype=np.float64 to the VAE")
            small = float(np.min(a, where=a > 0, initial=np.inf))
            if small < _F32_TINY:
                raise ValueError(
                    f"{name} has nonzero values of magnitude down to {small:.3g}, below float32's "
                    f"smallest normal number ({_F32_TINY:.3g}) — they would underflow to "
                    f"zero or lose precision. Rescale {name}, or pass dtype=np.float64 to the VAE")
            X = X.astype(dt)
            summary = None
        elif isinstance(X, np.ndarray) and X.dtype == dt and X.ndim == 2 and X.size:
            # the fast path (the training data of every float32 epoch): types and shape checked
            # on one row, finiteness and the likelihood's range in one chunked pass
            check_array(X[:1], name, dtype=dt)
            summary = data_summary(X)
            if not (np.isfinite(summary[0]) and np.isfinite(summary[1])):
                check_array(X, name, dtype=dt)     # raises, naming the first bad index
        else:
            X = check_array(X, name, dtype=dt)
            summary = None
        lik = getattr(self, "_lik", None) or make_likelihood(self.likelihood, self.n_levels)
        if lik.name == "gaussian":
            lo, hi = summary[:2] if summary is not None else (float(X.min()), float(X.max()))
            limit = 1e-3 * float(np.sqrt(np.finfo(dt).max))
            if max(-lo, hi) > limit:
                raise ValueError(
                    f"{name} has values of magnitude up to {max(-lo, hi):.3g}; their squares (in the "
                    f"variance and the Gaussian log-density) would overflow {dt.name}. Standardise "
                    f"or rescale {name} (magnitudes below {limit:.3g})"
                    + (", or pass dtype=np.float64 to the VAE" if dt == np.float32 else ""))
        message = lik.check_data(X, name, summary)
        if message is not None:
            _warn_user(message)
        return X

    def _as_data(self, X, name="X"):
        self._check_fitted()
        X = self._prepare(X, name)
        check_n_features(self, X, name)
        return X

    def _as_eps(self, eps, N):
        if eps is None or isinstance(eps, (str, bytes)):
            raise TypeError(f"eps must be an array of standard normal draws, got {type(eps).__name__}")
        try:
            raw = np.asarray(eps)
        except ValueError as exc:     # ragged nested lists
            raise ValueError(f"eps must be a rectangular array ({exc})") from None
        if raw.dtype.kind not in "fiub":
            raise TypeError(f"eps must hold real numbers (standard normal draws), got dtype {raw.dtype}")
        eps = raw.astype(np.dtype(self.dtype))
        if eps.ndim == 2:
            eps = eps[None]
        if eps.ndim != 3 or eps.shape[1:] != (N, self.n_latent):
            raise ValueError(
                f"eps must have shape (N, n_latent) or (n_draws, N, n_latent) with N={N}, "
                f"n_latent={self.n_latent}; got {np.shape(eps)}")
        if not np.all(np.isfinite(eps)):
            raise ValueError("eps contains NaN or infinite values")
        return eps

    def _as_codes(self, Z):
        """Latent codes Z as a finite 2-D array of the model's dtype; for float32, magnitudes that
        would overflow are refused before the cast (not reported as "NaN or infinite")."""
        dt = np.dtype(self.dtype)
        if dt == np.float32:
            Z64 = check_array(Z, "Z", dtype=np.float64)
            big = float(np.max(np.abs(Z64)))
            if big > _F32_MAX:
                raise ValueError(f"Z has values of magnitude up to {big:.3g}, beyond float32's range "
                                 "(latent codes are O(1) under the prior N(0, I)); pass dtype=np.float64 "
                                 "to the VAE for such codes")
            return Z64.astype(dt)
        return check_array(Z, "Z", dtype=dt)

    def _rng_for(self, random_state):
        return self._rng if random_state is None else check_random_state(random_state)

    # ---- the networks ----------------------------------------------------------------------
    def _encode(self, X):
        """(h, μ, raw log σ², clamped log σ²), h the encoder's last hidden layer (X if none)."""
        h = self.encoder.forward(X) if self.encoder is not None else X
        mu = self.enc_mu.forward(h)
        raw = self.enc_logvar.forward(h)
        return h, mu, raw, np.clip(raw, LOGVAR_MIN, LOGVAR_MAX)

    def _push(self, z0, h, S):
        """Through the flow: (z, logdet) for z0 (S·N, L) and context h (N, C); identity without."""
        if self.flow_ is None:
            return z0, None
        ctx = h if S == 1 else np.tile(h, (S, 1))
        return self.flow_.forward(z0, ctx)

    def _decode(self, z):
        """Decoder outputs: (logits or means, log-variances or None, raw log-variances)."""
        d = self.decoder.forward(z) if self.decoder is not None else z
        out = self.dec_out.forward(d)
        if self.likelihood != "gaussian":
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
        return self._lik.forward(X, out, logvar)

    @staticmethod
    def _kl_gauss(mu, lv):
        """KL(N(μ, diag e^{lv}) ‖ N(0, I)) per row (Kingma & Welling 2014, App. B)."""
        return 0.5 * np.sum(mu * mu + np.exp(lv) - 1.0 - lv, axis=1)

    def _log_ratio(self, z, lv, eps, logdet, S, N):
        """log p(z) − log q(z | x) per draw, (S·N,), float64: q = N(z₀; μ, σ²) through the flow."""
        log_pz = -0.5 * np.sum(_LOG_2PI + z.astype(np.float64) ** 2, axis=1)
        log_q0 = -0.5 * np.sum(_LOG_2PI + lv[None].astype(np.float64)
                               + eps.astype(np.float64) ** 2, axis=2).reshape(S * N)
        if logdet is not None:
            log_q0 = log_q0 - logdet
        return log_pz - log_q0

    # ---- the objective and its gradient ------------------------------------------------------
    def _n_eps(self):
        return self.n_mc if self.objective == "elbo" else self.n_importance

    def _objective(self, X, eps, kl_weight):
        """The training objective on the rows of X for the noise ``eps`` (S, N, L), its gradient
        written into the live ``grads`` buffers. No input checks (the training loop checked X
        once). Returns ``(value at kl_weight, value at weight 1, mean KL)``, means per row."""
        N = X.shape[0]
        S, L = eps.shape[0], eps.shape[2]
        w = float(kl_weight)
        iwae = self.objective != "elbo"
        dreg = self.objective == "iwae-dreg"
        analytic = self.flow_ is None and self.estimator == "B" and not iwae
        # forward
        h, mu, raw, lv = self._encode(X)
        std = np.exp(0.5 * lv)
        z0 = (mu + std * eps).reshape(S * N, L)
        z, logdet = self._push(z0, h, S)
        out, lvx, rawx = self._decode(z)
        Xr = X if S == 1 else np.tile(X, (S, 1))
        ll, g_out, g_lvx = self._lik.forward_backward(Xr, out, lvx)
        if analytic:
            scale = 1.0 / (S * N)
            kl = float(np.mean(self._kl_gauss(mu, lv), dtype=np.float64))
            ll_mean = float(np.sum(ll, dtype=np.float64)) * scale
            value, value1 = ll_mean - w * kl, ll_mean - kl
            coef = scale
        else:
            lr = self._log_ratio(z, lv, eps, logdet, S, N)
            ll64 = ll.astype(np.float64)
            kl = (float(np.mean(self._kl_gauss(mu, lv), dtype=np.float64)) if self.flow_ is None
                  else -float(np.mean(lr)))
            if not iwae:
                coef = 1.0 / (S * N)
                value = float(np.sum(ll64 + w * lr)) * coef
                value1 = value if w == 1.0 else float(np.sum(ll64 + lr)) * coef
            else:
                value, wt = _iwae_bound(ll64 + w * lr, S, N)
                value1 = value if w == 1.0 else _iwae_bound(ll64 + lr, S, N)[0]
                coef = (wt / N).reshape(S * N, 1).astype(X.dtype)
        # backward: decoder
        g_out *= coef
        gd = self.dec_out.backward(g_out)
        if self.likelihood == "gaussian":
            g_lvx *= coef
            if self.dec_logvar is not None:
                g_lvx *= (rawx > LOGVAR_MIN) & (rawx < LOGVAR_MAX)
                gd += self.dec_logvar.backward(g_lvx)
            else:
                inside = (rawx > LOGVAR_MIN) & (rawx < LOGVAR_MAX)
                g = np.sum(g_lvx, axis=0) if self.decoder_variance == "per_feature" else np.sum(g_lvx)
                self._dec_holder.grads["dec_logvar"][...] = g * inside
        gz = self.decoder.backward(gd) if self.decoder is not None else gd
        # backward: log p(z) = −½‖z‖² + c (A, IWAE, flows), then the flow
        if not analytic:
            gz = gz - (w * coef) * z
        if dreg:   # the path term of −β log q(z|x) at fixed φ, then the weights w̃ → (1−β)w̃ + β w̃²
            gz += (w * coef) * (eps / std).reshape(S * N, L)
            gz *= (1.0 - w) + w * (coef * N)
        g_ctx = None
        if self.flow_ is not None:
            self.flow_.zero_grad()
            g_logdet = np.broadcast_to(np.asarray(w * coef, dtype=X.dtype).ravel(), (S * N,))
            gz, g_ctx = self.flow_.backward(gz, g_logdet)
            if g_ctx is not None and S > 1:
                g_ctx = g_ctx.reshape(S, N, -1).sum(axis=0)
        # backward: the reparameterisation z₀ = μ + σ ε
        gz = gz.reshape(S, N, L)
        g_mu = gz.sum(axis=0)
        g_lv = 0.5 * std * np.sum(gz * eps, axis=0)
        if analytic:                  # − ∂KL/∂μ, − ∂KL/∂log σ²
            g_mu -= (w / N) * mu
            g_lv -= (w / N) * 0.5 * (np.exp(lv) - 1.0)
        elif not dreg:                # − log q₀ contributes +½ c per dimension (module docstring)
            g_lv += 0.5 * w / N
        g_lv *= (raw > LOGVAR_MIN) & (raw < LOGVAR_MAX)
        # backward: encoder heads and network
        need = self.encoder is not None
        gh = self.enc_mu.backward(g_mu.astype(X.dtype, copy=False), need_dx=need)
        gl = self.enc_logvar.backward(g_lv.astype(X.dtype, copy=False), need_dx=need)
        if need:
            gh += gl
            if g_ctx is not None:
                gh += g_ctx
            self.encoder.backward(gh, need_dx=False)
        return value, value1, kl

    @_releasing
    def elbo_and_grad(self, X, eps, kl_weight=None):
        """The training objective's estimate, mean over the rows of X, for the noise ``eps``, and
        its exact gradient.

        ``eps`` has shape (N, L) or (S, N, L): S = n_mc draws for the ELBO, K importance samples
        for ``objective="iwae"``. ``kl_weight`` (default: the model's ``kl_weight``) scales the KL
        part. Returns ``(value, grads)``, grads a dict with the keys of ``params`` holding
        ∂value/∂param — new arrays the caller owns. See the module docstring for the derivation.
        """
        X = self._as_data(X)
        w = self.kl_weight if kl_weight is None else check_positive(kl_weight, "kl_weight",
                                                                     allow_zero=True)
        value, _, _ = self._objective(X, self._as_eps(eps, X.shape[0]), w)
        return value, {k: g.copy() for k, g in self.grads.items()}

    @_releasing
    def encoder_gradient(self, X, eps, estimator: str = "reparam") -> dict:
        """One single-sample estimate of ∇_φ ELBO (encoder parameters only), copied.

        ``"reparam"`` (or ``"B"``): the pathwise gradient of L̃_B; ``"A"``: that of L̃_A (the KL
        term sampled too: same expectation, more variance). ``"score"``: the score-function (REINFORCE)
        estimate ``log p(x | z) ∇_φ log q(z | x)`` with z = μ + σε held fixed — ∇_μ log q = ε/σ,
        ∇_{log σ²} log q = ½(ε² − 1) — plus the same analytic KL gradient. Both are unbiased for
        the same gradient (Mohamed et al. 2020, §4–5); only their variances differ. Gaussian q
        (``flow=None``) with objective "elbo" only.
        """
        X = self._as_data(X)
        if self.flow_ is not None or self.objective != "elbo":
            raise ValueError("encoder_gradient compares estimators of the ELBO's gradient for a "
                             "Gaussian q: it needs flow=None and objective='elbo'")
        N = X.shape[0]
        eps = self._as_eps(eps, N)
        if eps.shape[0] != 1:
            raise ValueError(f"encoder_gradient is one single-sample estimate: eps must have shape "
                             f"(N, n_latent) or (1, N, n_latent), got {eps.shape} (it would use "
                             "only the first draw); call it once per draw, or use grad_variance")
        if estimator in ("reparam", "B", "A"):
            saved = self.estimator
            self.estimator = "A" if estimator == "A" else "B"
            try:
                self._objective(X, eps, 1.0)
            finally:
                self.estimator = saved
            return {k: self.grads[k].copy() for k in self.encoder_names}
        if estimator != "score":
            raise ValueError(f"estimator must be 'reparam' (= 'B'), 'A' or 'score', got {estimator!r}")
        eps = eps[0]
        _, mu, raw, lv = self._encode(X)
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

    @_releasing
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
    @_releasing
    def fit(self, X, epochs: int = 10, X_val=None, verbose=False) -> "VAE":
        """Train for ``epochs`` more epochs of mini-batch ascent (:func:`training.train`),
        continuing from the current parameters (initialising them from X on the first call).
        ``epochs=None`` means the default 10 (scikit-learn's Pipeline passes y=None in this place).
        ``verbose``: print progress every epoch (True) or every ``verbose``-th epoch (an int).
        Returns self."""
        self._check_config()
        if epochs is None:      # what sklearn's Pipeline passes positionally as y
            epochs = 10
        elif isinstance(epochs, np.ndarray) or (hasattr(epochs, "__len__") and not isinstance(epochs, str)):
            raise TypeError("fit(X, epochs, ...): the second argument is the number of epochs; the "
                            "VAE is unsupervised and takes no y (pass epochs=... by keyword)")
        epochs = check_int(epochs, "epochs", minimum=0)
        if not isinstance(verbose, (bool, numbers.Integral)) or verbose < 0:
            raise TypeError(f"verbose must be a bool or a non-negative int, got {verbose!r}")
        if self.params is None:
            self._lik = make_likelihood(self.likelihood, self.n_levels)
        else:
            self._check_fitted()      # settings that shape the networks unchanged since built
        X = self._prepare(X, "X")
        if self.params is None:
            self.initialize(X.shape[1])
            self._init_from_data(X)
        if type(self.optimizer_) is not nn.OPTIMIZERS[self.optimizer]:
            # set_params(optimizer=...) between fits: continue with the new optimiser (fresh state)
            self.optimizer_ = nn.OPTIMIZERS[self.optimizer](lr=self.learning_rate, maximize=True)
        check_n_features(self, X, "X")
        X_val = None if X_val is None else self._as_data(X_val, "X_val")
        training.train(self, X, epochs, X_val, verbose)
        return self

    def _init_from_data(self, X):
        """The data-dependent start of :meth:`initialize` on an already checked X."""
        self.dec_out.params["b"][...] = self._lik.init_bias(X)
        if self.likelihood == "gaussian":
            raw_var = X.var(axis=0, dtype=np.float64)
            scale = float(np.sqrt(np.mean(raw_var)))
            if not _GAUSSIAN_SCALE[0] <= scale <= _GAUSSIAN_SCALE[1]:
                _warn_user(
                    f"X has a root-mean-square feature standard deviation of {scale:.3g}, far from 1. "
                    "A Gaussian VAE is not invariant to the units of X: the optimiser's steps "
                    f"(learning_rate={self.learning_rate:g}) and the initial weights are in fixed units "
                    f"and the decoder variance is confined to [e^{LOGVAR_MIN:g}, e^{LOGVAR_MAX:g}], so "
                    "it trains poorly or not at all at this scale. Standardise X (X / s, then "
                    "log p(x) = log p(x / s) − D log s in the original units)")
            var = np.clip(raw_var, np.exp(LOGVAR_MIN + 1), np.exp(LOGVAR_MAX - 1))
            if self.decoder_variance == "output":
                self.dec_logvar.params["b"][...] = np.log(var)
            elif self.decoder_variance == "shared":
                self._dec_holder.params["dec_logvar"][...] = np.log(var.mean())
            else:
                self._dec_holder.params["dec_logvar"][...] = np.log(var)

    # ---- the shared interface ----------------------------------------------------------------
    def _sample_q(self, X, n, rng):
        """n draws per row from q(z | x): z (n·N, L), the encoder's (μ, log σ²), ε and logdet."""
        h, mu, _, lv = self._encode(X)
        eps = rng.standard_normal((n, *mu.shape)).astype(mu.dtype)
        z0 = (mu + np.exp(0.5 * lv) * eps).reshape(-1, self.n_latent)
        z, logdet = self._push(z0, h, n)
        return z, mu, lv, eps, logdet

    def _elbo(self, X, q, n_samples, rng):
        N = X.shape[0]
        if q is not None:
            if not isinstance(q, GaussianQ):
                raise TypeError(f"q must be None (the encoder's q(z|x)) or a "
                                f"latentmodels.gaussian.GaussianQ, got {type(q).__name__}")
            if q.mean.shape != (N, self.n_latent):
                raise ValueError(f"q has means of shape {q.mean.shape}, expected "
                                 f"{(N, self.n_latent)}")
            Z = q.sample(rng, n_samples=n_samples).astype(X.dtype)
            ell = 0.0
            for z in Z:
                out, lvx, _ = self._decode(z)
                ell += np.mean(self._loglik(X, out, lvx), dtype=np.float64) / n_samples
            return ELBO(ell, q.kl_to_standard())
        ell = kl = 0.0
        for _ in range(n_samples):
            z, mu, lv, eps, logdet = self._sample_q(X, 1, rng)
            out, lvx, _ = self._decode(z)
            ell += np.mean(self._loglik(X, out, lvx), dtype=np.float64) / n_samples
            if self.flow_ is not None:
                kl -= np.mean(self._log_ratio(z, lv, eps, logdet, 1, N)) / n_samples
        if self.flow_ is None:
            kl = np.mean(self._kl_gauss(mu, lv), dtype=np.float64)
        return ELBO(float(ell), float(kl))

    def _elbo_value(self, X, rng):
        return self._elbo(X, None, 1, rng).total

    @_releasing
    def elbo(self, X, q: GaussianQ | None = None, n_samples: int = 1, random_state=None) -> ELBO:
        """The ELBO's split, mean per sample: E_q[log p(x|z)] by ``n_samples`` draws per row, and
        KL(q(z|x) ‖ p(z)) — analytic for the encoder's Gaussian q, a Monte Carlo estimate
        E_q[log q(z|x) − log p(z)] from the same draws for a flow posterior. ``q`` defaults to the
        encoder's q(z|x, φ); any :class:`GaussianQ` (e.g. a refined per-row posterior) may be
        passed. Always at KL weight 1, whatever the training objective."""
        X = self._as_data(X)
        rng = self._rng_for(random_state)
        n_samples = check_int(n_samples, "n_samples")
        return self._elbo(X, q, n_samples, rng)

    def _log_likelihood_rows(self, X, K, rng):
        """Per-row IWAE estimates log (1/K) Σ_k w_k, float64 (N,). Rows and, when K is large,
        the K draws are processed in blocks of about 4·10⁶ decoder outputs, the log-sum-exp
        accumulated across blocks (running maximum m, Σ e^{log w − m} rescaled when m rises), so
        memory stays bounded for any K."""
        N, D = X.shape
        width = max(self._lik.n_outputs(D), self.n_latent)
        rows = max(1, int(4e6 // (K * width)))
        out_vals = []
        for s in range(0, N, rows):
            xc = X[s:s + rows]
            n = xc.shape[0]
            kb = min(K, max(1, int(4e6 // (n * width))))
            m = np.full(n, -np.inf)
            acc = np.zeros(n)
            for k0 in range(0, K, kb):
                k = min(kb, K - k0)
                z, mu, lv, eps, logdet = self._sample_q(xc, k, rng)
                out, lvx, _ = self._decode(z)
                ll = self._loglik(np.tile(xc, (k, 1)), out, lvx).astype(np.float64)
                lw = (ll + self._log_ratio(z, lv, eps, logdet, k, n)).reshape(k, n)
                m_new = np.maximum(m, lw.max(axis=0))
                acc = acc * np.exp(m - m_new) + np.exp(lw - m_new).sum(axis=0)
                m = m_new
            out_vals.append(m + np.log(acc / K))
        return np.concatenate(out_vals)

    @_releasing
    def log_likelihood(self, X, n_importance: int = 1000, random_state=None) -> float:
        """Importance-weighted estimate of mean log p(x) (Burda, Grosse & Salakhutdinov 2016):

            log p(x) ≈ log (1/K) Σ_k p(x | z_k) p(z_k) / q(z_k | x),   z_k ~ q(z | x),

        by log-sum-exp, with q the model's posterior (through its flow, if any). A lower bound
        in expectation that rises with K towards log p(x)."""
        X = self._as_data(X)
        K = check_int(n_importance, "n_importance")
        return float(np.mean(self._log_likelihood_rows(X, K, self._rng_for(random_state))))

    @_releasing
    def log_likelihood_with_se(self, X, n_importance: int = 1000, random_state=None):
        """``(mean, se)``: :meth:`log_likelihood` and its standard error, the sample standard
        deviation of the N per-row estimates over √N. It treats the rows as independent draws and
        so covers both the Monte Carlo noise of each row's estimate and the spread between rows
        (the error that matters when comparing two models on the same test rows is smaller)."""
        X = self._as_data(X)
        K = check_int(n_importance, "n_importance")
        if X.shape[0] < 2:
            raise ValueError("X needs at least 2 rows for a standard error over rows")
        r = self._log_likelihood_rows(X, K, self._rng_for(random_state))
        return float(np.mean(r)), float(np.std(r, ddof=1) / np.sqrt(r.size))

    @_releasing
    def score_samples(self, X, n_importance: int = 1000, random_state=None) -> np.ndarray:
        """Per-row IWAE estimates log (1/K) Σ_k w_k of log p(x_n), float64 (N,): the terms whose
        mean is :meth:`log_likelihood` (for paired standard errors between models or bounds)."""
        X = self._as_data(X)
        K = check_int(n_importance, "n_importance")
        return self._log_likelihood_rows(X, K, self._rng_for(random_state))

    @_releasing
    def elbo_samples(self, X, n_samples: int = 1, random_state=None) -> np.ndarray:
        """Per-row ELBO estimates, float64 (N,): the same estimator as :meth:`elbo` (E_q log p(x|z)
        by ``n_samples`` draws, minus the analytic KL for a Gaussian q or its Monte Carlo estimate
        from the same draws for a flow), row by row; their mean is ``elbo(X, ...).total``."""
        X = self._as_data(X)
        n = check_int(n_samples, "n_samples")
        rng = self._rng_for(random_state)
        N = X.shape[0]
        total = np.zeros(N)
        for _ in range(n):
            z, mu, lv, eps, logdet = self._sample_q(X, 1, rng)
            out, lvx, _ = self._decode(z)
            total += self._loglik(X, out, lvx).astype(np.float64) / n
            if self.flow_ is not None:
                total += self._log_ratio(z, lv, eps, logdet, 1, N) / n
        if self.flow_ is None:
            total -= self._kl_gauss(mu.astype(np.float64), lv.astype(np.float64))
        return total

    @_releasing
    def decoder_log_lik_and_grad(self, X, Z):
        """log p(x_n | z_n) per row and its gradient in z_n, both float64: ``(ll (N,), dll/dz (N, L))``.

        The decoder's backward pass taken to its input, with the likelihood's backward on top
        (and the clamp of an output log-variance head), for refining q per data point with the
        decoder fixed (Cremer et al. 2018). Parameters are not changed (their gradient scratch
        buffers are overwritten)."""
        X = self._as_data(X)
        Z = self._as_codes(Z)
        if Z.shape != (X.shape[0], self.n_latent):
            raise ValueError(f"Z must have shape {(X.shape[0], self.n_latent)} (one code per row of "
                             f"X), got {Z.shape}")
        out, lvx, rawx = self._decode(Z)
        ll, g_out, g_lvx = self._lik.forward_backward(X, out, lvx)
        gd = self.dec_out.backward(g_out)
        if self.dec_logvar is not None:
            g_lvx = g_lvx * ((rawx > LOGVAR_MIN) & (rawx < LOGVAR_MAX))
            gd += self.dec_logvar.backward(g_lvx)
        gz = self.decoder.backward(gd) if self.decoder is not None else gd
        return ll.astype(np.float64), np.array(gz, dtype=np.float64)

    @_releasing
    def score(self, X, y=None) -> float:
        """Mean ELBO per sample (nats; higher is better), one draw per row with a fixed seed so
        that repeated calls agree — the scikit-learn ``score`` used by ``cross_val_score`` and
        ``GridSearchCV``. ``y`` is ignored."""
        X = self._as_data(X)
        return self._elbo(X, None, 1, np.random.default_rng(0)).total

    def linear_marginal(self):
        """For a linear Gaussian VAE (``hidden=()``, ``likelihood="gaussian"``, variance
        "shared" or "per_feature"): the exact marginal p(x) = N(b, W Wᵀ + diag ψ) of its decoder
        (Bishop PRML eq. 12.35 with ψ for FA's eq. 12.65), as ``(b (D,), W (D, L), ψ (D,))``
        float64 arrays the caller owns. Raises ValueError for any other VAE."""
        self._check_fitted()
        if self._hidden or self.likelihood != "gaussian" or self.decoder_variance == "output":
            raise ValueError("linear_marginal needs hidden=(), likelihood='gaussian' and "
                             "decoder_variance 'shared' or 'per_feature' (a linear-Gaussian decoder)")
        D = self.n_features_in_
        lv = np.clip(self.params["dec_logvar"].astype(np.float64), LOGVAR_MIN, LOGVAR_MAX)
        psi = np.broadcast_to(np.exp(lv), (D,)).copy()
        return (self.params["dec_out.b"].astype(np.float64).copy(),
                self.params["dec_out.W"].T.astype(np.float64).copy(), psi)

    @_releasing
    def posterior(self, X) -> GaussianQ:
        """q(z | x) = N(μ_φ(x), diag σ²_φ(x)), in float64.

        For a flow posterior (``flow="planar"`` or ``"iaf"``) q is not Gaussian and this
        raises ``NotImplementedError``; use :meth:`sample_posterior` for draws from it, and
        :meth:`elbo` / :meth:`log_likelihood`, which use the flow."""
        X = self._as_data(X)
        if self.flow_ is not None:
            raise NotImplementedError(
                f"q(z|x) with flow={self.flow!r} is a Gaussian pushed through "
                f"{self.n_flows} flow map(s), not a Gaussian: use sample_posterior(X, n) for "
                "draws from it, or elbo(X) / log_likelihood(X), which use the flow")
        _, mu, _, lv = self._encode(X)
        return GaussianQ.from_diag(mu.astype(np.float64), np.exp(lv).astype(np.float64))

    @_releasing
    def sample_posterior(self, X, n_samples: int = 1, random_state=None) -> np.ndarray:
        """Draws z ~ q(z | x) (through the flow, if any): shape (n_samples, N, L), float64."""
        X = self._as_data(X)
        n = check_int(n_samples, "n_samples")
        z = self._sample_q(X, n, self._rng_for(random_state))[0]
        return z.astype(np.float64).reshape(n, X.shape[0], self.n_latent)

    def _code(self, X):
        h, mu, _, _ = self._encode(X)
        return mu if self.flow_ is None else self._push(mu, h, 1)[0]

    @_releasing
    def transform(self, X) -> np.ndarray:
        """The code used at test time (no sampling): the encoder mean μ_φ(x), the mode of a
        Gaussian q; for a flow posterior, the image of μ_φ(x) under the flow (neither the mean
        nor, in general, the mode of the non-Gaussian q)."""
        X = self._as_data(X)
        return self._code(X).astype(np.float64)

    def _decode_mean(self, z):
        out, lvx, _ = self._decode(z)
        return self._lik.mean(out, lvx)

    @_releasing
    def decode(self, Z) -> np.ndarray:
        """The decoder's mean E[x | z] for latent codes Z (N, L)."""
        self._check_fitted()
        Z = self._as_codes(Z)
        if Z.shape[1] != self.n_latent:
            raise ValueError(f"Z has {Z.shape[1]} columns, the VAE has n_latent={self.n_latent}")
        return self._decode_mean(Z).astype(np.float64)

    @_releasing
    def reconstruct(self, X, n_samples: int | None = None, random_state=None) -> np.ndarray:
        """Decode the code of :meth:`transform` (N, D); or, with ``n_samples``, decode that many
        draws z ~ q(z | x) per row (n_samples, N, D), whose spread shows the model's uncertainty."""
        X = self._as_data(X)
        if n_samples is None:
            return self._decode_mean(self._code(X)).astype(np.float64)
        n_samples = check_int(n_samples, "n_samples")
        z = self._sample_q(X, n_samples, self._rng_for(random_state))[0]
        return self._decode_mean(z).astype(np.float64).reshape(n_samples, *X.shape)

    @_releasing
    def sample(self, n_samples: int = 1, random_state=None, mean: bool = False) -> np.ndarray:
        """Draw x ~ p(x | z), z ~ N(0, I); with ``mean=True`` return E[x | z] instead."""
        self._check_fitted()
        rng = check_random_state(random_state)
        n = check_int(n_samples, "n_samples")
        if not isinstance(mean, (bool, np.bool_)):
            raise TypeError(f"mean must be True (decoder means E[x|z]) or False (draws of x), "
                            f"got {mean!r}")
        z = rng.standard_normal((n, self.n_latent)).astype(np.dtype(self.dtype))
        out, lvx, _ = self._decode(z)
        if mean:
            return self._lik.mean(out, lvx).astype(np.float64)
        return self._lik.sample(out, lvx, rng)

    def active_units(self, X, threshold: float = 0.01) -> int:
        """Number of latent units with Var_x(E_q[z_j | x]) > threshold (Burda et al. 2016)."""
        threshold = check_positive(threshold, "threshold", allow_zero=True)
        return int(np.sum(np.var(self.transform(X), axis=0) > threshold))

    # ---- persistence -------------------------------------------------------------------------
    def save(self, path) -> str:
        """Write configuration, parameters and history to an ``.npz`` file (no pickle).

        Like :func:`numpy.savez`, a path without the ``.npz`` suffix gets it; the path written is
        returned (:meth:`load` accepts either spelling). The optimiser's state (Adam's moments
        and step counts, Adagrad's sums) and the random generator's state are saved too, so that
        training resumed after ``load`` continues exactly as it would have without the round trip."""
        self._check_fitted()
        arrays = {f"param:{k}": v for k, v in self.params.items()}
        opt, counts = self.optimizer_, {}
        for group, st in opt.state.items():
            if isinstance(opt, nn.Adam):
                arrays[f"opt:{group}:m"], arrays[f"opt:{group}:v"] = st[0], st[1]
                counts[group] = int(st[3])
            elif isinstance(opt, nn.Adagrad):
                arrays[f"opt:{group}:h"] = st[0]
                counts[group] = 0
        bitgen = self._rng.bit_generator
        meta = {"config": self._config(), "n_features": self.n_features_in_,
                "history": self.history_, "kl_history": self.kl_history_,
                "val_history": self.val_history_, "epochs": self.epochs_,
                "optimizer_steps": counts,
                "rng_state": bitgen.state if isinstance(bitgen, np.random.PCG64) else None}
        np.savez(path, meta=np.array(json.dumps(meta)), **arrays)
        if isinstance(path, (str, os.PathLike)):
            path = os.fspath(path)
            return path if path.endswith(".npz") else path + ".npz"
        return path

    def _read_optimizer_state(self, path, data, meta):
        """The optimiser entries of a file, checked against this (unbuilt) configuration:
        group names, exact sizes, finite values, non-negative second moments, step counts."""
        counts = meta.get("optimizer_steps", {})
        if not isinstance(counts, dict):
            raise ValueError(f"{path}: 'optimizer_steps' must be an object")
        keys = {"adam": ("m", "v"), "adagrad": ("h",), "sgd": ()}[self.optimizer]
        expected = {f"opt:{g}:{k}" for g in counts for k in keys}
        present = {f for f in data.files if f.startswith("opt:")}
        if present != expected or not set(counts) <= {"encoder", "decoder"}:
            raise ValueError(f"{path}: the optimiser entries {sorted(present)[:4]} do not match "
                             f"optimizer={self.optimizer!r} with steps {counts}")
        sizes = _group_sizes(self, meta["n_features"])
        state = {}
        for g, t in counts.items():
            lo = 1 if self.optimizer == "adam" else 0
            t = check_int(t, f"optimizer step count (in the file) of {g}", minimum=lo)
            arrs = []
            for k in keys:
                a = data[f"opt:{g}:{k}"]
                if a.shape != (sizes[g],) or a.dtype.kind != "f" or not np.all(np.isfinite(a)):
                    raise ValueError(f"{path}: optimiser entry opt:{g}:{k} must be a finite float "
                                     f"array of shape ({sizes[g]},), got {a.dtype} {a.shape}")
                if k in ("v", "h") and np.any(a < 0):
                    raise ValueError(f"{path}: optimiser entry opt:{g}:{k} (a sum of squares) is negative")
                arrs.append(a)
            state[g] = (*arrs, t) if self.optimizer == "adam" else tuple(arrs)
        return state

    @classmethod
    def load(cls, path) -> "VAE":
        """Read a VAE written by :meth:`save`.

        The file is not trusted: pickles are refused; the configuration is checked (types,
        ranges) and the parameter shapes it implies are compared with the file's arrays — names,
        exact shapes, finiteness — before anything is allocated, so an edited file raises
        ``ValueError`` instead of broadcasting, loading NaNs or allocating without bound.
        ``path`` may omit the ``.npz`` suffix that :meth:`save` adds."""
        if isinstance(path, (str, os.PathLike)):
            path = os.fspath(path)
            if not os.path.exists(path) and os.path.exists(path + ".npz"):
                path = path + ".npz"     # save("model") wrote model.npz, as numpy.savez does
            if not os.path.exists(path):
                raise FileNotFoundError(f"no VAE file at {path!r} (VAE.save writes '<path>.npz')")
            if not zipfile.is_zipfile(path):
                raise ValueError(f"{path} is not a VAE file written by VAE.save (not an .npz archive)")
        with np.load(path, allow_pickle=False) as data:
            if "meta" not in data.files:
                raise ValueError(f"{path} is not a VAE file written by VAE.save (no 'meta' entry)")
            try:
                meta = json.loads(str(data["meta"]))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}: the 'meta' entry is not valid JSON ({exc})") from None
            if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict):
                raise ValueError(f"{path}: 'meta' must be a JSON object with a 'config' object")
            cfg = dict(meta["config"])
            valid = set(cls._param_names())
            unknown = sorted(set(cfg) - valid)
            if unknown:
                raise ValueError(f"{path}: unknown configuration keys {unknown}")
            if not isinstance(cfg.get("dtype", "float32"), str):
                raise ValueError(f"{path}: config dtype must be 'float32' or 'float64'")
            cfg["dtype"] = {"float32": np.float32, "float64": np.float64}.get(
                cfg.get("dtype", "float32"), cfg.get("dtype"))
            if isinstance(cfg.get("hidden"), list):
                cfg["hidden"] = tuple(cfg["hidden"])
            rs = cfg.get("random_state")
            if rs is not None and (isinstance(rs, bool) or not isinstance(rs, int) or rs < 0):
                raise ValueError(f"{path}: config random_state must be null or a non-negative "
                                 f"integer, got {rs!r}")
            model = cls(**cfg)
            model._check_config()
            D = meta.get("n_features")
            check_int(D, "n_features (in the file)")
            for key in ("history", "kl_history", "val_history"):
                h = meta.get(key, [])
                if not isinstance(h, list) or not all(isinstance(v, (int, float)) for v in h):
                    raise ValueError(f"{path}: '{key}' must be a list of numbers")
            epochs = check_int(meta.get("epochs", 0), "epochs (in the file)", minimum=0)
            present = {f for f in data.files if f.startswith("param:")}
            # the number of arrays the configuration implies, by arithmetic (n_flows or the number
            # of layers could be edited to 10**12: compare before building the list of shapes)
            H = model._hidden
            per_flow = {None: 0, "planar": 3, "iaf": 7}[model.flow]
            extra = {"output": 2, "shared": 1, "per_feature": 1}[model.decoder_variance]
            n_arrays = (4 * len(H) + 4 + per_flow * int(model.n_flows) + 2
                        + (extra if model.likelihood == "gaussian" else 0))
            if n_arrays != len(present):
                raise ValueError(f"{path}: the configuration implies {n_arrays} parameter arrays, "
                                 f"the file holds {len(present)}")
            shapes = model._expected_shapes(D)
            names = {f"param:{k}" for k in shapes}
            if names != present:
                raise ValueError(
                    f"{path}: the parameters in the file do not match its configuration "
                    f"(missing {sorted(names - present)[:5]}, unexpected {sorted(present - names)[:5]})")
            arrays = {}
            for k, shape in shapes.items():
                a = data[f"param:{k}"]
                if a.shape != shape:
                    raise ValueError(f"{path}: parameter {k} has shape {a.shape}, the configuration "
                                     f"implies {shape}")
                if a.dtype.kind not in "fiu":
                    raise ValueError(f"{path}: parameter {k} has dtype {a.dtype}, not a real number")
                if not np.all(np.isfinite(a)):
                    raise ValueError(f"{path}: parameter {k} contains NaN or infinite values")
                arrays[k] = a
            opt_state = model._read_optimizer_state(path, data, meta)
        model.initialize(D)   # every size is now bounded by the arrays the file holds
        for k, a in arrays.items():
            model.params[k][...] = a
        for group, st in opt_state.items():
            if model.optimizer == "adam":
                m, v, t = st
                model.optimizer_.state[group] = [m.astype(model._flat_params[group].dtype),
                                                 v.astype(model._flat_params[group].dtype),
                                                 np.empty_like(model._flat_params[group]), t]
            else:
                h = st[0].astype(model._flat_params[group].dtype)
                model.optimizer_.state[group] = (h, np.empty_like(h))
        rng_state = meta.get("rng_state")
        if rng_state is not None:
            try:
                gen = np.random.Generator(np.random.PCG64())
                gen.bit_generator.state = rng_state
            except (TypeError, ValueError, KeyError) as exc:
                raise ValueError(f"{path}: 'rng_state' is not a PCG64 generator state ({exc})") from None
            model._rng = gen
        model.history_ = [float(v) for v in meta.get("history", [])]
        model.kl_history_ = [float(v) for v in meta.get("kl_history", [])]
        model.val_history_ = [float(v) for v in meta.get("val_history", [])]
        model.epochs_ = epochs
        return model


def _group_sizes(model, D):
    """Sizes of the encoder and decoder flat parameter buffers, from the configuration."""
    shapes = model._expected_shapes(D)
    enc = sum(int(np.prod(s)) for k, s in shapes.items() if k.startswith(("enc", "flow.")))
    return {"encoder": enc, "decoder": sum(int(np.prod(s)) for s in shapes.values()) - enc}


def _iwae_bound(logw, K, N):
    """Mean IWAE bound over the N rows and the normalised weights w̃ (K, N) = softmax_k log w."""
    lw = logw.reshape(K, N)
    m = lw.max(axis=0)
    e = np.exp(lw - m)
    s = e.sum(axis=0)
    bound = m + np.log(s / K)
    return float(np.mean(bound)), e / s

