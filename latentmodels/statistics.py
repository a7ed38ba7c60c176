"""Mergeable sufficient statistics of Gaussian models: count, mean and centred second moment.

Factor analysis, PPCA and VB-PCA on complete data see the data only through

    n,   x̄ = (1/n) Σ x_i,   M2 = Σ (x_i − x̄)(x_i − x̄)ᵀ      (covariance S = M2 / n),

so one pass over the rows is all a fit needs. This module computes that record from an array, a
NumPy memmap (in row blocks, memory bounded by one block), any iterable of 2-D chunks, or a Dask
array (per-chunk records merged by a tree reduction, on whatever scheduler is active).

Two records of disjoint data merge exactly by the pairwise update of Chan, Golub & LeVeque
("Updating formulae and a pairwise algorithm for computing sample variances", Stanford CS report
STAN-CS-79-773, 1979; "Algorithms for computing the sample variance: analysis and
recommendations", The American Statistician 37 (1983) 242–247, eq. 2.1 in matrix form):

    n = n_a + n_b,   δ = x̄_b − x̄_a,   x̄ = x̄_a + δ n_b / n,
    M2 = M2_a + M2_b + δ δᵀ n_a n_b / n.

Within a chunk the record is the corrected two-pass estimate (Chan et al. 1983, eq. 1.7):
centre on the chunk mean, then remove the rounding left in that mean. The textbook one-pass
formula ``E[x xᵀ] − x̄ x̄ᵀ`` is never used: it cancels catastrophically when |x̄| ≫ sd (with means
1e5 and sd 1e-6 it returns variances that are pure rounding noise, often negative).
Chunks are combined pairwise (a binary-counter tree), so that rounding grows like log(#chunks).

Dask is imported only when a Dask array is passed in, detected by the module of its type.

Example (data on a cluster; the statistics are computed where the chunks live, and only the
D×D record travels back)::

    import dask.array as da
    from dask.distributed import Client
    from latentmodels.statistics import sufficient_statistics
    from latentmodels import FactorAnalysis

    client = Client()                                  # or Client("scheduler-address:8786")
    X = da.random.normal(size=(10_000_000, 100), chunks=(250_000, 100))
    stats = sufficient_statistics(X)                   # one pass, on the cluster
    fa = FactorAnalysis(10).fit_covariance(stats.covariance(), stats.n, stats.mean)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "SufficientStatistics",
    "sufficient_statistics",
    "is_dask_array",
    "map_rows",
    "DEFAULT_BLOCK_BYTES",
]

#: Bytes of one row block when an in-memory array or a memmap is streamed (64 MiB).
DEFAULT_BLOCK_BYTES = 64 * 2 ** 20


@dataclass(frozen=True, eq=False)
class SufficientStatistics:
    """Sufficient statistics of n rows: ``n``, ``mean`` (D,), ``m2`` (D, D) = Σ (x − mean)(x − mean)ᵀ.

    Immutable: :meth:`update` and :meth:`merge` return new records (the arrays are read-only
    copies, so no caller's array is kept or modified). Merging is exact in exact arithmetic for
    any split of the rows (Chan, Golub & LeVeque 1979, see the module docstring).

    ``mean_lo`` (D,) is the rounding error left in ``mean`` (``mean + mean_lo`` is the mean to
    about twice float64 precision; zeros when unknown). It is carried through merges by error-free
    transformations (Knuth's TwoSum, TAOCP vol. 2 §4.2.2) so that the difference of two chunk
    means — the δ of the merge — stays accurate when |mean| ≫ sd: without it, at mean 1e5 and sd
    1e-6 the rounding of each chunk's mean (~1e-11) would already be 1e-5 sd.
    """

    n: int
    mean: np.ndarray
    m2: np.ndarray
    mean_lo: np.ndarray | None = None

    def __post_init__(self):
        if isinstance(self.n, (bool, np.bool_)) or not (
                isinstance(self.n, (int, np.integer))
                or (isinstance(self.n, (float, np.floating)) and float(self.n).is_integer())):
            raise TypeError(f"n must be a whole number of rows, got {self.n!r}")
        n = int(self.n)
        if n < 0:
            raise ValueError(f"n must be >= 0, got {self.n}")
        mean = np.array(self.mean, dtype=np.float64)
        m2 = np.array(self.m2, dtype=np.float64)
        if mean.ndim != 1 or m2.shape != (mean.shape[0], mean.shape[0]):
            raise ValueError(
                f"mean must be (D,) and m2 (D, D); got shapes {mean.shape} and {m2.shape}"
            )
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(m2))):
            raise ValueError("mean and m2 must be finite (statistics of finite data)")
        lo = np.zeros_like(mean) if self.mean_lo is None else np.array(self.mean_lo, dtype=np.float64)
        if lo.shape != mean.shape:
            raise ValueError(f"mean_lo must have the shape of mean {mean.shape}, got {lo.shape}")
        for a in (mean, m2, lo):
            a.setflags(write=False)
        object.__setattr__(self, "mean_lo", lo)
        object.__setattr__(self, "n", n)
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "m2", m2)

    # construction -----------------------------------------------------------------------
    @classmethod
    def empty(cls, n_features: int) -> "SufficientStatistics":
        """The record of no rows with ``n_features`` columns (the identity of :meth:`merge`)."""
        D = int(n_features)
        if D < 1:
            raise ValueError(f"n_features must be >= 1, got {n_features}")
        return cls(0, np.zeros(D), np.zeros((D, D)))

    @classmethod
    def from_array(cls, X, name: str = "X") -> "SufficientStatistics":
        """The record of the rows of a finite 2-D array X (n, D), by the corrected two-pass formula.

        ``M2 = Σ (x_i − m)(x_i − m)ᵀ − n d dᵀ`` with m the computed mean and d the mean of
        x_i − m (Chan, Golub & LeVeque 1983, eq. 1.7); the returned mean is m + d.
        Large arrays are processed in row blocks (see :func:`sufficient_statistics`).
        """
        return sufficient_statistics(X, name=name)

    @property
    def n_features(self) -> int:
        return self.mean.shape[0]

    # combination ------------------------------------------------------------------------
    def merge(self, other: "SufficientStatistics") -> "SufficientStatistics":
        """The record of the union of two disjoint sets of rows (Chan, Golub & LeVeque 1979).

        ``δ = x̄_b − x̄_a``, ``x̄ = x̄_a + δ n_b/n``, ``M2 = M2_a + M2_b + δδᵀ n_a n_b / n``.
        """
        if not isinstance(other, SufficientStatistics):
            raise TypeError(f"other must be a SufficientStatistics, got {type(other).__name__}")
        if other.n_features != self.n_features:
            raise ValueError(
                f"cannot merge statistics of {self.n_features} features with {other.n_features}"
            )
        return _merge(self, other)

    def update(self, X_chunk, name: str = "X_chunk") -> "SufficientStatistics":
        """This record merged with the statistics of the rows of ``X_chunk`` (any accepted input)."""
        other = sufficient_statistics(X_chunk, name=name, min_samples=0,
                                      n_features=self.n_features)
        return _merge(self, other)

    __add__ = merge

    # results ----------------------------------------------------------------------------
    def covariance(self, ddof: int = 0) -> np.ndarray:
        """``M2 / (n − ddof)``: ddof=0 the maximum-likelihood covariance, 1 the unbiased one."""
        if self.n - ddof <= 0:
            raise ValueError(
                f"the covariance needs more than ddof={ddof} rows; these statistics hold n={self.n}"
            )
        S = self.m2 / (self.n - ddof)
        return (S + S.T) / 2.0

    def __repr__(self) -> str:
        return f"SufficientStatistics(n={self.n}, n_features={self.n_features})"


def _merge(a: SufficientStatistics, b: SufficientStatistics) -> SufficientStatistics:
    if b.n == 0:
        return a
    if a.n == 0:
        return b
    n = a.n + b.n
    # b.mean − a.mean is exact when the two means are within a factor 2 (Sterbenz), the case
    # where it matters; the low parts restore what rounding took from each mean.
    delta = (b.mean - a.mean) + (b.mean_lo - a.mean_lo)
    hi, err = _two_sum(a.mean, delta * (b.n / n))
    hi, lo = _two_sum(hi, err + a.mean_lo)
    m2 = a.m2 + b.m2 + np.outer(delta, delta) * (a.n * (b.n / n))
    return SufficientStatistics(n, hi, m2, lo)


def _two_sum(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``s = fl(a + b)`` and the exact error ``e`` with ``a + b = s + e`` (Knuth's TwoSum)."""
    s = a + b
    bb = s - a
    e = (a - (s - bb)) + (b - bb)
    return s, e


class _PairwiseReducer:
    """Merge a stream of records pairwise, like a binary counter: O(log k) records held."""

    def __init__(self):
        self._stack: list[tuple[int, SufficientStatistics]] = []

    def push(self, rec: SufficientStatistics) -> None:
        level = 0
        while self._stack and self._stack[-1][0] == level:
            _, top = self._stack.pop()
            rec = _merge(top, rec)
            level += 1
        self._stack.append((level, rec))

    def result(self) -> SufficientStatistics | None:
        rec = None
        while self._stack:
            _, top = self._stack.pop()
            rec = top if rec is None else _merge(top, rec)
        return rec


# --------------------------------------------------------------------------------------------
# One block of rows
# --------------------------------------------------------------------------------------------

def _check_dtype(dtype, name: str) -> None:
    if np.dtype(dtype).kind == "O" or not (np.issubdtype(dtype, np.number) or np.issubdtype(dtype, np.bool_)):
        raise TypeError(f"{name} must hold real numbers, got dtype {dtype}")
    if np.issubdtype(dtype, np.complexfloating):
        raise TypeError(f"{name} must hold real numbers, got complex dtype {dtype}")


def _block_statistics(block, name: str = "X", row0=None, work=None) -> SufficientStatistics:
    """Validated record of one 2-D block; ``row0`` (its first row's index) makes errors precise.

    ``work``, if given, is a float64 buffer of at least the block's size reused for the centred
    copy (streaming many blocks then allocates, and page-faults, that memory only once).
    """
    B = np.asarray(block)
    _check_dtype(B.dtype, name)
    if B.ndim != 2:
        raise ValueError(f"{name} must be 2-D (rows, features), got {B.ndim}-D with shape {B.shape}")
    if B.shape[1] < 1:
        raise ValueError(f"{name} has no features (shape {B.shape})")
    n = B.shape[0]
    if n == 0:
        return SufficientStatistics.empty(B.shape[1])
    if B.dtype.kind in "iu" and B.dtype.itemsize == 8:
        shifted = _integer_offset(B)
        if shifted is not None:
            Bc, off_hi, off_lo = shifted
            rec = _block_statistics(Bc, name, row0, work)
            hi, err = _two_sum(off_hi, rec.mean)
            hi, lo = _two_sum(hi, err + off_lo + rec.mean_lo)
            return SufficientStatistics(rec.n, hi, rec.m2, lo)
    B = B.astype(np.float64, copy=False)
    mean = B.mean(axis=0)
    if not np.all(np.isfinite(mean)):
        bad_all = np.argwhere(~np.isfinite(B))
        if bad_all.size == 0:
            raise ValueError(f"{name} has values too large to average in float64 (overflow)")
        bad = bad_all[0]
        where = (int(bad[0]) + (row0 or 0), int(bad[1]))
        kind = "NaN" if np.isnan(B[tuple(bad)]) else "infinite"
        prefix = "" if row0 is not None else "row within the chunk "
        raise ValueError(
            f"{name} contains a {kind} value (first at {prefix}index {where}); sufficient "
            "statistics need finite data. Missing values (NaN) are handled by the models' "
            "missing-value EM on an in-memory array (latentmodels.missing.fit_missing)"
        )
    if work is not None and work.shape[1] == B.shape[1] and work.shape[0] >= n:
        Xc = np.subtract(B, mean, out=work[:n])
    else:
        Xc = B - mean
    d = Xc.mean(axis=0)
    m2 = Xc.T @ Xc
    m2 -= n * np.outer(d, d)
    hi, lo = _two_sum(mean, d)
    return SufficientStatistics(n, hi, (m2 + m2.T) / 2.0, lo)


def _integer_offset(B):
    """64-bit integers minus their first row, exactly, as float64; or None if that is not exact.

    Integers beyond 2**53 (nanosecond timestamps ~1.7e18, ids) lose their low digits when cast
    to float64 — at 1.7e18 the spacing is 256, so a spread of 1000 would come out wrong by ~10 %
    in its variance. Shifting each column by its first entry in integer arithmetic first keeps
    every difference exact when the spread is below 2**53; the shift re-enters through the mean
    (its high and low float parts).
    """
    off = B[0].copy()
    mx, mn = B.max(axis=0), B.min(axis=0)
    offs = [int(v) for v in off]
    if max(max(int(a) - o, o - int(b)) for a, b, o in zip(mx, mn, offs)) >= 2 ** 53:
        return None
    diff = B - off                              # exact: |diff| < 2**53 (uint64 wraps modulo 2**64)
    if B.dtype.kind == "u":
        diff = diff.view(np.int64)
    off_hi = np.array([float(o) for o in offs])
    off_lo = np.array([float(o - int(h)) for o, h in zip(offs, off_hi)])
    return diff.astype(np.float64), off_hi, off_lo


def _rows_per_block(n_features: int, block_bytes: int) -> int:
    return max(1, int(block_bytes) // (8 * max(1, n_features)))


# --------------------------------------------------------------------------------------------
# Memory release for memmaps (Linux): drop the page-table entries of a processed block
# --------------------------------------------------------------------------------------------

_MADV_DONTNEED = 4
_libc = None


def _release(block: np.ndarray) -> None:
    """Unmap the pages of a processed block of a *shared* memmap from this process.

    Pages of a file mapping count towards the resident set once touched, so a pass over an 8 GB
    memmap would otherwise end with ~8 GB resident. ``madvise(MADV_DONTNEED)`` on a MAP_SHARED
    mapping only drops this process's page-table entries: the data stay in the file and the page
    cache, and a later access maps them again. Copy-on-write memmaps (mode "c") are left alone,
    since there it would discard the caller's private changes.
    """
    global _libc
    try:
        if _libc is None:
            import ctypes
            import sys

            if not sys.platform.startswith("linux"):
                _libc = False
                return
            lib = ctypes.CDLL(None, use_errno=True)
            lib.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
            _libc = lib
        if _libc is False:
            return
        import mmap

        page = mmap.PAGESIZE
        start = block.__array_interface__["data"][0]
        stop = start + block.nbytes
        first = (start + page - 1) // page * page   # only whole pages inside this block
        last = stop // page * page
        if last > first:
            _libc.madvise(first, last - first, _MADV_DONTNEED)
    except Exception:  # pragma: no cover - best effort only; correctness does not depend on it
        _libc = False


def _shared_memmap(X) -> bool:
    return isinstance(X, np.memmap) and getattr(X, "mode", "c") in ("r", "r+") \
        and X.flags.c_contiguous


# --------------------------------------------------------------------------------------------
# The entry point
# --------------------------------------------------------------------------------------------

def is_dask_array(X) -> bool:
    """True if X is a Dask array, decided without importing Dask (by its type's module)."""
    mod = type(X).__module__ or ""
    return (mod == "dask" or mod.startswith("dask.")) and hasattr(X, "chunks") and hasattr(X, "ndim")


def sufficient_statistics(X, name: str = "X", *, block_bytes: int = DEFAULT_BLOCK_BYTES,
                          min_samples: int = 1, n_features: int | None = None
                          ) -> SufficientStatistics:
    """One pass over X to its :class:`SufficientStatistics`.

    Parameters
    ----------
    X
        - a 2-D ndarray or anything with ``__array__`` (processed in row blocks);
        - a ``np.memmap`` (row blocks of ``block_bytes``; each block's pages are unmapped after
          use, so the resident memory stays about one block whatever the file size);
        - any other iterable of 2-D chunks (a list/tuple of 2-D arrays, a generator, a reader),
          each validated (numeric, finite, same number of columns) — one pass, never stored;
        - a Dask array (per-chunk records merged by a tree reduction in one ``dask.compute`` on
          the active scheduler: threads, processes or a ``dask.distributed`` client);
        - a :class:`SufficientStatistics` (returned as is).
    name
        Used in error messages.
    block_bytes
        Size of a row block for arrays and memmaps (default 64 MiB).
    min_samples
        Fewer rows in total raise ``ValueError``.
    n_features
        If given, every chunk must have this many columns.

    Raises
    ------
    TypeError for non-numeric data or an unsupported type; ValueError for NaN/inf (with the index
    of the first), wrong dimensions, chunks of different widths, or too few rows.
    """
    if isinstance(X, SufficientStatistics):
        stats = X
    elif is_dask_array(X):
        stats = _dask_statistics(X, name)
    elif isinstance(X, np.ndarray) or (hasattr(X, "__array__") and not isinstance(X, (list, tuple))):
        stats = _array_statistics(X, name, block_bytes)
    elif isinstance(X, (list, tuple)) and not _is_chunk_list(X):
        stats = _array_statistics(_as_array(X, name), name, block_bytes)
    elif isinstance(X, (str, bytes)) or X is None:
        raise TypeError(f"{name} must be an array of numbers or an iterable of 2-D chunks, "
                        f"got {type(X).__name__}")
    else:
        try:
            chunks = iter(X)
        except TypeError:
            raise TypeError(
                f"{name} must be an array, a memmap, a Dask array or an iterable of 2-D chunks, "
                f"got {type(X).__name__}"
            ) from None
        stats = _iterable_statistics(chunks, name, n_features)
    if n_features is not None and stats.n_features != n_features:
        raise ValueError(f"{name} has {stats.n_features} features, expected {n_features}")
    if stats.n < min_samples:
        raise ValueError(f"{name} needs at least {min_samples} sample(s), got {stats.n}")
    return stats


def _as_array(X, name: str) -> np.ndarray:
    """np.asarray, with NumPy's 'inhomogeneous shape' error replaced by one naming ``name``."""
    try:
        return np.asarray(X)
    except ValueError:
        lengths = sorted({len(r) for r in X if hasattr(r, "__len__")}) if isinstance(X, (list, tuple)) \
            else []
        raise ValueError(
            f"{name} is a ragged list: its rows have different lengths {lengths[:5]}; every row "
            "must have the same number of features"
        ) from None


def _is_chunk_list(X) -> bool:
    return len(X) > 0 and all(np.ndim(c) == 2 for c in X)


def _array_statistics(X, name: str, block_bytes: int) -> SufficientStatistics:
    if not isinstance(X, np.ndarray):
        X = np.asarray(X)
    _check_dtype(X.dtype, name)
    if X.ndim != 2:
        hint = ("; reshape a single feature with X.reshape(-1, 1) or a single sample with "
                "X.reshape(1, -1)") if X.ndim == 1 else ""
        raise ValueError(f"{name} must be a 2-D array, got {X.ndim}-D with shape {X.shape}{hint}")
    n, D = X.shape
    if D < 1:
        raise ValueError(f"{name} has no features (shape {X.shape})")
    step = _rows_per_block(D, block_bytes)
    release = _shared_memmap(X)
    reducer = _PairwiseReducer()
    work = np.empty((min(step, n), D)) if n > step else None
    for start in range(0, max(n, 1), step):
        block = X[start:start + step]
        # np.asarray of a memmap slice is a view: the block is read (page faults) by the
        # arithmetic inside _block_statistics, then its pages are released.
        reducer.push(_block_statistics(np.asarray(block), name, row0=start, work=work))
        if release:
            _release(block)
    return reducer.result()


def _iterable_statistics(chunks, name: str, n_features: int | None) -> SufficientStatistics:
    reducer = _PairwiseReducer()
    width = n_features
    row0 = 0
    for i, chunk in enumerate(chunks):
        if is_dask_array(chunk):
            rec = _dask_statistics(chunk, f"{name} chunk {i}")
        else:
            arr = _as_array(chunk, f"{name} chunk {i}") if not isinstance(chunk, np.ndarray) else chunk
            _check_dtype(arr.dtype, f"{name} chunk {i}")
            if arr.ndim != 2:
                raise ValueError(
                    f"{name} chunk {i} must be 2-D (rows, features), got shape {arr.shape}"
                )
            if width is not None and arr.shape[1] != width:
                raise ValueError(
                    f"{name} chunk {i} has {arr.shape[1]} columns, the earlier chunks {width}: "
                    "every chunk must have the same features"
                )
            rec = _array_statistics(arr, f"{name} chunk {i} (rows from {row0})", DEFAULT_BLOCK_BYTES)
        if width is not None and rec.n_features != width:
            raise ValueError(f"{name} chunk {i} has {rec.n_features} columns, expected {width}")
        width = rec.n_features
        row0 += rec.n
        reducer.push(rec)
    result = reducer.result()
    if result is None:
        raise ValueError(f"{name} is an empty iterable: no chunks, no rows")
    return result


# --------------------------------------------------------------------------------------------
# Dask
# --------------------------------------------------------------------------------------------

def _dask_statistics(X, name: str) -> SufficientStatistics:
    """Per-chunk records (one task per row block) merged by a binary tree, in one compute."""
    import dask

    _check_dtype(np.dtype(X.dtype), name)
    if X.ndim != 2:
        raise ValueError(f"{name} must be a 2-D Dask array, got {X.ndim}-D with shape {X.shape}")
    if len(X.chunks[1]) > 1:
        X = X.rechunk({1: -1})            # whole rows in each block: one record per row block
    blocks = X.to_delayed().ravel().tolist()
    sizes = X.chunks[0]
    starts = [None] * len(sizes)
    if all(np.isfinite(s) for s in sizes):
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(int).tolist()
    stat = dask.delayed(_block_statistics, pure=True)
    merge = dask.delayed(_merge, pure=True)
    level = [stat(b, name, r) for b, r in zip(blocks, starts)]
    while len(level) > 1:
        nxt = [merge(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    (result,) = dask.compute(level[0])
    return result


def map_rows(X, func, *, n_outputs: int | None = None, dtype=np.float64):
    """Apply a row-wise function to X lazily if X is a Dask array, eagerly otherwise.

    ``func`` maps an (m, D) NumPy block to (m,) when ``n_outputs`` is None (e.g. score_samples)
    or to (m, n_outputs) (e.g. transform). For a Dask array the result is a Dask array whose row
    chunks are those of X (columns first merged into one chunk, since rows must be whole); nothing
    is computed until the caller asks. ``func`` must not depend on the block's position.
    """
    if not is_dask_array(X):
        return func(X)
    if X.ndim != 2:
        raise ValueError(f"X must be a 2-D Dask array, got {X.ndim}-D")
    if len(X.chunks[1]) > 1:
        X = X.rechunk({1: -1})
    if n_outputs is None:
        return X.map_blocks(func, drop_axis=1, dtype=dtype, meta=np.empty((0,), dtype=dtype))
    return X.map_blocks(func, chunks=(X.chunks[0], (int(n_outputs),)), dtype=dtype,
                        meta=np.empty((0, 0), dtype=dtype))
