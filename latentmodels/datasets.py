"""Data: draws from the generative models with known parameters, the shipped digits, IDX files."""

from __future__ import annotations

import gzip
import os
import warnings
import zlib
from importlib import resources

import numpy as np

from .validation import check_array, check_int, check_positive, check_random_state

__all__ = ["make_fa_data", "make_ppca_data", "load_digits", "load_idx", "dequantize", "binarize"]


def make_fa_data(n_samples: int = 500, n_features: int = 10, n_components: int = 3, *,
                 psi_range: tuple[float, float] = (0.1, 1.0), random_state=None):
    """Draw X from a factor-analysis model with random true parameters.

    ``W`` has N(0, 1) entries, ``mu`` N(0, 1) entries, ``psi`` uniform on ``psi_range``;
    ``x_n = W z_n + mu + ε_n`` with ``z_n ~ N(0, I)``, ``ε_n ~ N(0, diag(psi))`` (Bishop 12.64).

    Returns ``(X, truth)`` with ``truth`` a dict of ``W`` (D, L), ``mu`` (D,), ``psi`` (D,) and
    the latent ``Z`` (N, L).
    """
    n_samples = check_int(n_samples, "n_samples")
    n_features = check_int(n_features, "n_features")
    n_components = check_int(n_components, "n_components")
    if isinstance(psi_range, (str, bytes)) or not hasattr(psi_range, "__len__") or len(psi_range) != 2:
        raise TypeError(f"psi_range must be a pair (low, high) of positive noise variances, "
                        f"got {psi_range!r}")
    lo, hi = (check_positive(v, "psi_range") for v in psi_range)
    if lo > hi:
        raise ValueError(f"psi_range must be (low, high) with low <= high, got {psi_range}")
    rng = check_random_state(random_state)
    W = rng.standard_normal((n_features, n_components))
    mu = rng.standard_normal(n_features)
    psi = rng.uniform(lo, hi, n_features)
    Z = rng.standard_normal((n_samples, n_components))
    X = Z @ W.T + mu + rng.standard_normal((n_samples, n_features)) * np.sqrt(psi)
    return X, {"W": W, "mu": mu, "psi": psi, "Z": Z}


def make_ppca_data(n_samples: int = 500, n_features: int = 10, n_components: int = 3, *,
                   sigma2: float = 0.1, random_state=None):
    """Draw X from a PPCA model: as :func:`make_fa_data` with ``psi = sigma2`` for every feature.

    Returns ``(X, truth)`` with ``truth`` a dict of ``W``, ``mu``, ``sigma2`` and ``Z``.
    """
    sigma2 = check_positive(sigma2, "sigma2")
    X, truth = make_fa_data(n_samples, n_features, n_components, psi_range=(sigma2, sigma2),
                            random_state=random_state)
    return X, {"W": truth["W"], "mu": truth["mu"], "sigma2": sigma2, "Z": truth["Z"]}


def load_digits():
    """The 8×8 handwritten digits: ``(X, y)``, X float64 (1797, 64) in 0..16, y int64 labels.

    UCI "Optical Recognition of Handwritten Digits" (Alpaydin & Kaynak 1998), CC BY 4.0; the
    same 1,797 images scikit-learn bundles. Shipped in ``latentmodels/data/digits.npz``.
    """
    with resources.files("latentmodels").joinpath("data/digits.npz").open("rb") as fh:
        with np.load(fh) as data:
            return data["images"].astype(np.float64), data["labels"].astype(np.int64)


def dequantize(X, *, scale: float = 1.0, random_state=None) -> np.ndarray:
    """Uniform dequantisation of integer data: ``(X + U(0, 1)) / scale`` (Theis et al. 2016).

    Integer-valued data have no density; adding uniform noise spreads each integer over a unit
    cell so that a continuous density on the result lower-bounds the discrete model's
    log-probability. Returns a new array; X is not modified. Non-integer X warns: the bound
    holds for integer levels only (dequantise the raw integers and divide by ``scale``, e.g.
    ``dequantize(X, scale=16)`` for the digits, not ``dequantize(X / 16)``).
    """
    X = check_array(X, "X")
    scale = check_positive(scale, "scale")
    if not np.array_equal(X, np.round(X)):
        warnings.warn(
            "dequantize: X holds non-integer values, so X + U(0, 1) does not spread integer levels "
            "over unit cells and a density on the result bounds no discrete log-probability; pass "
            "the raw integer levels and divide with scale= (e.g. dequantize(X, scale=16))",
            UserWarning, stacklevel=2)
    rng = check_random_state(random_state)
    return (X + rng.uniform(0.0, 1.0, X.shape)) / scale


def binarize(X, random_state=None) -> np.ndarray:
    """Stochastic binarisation: x_bin ~ Bernoulli(x) independently per entry, x ∈ [0, 1].

    The protocol of the binarised-MNIST benchmarks (Salakhutdinov & Murray 2008; Burda et al. 2016,
    §5): each grey level is read as the probability that the pixel is on, so that a Bernoulli
    likelihood is normalised on the result. Returns a new float64 array of zeros and ones;
    ``X`` is not modified. Values outside [0, 1] raise ``ValueError`` (rescale first, e.g.
    ``X / 16`` for the digits).
    """
    X = check_array(X, "X")
    lo, hi = float(X.min()), float(X.max())
    if lo < 0 or hi > 1:
        raise ValueError(
            f"X must hold probabilities in [0, 1] to binarize, got values in [{lo:.4g}, {hi:.4g}]; "
            "rescale it first (e.g. X / 16 for the digits, X / 255 for 8-bit images)")
    rng = check_random_state(random_state)
    return (rng.uniform(size=X.shape) < X).astype(np.float64)


_IDX_TYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def load_idx(path) -> np.ndarray:
    """Read an IDX file (the MNIST format), plain or gzipped, into a NumPy array.

    The format: two zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
    0x0D float32, 0x0E float64), the number of dimensions, then each dimension as a big-endian
    uint32, then the data in C order, big-endian.
    """
    path = os.fspath(path)
    with open(path, "rb") as fh:
        head = fh.read(2)
    opener = gzip.open if head == b"\x1f\x8b" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise ValueError(f"{path} is a truncated or corrupt gzip file ({exc})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path} is not an IDX file (bad magic number)")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_TYPES:
        raise ValueError(f"{path}: unknown IDX data type code 0x{code:02x}")
    dtype = _IDX_TYPES[code]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    count = int(np.prod(shape)) if shape else 1
    if len(raw) - header != count * dtype.itemsize:
        raise ValueError(
            f"{path}: IDX header promises shape {shape} ({count * dtype.itemsize} bytes of data) "
            f"but the file holds {len(raw) - header}"
        )
    data = np.frombuffer(raw, dtype=dtype, count=count, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))

