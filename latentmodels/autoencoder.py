"""The deterministic autoencoder that the VAE grew from: x → code → x̂, trained on squared error.

With linear layers (``hidden=()``) and squared error, every minimum of the loss spans the leading
principal subspace (Baldi & Hornik 1989): the linear autoencoder is PCA, without its orthogonal
axes. With non-linear layers it is a non-linear PCA: the decoder maps every code onto a learned
manifold, so whatever goes in, what comes out looks like training data.
"""

from __future__ import annotations

import numpy as np

from . import nn
from .validation import (
    Estimator,
    check_array,
    check_choice,
    check_dtype,
    check_fitted,
    check_int,
    check_magnitude,
    check_n_features,
    check_positive,
    check_random_state,
)

__all__ = ["Autoencoder"]


class Autoencoder(Estimator):
    """x̂ = dec(enc(x)) with J = mean_n ½‖x_n − x̂_n‖², by hand-derived backpropagation.

    Parameters: ``n_latent``, ``hidden`` (encoder sizes, mirrored by the decoder; ``()`` is
    linear), ``activation``, ``learning_rate`` (> 0, finite), ``batch_size`` (None = full batch,
    else an int >= 1), ``optimizer`` ("adam", "adagrad", "sgd"), ``dtype`` (float32 or float64),
    ``random_state``. ``__init__`` stores them unchanged (the scikit-learn contract, so that
    ``clone`` and ``GridSearchCV`` work); :meth:`initialize` (called by the first ``fit``) checks
    them and raises ``ValueError``/``TypeError`` naming the one that is wrong.

    The backward pass: ∂J/∂x̂ = (x̂ − x)/N, then back through decoder and encoder (``nn.MLP``).
    Attributes: ``history_`` (mean squared reconstruction error per epoch), ``params``.
    """

    def __init__(self, n_latent: int = 2, hidden=(), activation: str = "tanh",
                 learning_rate: float = 1e-2, batch_size: int | None = None,
                 optimizer: str = "adam", dtype=np.float64, random_state=None):
        self.n_latent = n_latent
        self.hidden = hidden
        self.activation = activation
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.dtype = dtype
        self.random_state = random_state

    params = None
    n_features_in_ = None

    def _check_settings(self):
        """Validate every hyper-parameter; returns (L, hidden tuple, dtype)."""
        L = check_int(self.n_latent, "n_latent")
        H = self.hidden
        if isinstance(H, (str, bytes)) or not isinstance(H, (tuple, list)):
            raise TypeError(f"hidden must be a tuple of layer sizes such as (64,) or (), got {H!r}")
        H = tuple(check_int(h, "hidden sizes") for h in H)
        check_choice(self.activation, "activation", tuple(nn.ACTIVATIONS))
        check_positive(self.learning_rate, "learning_rate")
        if self.batch_size is not None:
            check_int(self.batch_size, "batch_size")
        check_choice(self.optimizer, "optimizer", tuple(nn.OPTIMIZERS))
        dt = check_dtype(self.dtype, "dtype")
        check_random_state(self.random_state)
        return L, H, dt

    def initialize(self, n_features: int) -> "Autoencoder":
        """Check the settings and draw fresh weights for data with ``n_features`` columns."""
        L, H, dt = self._check_settings()
        D = check_int(n_features, "n_features")
        rng = check_random_state(self.random_state)
        self._rng = rng
        self.encoder = nn.MLP([D, *H, L], self.activation, activate_last=False, rng=rng, dtype=dt)
        self.decoder = nn.MLP([L, *H[::-1], D], self.activation, activate_last=False, rng=rng,
                              dtype=dt)
        self.params, self.grads = {}, {}
        for prefix, net in (("enc.", self.encoder), ("dec.", self.decoder)):
            for name, params, grads, key in net.named(prefix):
                self.params[name], self.grads[name] = params[key], grads[key]
        self.optimizer_ = nn.OPTIMIZERS[self.optimizer](lr=float(self.learning_rate))
        self.n_features_in_ = D
        self._dtype = dt
        self.history_ = []
        return self

    def loss_and_grad(self, X):
        """Mean ½‖x − x̂‖² over the rows of X and its gradient (a new dict keyed like ``params``).

        The gradient arrays are copies the caller owns; the training loop uses the live buffers.
        """
        loss, grads = self._loss_and_grad(self._as_data(X))
        return loss, {k: v.copy() for k, v in grads.items()}

    def _loss_and_grad(self, X):
        R = self.decoder.forward(self.encoder.forward(X)) - X
        loss = 0.5 * float(np.mean(np.sum(R * R, axis=1)))
        self.encoder.backward(self.decoder.backward(R / X.shape[0]), need_dx=False)
        return loss, self.grads

    def _as_data(self, X):
        check_fitted(self, ("params",))
        X = check_array(X, "X")
        check_n_features(self, X)
        check_magnitude(X, "X", dtype=self._dtype)
        return X.astype(self._dtype, copy=False)

    def fit(self, X, epochs: int | None = 100, y=None) -> "Autoencoder":
        """Train for ``epochs`` more epochs (initialising on the first call). Returns self.

        ``epochs=None`` means 100 (scikit-learn's ``Pipeline`` passes ``y=None`` second).
        Refuses data whose squared error would overflow the dtype.
        """
        epochs = check_int(100 if epochs is None else epochs, "epochs", minimum=0)
        X = check_array(X, "X")
        if self.params is None:
            self.initialize(X.shape[1])
        else:
            self._check_settings()
        X = self._as_data(X)
        N = X.shape[0]
        bs = N if self.batch_size is None else min(int(self.batch_size), N)
        for _ in range(epochs):
            order = self._rng.permutation(N) if bs < N else np.arange(N)
            total = 0.0
            for s in range(0, N, bs):
                xb = X[order[s:s + bs]]
                loss, grads = self._loss_and_grad(xb)
                self.optimizer_.step(self.params, grads)
                total += loss * xb.shape[0]
            self.history_.append(2 * total / N)
        return self

    def transform(self, X) -> np.ndarray:
        """The codes enc(x), (N, L), a new float64 array."""
        X = self._as_data(X)
        return np.array(self.encoder.forward(X), dtype=np.float64)

    def decode(self, Z) -> np.ndarray:
        """dec(z): whatever the code, the output lies on the learned manifold."""
        check_fitted(self, ("params",))
        Z = check_array(Z, "Z")
        if Z.shape[1] != self.n_latent:
            raise ValueError(f"Z has {Z.shape[1]} columns, the autoencoder has n_latent={self.n_latent}")
        return np.array(self.decoder.forward(Z.astype(self._dtype, copy=False)), dtype=np.float64)

    def reconstruct(self, X) -> np.ndarray:
        """dec(enc(x)), (N, D)."""
        return self.decode(self.transform(X))

    def score(self, X, y=None) -> float:
        """Minus the mean squared reconstruction error per row (higher is better, as scikit-learn)."""
        X = self._as_data(X)
        R = self.reconstruct(X) - X
        return -float(np.mean(np.sum(R * R, axis=1)))

    def decoder_subspace(self) -> np.ndarray:
        """For a linear autoencoder, the D×L matrix whose columns span the decoder's image."""
        check_fitted(self, ("params",))
        if self.hidden:
            raise ValueError("decoder_subspace is defined for the linear autoencoder (hidden=())")
        return self.decoder.linears()[0].params["W"].T.astype(np.float64)
