"""Input checks shared by every model, and the errors and warnings they raise.

Every check names the argument it looked at and what was wrong, so that a student who passes a
transposed matrix or a column of NaNs learns what to fix. No check modifies its input: arrays are
converted with ``np.asarray`` (a copy only where the dtype changes) and never written to.
"""

from __future__ import annotations

import inspect
import numbers
import warnings

import numpy as np

__all__ = [
    "ConvergenceWarning",
    "Estimator",
    "NotFittedError",
    "check_array",
    "check_choice",
    "check_covariance",
    "check_dtype",
    "check_fitted",
    "check_int",
    "check_magnitude",
    "check_n_components",
    "check_n_features",
    "check_positive",
    "check_random_state",
    "warn",
]


class NotFittedError(ValueError, AttributeError):
    """A method that needs fitted parameters was called before ``fit``."""


class ConvergenceWarning(UserWarning):
    """An iterative fit stopped at ``max_iter`` before meeting its tolerance, or hit a bound."""


def warn(message: str, category=UserWarning) -> None:
    """Issue a warning attributed to the user's call, not to this module."""
    warnings.warn(message, category, stacklevel=3)


def check_array(
    X,
    name: str = "X",
    *,
    ndim: int = 2,
    min_samples: int = 1,
    dtype=np.float64,
) -> np.ndarray:
    """Return ``X`` as a finite floating array of ``ndim`` dimensions, or raise.

    Raises
    ------
    TypeError
        If ``X`` is not numeric (strings, objects, complex numbers, None).
    ValueError
        If it has the wrong number of dimensions, fewer than ``min_samples`` rows,
        no columns, or any NaN or infinite entry.
    """
    if X is None:
        raise TypeError(f"{name} must be an array of numbers, got None")
    if isinstance(X, (str, bytes)):
        raise TypeError(f"{name} must be an array of numbers, got a {type(X).__name__}")
    try:
        arr = np.asarray(X)
    except ValueError as e:   # ragged nested lists: rows of different lengths
        raise ValueError(
            f"{name} must be a rectangular array; its rows have different lengths ({e})"
        ) from None
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.bool_)
    ):
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise TypeError(f"{name} must hold real numbers, got complex dtype {arr.dtype}")
    if arr.ndim != ndim:
        hint = ""
        if ndim == 2 and arr.ndim == 1:
            hint = (
                "; reshape a single feature with X.reshape(-1, 1) "
                "or a single sample with X.reshape(1, -1)"
            )
        raise ValueError(
            f"{name} must be a {ndim}-D array, got {arr.ndim}-D with shape {arr.shape}{hint}"
        )
    arr = arr.astype(dtype, copy=False)
    if ndim >= 1 and arr.shape[0] < min_samples:
        raise ValueError(
            f"{name} needs at least {min_samples} sample(s), got {arr.shape[0]} "
            f"(shape {arr.shape})"
        )
    if ndim == 2 and arr.shape[1] < 1:
        raise ValueError(f"{name} has no features (shape {arr.shape})")
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(
            f"{name} contains NaN or infinite values (first at index {tuple(int(i) for i in bad)})"
        )
    return arr


def check_n_components(n_components, n_features: int, *, strict: bool = False,
                       name: str = "n_components") -> int:
    """Return ``n_components`` as an int in [1, n_features] (or [1, n_features) when strict)."""
    if isinstance(n_components, bool) or not isinstance(n_components, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {n_components!r}")
    upper = n_features - 1 if strict else n_features
    if not 1 <= n_components <= upper:
        rel = "<" if strict else "<="
        raise ValueError(
            f"{name} must satisfy 1 <= {name} {rel} n_features={n_features}, got {n_components}"
        )
    return int(n_components)


def check_positive(value, name: str, *, allow_zero: bool = False) -> float:
    """Return ``value`` as a float that is > 0 (or >= 0 with ``allow_zero``), or raise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not np.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {bound}, got {value}")
    return value


def check_int(value, name: str, *, minimum: int = 1, maximum: int | None = None) -> int:
    """Return ``value`` as an int in [``minimum``, ``maximum``], or raise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return int(value)


def check_choice(value, name: str, allowed) -> str:
    """Return ``value`` if it is one of ``allowed`` (compared by equality), or raise ValueError."""
    allowed = tuple(allowed)
    try:
        ok = value in allowed
    except TypeError:
        ok = False
    if not ok or isinstance(value, bool):
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    return value


def check_dtype(dtype, name: str = "dtype", allowed=(np.float32, np.float64)) -> np.dtype:
    """Return ``np.dtype(dtype)`` if it is one of the ``allowed`` floating types, or raise."""
    try:   # np.dtype(None) is float64: refuse None rather than guess
        dt = None if dtype is None else np.dtype(dtype)
    except TypeError:
        dt = None
    allowed = tuple(np.dtype(a) for a in allowed)
    if dt is None or dt not in allowed:
        names = ", ".join(a.name for a in allowed)
        raise TypeError(f"{name} must be one of {names}, got {dtype!r}")
    return dt


def check_magnitude(X: np.ndarray, name: str = "X", *, dtype=np.float64) -> np.ndarray:
    """Raise ``ValueError`` if sums of squares of ``X`` would overflow (or its non-zeros underflow) ``dtype``.

    Second moments Σ x² over N rows overflow once max|x| exceeds sqrt(max_float / N); a cast to a
    narrower dtype silently turns entries below its smallest normal number into 0 (or subnormals).
    Both are failures of units, not of the model: the message says to rescale. Returns ``X``.
    """
    info = np.finfo(dtype)
    if X.size == 0:
        return X
    big = float(np.max(np.abs(X)))
    limit = float(np.sqrt(info.max / max(X.size, 1)))
    if big > limit:
        raise ValueError(
            f"{name} has entries up to {big:.3g}, whose squares overflow {np.dtype(dtype).name} "
            f"(limit about {limit:.3g} for {X.shape[0]} rows); rescale {name}, e.g. divide by its "
            "standard deviation"
        )
    nonzero = np.abs(X[X != 0])
    if nonzero.size and float(np.max(nonzero)) < info.tiny:
        raise ValueError(
            f"{name} has no entry larger than {float(np.max(nonzero)):.3g} in magnitude, below the "
            f"smallest normal {np.dtype(dtype).name} ({info.tiny:.3g}); rescale {name}"
        )
    return X


def check_random_state(random_state) -> np.random.Generator:
    """Turn None, an int or a ``numpy.random.Generator`` into a Generator."""
    if isinstance(random_state, np.random.Generator):
        return random_state
    if random_state is None or (
        isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool)
    ):
        return np.random.default_rng(random_state)
    raise TypeError(
        "random_state must be None, an int or a numpy.random.Generator, "
        f"got {type(random_state).__name__}"
    )


def check_fitted(estimator, attributes=("n_features_in_",)) -> None:
    """Raise ``NotFittedError`` unless every attribute in ``attributes`` is set."""
    missing = [a for a in attributes if getattr(estimator, a, None) is None]
    if missing:
        raise NotFittedError(
            f"This {type(estimator).__name__} is not fitted yet: call fit() first "
            f"(missing {', '.join(missing)})"
        )


def check_n_features(estimator, X: np.ndarray, name: str = "X") -> None:
    """Raise if ``X`` has a different number of columns than the data seen at fit."""
    expected = estimator.n_features_in_
    if X.shape[1] != expected:
        raise ValueError(
            f"{name} has {X.shape[1]} features, but {type(estimator).__name__} was fitted "
            f"with {expected}"
        )


def check_covariance(S, name: str = "S", *, rtol: float = 1e-8) -> np.ndarray:
    """Return ``S`` as a float64 symmetric positive semi-definite matrix, or raise.

    Symmetry is checked to ``rtol`` relative to the largest entry, positive
    semi-definiteness by the smallest eigenvalue (which may be as low as ``-rtol`` times the
    largest, for round-off).
    """
    S = check_array(S, name)
    if S.shape[0] != S.shape[1]:
        raise ValueError(f"{name} must be a square matrix, got shape {S.shape}")
    scale = max(float(np.max(np.abs(S))), np.finfo(float).tiny)
    if np.max(np.abs(S - S.T)) > rtol * scale:
        raise ValueError(f"{name} must be symmetric (max |S - S.T| = {np.max(np.abs(S - S.T)):.3g})")
    eig_min = float(np.linalg.eigvalsh(S)[0])
    if eig_min < -rtol * scale * S.shape[0]:
        raise ValueError(
            f"{name} must be positive semi-definite, its smallest eigenvalue is {eig_min:.3g}"
        )
    if np.any(np.diag(S) <= 0):
        d = int(np.argmin(np.diag(S)))
        raise ValueError(f"{name} has a non-positive variance on its diagonal at index {d}")
    return S


class Estimator:
    """The scikit-learn estimator protocol, without importing scikit-learn.

    ``get_params`` and ``set_params`` read the hyper-parameters from the ``__init__`` signature, so
    that ``sklearn.base.clone``, ``Pipeline``, ``cross_val_score`` and ``GridSearchCV`` work on every
    model that inherits this class. The contract, as scikit-learn's: ``__init__`` stores each argument
    unchanged under its own name and does no validation (that happens in ``fit``); fitted attributes
    end in ``_``. ``fit_transform`` is ``fit`` followed by ``transform``.
    """

    @classmethod
    def _param_names(cls) -> list[str]:
        init = cls.__init__
        if init is object.__init__:
            return []
        sig = inspect.signature(init)
        names = []
        for p in sig.parameters.values():
            if p.name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            names.append(p.name)
        return sorted(names)

    def get_params(self, deep: bool = True) -> dict:
        """Return the hyper-parameters given to ``__init__``, by name."""
        out = {}
        for name in self._param_names():
            value = getattr(self, name)
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                out.update((f"{name}__{k}", v) for k, v in value.get_params().items())
            out[name] = value
        return out

    def set_params(self, **params):
        """Set hyper-parameters by name (unknown names raise ``ValueError``); returns ``self``."""
        valid = set(self._param_names())
        for key, value in params.items():
            name, _, sub = key.partition("__")
            if name not in valid:
                raise ValueError(
                    f"invalid parameter {name!r} for {type(self).__name__}; "
                    f"valid parameters are {sorted(valid)}"
                )
            if sub:
                getattr(self, name).set_params(**{sub: value})
            else:
                setattr(self, name, value)
        return self

    def __sklearn_tags__(self):
        """scikit-learn >= 1.6 asks every estimator for its tags (``sklearn.utils.get_tags``).

        Only scikit-learn calls this, so scikit-learn is imported here, lazily: the package itself
        never depends on it. Unsupervised (no target required), a transformer (``transform``).
        """
        from sklearn.utils import Tags, TargetTags, TransformerTags

        return Tags(estimator_type=None, target_tags=TargetTags(required=False),
                    transformer_tags=TransformerTags() if hasattr(self, "transform") else None)

    def fit_transform(self, X, y=None, **fit_params):
        """``fit(X)`` then ``transform(X)``; ``y`` is ignored (unsupervised)."""
        return self.fit(X, **fit_params).transform(X)

    def __repr__(self) -> str:
        defaults = {
            p.name: p.default for p in inspect.signature(type(self).__init__).parameters.values()
        }
        parts = []
        for name in self._param_names():
            value = getattr(self, name, None)
            default = defaults.get(name, inspect.Parameter.empty)
            try:
                same = value is default or bool(value == default)
            except Exception:  # arrays and other objects without a plain truth value
                same = False
            if not same:
                parts.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(parts)})"
