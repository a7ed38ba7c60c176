import gzip

import numpy as np
import pytest

from latentmodels import dequantize, load_digits, load_idx, make_fa_data, make_ppca_data


def test_make_fa_data_has_the_model_covariance():
    X, t = make_fa_data(100_000, 5, 2, random_state=0)
    assert X.shape == (100_000, 5) and t["W"].shape == (5, 2) and t["Z"].shape == (100_000, 2)
    np.testing.assert_allclose(np.cov(X.T), t["W"] @ t["W"].T + np.diag(t["psi"]), atol=0.06)
    np.testing.assert_array_equal(X, make_fa_data(100_000, 5, 2, random_state=0)[0])


def test_make_ppca_data_is_isotropic():
    X, t = make_ppca_data(50_000, 4, 1, sigma2=0.2, random_state=1)
    resid = X - t["Z"] @ t["W"].T - t["mu"]
    np.testing.assert_allclose(resid.var(0), 0.2, rtol=0.05)


def test_load_digits():
    X, y = load_digits()
    assert X.shape == (1797, 64) and X.dtype == np.float64
    assert y.shape == (1797,) and y.dtype == np.int64
    assert X.min() == 0 and X.max() == 16 and np.all(X == np.round(X))
    assert set(np.unique(y)) == set(range(10))
    assert np.all(np.bincount(y) >= 170)


def test_dequantize_stays_in_the_unit_cell_and_copies():
    X, _ = load_digits()
    X0 = X.copy()
    Z = dequantize(X, scale=17.0, random_state=0)
    np.testing.assert_array_equal(X, X0)
    assert np.all(Z * 17 >= X) and np.all(Z * 17 < X + 1)
    assert 0 <= Z.min() and Z.max() < 1


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("dtype,code", [(np.uint8, 0x08), (np.dtype(">i4"), 0x0C),
                                        (np.dtype(">f8"), 0x0E)])
def test_load_idx_round_trip(tmp_path, compress, dtype, code):
    arr = (np.arange(2 * 3 * 4) * 7 % 256).reshape(2, 3, 4).astype(dtype)
    header = bytes([0, 0, code, 3]) + np.array(arr.shape, dtype=">u4").tobytes()
    raw = header + arr.astype(np.dtype(dtype).newbyteorder(">")).tobytes()
    path = tmp_path / ("a.idx.gz" if compress else "a.idx")
    path.write_bytes(gzip.compress(raw) if compress else raw)
    got = load_idx(path)
    np.testing.assert_array_equal(got, arr)
    assert got.shape == (2, 3, 4)


def test_load_idx_rejects_bad_files(tmp_path):
    p = tmp_path / "bad"
    p.write_bytes(b"\x01\x02\x08\x01\x00\x00\x00\x02ab")
    with pytest.raises(ValueError, match="magic"):
        load_idx(p)
    p.write_bytes(bytes([0, 0, 8, 1]) + np.array([5], dtype=">u4").tobytes() + b"abc")
    with pytest.raises(ValueError, match="promises"):
        load_idx(p)


def test_binarize_is_bernoulli_of_the_intensity_and_copies():
    from latentmodels.datasets import binarize

    p = np.array([[0.0, 0.25, 0.5, 1.0]])
    X = np.repeat(p, 20000, axis=0)
    X0 = X.copy()
    B = binarize(X, random_state=0)
    np.testing.assert_array_equal(X, X0)
    assert set(np.unique(B)) <= {0.0, 1.0}
    # the frequency of ones is p within 5 binomial standard errors (exactly 0 or 1 at the ends)
    se = np.sqrt(p * (1 - p) / len(X))
    assert np.all(np.abs(B.mean(0) - p[0]) <= 5 * se[0])
    np.testing.assert_array_equal(B, binarize(X, random_state=0))


@pytest.mark.parametrize("bad", [np.array([[0.5, 1.5]]), np.array([[-0.1, 0.2]]), load_digits()[0][:3]])
def test_binarize_refuses_values_outside_the_unit_interval(bad):
    from latentmodels.datasets import binarize

    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        binarize(bad)


def test_malformed_psi_range_and_non_integer_dequantisation():
    for bad in ((1.0,), (0.1, 0.5, 1.0), 5, "ab"):
        with pytest.raises(TypeError, match="psi_range must be a pair"):   # was: unpacking errors
            make_fa_data(10, 3, 1, psi_range=bad)
    X = load_digits()[0][:5]
    with pytest.warns(UserWarning, match="non-integer.*scale=") as rec:
        dequantize(X / 16, random_state=0)        # the mistake: scale before dequantising
    assert rec[0].filename == __file__
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Z = dequantize(X, scale=16.0, random_state=0)
    assert np.all((Z * 16 >= X) & (Z * 16 < X + 1))
