"""The deterministic autoencoder that the VAE grew from: x → code → x̂, trained on squared error.

With linear layers (``hidden=()``) and squared error, every minimum of the loss spans the leading
principal subspace (Baldi & Hornik 1989): the linear autoencoder is PCA, without its orthogonal
axes. With non-linear layers it is a non-linear PCA: the decoder maps every code onto a learned
manifold, so whatever goes in, what comes out looks like training data.
"""

from __future__ import annotations

import numpy as np

from . import nn
from .validation import check_array, check_fitted, check_int, check_n_features, check_random_state

__all__ = ["Autoencoder"]


class Autoencoder:
    """x̂ = dec(enc(x)) with J = mean_n ½‖x_n − x̂_n‖², by hand-derived backpropagation.

    Parameters: ``n_latent``, ``hidden`` (encoder sizes, mirrored by the decoder; ``()`` is
    linear), ``activation``, ``learning_rate``, ``batch_size`` (None = full batch), ``optimizer``,
    ``dtype``, ``random_state``.

    The backward pass: ∂J/∂x̂ = (x̂ − x)/N, then back through decoder and encoder (``nn.MLP``).
    Attributes: ``history_`` (mean squared reconstruction error per epoch), ``params``.
    """

    def __init__(self, n_latent: int = 2, hidden=(), activation: str = "tanh",
                 learning_rate: float = 1e-2, batch_size: int | None = None,
                 optimizer: str = "adam", dtype=np.float64, random_state=None):
        self.n_latent = n_latent
        self.hidden = tuple(hidden)
        self.activation = activation
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.dtype = dtype
        self.random_state = random_state

    params = None
    n_features_in_ = None

    def initialize(self, n_features: int) -> "Autoencoder":
        D, L, H = check_int(n_features, "n_features"), check_int(self.n_latent, "n_latent"), self.hidden
        rng = check_random_state(self.random_state)
        self._rng = rng
        dt = np.dtype(self.dtype)
        self.encoder = nn.MLP([D, *H, L], self.activation, activate_last=False, rng=rng, dtype=dt)
        self.decoder = nn.MLP([L, *H[::-1], D], self.activation, activate_last=False, rng=rng,
                              dtype=dt)
        self.params, self.grads = {}, {}
        for prefix, net in (("enc.", self.encoder), ("dec.", self.decoder)):
            for name, params, grads, key in net.named(prefix):
                self.params[name], self.grads[name] = params[key], grads[key]
        self.optimizer_ = nn.OPTIMIZERS[self.optimizer](lr=self.learning_rate)
        self.n_features_in_ = D
        self.history_ = []
        return self

    def loss_and_grad(self, X):
        """Mean ½‖x − x̂‖² over the rows of X and its gradient (dict keyed like ``params``)."""
        X = self._as_data(X)
        R = self.decoder.forward(self.encoder.forward(X)) - X
        loss = 0.5 * float(np.mean(np.sum(R * R, axis=1)))
        self.encoder.backward(self.decoder.backward(R / X.shape[0]), need_dx=False)
        return loss, self.grads

    def _as_data(self, X):
        check_fitted(self, ("params",))
        X = check_array(X, "X", dtype=np.dtype(self.dtype))
        check_n_features(self, X)
        return X

    def fit(self, X, epochs: int = 100) -> "Autoencoder":
        """Train for ``epochs`` more epochs (initialising on the first call). Returns self."""
        X = check_array(X, "X", dtype=np.dtype(self.dtype))
        if self.params is None:
            self.initialize(X.shape[1])
        X = self._as_data(X)
        N = X.shape[0]
        bs = N if self.batch_size is None else min(self.batch_size, N)
        for _ in range(check_int(epochs, "epochs", minimum=0)):
            order = self._rng.permutation(N) if bs < N else np.arange(N)
            total = 0.0
            for s in range(0, N, bs):
                xb = X[order[s:s + bs]]
                loss, grads = self.loss_and_grad(xb)
                self.optimizer_.step(self.params, grads)
                total += loss * xb.shape[0]
            self.history_.append(2 * total / N)
        return self

    def transform(self, X) -> np.ndarray:
        """The codes enc(x), (N, L)."""
        return self.encoder.forward(self._as_data(X)).astype(np.float64)

    def decode(self, Z) -> np.ndarray:
        """dec(z): whatever the code, the output lies on the learned manifold."""
        check_fitted(self, ("params",))
        return self.decoder.forward(check_array(Z, "Z", dtype=np.dtype(self.dtype))).astype(np.float64)

    def reconstruct(self, X) -> np.ndarray:
        return self.decode(self.transform(X))

    def decoder_subspace(self) -> np.ndarray:
        """For a linear autoencoder, the D×L matrix whose columns span the decoder's image."""
        check_fitted(self, ("params",))
        if self.hidden:
            raise ValueError("decoder_subspace is defined for the linear autoencoder (hidden=())")
        return self.decoder.linears()[0].params["W"].T.astype(np.float64)
