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

import numpy as np

from .datasets import dequantize, load_digits, make_fa_data
from .fa import FactorAnalysis
from .ppca import PPCA
from .vae import VAE
from .validation import check_array, check_int, check_random_state
from .vi import VBPCA, mean_field_q

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
            name = r.name.replace("|", "\\|")   # a '|' would split the Markdown cell
            lines.append(
                f"| {name} | {r.train_elbo:.3f} | {r.test_elbo:.3f} | {r.train_log_lik:.3f} | "
                f"{r.test_log_lik:.3f} | {r.log_lik_kind} | {r.gap:.3f} | {r.n_params} | "
                f"{_iterations(r)} | {r.seconds:.2f} |"
            )
        return "\n".join(lines)

    def checks(self) -> list:
        """The relations the lecture predicts, as (claim, holds, detail) triples."""
        out = []
        names = {r.name for r in self.rows}

        def has(*n):
            return set(n) <= names

        if has("FA (EM)", "PPCA (closed form)"):
            fa, pp = self.row("FA (EM)"), self.row("PPCA (closed form)")
            out.append(("FA ≥ PPCA on train log p(x) (FA generalises PPCA)",
                        fa.train_log_lik >= pp.train_log_lik - 1e-9,
                        f"{fa.train_log_lik:.3f} vs {pp.train_log_lik:.3f}"))
        if has("PPCA (EM)", "PPCA (closed form)"):
            em, cf = self.row("PPCA (EM)"), self.row("PPCA (closed form)")
            diff = abs(em.train_log_lik - cf.train_log_lik)
            out.append(("PPCA by EM = PPCA in closed form", diff < 1e-4, f"|Δ| = {diff:.1e}"))
        for r in self.rows:
            if r.log_lik_kind == "exact":
                out.append((f"{r.name}: ELBO ≤ exact log p(x) (train and test)",
                            r.train_elbo <= r.train_log_lik + 1e-9 and r.gap >= -1e-9,
                            f"test gap {r.gap:.4f}"))
            elif r.log_lik_kind.startswith("IWAE"):
                out.append((f"{r.name}: ELBO ≤ IWAE estimate (test)", r.gap >= 0,
                            f"gap {r.gap:.3f}"))
        if has("FA + mean-field q(z|x)", "FA (EM)"):
            mf, fa = self.row("FA + mean-field q(z|x)"), self.row("FA (EM)")
            out.append(("mean-field ELBO ≤ FA's exact log p(x)",
                        mf.train_elbo <= fa.train_log_lik + 1e-9,
                        f"gap {fa.train_log_lik - mf.train_elbo:.2e}"))
        for vae_name, ref_name in (("linear VAE (shared σ²)", "PPCA (closed form)"),
                                   ("linear VAE (per-feature σ²)", "FA (EM)")):
            if has(vae_name, ref_name):
                v, ref = self.row(vae_name), self.row(ref_name)
                diff = ref.train_log_lik - v.train_elbo
                out.append((f"{vae_name}: ELBO ≤ {ref_name} max log p(x) (its marginal is one "
                            "of that family)", diff > -0.05, f"{ref_name} − VAE ELBO = {diff:.3f}"))
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
    """The chain's models, in the lecture's order, as (name, fit-and-row function) pairs.

    Linear VAEs get ten times ``vae_epochs`` (they are cheap, and slow to rotate into the
    PPCA/FA optimum); the MLP VAE gets ``vae_epochs``. VAE log-likelihoods are IWAE estimates.
    """
    L = n_components
    K = 50 if quick else 200
    n_mc_eval = 5 if quick else 10

    def linear(name, make, unit):
        def run(Xtr, Xte):
            t = time.perf_counter()
            model = make().fit(Xtr)
            return _linear_gaussian_row(name, model, Xtr, Xte, unit, time.perf_counter() - t)
        return name, run

    def fa_mean_field(Xtr, Xte):
        t = time.perf_counter()
        fa = FactorAnalysis(L).fit(Xtr)
        q_tr, hist = mean_field_q(fa, Xtr)
        q_te, _ = mean_field_q(fa, Xte)
        secs = time.perf_counter() - t
        tr, te = fa.elbo(Xtr, q_tr).total, fa.elbo(Xte, q_te).total
        te_ll = fa.log_likelihood(Xte)
        return ChainRow("FA + mean-field q(z|x)", tr, te, fa.log_likelihood(Xtr), te_ll, "exact",
                        te_ll - te, fa.n_parameters(), len(hist) // L, "CAVI sweeps", secs)

    def vbpca(Xtr, Xte):
        t = time.perf_counter()
        m = VBPCA(L, tol=1e-7, random_state=random_state).fit(Xtr)
        secs = time.perf_counter() - t
        te = m.elbo(Xte, include_params=False).total
        te_ll = m.log_likelihood(Xte)
        return ChainRow(f"VB-PCA (ARD: {m.n_effective_} of {L} on)", m.elbo(Xtr).total, te,
                        m.log_likelihood(Xtr), te_ll, "plug-in", te_ll - te, m.n_parameters(),
                        m.n_iter_, "CAVI sweeps", secs)

    def vae(name, epochs, **kw):
        def run(Xtr, Xte):
            t = time.perf_counter()
            m = VAE(L, likelihood="gaussian", dtype=np.float64, random_state=random_state, **kw)
            m.fit(Xtr, epochs)
            secs = time.perf_counter() - t
            rs = np.random.default_rng(random_state)
            tr = m.elbo(Xtr, n_samples=n_mc_eval, random_state=rs).total
            te = m.elbo(Xte, n_samples=n_mc_eval, random_state=rs).total
            te_ll = m.log_likelihood(Xte, K, random_state=rs)
            return ChainRow(name, tr, te, m.log_likelihood(Xtr, K, random_state=rs), te_ll,
                            f"IWAE (K={K})", te_ll - te, m.n_parameters(), epochs, "epochs", secs)
        return name, run

    lin_epochs = 10 * vae_epochs
    linear_vae = dict(hidden=(), batch_size=128, learning_rate=3e-3,
                      lr_decay=float(0.01 ** (1.0 / max(lin_epochs, 1))))
    return [
        linear("FA (EM)", lambda: FactorAnalysis(L), "EM iterations"),
        linear("PPCA (closed form)", lambda: PPCA(L), "EM iterations"),
        linear("PPCA (EM)", lambda: PPCA(L, method="em", tol=1e-12, random_state=random_state),
               "EM iterations"),
        ("FA + mean-field q(z|x)", fa_mean_field),
        ("VB-PCA (ARD)", vbpca),
        vae("linear VAE (shared σ²)", lin_epochs, decoder_variance="shared", **linear_vae),
        vae("linear VAE (per-feature σ²)", lin_epochs, decoder_variance="per_feature",
            **linear_vae),
        vae("MLP VAE (Gaussian, 256 tanh)", vae_epochs, hidden=(256,), activation="tanh",
            decoder_variance="output", batch_size=128, learning_rate=1e-3),
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
    notes = [
        "log p(x) is exact for the linear-Gaussian rows; an importance-weighted (IWAE) estimate "
        "for the VAEs, a lower bound that rises with K; for VB-PCA the likelihood with the "
        "posterior-mean parameters plugged in.",
        "VB-PCA's train ELBO includes KL(q(θ)‖p(θ))/N; its test ELBO omits it (a bound on the "
        "log predictive density of new rows).",
        "FA + mean-field q(z|x): its gap is KL(q‖p(z|x)). It is ~0 when FA's loadings are in the "
        "rotation where Wᵀ Ψ⁻¹ W is diagonal, which the profile-likelihood polish returns: the "
        "exact posterior then factorises.",
        "The linear VAEs' marginals are PPCA / FA models, so their ELBOs cannot exceed those "
        "rows' log p(x); SGD approaches that optimum slowly (the rotation is weakly identified).",
    ]
    return ChainResult(rows, data_name, Xtr.shape[0], Xte.shape[0], X.shape[1], L, notes)
