"""The evidence lower bound: its record, and the coordinate ascent that EM and CAVI share.

For any distribution q over the latent variables (Bishop PRML eqs. 9.70–9.72, 10.2–10.4)

    log p(x) = L(q, θ) + KL(q ‖ p(z | x, θ)),
    L(q, θ)  = E_q[log p(x | z, θ)] − KL(q(z) ‖ p(z))      (− KL of parameter posteriors, in VI)

so L is a lower bound on the evidence, tight exactly when q is the posterior. EM (Bishop 9.4) and
mean-field CAVI (Bishop 10.1.1) both push L up one block at a time — EM: q, then θ; CAVI: each
factor q_j in turn — and each block can only raise L. :func:`coordinate_ascent` runs that loop
for every model in the package and records L after every block, with a label per step.

Two numerical rules make the loop honest at every scale of the data:

- **Decrease test.** A block that lowers L by more than the floating-point error of L's own
  computation raises :class:`ELBODecreaseError` (a derivation bug). A smaller decrease is
  round-off. The error is supplied by the model (``error=``: e.g. ``n_terms · ε · Σ|terms|`` for
  a sum of terms, ε the machine epsilon; Higham 2002, eq. 4.4) because a bound of ~1/σ² nats
  carries an absolute error of ~ε/σ², which no fixed relative tolerance describes.
- **Stopping rule.** Stop when L has stopped rising (by less than ``tol · max(1, |L|)``, or by
  less than its own error) *and* the parameters have stopped moving (``param_change() ≤
  param_tol``). A small relative change of L alone is no test when L is ~1/σ² nats.

Steps that are not coordinate-ascent blocks — an acceleration jump, a final polish — enter the
history as labelled steps (``AscentResult.steps``), so that "EM never goes down" can be checked on
EM's own steps.
"""

from __future__ import annotations

import os
import sys
import warnings
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from .validation import ConvergenceWarning

__all__ = ["ELBO", "ELBODecreaseError", "AscentResult", "coordinate_ascent", "float_error",
           "warn_user", "em_steps"]

EPS = float(np.finfo(float).eps)
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def warn_user(message: str, category=UserWarning) -> None:
    """Issue a warning attributed to the first stack frame outside this package (the user's call).

    The ``stacklevel`` is found by walking the stack, so the warning points at the user's line
    however deep inside the package it was raised, and Python's once-per-location filter applies
    per user call site, not once per process.
    """
    frame = sys._getframe(1)
    level = 2
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE_DIR):
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level)


def float_error(*terms, n_ops: int = 1) -> float:
    """A bound on the rounding error of a sum of ``terms``: ``n_ops · ε · Σ |term|``.

    Higham (2002), *Accuracy and Stability of Numerical Algorithms*, eq. 4.4: summing n numbers in
    floating point has error at most ``(n − 1) ε Σ |x_i|`` to first order; ``n_ops`` is the length
    of the longest sum (or dot product) that produced a term.
    """
    total = 0.0
    for t in terms:
        total += float(np.sum(np.abs(t)))
    return max(n_ops, 1) * EPS * total


@dataclass(frozen=True)
class ELBO:
    """The terms of the evidence lower bound, each a mean per sample in nats.

    ``total = expected_log_lik − kl_latent − kl_params`` where

    - ``expected_log_lik`` = E_q[log p(x | z)],
    - ``kl_latent`` = KL(q(z | x) ‖ p(z)),
    - ``kl_params`` = KL of the parameter posteriors to their priors, divided by the number of
      samples (0 for point-estimate models such as FA, PPCA and the VAE).
    """

    expected_log_lik: float
    kl_latent: float
    kl_params: float = 0.0
    total: float = field(init=False)

    def __post_init__(self):
        for name in ("expected_log_lik", "kl_latent", "kl_params"):
            object.__setattr__(self, name, float(getattr(self, name)))
        object.__setattr__(
            self, "total", self.expected_log_lik - self.kl_latent - self.kl_params
        )

    def __float__(self) -> float:
        return self.total

    def as_dict(self) -> dict:
        return {
            "expected_log_lik": self.expected_log_lik,
            "kl_latent": self.kl_latent,
            "kl_params": self.kl_params,
            "total": self.total,
        }


class ELBODecreaseError(RuntimeError):
    """A coordinate-ascent block lowered the ELBO by more than its floating-point error: a bug."""


@dataclass
class AscentResult:
    """What :func:`coordinate_ascent` returns.

    ``history`` — L after every step, in order; ``steps`` — the label of each (the block names,
    e.g. "E" and "M", and the labels of jumps, e.g. "squarem"); ``block_names`` — the same list
    (kept for older callers); ``n_iter``; ``converged``.
    """

    history: list
    n_iter: int
    converged: bool
    block_names: list

    @property
    def steps(self) -> list:
        return self.block_names


def em_steps(history, steps, names=("E", "M")) -> np.ndarray:
    """The values of ``history`` recorded after the coordinate-ascent blocks ``names`` only."""
    return np.asarray([h for h, s in zip(history, steps) if s in names], dtype=float)


def check_finite_value(value: float, name: str, n_iter: int, model_name: str) -> None:
    """Raise ``FloatingPointError`` when the ELBO after update ``name`` is not finite."""
    if not np.isfinite(value):
        raise FloatingPointError(
            f"{model_name}: the ELBO became {value} after the {name} update (iteration {n_iter})"
        )


def check_no_decrease(previous: float, value: float, allowed: float, name: str, n_iter: int,
                      model_name: str) -> None:
    """Raise :class:`ELBODecreaseError` when update ``name`` lowered the ELBO from ``previous``
    to ``value`` by more than ``allowed`` (its floating-point error): coordinate ascent cannot."""
    if value < previous - allowed:
        raise ELBODecreaseError(
            f"{model_name}: the {name} update lowered the ELBO from {previous!r} to "
            f"{value!r} at iteration {n_iter}, by more than its floating-point error "
            f"{allowed:.3g}; coordinate ascent can never do that, so an update or the ELBO "
            "is mis-derived"
        )


def coordinate_ascent(
    blocks: Sequence[tuple[str, Callable[[], None]]],
    objective: Callable[[], float],
    *,
    tol: float,
    max_iter: int,
    decrease_rtol: float | None = None,
    model_name: str = "model",
    initial: float | None = None,
    callback: Callable[[int, float], None] | None = None,
    error: Callable[[], float] | None = None,
    param_change: Callable[[], float] | None = None,
    param_tol: float | None = None,
    jump: Callable[[], str | None] | None = None,
) -> AscentResult:
    """Coordinate ascent on the ELBO: run ``blocks`` in turn until L and the parameters settle.

    Parameters
    ----------
    blocks
        ``(name, update)`` pairs. Each ``update()`` changes the model state in place so as to
        maximise L over one block (EM: ``("E", e_step), ("M", m_step)``; CAVI: one per factor).
    objective
        Returns the current L (mean per sample, nats) for the current state.
    tol
        L has stopped rising when an iteration raises it by less than ``tol * max(1, |L|)`` or by
        less than twice its floating-point error.
    max_iter
        Give up after this many iterations, with a :class:`ConvergenceWarning`.
    decrease_rtol
        If given, a fixed relative slack ``decrease_rtol * max(1, |L|)`` replaces ``error``.
    initial
        L before the first block, if defined (it is not for EM before its first E-step).
    error
        Returns the floating-point error (nats) of the last ``objective()`` value. A block may
        lower L by at most the larger of the errors before and after it. Default: ``64 ε max(1,
        |L|)``, right for an L of a few well-scaled terms.
    param_change, param_tol
        ``param_change()`` returns how far the parameters moved in the last iteration (a relative,
        unit-free number, the model's choice of metric); it is called at the end of an iteration
        once L is flat. Convergence also needs ``param_change() <= param_tol``.
    jump
        Called at the start of every iteration after the first. It may move the state (an
        acceleration step) and returns a label, or None when it did nothing. A labelled jump is
        recorded in the history under its label, and it may not lower L either.

    Returns
    -------
    AscentResult with ``history`` and ``steps`` (one label per recorded value).
    """
    history: list[float] = []
    names: list[str] = []

    def slack(previous_value, previous_error, value):
        if decrease_rtol is not None:
            return decrease_rtol * max(1.0, abs(previous_value), abs(value)), 0.0
        current = float(error()) if error is not None else 64 * EPS * max(1.0, abs(value))
        return max(previous_error, current), current

    def record(name, n_iter, state):
        value = float(objective())
        check_finite_value(value, name, n_iter, model_name)
        allowed, err = slack(state["value"] if state["value"] is not None else value,
                             state["error"], value)
        if state["value"] is not None:
            check_no_decrease(state["value"], value, allowed, name, n_iter, model_name)
        history.append(value)
        names.append(name)
        state["value"], state["error"] = value, err

    state = {"value": initial, "error": 0.0}
    if initial is not None and error is not None:
        state["error"] = float(error())
    start_of_iter = initial
    converged = False
    n_iter = 0
    last_change = None
    moved = None
    for n_iter in range(1, max_iter + 1):
        if jump is not None and n_iter > 1:
            label = jump()
            if label:
                record(label, n_iter, state)
        for name, update in blocks:
            update()
            record(name, n_iter, state)
        value = state["value"]
        if callback is not None:
            callback(n_iter, value)
        if start_of_iter is not None:
            last_change = value - start_of_iter
            flat = (last_change <= tol * max(1.0, abs(value))
                    or abs(last_change) <= 2.0 * state["error"])
            if flat and param_change is not None:   # asked only once L is flat: it may cost
                moved = float(param_change())
            still = moved is None or moved <= (param_tol if param_tol is not None else tol)
            if flat and still:
                converged = True
                break
        start_of_iter = value
    if not converged:
        change = "" if last_change is None else f"last ELBO change {last_change:.3g} nats, "
        if moved is not None:
            change += f"last parameter change {moved:.3g}, "
        warn_user(
            f"{model_name} did not converge in max_iter={max_iter} iterations "
            f"({change}tol={tol}); increase max_iter or tol",
            ConvergenceWarning,
        )
    return AscentResult(history=history, n_iter=n_iter, converged=converged, block_names=names)
