"""The evidence lower bound: its record, and the coordinate ascent that EM and CAVI share.

For any distribution q over the latent variables (Bishop PRML eqs. 9.70–9.72, 10.2–10.4)

    log p(x) = L(q, θ) + KL(q ‖ p(z | x, θ)),
    L(q, θ)  = E_q[log p(x | z, θ)] − KL(q(z) ‖ p(z))      (− KL of parameter posteriors, in VI)

so L is a lower bound on the evidence, tight exactly when q is the posterior. EM (Bishop 9.4) and
mean-field CAVI (Bishop 10.1.1) both push L up one block at a time — EM: q, then θ; CAVI: each
factor q_j in turn — and each block can only raise L. :func:`coordinate_ascent` runs that loop
for every model in the package, records L after every block, and treats any decrease beyond
round-off as the derivation bug that it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from .validation import ConvergenceWarning, warn

__all__ = ["ELBO", "ELBODecreaseError", "AscentResult", "coordinate_ascent"]


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
    """A coordinate-ascent block lowered the ELBO by more than round-off: a derivation bug."""


@dataclass
class AscentResult:
    """What :func:`coordinate_ascent` returns: the ELBO after every block, and how it stopped."""

    history: list
    n_iter: int
    converged: bool
    block_names: list


def coordinate_ascent(
    blocks: Sequence[tuple[str, Callable[[], None]]],
    objective: Callable[[], float],
    *,
    tol: float,
    max_iter: int,
    decrease_rtol: float = 1e-9,
    model_name: str = "model",
    initial: float | None = None,
    callback: Callable[[int, float], None] | None = None,
) -> AscentResult:
    """Coordinate ascent on the ELBO: run ``blocks`` in turn until L stops rising.

    Parameters
    ----------
    blocks
        ``(name, update)`` pairs. Each ``update()`` changes the model state in place so as to
        maximise L over one block (EM: ``("E", e_step), ("M", m_step)``; CAVI: one per factor).
    objective
        Returns the current L (mean per sample, nats) for the current state.
    tol
        Stop when an iteration (one pass over every block) raises L by less than
        ``tol * max(1, |L|)``.
    max_iter
        Give up after this many iterations, with a :class:`ConvergenceWarning`.
    decrease_rtol
        A block may lower L by at most ``decrease_rtol * max(1, |L|)`` (round-off); more raises
        :class:`ELBODecreaseError`.
    initial
        L before the first block, if defined (it is not for EM before its first E-step).

    Returns
    -------
    AscentResult with ``history`` — L after every block, in order, so that ``history[k]`` is
    the value after block ``k % len(blocks)`` of iteration ``k // len(blocks)``.
    """
    history: list[float] = []
    names: list[str] = []
    previous = initial
    start_of_iter = initial
    converged = False
    n_iter = 0
    last_change = None
    for n_iter in range(1, max_iter + 1):
        for name, update in blocks:
            update()
            value = float(objective())
            if not np.isfinite(value):
                raise FloatingPointError(
                    f"{model_name}: the ELBO became {value} after the {name} update "
                    f"(iteration {n_iter})"
                )
            if previous is not None:
                slack = decrease_rtol * max(1.0, abs(previous))
                if value < previous - slack:
                    raise ELBODecreaseError(
                        f"{model_name}: the {name} update lowered the ELBO from {previous!r} to "
                        f"{value!r} at iteration {n_iter}; coordinate ascent can never do that, "
                        "so an update or the ELBO is mis-derived"
                    )
            history.append(value)
            names.append(name)
            previous = value
        if callback is not None:
            callback(n_iter, previous)
        if start_of_iter is not None:
            last_change = previous - start_of_iter
            if last_change <= tol * max(1.0, abs(previous)):
                converged = True
                break
        start_of_iter = previous
    if not converged:
        change = "" if last_change is None else f"last ELBO change {last_change:.3g} nats, "
        warn(
            f"{model_name} did not converge in max_iter={max_iter} iterations "
            f"({change}tol={tol}); increase max_iter or tol",
            ConvergenceWarning,
        )
    return AscentResult(history=history, n_iter=n_iter, converged=converged, block_names=names)
