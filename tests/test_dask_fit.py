"""Fitting on Dask arrays (issue 13): the statistics are computed per chunk and merged in one pass,
on whatever scheduler is active, and the fit equals the in-memory one; scoring stays lazy."""

import numpy as np
import pytest

from latentmodels.datasets import make_fa_data
from latentmodels.fa import FactorAnalysis
from latentmodels.ppca import PPCA

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")

MODELS = [lambda: FactorAnalysis(3, random_state=0), lambda: PPCA(3), lambda: PPCA(3, method="em")]


@pytest.fixture(scope="module")
def data():
    X = make_fa_data(3000, 12, 3, random_state=4)[0] * 1e3 + 1e6   # offset and units: a fair test
    return X, da.from_array(X, chunks=(700, 12))                    # uneven last chunk


def _check_equal(model_dask, model_mem, X, Xd):
    # the bar: the same model to 1e-9 nats/sample
    assert abs(model_dask.log_likelihood(X) - model_mem.log_likelihood(X)) < 1e-9
    # lazy scoring equals eager scoring of the same model (EM stops at iterates that differ in
    # round-off between the two fits, so per-row values are compared within one model)
    lazy = model_dask.score_samples(Xd)
    assert isinstance(lazy, da.Array) and lazy.chunks[0] == Xd.chunks[0]
    np.testing.assert_allclose(lazy.compute(), model_dask.score_samples(X), rtol=0, atol=1e-12)
    Zl = model_dask.transform(Xd)
    assert isinstance(Zl, da.Array)
    np.testing.assert_allclose(Zl.compute(), model_dask.transform(X), rtol=0, atol=1e-12)


@pytest.mark.parametrize("make", MODELS)
def test_threaded_scheduler_fit_equals_in_memory(make, data):
    X, Xd = data
    with dask.config.set(scheduler="threads"):
        m_dask = make().fit(Xd)
    _check_equal(m_dask, make().fit(X), X, Xd)


def test_local_cluster_fit_equals_in_memory(data):
    distributed = pytest.importorskip("distributed")
    X, Xd = data
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster):
        m_dask = FactorAnalysis(3, random_state=0).fit(Xd)
        _check_equal(m_dask, FactorAnalysis(3, random_state=0).fit(X), X, Xd)
