import numpy as np
import pytest

from latentmodels.datasets import make_ppca_data
from latentmodels.training import kl_weight_at, learning_rate_at
from latentmodels.vae import VAE


def test_kl_warmup_reaches_beta_linearly():
    assert [kl_weight_at(t, 0.5, 4) for t in range(6)] == [0.125, 0.25, 0.375, 0.5, 0.5, 0.5]
    assert kl_weight_at(0, 2.0, 0) == 2.0 and kl_weight_at(7, 2.0, 0) == 2.0


def test_learning_rate_decays_per_epoch_inside_fit():
    assert learning_rate_at(3, 0.1, 0.5) == pytest.approx(0.0125)
    X, _ = make_ppca_data(30, 4, 2, random_state=0)
    v = VAE(2, hidden=(3,), likelihood="gaussian", learning_rate=0.01, lr_decay=0.5,
            dtype=np.float64, random_state=0).fit(X, 3)
    assert v.optimizer_.lr == pytest.approx(0.01 * 0.5 ** 2)      # the rate of the last epoch
    v.fit(X, 1)                                                     # continues the schedule
    assert v.optimizer_.lr == pytest.approx(0.01 * 0.5 ** 3) and v.epochs_ == 4


def test_warmup_epoch_uses_the_annealed_weight_and_reports_weight_one():
    """Epoch 0 of a 4-epoch warm-up trains with β/4 (one SGD step on one batch, replayed by hand),
    and records the ELBO at weight 1 of the same draw."""
    X, _ = make_ppca_data(12, 4, 2, random_state=1)
    kw = dict(hidden=(3,), likelihood="gaussian", optimizer="sgd", learning_rate=0.1,
              kl_warmup_epochs=4, batch_size=12, dtype=np.float64, random_state=2)
    a = VAE(2, **kw).fit(X, 1)
    b = VAE(2, **kw).initialize(4, X)
    order = b._rng.permutation(12)
    eps = b._rng.standard_normal((1, 12, 2))
    elbo1, _ = b.elbo_and_grad(X[order], eps, kl_weight=1.0)
    _, g = b.elbo_and_grad(X[order], eps, kl_weight=0.25)
    assert np.isclose(a.history_[0], elbo1, rtol=1e-12)
    for k in a.params:
        np.testing.assert_allclose(a.params[k], b.params[k] + 0.1 * g[k], rtol=1e-12, atol=1e-14)


def test_verbose_progress_and_divergence():
    X, _ = make_ppca_data(20, 4, 2, random_state=0)
    v = VAE(2, hidden=(3,), likelihood="gaussian", dtype=np.float64, random_state=0)
    v.fit(X, 4, X_val=X, verbose=2)
    assert len(v.history_) == len(v.kl_history_) == len(v.val_history_) == 4
    bad = VAE(2, hidden=(3,), likelihood="gaussian", optimizer="sgd", learning_rate=1e6,
              dtype=np.float64, random_state=0)
    with np.errstate(all="ignore"), pytest.raises(FloatingPointError, match="learning rate"), \
            pytest.warns(UserWarning, match="far from 1"):
        bad.fit(X * 100, 50)
    with pytest.raises(TypeError, match="verbose"):
        v.fit(X, 1, verbose="yes")


def test_verbose_prints_every_kth_epoch(capsys):
    X, _ = make_ppca_data(20, 4, 2, random_state=0)
    VAE(2, hidden=(3,), likelihood="gaussian", dtype=np.float64, random_state=0).fit(
        X, 4, X_val=X, verbose=2)
    lines = capsys.readouterr().out.strip().splitlines()
    assert [ln.split()[1] for ln in lines] == ["2", "4"]
    assert all("train ELBO" in ln and "KL" in ln and "val ELBO" in ln for ln in lines)
