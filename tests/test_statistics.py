"""Tests for latentmodels.statistics: mergeable sufficient statistics, memmaps, iterables, Dask."""

from __future__ import annotations

import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from latentmodels.statistics import (
    SufficientStatistics,
    is_dask_array,
    map_rows,
    sufficient_statistics,
)


def _split(X, cuts):
    """Chunks of X's rows at the (sorted, deduplicated) cut points."""
    edges = [0, *sorted(set(int(c) for c in cuts if 0 < c < len(X))), len(X)]
    return [X[a:b] for a, b in zip(edges[:-1], edges[1:])]


def _exact_moments(X):
    """Mean and M2 = Σ (x − x̄)(x − x̄)ᵀ of the stored float64 values in exact rational arithmetic."""
    N, D = X.shape
    cols = [[Fraction(float(v)) for v in X[:, d]] for d in range(D)]
    mean = [sum(c) / N for c in cols]
    dev = [[v - m for v in c] for c, m in zip(cols, mean)]
    m2 = np.array([[float(sum(a * b for a, b in zip(dev[i], dev[j]))) for j in range(D)]
                   for i in range(D)])
    return np.array([float(m) for m in mean]), m2


def _rel(A, B):
    return np.max(np.abs(A - B)) / np.max(np.abs(B))


# --------------------------------------------------------------------------------------------
# the merge: any chunking gives the statistics of the whole
# --------------------------------------------------------------------------------------------

@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2 ** 32 - 1), n=st.integers(2, 120), d=st.integers(1, 5),
       offset=st.sampled_from([0.0, 1e6]),
       cuts=st.lists(st.integers(1, 119), max_size=12))
def test_any_chunking_equals_numpy_cov(seed, n, d, offset, cuts):
    rng = np.random.default_rng(seed)
    X = offset + rng.standard_normal((n, d)) @ rng.standard_normal((d, d))
    stats = SufficientStatistics.empty(d)
    for chunk in _split(X, cuts):
        stats = stats.update(chunk)
    assert stats.n == n
    np.testing.assert_allclose(stats.mean, X.mean(axis=0), rtol=0, atol=1e-14 * np.max(np.abs(X)))
    ref = np.atleast_2d(np.cov(X.T, bias=True))
    # numpy.cov centres on the rounded mean: at offset 1e6 x − x̄ is still exact (Sterbenz),
    # so both sides are accurate to a few ulps of the covariance.
    assert _rel(stats.covariance(), ref) < 1e-11
    assert _rel(sufficient_statistics(_split(X, cuts)).m2, ref * n) < 1e-11


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2 ** 32 - 1), n=st.integers(2, 60),
       cuts=st.lists(st.integers(1, 59), max_size=10))
def test_offset_1e5_sd_1e_6_exact_where_naive_formula_fails(seed, n, cuts):
    """Means 1e5, sd 1e-6: CGL merges match exact rational arithmetic; E[xxᵀ] − x̄x̄ᵀ is noise."""
    rng = np.random.default_rng(seed)
    X = 1e5 + 1e-6 * rng.standard_normal((n, 3))
    exact_mean, exact_m2 = _exact_moments(X)
    chunks = _split(X, cuts)
    stats = sufficient_statistics(iter(chunks))
    assert _rel(stats.m2, exact_m2) < 1e-12
    np.testing.assert_allclose(stats.mean + stats.mean_lo, exact_mean, rtol=1e-15)
    # merged in the other order: the same to round-off
    rev = SufficientStatistics.empty(3)
    for c in chunks[::-1]:
        rev = sufficient_statistics(c).merge(rev)
    assert _rel(rev.m2, exact_m2) < 1e-12
    # the textbook one-pass formula on the same data: its rounding (~eps·1e10 per entry) swamps
    # M2 ~ n·1e-12, so not one correct digit is left (often exactly 0 or wildly negative)
    naive = X.T @ X - n * np.outer(X.mean(axis=0), X.mean(axis=0))
    assert _rel(naive, exact_m2) > 0.5


def test_naive_formula_gives_negative_variances_cgl_does_not():
    rng = np.random.default_rng(1)
    X = 1e5 + 1e-6 * rng.standard_normal((2000, 4))
    naive = np.mean(X * X, axis=0) - X.mean(axis=0) ** 2
    stats = sufficient_statistics(_split(X, [100, 700, 701, 1500]))
    assert np.any(naive < 0)
    var = np.diag(stats.covariance())
    np.testing.assert_allclose(var, 1e-12, rtol=0.15)   # sd 1e-6 → variance 1e-12 (n = 2000)
    np.testing.assert_allclose(var, np.var(X - X[0], axis=0), rtol=1e-9)


def test_merge_is_associative_and_empty_is_identity():
    rng = np.random.default_rng(2)
    A, B, C = (rng.standard_normal((k, 3)) + 5 for k in (4, 7, 1))
    a, b, c = (SufficientStatistics.from_array(M) for M in (A, B, C))
    left, right = a.merge(b).merge(c), a.merge(b.merge(c))
    whole = SufficientStatistics.from_array(np.vstack([A, B, C]))
    for r in (left, right, a + b + c):
        assert r.n == 12
        np.testing.assert_allclose(r.m2, whole.m2, rtol=1e-13)
        np.testing.assert_allclose(r.mean, whole.mean, rtol=1e-14)
    e = SufficientStatistics.empty(3)
    assert e.merge(a) is a and a.merge(e) is a
    np.testing.assert_allclose(whole.covariance(ddof=1), np.cov(np.vstack([A, B, C]).T), rtol=1e-13)


def test_record_is_immutable_and_keeps_no_caller_array():
    X = np.arange(12.0).reshape(4, 3)
    Xc = X.copy()
    s = SufficientStatistics.from_array(X)
    np.testing.assert_array_equal(X, Xc)
    mean = np.zeros(3)
    r = SufficientStatistics(2, mean, np.eye(3))
    mean[0] = 9.0
    assert r.mean[0] == 0.0
    with pytest.raises(ValueError):
        s.mean[0] = 1.0
    with pytest.raises(ValueError, match="ddof"):
        SufficientStatistics.from_array(X[:1]).covariance(ddof=1)


# --------------------------------------------------------------------------------------------
# inputs: arrays, memmaps, iterables, and what is refused
# --------------------------------------------------------------------------------------------

def test_memmap_in_small_blocks_equals_in_memory(tmp_path):
    rng = np.random.default_rng(3)
    X = 1e6 + rng.standard_normal((5003, 7))
    path = tmp_path / "x.dat"
    mm = np.memmap(path, dtype=np.float64, mode="w+", shape=X.shape)
    mm[:] = X
    mm.flush()
    del mm
    for mode in ("r", "r+", "c"):
        mm = np.memmap(path, dtype=np.float64, mode=mode, shape=X.shape)
        s = sufficient_statistics(mm, block_bytes=8 * 7 * 333)   # 333 rows a block → 16 blocks
        assert s.n == 5003
        assert _rel(s.m2, np.cov(X.T, bias=True) * 5003) < 1e-12
        np.testing.assert_array_equal(np.asarray(mm[:5]), X[:5])    # still readable after release
        del mm
    # float32 memmap: converted per block, like an array
    np.memmap(path, dtype=np.float32, mode="w+", shape=X.shape)[:] = X - 1e6
    mm32 = np.memmap(path, dtype=np.float32, mode="r", shape=X.shape)
    ref = np.asarray(mm32, dtype=np.float64)
    assert _rel(sufficient_statistics(mm32, block_bytes=4096).m2, np.cov(ref.T, bias=True) * 5003) < 1e-12


def test_iterables_generators_and_lists_of_chunks():
    rng = np.random.default_rng(4)
    X = rng.standard_normal((50, 4))
    ref = sufficient_statistics(X)
    gen = (X[i:i + 7] for i in range(0, 50, 7))
    for src in (gen, _split(X, [3, 9, 40]), tuple(_split(X, [25])), X.tolist()):
        s = sufficient_statistics(src)
        assert s.n == 50
        np.testing.assert_allclose(s.m2, ref.m2, rtol=1e-13)
    # a list of 2-D chunks with an empty one in the middle
    s = sufficient_statistics([X[:10], X[:0], X[10:]])
    np.testing.assert_allclose(s.m2, ref.m2, rtol=1e-13)
    assert sufficient_statistics(ref) is ref


def test_bad_input_is_refused_with_a_clear_message():
    X = np.ones((5, 3))
    Xnan = X.copy()
    Xnan[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"NaN.*\(3, 1\)"):
        sufficient_statistics(Xnan)
    with pytest.raises(ValueError, match=r"chunk 1.*NaN.*\(3, 1\)"):
        sufficient_statistics([X, Xnan])
    with pytest.raises(ValueError, match=r"infinite.*\(7, 2\)"):
        bad = np.ones((20, 3))
        bad[7, 2] = np.inf
        sufficient_statistics(bad, block_bytes=8 * 3 * 4)   # index is global across blocks
    with pytest.raises(ValueError, match="chunk 1 has 2 columns"):
        sufficient_statistics([X, np.ones((4, 2))])
    with pytest.raises(ValueError, match="2-D"):
        sufficient_statistics(np.ones(5))
    with pytest.raises(ValueError, match="chunk 0 must be 2-D"):
        sufficient_statistics(iter([np.ones(3)]))
    with pytest.raises(TypeError, match="real numbers"):
        sufficient_statistics(np.array([["a", "b"]]))
    with pytest.raises(TypeError, match="real numbers"):
        sufficient_statistics(np.ones((3, 2)) * 1j)
    with pytest.raises(TypeError):
        sufficient_statistics(None)
    with pytest.raises(TypeError):
        sufficient_statistics(3.0)
    with pytest.raises(ValueError, match="empty iterable"):
        sufficient_statistics(iter([]))
    with pytest.raises(ValueError, match="at least 2"):
        sufficient_statistics(X[:1], min_samples=2)
    with pytest.raises(ValueError, match="features"):
        SufficientStatistics.empty(3).update(np.ones((2, 4)))
    with pytest.raises(ValueError, match="merge"):
        SufficientStatistics.empty(3).merge(SufficientStatistics.empty(2))


def test_dask_is_not_imported_for_numpy_input():
    code = ("import sys, numpy as np; from latentmodels.statistics import sufficient_statistics as s;"
            "s(np.ones((3, 2))); s(iter([np.ones((2, 2))])); assert 'dask' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------------------------
# Dask (optional extra)
# --------------------------------------------------------------------------------------------

def _dask_data():
    rng = np.random.default_rng(5)
    return 1e6 + rng.standard_normal((1001, 6)) @ rng.standard_normal((6, 6))


def test_dask_threaded_equals_in_memory():
    da = pytest.importorskip("dask.array")
    import dask

    X = _dask_data()
    ref = sufficient_statistics(X)
    for chunks in ((100, 6), (1001, 6), (7, 6), (250, 4), ((1, 500, 500), (6,))):
        Xd = da.from_array(X, chunks=chunks)
        assert is_dask_array(Xd) and not is_dask_array(X)
        with dask.config.set(scheduler="threads"):
            s = sufficient_statistics(Xd)
        assert s.n == 1001
        assert _rel(s.m2, ref.m2) < 1e-12
        assert _rel(s.mean, ref.mean) < 1e-15
    Xbad = da.from_array(np.where(np.arange(1001)[:, None] == 600, np.nan, X), chunks=(100, 6))
    with pytest.raises(ValueError, match=r"NaN.*\(600, 0\)"):
        sufficient_statistics(Xbad)


def test_dask_distributed_local_cluster_equals_in_memory():
    pytest.importorskip("dask.array")
    distributed = pytest.importorskip("distributed")
    import dask.array as da

    X = _dask_data()
    ref = sufficient_statistics(X)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster):
        s = sufficient_statistics(da.from_array(X, chunks=(128, 6)))
    assert s.n == 1001
    assert _rel(s.m2, ref.m2) < 1e-12
    assert _rel(s.mean, ref.mean) < 1e-15


def test_map_rows_is_lazy_and_chunked_like_the_input():
    da = pytest.importorskip("dask.array")
    X = _dask_data()
    Xd = da.from_array(X, chunks=(300, 3))
    calls = []

    def rowsum(B):
        calls.append(B.shape)
        return B.sum(axis=1)

    lazy = map_rows(Xd, rowsum)
    assert is_dask_array(lazy) and lazy.chunks == (Xd.chunks[0],)
    assert all(c[0] == 0 for c in calls)   # only meta inference, if anything, before compute
    np.testing.assert_allclose(lazy.compute(), X.sum(axis=1), rtol=1e-15)
    two = map_rows(Xd, lambda B: B[:, :2] * 2.0, n_outputs=2)
    assert two.chunks == (Xd.chunks[0], (2,))
    np.testing.assert_array_equal(two.compute(), X[:, :2] * 2.0)
    np.testing.assert_array_equal(map_rows(X, rowsum), X.sum(axis=1))   # eager for NumPy


def _rss_file_kb():
    """Resident pages of file mappings (RssShmem too, in case tmp_path is on tmpfs), in kB."""
    total = 0
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(("RssFile:", "RssShmem:")):
                total += int(line.split()[1])
    return total


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_memmap_pages_are_released_after_each_block(tmp_path):
    """A plain pass leaves the whole file mapped in the resident set; the streaming pass does not."""
    n, d = 50_000, 100                                          # 40 MB
    path = tmp_path / "big.dat"
    mm = np.memmap(path, dtype=np.float64, mode="w+", shape=(n, d))
    mm[:] = 1.0
    mm.flush()
    del mm
    mm = np.memmap(path, dtype=np.float64, mode="r", shape=(n, d))
    before = _rss_file_kb()
    sufficient_statistics(mm, block_bytes=2 ** 20)
    streamed = _rss_file_kb() - before
    float(np.asarray(mm).sum())
    plain = _rss_file_kb() - before
    assert plain > 30_000                                        # ~40 MB of pages now mapped
    assert streamed < 5_000, streamed                            # at most a block or two


def test_64_bit_integers_beyond_2_53_keep_their_variance():
    # nanosecond timestamps (~1.7e18, float64 spacing 256) with a spread of 1000: casting to float64
    # first gave variances ~10 % off. The exact answer: the statistics of the integer differences.
    rng = np.random.default_rng(4)
    small = rng.integers(0, 1000, (300, 2))
    for dtype, base in ((np.int64, 1_700_000_000_000_000_000), (np.uint64, 2 ** 64 - 5000),
                        (np.int64, -2 ** 63 + 10)):
        t = np.array(base, dtype=dtype) + small.astype(dtype)
        ref = np.cov(small.T.astype(float), bias=True)
        for stats in (sufficient_statistics(t), sufficient_statistics(t, block_bytes=16 * 7),
                      sufficient_statistics([t[:13], t[13:]])):
            np.testing.assert_allclose(stats.covariance(), ref, rtol=1e-13)
            # the mean to double-double precision: mean + mean_lo - base = mean of the differences
            got = [float(Fraction(float(h)) + Fraction(float(lo)) - base)
                   for h, lo in zip(stats.mean, stats.mean_lo)]
            np.testing.assert_allclose(got, small.mean(axis=0), rtol=1e-13)


def test_a_record_refuses_fractional_counts_and_non_finite_moments():
    # SufficientStatistics(2.7, ...) used to become n=2 silently
    mean, m2 = np.zeros(2), np.eye(2)
    with pytest.raises(TypeError, match="whole number"):
        SufficientStatistics(2.7, mean, m2)
    with pytest.raises(TypeError, match="whole number"):
        SufficientStatistics(True, mean, m2)
    assert SufficientStatistics(np.float64(3.0), mean, m2).n == 3
    assert SufficientStatistics(np.int32(3), mean, m2).n == 3
    with pytest.raises(ValueError, match="finite"):
        SufficientStatistics(3, [0.0, np.nan], m2)
    with pytest.raises(ValueError, match="finite"):
        SufficientStatistics(3, mean, np.full((2, 2), np.inf))


def test_a_ragged_list_is_refused_naming_x():
    # NumPy's own message ("inhomogeneous shape after 1 dimensions") named nothing
    with pytest.raises(ValueError, match=r"X is a ragged list: its rows have different lengths \[1, 2\]"):
        sufficient_statistics([[1.0, 2.0], [3.0]] * 5)
    with pytest.raises(ValueError, match="X chunk 1 is a ragged list"):
        sufficient_statistics(iter([np.ones((2, 2)), [[1.0, 2.0], [3.0]]]))
