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


def test_linear_autoencoder_reconstructs_as_the_pca_projection():
    """At the optimum of the squared error the reconstruction is the orthogonal projection onto
    the principal subspace (Baldi & Hornik 1989), whatever the (non-orthogonal) encoder: compared
    with PCA's own projection, a second method. Un-centred data: the biases must learn the mean."""
    X, _ = make_ppca_data(400, 6, 2, sigma2=0.2, random_state=2)
    ae = Autoencoder(2, learning_rate=1e-2, random_state=0).fit(X, 3000)
    ref = pca(X, 2).reconstruct(X)
    err = np.abs(ae.reconstruct(X) - ref).max()
    # the discarded variance is ~0.2 per direction; an error of 1e-3 is 0.5% of one noise s.d.
    assert err < 1e-3, err
    # and a wrong subspace (PCA with one component) is far from it: the test can fail
    assert np.abs(pca(X, 1).reconstruct(X) - ref).max() > 0.1


def test_autoencoder_settings_are_checked_at_fit_and_stored_unchanged():
    from latentmodels.validation import NotFittedError

    ae = Autoencoder(2, hidden=[3], batch_size=-1, optimizer="rmsprop", dtype=int)
    assert ae.hidden == [3] and ae.batch_size == -1 and ae.get_params()["optimizer"] == "rmsprop"
    X = np.random.default_rng(0).standard_normal((20, 4))
    with pytest.raises(NotFittedError):
        ae.transform(X)
    for bad, match in ((dict(batch_size=-1), "batch_size"), (dict(optimizer="rmsprop"), "optimizer"),
                       (dict(dtype=int), "dtype"), (dict(learning_rate=float("nan")), "learning_rate")):
        with pytest.raises((ValueError, TypeError), match=match):
            Autoencoder(2, **bad).fit(X, 1)
    ok = Autoencoder(2, hidden=[3], batch_size=5, random_state=0).fit(X, 2)
    assert len(ok.history_) == 2 and np.all(np.isfinite(ok.history_))
    # score is minus the mean squared reconstruction error, computed here directly
    assert -ok.score(X) == pytest.approx(np.mean(np.sum((ok.reconstruct(X) - X) ** 2, axis=1)))
