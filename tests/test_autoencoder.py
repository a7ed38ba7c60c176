import numpy as np
import pytest
from scipy import linalg

from latentmodels import make_ppca_data, pca
from latentmodels.autoencoder import Autoencoder
from latentmodels.nn import gradient_check


def test_linear_autoencoder_spans_the_pca_subspace():
    X, _ = make_ppca_data(500, 8, 2, sigma2=0.3, random_state=0)
    ae = Autoencoder(2, learning_rate=1e-2, random_state=0).fit(X - X.mean(0), 3000)
    angles = linalg.subspace_angles(ae.decoder_subspace(), pca(X, 2).components.T)
    assert np.max(angles) < 1e-3
    # and its error is PCA's: the sum of the discarded eigenvalues
    lam = np.linalg.eigvalsh(np.cov(X.T, bias=True))[::-1]
    assert np.isclose(ae.history_[-1], lam[2:].sum(), rtol=1e-4)


@pytest.mark.parametrize("hidden", [(), (5,)])
def test_autoencoder_gradients(hidden):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((6, 4))
    ae = Autoencoder(2, hidden=hidden, random_state=1).initialize(4)
    errs = gradient_check(lambda: ae.loss_and_grad(X), ae.params, max_entries=None)
    assert max(errs.values()) < 1e-7


def test_decoder_outputs_lie_on_the_learned_manifold():
    # a linear decoder maps any code into its L-dimensional column space
    X, _ = make_ppca_data(300, 6, 2, random_state=1)
    ae = Autoencoder(2, random_state=0).fit(X - X.mean(0), 500)
    out = ae.decode(np.random.default_rng(0).standard_normal((50, 2)) * 10)
    B = ae.decoder_subspace()
    # after removing the bias, outputs are in span(B)
    proj = (out - ae.decoder.linears()[0].params["b"])
    P = B @ np.linalg.pinv(B)
    np.testing.assert_allclose(proj @ P.T, proj, atol=1e-8)
