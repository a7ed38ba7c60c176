"""The lecture's chain FA → PPCA → EM → VI → VAE, fitted on one split of the same data.

Every row reports the same quantities in the same unit — mean nats per sample — so the table
reads as one story: the ELBO of each model (at its own q), its log-likelihood (exact for the
linear-Gaussian models, an importance-weighted estimate for the VAEs), and the gap between them,
which is KL(q ‖ p(z|x)).

The digits are integers 0–16, which no continuous density can model directly (and some pixels are
always 0). The chain therefore uses them dequantised, x = (pixels + U(0, 1)) / 17 in [0, 1)
(Theis, van den Oord & Bethge 2016): every model is then a density on the same 64-dimensional
space, and its log-density plus 64·log 17 lower-bounds the discrete log-probability of the pixels.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

from .datasets import dequantize, load_digits, make_fa_data
from .fa import FactorAnalysis
from .ppca import PPCA
from .validation import check_array, check_int, check_random_state

__all__ = ["ChainRow", "ChainResult", "run_chain", "chain_data", "chain_models"]


@dataclass
class ChainRow:
    """One model of the chain: all values mean nats per sample."""

    name: str
    train_elbo: float
    test_elbo: float
    train_log_lik: float
    test_log_lik: float
    log_lik_kind: str          # "exact" or "IWAE (K samples)"
    gap: float                 # test log p(x) − test ELBO  (= KL(q ‖ p(z|x)) when exact)
    n_params: int
    iterations: int
    iteration_unit: str        # "EM iterations", "CAVI sweeps", "epochs", "closed form"
    seconds: float


@dataclass
class ChainResult:
    """The chain's table, with the data it was computed on and the checks it implies."""

    rows: list
    data: str
    n_train: int
    n_test: int
    n_features: int
    n_components: int
    notes: list = field(default_factory=list)

    def row(self, name: str) -> ChainRow:
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(name)

    def to_dict(self) -> dict:
        return {
            "data": self.data, "n_train": self.n_train, "n_test": self.n_test,
            "n_features": self.n_features, "n_components": self.n_components,
            "notes": list(self.notes), "rows": [asdict(r) for r in self.rows],
            "checks": [{"claim": c, "holds": bool(h), "detail": d} for c, h, d in self.checks()],
        }

    def to_json(self, path) -> None:
        with open(path, "w") as fh:
            json.dump(self.to_dict(), fh, indent=2)

    def to_markdown(self) -> str:
        head = ("| model | train ELBO | test ELBO | train log p(x) | test log p(x) | log p(x) is "
                "| gap (test) | params | iterations | seconds |")
        sep = "|" + "---|" * 10
        lines = [head, sep]
        for r in self.rows:
            lines.append(
                f"| {r.name} | {r.train_elbo:.3f} | {r.test_elbo:.3f} | {r.train_log_lik:.3f} | "
                f"{r.test_log_lik:.3f} | {r.log_lik_kind} | {r.gap:.3f} | {r.n_params} | "
                f"{_iterations(r)} | {r.seconds:.2f} |"
            )
        return "\n".join(lines)

    def checks(self) -> list:
        """The relations the lecture predicts, as (claim, holds, detail) triples."""
        out = []
        names = {r.name for r in self.rows}
        if {"FA (EM)", "PPCA (closed form)"} <= names:
            fa, pp = self.row("FA (EM)"), self.row("PPCA (closed form)")
            out.append(("FA ≥ PPCA on train log p(x) (FA generalises PPCA)",
                        fa.train_log_lik >= pp.train_log_lik - 1e-9,
                        f"{fa.train_log_lik:.4f} vs {pp.train_log_lik:.4f}"))
        if {"PPCA (EM)", "PPCA (closed form)"} <= names:
            em, cf = self.row("PPCA (EM)"), self.row("PPCA (closed form)")
            diff = abs(em.train_log_lik - cf.train_log_lik)
            out.append(("PPCA by EM = PPCA in closed form", diff < 1e-4, f"|Δ| = {diff:.2e}"))
        for r in self.rows:
            slack = 1e-9 if r.log_lik_kind == "exact" else 0.0
            out.append((f"{r.name}: test ELBO ≤ log p(x)", r.test_elbo <= r.test_log_lik + slack,
                        f"gap {r.gap:.4f}"))
        if {"linear VAE (shared σ²)", "PPCA (closed form)"} <= names:
            v, cf = self.row("linear VAE (shared σ²)"), self.row("PPCA (closed form)")
            diff = cf.train_log_lik - v.train_elbo
            out.append(("linear VAE ELBO ≈ PPCA log p(x) (within 0.5 nats)",
                        -0.05 <= diff <= 0.5, f"PPCA − VAE = {diff:.3f}"))
        return out

    def format_checks(self) -> str:
        return "\n".join(f"[{'ok' if h else 'FAIL'}] {c}: {d}" for c, h, d in self.checks())


def _iterations(row: ChainRow) -> str:
    return row.iteration_unit if row.iteration_unit == "closed form" else (
        f"{row.iterations} {row.iteration_unit}")


def chain_data(name: str = "digits", random_state=0, quick: bool = False):
    """The chain's data set: dequantised digits scaled to [0, 1), or synthetic FA data.

    Returns ``(X, description)``.
    """
    rng = check_random_state(random_state)
    if name == "digits":
        pixels, _ = load_digits()
        X = dequantize(pixels, scale=17.0, random_state=rng)
        return X, "digits (1797×64), dequantised: (pixels + U(0,1)) / 17"
    if name == "synthetic":
        n = 1000 if quick else 3000
        X, _ = make_fa_data(n, 20, 4, psi_range=(0.05, 1.0), random_state=rng)
        return X, f"synthetic FA data ({n}×20, 4 factors, ψ ∈ [0.05, 1])"
    raise ValueError(f"data must be 'digits' or 'synthetic', got {name!r}")


def _linear_gaussian_row(name, model, Xtr, Xte, unit, seconds):
    tr_ll, te_ll = model.log_likelihood(Xtr), model.log_likelihood(Xte)
    te_elbo = model.elbo(Xte).total
    iters = getattr(model, "n_iter_", 0)
    return ChainRow(name, model.elbo(Xtr).total, te_elbo, tr_ll, te_ll, "exact", te_ll - te_elbo,
                    model.n_parameters(), iters, unit if iters else "closed form", seconds)


def chain_models(n_components: int, *, vae_epochs: int, random_state, quick: bool = False
                 ) -> list:
    """The chain's models, in the lecture's order, as (name, fit-and-row function) pairs."""
    L = n_components

    def linear(name, make, unit):
        def run(Xtr, Xte):
            t = time.perf_counter()
            model = make().fit(Xtr)
            return _linear_gaussian_row(name, model, Xtr, Xte, unit, time.perf_counter() - t)
        return name, run

    return [
        linear("FA (EM)", lambda: FactorAnalysis(L), "EM iterations"),
        linear("PPCA (closed form)", lambda: PPCA(L), "EM iterations"),
        linear("PPCA (EM)", lambda: PPCA(L, method="em", tol=1e-12, random_state=random_state),
               "EM iterations"),
    ]


def run_chain(X, *, n_components: int = 10, test_fraction: float = 0.2, vae_epochs: int = 200,
              random_state=0, quick: bool = False, data_name: str = "custom data",
              progress: Callable[[str], None] | None = None) -> ChainResult:
    """Fit every model of the chain on one train/test split of X and return the table.

    Parameters
    ----------
    X : (N, D) array, a continuous density's data (dequantise integer data first).
    n_components : latent dimension L used by every model.
    test_fraction : share of rows held out for the test columns.
    vae_epochs : training epochs for the VAE rows.
    random_state : seed for the split and every model.
    quick : fewer epochs and iterations, for tests and a first look.
    progress : called with a line of text before each model is fitted.
    """
    X = check_array(X, "X", min_samples=10)
    L = check_int(n_components, "n_components")
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    rng = check_random_state(random_state)
    perm = rng.permutation(X.shape[0])
    n_test = max(1, int(round(test_fraction * X.shape[0])))
    Xte, Xtr = X[perm[:n_test]], X[perm[n_test:]]
    seed = int(rng.integers(2**31))
    rows = []
    for name, run in chain_models(L, vae_epochs=vae_epochs, random_state=seed, quick=quick):
        if progress is not None:
            progress(f"fitting {name} ...")
        rows.append(run(Xtr, Xte))
    return ChainResult(rows, data_name, Xtr.shape[0], Xte.shape[0], X.shape[1], L)
