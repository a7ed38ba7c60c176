"""SQUAREM: squared extrapolation for any EM map, given as callables (it knows no model).

Varadhan & Roland (2008), "Simple and globally convergent methods for accelerating the convergence
of any EM algorithm", Scand. J. Statist. 35, 335–353, scheme S3. From three consecutive EM iterates
θ0, θ1 = F(θ0), θ2 = F(θ1) it forms ``r = θ1 − θ0``, ``v = θ2 − 2θ1 + θ0`` and proposes

    θ' = θ0 + 2α r + α² v,        α = ‖r‖ / ‖v‖,  clipped to [1, step_max]

(α = 1 gives back θ2 exactly). The step control follows the SQUAREM R package (Varadhan 2010):
``step_max`` starts at ``step_max0`` and is multiplied by ``mstep`` whenever α reaches it and
the proposal is kept; when a proposal is refused after backtracking (α ← (α + 1)/2), ``step_max``
is divided by ``mstep`` (not below ``step_max0``). Whether α reached its cap is decided by the
iterates, not by the sign of a gain at round-off level: a clipped α = 1 proposal *is* θ2, taken
without any comparison. A proposal α > 1 is kept only if the objective there is at least the
objective at θ2, so the ascent stays monotone.

:class:`Squarem` is meant to be called as the ``jump`` of :func:`latentmodels.elbo.coordinate_ascent`
at the start of every EM iteration.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

__all__ = ["Squarem"]


class Squarem:
    """A SQUAREM jump between EM iterations.

    Parameters
    ----------
    theta : callable () -> ndarray
        The current parameters, flattened, in coordinates where extrapolation makes sense
        (e.g. log-variances).
    value : callable (ndarray) -> float
        The objective (e.g. the exact log-likelihood) at a parameter vector; may raise
        ``ValueError`` / ``FloatingPointError`` or return a non-finite number for an infeasible one.
    assign : callable (ndarray) -> None
        Move the model's state to a parameter vector.
    step_max0, mstep, max_backtrack : step control, as in the SQUAREM R package.
    label : the name under which the jump is recorded.
    current_value : callable () -> float, optional
        The objective at the current state (θ2, the latest ``theta()``), where the caller has it
        at hand or will need it anyway; default ``value(theta())``.

    Calling the object returns ``label`` when it moved the state, otherwise None. ``n_jumps`` and
    ``n_proposals`` count accepted and evaluated extrapolations; ``alphas`` keeps every α taken.
    """

    def __init__(self, theta: Callable[[], np.ndarray], value: Callable[[np.ndarray], float],
                 assign: Callable[[np.ndarray], None], *, step_max0: float = 1.0,
                 mstep: float = 4.0, max_backtrack: int = 3, label: str = "squarem",
                 current_value: Callable[[], float] | None = None):
        self.theta, self.value, self.assign = theta, value, assign
        self.current_value = current_value
        self.step_max0 = float(step_max0)
        self.step_max = float(step_max0)
        self.mstep = float(mstep)
        self.max_backtrack = int(max_backtrack)
        self.label = label
        self.buffer: list[np.ndarray] = []
        self.n_jumps = 0
        self.n_proposals = 0
        self.alphas: list[float] = []

    def _safe_value(self, theta) -> float:
        try:
            with np.errstate(all="ignore"):
                v = float(self.value(theta))
        except (ValueError, FloatingPointError, np.linalg.LinAlgError):
            return -np.inf
        return v if np.isfinite(v) else -np.inf

    def _safe_current(self) -> float:
        try:
            with np.errstate(all="ignore"):
                v = float(self.current_value())
        except (ValueError, FloatingPointError, np.linalg.LinAlgError):
            return -np.inf
        return v if np.isfinite(v) else -np.inf

    def __call__(self) -> str | None:
        self.buffer.append(np.array(self.theta(), dtype=float, copy=True))
        if len(self.buffer) < 3:
            return None
        t0, t1, t2 = self.buffer
        self.buffer = [t2]
        r = t1 - t0
        v = t2 - 2.0 * t1 + t0
        nr, nv = float(np.linalg.norm(r)), float(np.linalg.norm(v))
        if nv == 0.0 or nr == 0.0 or not np.isfinite(nr / nv):
            return None
        alpha = min(max(nr / nv, 1.0), self.step_max)
        if alpha == 1.0:                      # the proposal is θ2 itself: nothing to compare
            if alpha == self.step_max:
                self.step_max *= self.mstep
            return None
        base = self._safe_value(t2) if self.current_value is None else self._safe_current()
        for _ in range(self.max_backtrack + 1):
            proposal = t0 + 2.0 * alpha * r + alpha * alpha * v
            self.n_proposals += 1
            if self._safe_value(proposal) >= base:
                if alpha == self.step_max:
                    self.step_max *= self.mstep
                self.assign(proposal)
                self.buffer = [np.array(self.theta(), dtype=float, copy=True)]
                self.n_jumps += 1
                self.alphas.append(alpha)
                return self.label
            alpha = 0.5 * (alpha + 1.0)
        self.step_max = max(self.step_max0, self.step_max / self.mstep)
        return None
