"""The lecture's chain FA → PPCA → EM → VI → VAE, fitted on one split of the same data.

Every row reports the same quantities in the same unit — mean nats per sample — so the table
reads as one story: the ELBO of each model (at its own q), its log-likelihood (exact for the
linear-Gaussian models and for the linear VAEs, whose marginal is Gaussian; an importance-weighted
estimate for the non-linear VAEs), and the gap between them, which is KL(q ‖ p(z|x)).

The digits are integers 0–16, which no continuous density can model directly (and some pixels are
always 0). The chain therefore uses them dequantised, x = (k + u) / 17 with u ~ U[0, 1)^D
(Theis, van den Oord & Bethge 2016): every model is then a density on the same D = 64-dimensional
cube [0, 1)^D. Its log-density **minus** D·log 17 lower-bounds the log-probability of the discrete
pixels k (see :func:`bits_per_pixel` for the derivation); with "plus", FA's 45 nats would give
log P = +226 > 0, impossible for a probability.

That bound, in **bits per pixel** (the generative-modelling literature's unit), is the column in
which continuous and discrete models compare: the table adds a categorical VAE on the raw 17 levels,
whose log P(k) needs no dequantisation.

Every check that involves a Monte Carlo estimate compares within ``Z_SE`` = 3 standard errors of
that estimate, computed from the samples (the per-row estimates on the test rows; see
:func:`_paired`). Deterministic checks compare to floating-point or optimiser tolerances, stated
where they are made.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

from . import gaussian as gs
from .datasets import dequantize, load_digits, make_fa_data
from .fa import FactorAnalysis
from .ppca import PPCA
from .vae import VAE
from .validation import check_array, check_int, check_random_state
from .vi import VBPCA, mean_field_q

__all__ = ["ChainRow", "ChainResult", "run_chain", "chain_data", "chain_inputs", "chain_models",
           "bits_per_pixel", "DATA_SETS", "Z_SE"]

#: Monte Carlo checks hold within this many standard errors (one-sided: a false alarm at 3 SE has
#: probability 0.13 % per check when the claim is exactly tight, and far less when it is not).
Z_SE = 3.0

#: The chain's data sets: name -> number of features (what the CLI validates --components against).
DATA_SETS = {"digits": 64, "synthetic": 20}

LOG2 = math.log(2.0)


def bits_per_pixel(log_lik, n_features: int, n_levels: int | None = None):
    """Mean negative log-probability of the discrete pixels in bits per pixel (an upper bound).

    ``log_lik`` is a mean log-likelihood in nats per sample (a float or an array of them).

    - ``n_levels=None``: ``log_lik`` is already a log-probability of discrete data, log P(k);
      ``bpp = −log P(k) / (D log 2)``.
    - ``n_levels=K``: ``log_lik`` is a log-density of dequantised data x = (k + u) / K on [0, 1)^D
      (u ~ U[0, 1)^D). The change of variables y = K x onto the integer-cell space [0, K)^D gives
      ``p_y(y) = K^{−D} p_x(y / K)``. Since P(k) = ∫_{[0,1)^D} p_y(k + u) du, Jensen's inequality
      gives ``log P(k) ≥ E_u[log p_y(k + u)] = E_u[log p_x(x)] − D log K`` (Theis, van den Oord &
      Bethge 2016, eq. 9), hence

          bpp = −(log p_x(x) − D log K) / (D log 2) = log₂ K − log p_x(x) / (D log 2),

      an upper bound on the discrete model's bits per pixel. The uniform density p_x = 1 on the
      cube gives exactly log₂ K (4.087 bits for the digits' 17 levels).
    """
    D = check_int(n_features, "n_features")
    log_lik = np.asarray(log_lik, dtype=np.float64)
    if n_levels is None:
        out = -log_lik / (D * LOG2)
    else:
        K = check_int(n_levels, "n_levels", minimum=2)
        out = -(log_lik - D * math.log(K)) / (D * LOG2)
    return float(out) if out.ndim == 0 else out


@dataclass
class ChainRow:
    """One model of the chain: values are mean nats per sample unless named otherwise.

    ``space`` says what the nats are of: "dequantised" (a density on the data given to
    :func:`run_chain`) or "discrete" (a log-probability of the integer pixels). ``*_se`` are
    standard errors of the Monte Carlo estimates (0 where the value is exact or deterministic).
    ``seconds`` is the fitting time, ``eval_seconds`` the time to evaluate the row's columns.
    """

    name: str
    train_elbo: float
    test_elbo: float
    train_log_lik: float
    test_log_lik: float
    log_lik_kind: str          # "exact", "IWAE (K=…)" or "plug-in"
    gap: float                 # test log p(x) − test ELBO  (= KL(q ‖ p(z|x)) when exact)
    n_params: int
    iterations: int
    iteration_unit: str        # "EM iterations", "CAVI sweeps", "epochs", "closed form"
    seconds: float
    test_elbo_se: float = 0.0
    test_log_lik_se: float = 0.0
    gap_se: float = 0.0        # paired per-row standard error of the gap
    bits_per_pixel: float | None = None    # test rows, bound on the discrete pixels
    space: str = "dequantised"
    eval_seconds: float = 0.0
    iwae_check: tuple | None = None        # linear VAEs: (IWAE estimate, its paired se vs exact)


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
    n_levels: int | None = None

    def row(self, name: str) -> ChainRow:
        for r in self.rows:
            if r.name == name:
                return r
        for r in self.rows:
            if r.name.startswith(name):
                return r
        raise KeyError(name)

    def to_dict(self) -> dict:
        return {
            "data": self.data, "n_train": self.n_train, "n_test": self.n_test,
            "n_features": self.n_features, "n_components": self.n_components,
            "n_levels": self.n_levels, "z_se": Z_SE,
            "notes": list(self.notes), "rows": [asdict(r) for r in self.rows],
            "checks": [{"claim": c, "holds": bool(h), "detail": d} for c, h, d in self.checks()],
            "all_checks_hold": self.all_checks_hold(),
        }

    def to_json(self, path=None) -> str:
        """The table as JSON text; also written to ``path`` if given."""
        text = json.dumps(self.to_dict(), indent=2, allow_nan=True)
        if path is not None:
            with open(path, "w") as fh:
                fh.write(text + "\n")
        return text

    # ---- formatting -----------------------------------------------------------------------
    _HEAD = ("model", "train ELBO", "test ELBO", "train log p(x)", "test log p(x)", "log p(x) is",
             "gap (test)", "bits/pixel", "params", "iterations", "fit s", "eval s")

    def _cells(self, r: ChainRow) -> list:
        def pm(v, se):
            return f"{v:.3f} ± {se:.3f}" if se > 0 else f"{v:.3f}"
        bpp = "n/a" if r.bits_per_pixel is None else f"{r.bits_per_pixel:.4f}"
        name = r.name + (" [discrete]" if r.space == "discrete" else "")
        return [name, f"{r.train_elbo:.3f}", pm(r.test_elbo, r.test_elbo_se), f"{r.train_log_lik:.3f}",
                pm(r.test_log_lik, r.test_log_lik_se), r.log_lik_kind, pm(r.gap, r.gap_se), bpp,
                str(r.n_params), _iterations(r), f"{r.seconds:.2f}", f"{r.eval_seconds:.2f}"]

    _TEXT_COLUMNS = (0, 2, 4, 5, 6, 7, 8, 9, 10, 11)     # the test columns; train ones in JSON
    _SHORT_UNITS = {"EM iterations": "EM", "CAVI sweeps": "CAVI", "epochs": "epochs"}

    def to_text(self) -> str:
        """An aligned plain-text table for a terminal: the test columns (the train ones are in
        ``to_markdown`` and ``to_dict``), names left- and numbers right-aligned."""
        head = [self._HEAD[j] for j in self._TEXT_COLUMNS]
        body = []
        for r in self.rows:
            cells = self._cells(r)
            if r.iteration_unit != "closed form":
                cells[9] = f"{r.iterations} {self._SHORT_UNITS.get(r.iteration_unit, r.iteration_unit)}"
            body.append([cells[j] for j in self._TEXT_COLUMNS])
        rows = [head] + body
        widths = [max(len(row[j]) for row in rows) for j in range(len(head))]
        left = {0, head.index("log p(x) is")}

        def line(cells):
            return "  ".join(c.ljust(w) if j in left else c.rjust(w)
                             for j, (c, w) in enumerate(zip(cells, widths)))
        rule = "  ".join("-" * w for w in widths)
        return "\n".join([line(head), rule] + [line(c) for c in body])

    def to_markdown(self) -> str:
        head = "| " + " | ".join(self._HEAD) + " |"
        sep = "|" + "---|" * len(self._HEAD)
        lines = [head, sep]
        for r in self.rows:
            cells = self._cells(r)
            cells[0] = cells[0].replace("|", "\\|")   # a '|' would split the Markdown cell
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    # ---- the checks -----------------------------------------------------------------------
    def checks(self) -> list:
        """The relations the lecture predicts, as (claim, holds, detail) triples.

        Monte Carlo comparisons hold within ``Z_SE`` standard errors computed from the samples;
        the detail says the margin used.
        """
        out = []
        names = {r.name for r in self.rows}

        def has(*n):
            return all(any(m.startswith(x) for m in names) for x in n)

        def mc(claim, diff, se):
            # claim: diff >= 0 in expectation; holds if diff >= −Z·se
            out.append((claim, bool(diff >= -Z_SE * se),
                        f"{diff:.4f} ± {se:.4f} (holds if ≥ −{Z_SE:g} SE)"))

        if has("FA (EM)", "PPCA (closed form)"):
            fa, pp = self.row("FA (EM)"), self.row("PPCA (closed form)")
            # deterministic: both exact maxima of nested families on the same rows
            out.append(("FA ≥ PPCA on train log p(x) (FA generalises PPCA)",
                        fa.train_log_lik >= pp.train_log_lik - 1e-9 * max(1.0, abs(pp.train_log_lik)),
                        f"{fa.train_log_lik:.4f} vs {pp.train_log_lik:.4f}"))
        if has("PPCA (EM)", "PPCA (closed form)"):
            em, cf = self.row("PPCA (EM)"), self.row("PPCA (closed form)")
            diff = abs(em.train_log_lik - cf.train_log_lik)
            # EM stops at a relative ELBO change of 1e-12 per iteration; 1e-4 nats is far above
            out.append(("PPCA by EM = PPCA in closed form", diff < 1e-4, f"|Δ| = {diff:.1e}"))
        for r in self.rows:
            if r.log_lik_kind == "exact" and r.test_elbo_se == 0:
                out.append((f"{r.name}: ELBO ≤ exact log p(x) (train and test)",
                            r.train_elbo <= r.train_log_lik + 1e-9 and r.gap >= -1e-9,
                            f"test gap {r.gap:.2e}"))
            elif r.log_lik_kind == "exact":
                mc(f"{r.name}: ELBO ≤ exact log p(x) (test)", r.gap, r.gap_se)
                if r.iwae_check is not None:
                    iw, se = r.iwae_check
                    mc(f"{r.name}: IWAE estimate ≤ exact log p(x) (test)", r.test_log_lik - iw, se)
            elif r.log_lik_kind.startswith("IWAE"):
                mc(f"{r.name}: ELBO ≤ IWAE estimate (test)", r.gap, r.gap_se)
        if has("FA + mean-field q(z|x)", "FA (EM)"):
            mf, fa = self.row("FA + mean-field q(z|x)"), self.row("FA (EM)")
            # the same fitted FA: its exact posterior's ELBO (= log p) bounds every factorised q
            out.append(("mean-field ELBO ≤ FA's exact ELBO (the same fitted FA)",
                        mf.train_elbo <= fa.train_elbo + 1e-9 * max(1.0, abs(fa.train_elbo))
                        and mf.train_log_lik == fa.train_log_lik,
                        f"gap {fa.train_elbo - mf.train_elbo:.2e}"))
        for vae_name, ref_name in (("linear VAE (shared σ²)", "PPCA (closed form)"),
                                   ("linear VAE (per-feature σ²)", "FA (EM)")):
            if has(vae_name, ref_name):
                v, ref = self.row(vae_name), self.row(ref_name)
                if v.log_lik_kind == "exact":
                    # the VAE's marginal is in the reference's family; the reference is its
                    # maximum up to EM's tolerance (1e-8 relative per iteration), hence 1e-6
                    tol = 1e-6 * max(1.0, abs(ref.train_log_lik))
                    out.append((f"{vae_name}: exact train log p(x) ≤ {ref_name}'s maximum "
                                "(its marginal is one of that family)",
                                v.train_log_lik <= ref.train_log_lik + tol,
                                f"{ref_name} − VAE = {ref.train_log_lik - v.train_log_lik:.4f}"))
        for r in self.rows:
            if r.space == "discrete" and r.log_lik_kind.startswith("IWAE"):
                # a log-probability of discrete data is ≤ 0; the estimate within its SE
                mc(f"{r.name}: log P(pixels) ≤ 0 (a probability)", -r.test_log_lik,
                   r.test_log_lik_se)
        return out

    def all_checks_hold(self) -> bool:
        return all(h for _, h, _ in self.checks())

    def format_checks(self) -> str:
        return "\n".join(f"[{'ok' if h else 'FAIL'}] {c}: {d}" for c, h, d in self.checks())


def _iterations(row: ChainRow) -> str:
    return row.iteration_unit if row.iteration_unit == "closed form" else (
        f"{row.iterations} {row.iteration_unit}")


# ------------------------------------------------------------------------------------------------
# data
# ------------------------------------------------------------------------------------------------

def chain_inputs(name: str = "digits", random_state=0, quick: bool = False) -> dict:
    """The chain's data set as keyword arguments for :func:`run_chain`.

    Returns ``dict(X=..., data_name=..., n_levels=..., levels=...)``: for the digits, X is the
    dequantised ``(pixels + U[0,1)) / 17`` in [0, 1)^64, ``levels`` the integer pixels 0..16 (for
    the categorical VAE row) and ``n_levels = 17``; synthetic FA data have neither (None).
    """
    if name not in DATA_SETS:
        raise ValueError(f"data must be one of {tuple(DATA_SETS)}, got {name!r}")
    rng = check_random_state(random_state)
    if name == "digits":
        pixels, _ = load_digits()
        X = dequantize(pixels, scale=17.0, random_state=rng)
        return dict(X=X, data_name="digits (1797×64), dequantised: (pixels + U(0,1)) / 17",
                    n_levels=17, levels=pixels.astype(np.int64))
    n = 1000 if quick else 3000
    X, _ = make_fa_data(n, DATA_SETS["synthetic"], 4, psi_range=(0.05, 1.0), random_state=rng)
    return dict(X=X, data_name=f"synthetic FA data ({n}×20, 4 factors, ψ ∈ [0.05, 1])",
                n_levels=None, levels=None)


def chain_data(name: str = "digits", random_state=0, quick: bool = False):
    """The chain's data set: dequantised digits scaled to [0, 1), or synthetic FA data.

    Returns ``(X, description)``; :func:`chain_inputs` also returns the integer levels.
    """
    d = chain_inputs(name, random_state=random_state, quick=quick)
    return d["X"], d["data_name"]


# ------------------------------------------------------------------------------------------------
# the rows
# ------------------------------------------------------------------------------------------------

def _paired(a: np.ndarray, b: np.ndarray):
    """Mean of a − b over rows and its standard error std(a − b, ddof=1)/√N.

    Both are per-row estimates on the same test rows, so the spread between rows that they share
    cancels in the difference; what remains covers the Monte Carlo noise of both and the
    row-to-row variation of the true difference (so the SE is, if anything, conservative).
    """
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    se = float(np.std(d, ddof=1) / math.sqrt(d.size)) if d.size > 1 else float("inf")
    return float(np.mean(d)), se


def _se(v: np.ndarray) -> float:
    return float(np.std(v, ddof=1) / math.sqrt(v.size)) if v.size > 1 else float("inf")


def _per_row(fn, X) -> np.ndarray:
    """Per-row values of a mean-over-rows estimator ``fn(X_rows)``, one call per row."""
    return np.array([fn(X[i:i + 1]) for i in range(X.shape[0])], dtype=np.float64)


def _vae_rows(m: VAE, X, n_elbo: int, K: int, rng):
    """Per-row ELBO (``n_elbo`` draws, analytic KL) and IWAE (K samples) estimates on X.

    Uses the VAE's vectorised ``elbo_samples`` / ``score_samples`` where it has them, else one
    public ``elbo`` / ``log_likelihood`` call per row (the same estimators, slower).
    """
    es, ss = getattr(m, "elbo_samples", None), getattr(m, "score_samples", None)
    if callable(es):
        elbo = np.asarray(es(X, n_samples=n_elbo, random_state=rng), dtype=np.float64)
    else:
        elbo = _per_row(lambda x: m.elbo(x, n_samples=n_elbo, random_state=rng).total, X)
    if callable(ss):
        iwae = np.asarray(ss(X, n_importance=K, random_state=rng), dtype=np.float64)
    else:
        iwae = _per_row(lambda x: m.log_likelihood(x, K, random_state=rng), X)
    return elbo, iwae


def _linear_vae_marginal(m: VAE):
    """(b, W (D, L), noise variances (D,)) of a linear Gaussian VAE's marginal p(x).

    x = W z + b + ε with z ~ N(0, I) and ε ~ N(0, diag σ²) integrates to
    p(x) = N(b, W Wᵀ + diag σ²) (Bishop PRML eq. 12.35; Lucas et al. 2019).
    Uses ``VAE.linear_marginal()`` when the VAE offers it, else the decoder's parameters
    (``dec_out.W`` is (L, D) since nn.Linear computes z W + b; σ² = exp(clip(dec_logvar))).
    """
    acc = getattr(m, "linear_marginal", None)
    if callable(acc):
        b, W, var = acc()
        return (np.asarray(b, dtype=np.float64), np.asarray(W, dtype=np.float64),
                np.broadcast_to(np.asarray(var, dtype=np.float64), (m.n_features_in_,)).copy())
    from .vae import LOGVAR_MAX, LOGVAR_MIN
    W = np.array(m.params["dec_out.W"], dtype=np.float64).T
    b = np.array(m.params["dec_out.b"], dtype=np.float64)
    lv = np.clip(np.array(m.params["dec_logvar"], dtype=np.float64), LOGVAR_MIN, LOGVAR_MAX)
    return b, W, np.broadcast_to(np.exp(lv), (W.shape[0],)).copy()


def _linear_gaussian_row(name, model, Xtr, Xte, unit, seconds, n_levels):
    t = time.perf_counter()
    tr_ll, te_ll = model.log_likelihood(Xtr), model.log_likelihood(Xte)
    te_elbo = model.elbo(Xte).total
    iters = getattr(model, "n_iter_", 0)
    row = ChainRow(name, model.elbo(Xtr).total, te_elbo, tr_ll, te_ll, "exact", te_ll - te_elbo,
                   model.n_parameters(), iters, unit if iters else "closed form", seconds)
    row.bits_per_pixel = None if n_levels is None else bits_per_pixel(te_ll, Xte.shape[1], n_levels)
    row.eval_seconds = time.perf_counter() - t
    return row


def chain_models(n_components: int, *, vae_epochs: int, random_state, quick: bool = False,
                 n_levels: int | None = None, levels_split=None,
                 progress: Callable[[str], None] | None = None) -> list:
    """The chain's models, in the lecture's order, as (name, fit-and-row function) pairs.

    Each function takes (Xtr, Xte) and returns a :class:`ChainRow`. Linear VAEs get ten times
    ``vae_epochs`` (they are cheap, and slow to rotate into the PPCA/FA optimum) and report their
    exact log p(x); the MLP VAEs get ``vae_epochs`` and report IWAE estimates with K importance
    samples. After the MLP VAE come the same network trained on the IWAE bound with 5 importance
    samples (Burda et al. 2016) and with an IAF posterior of 2 steps (Kingma et al. 2016), where the
    VAE offers them. With ``levels_split = (levels_train, levels_test)`` (integer pixels 0..n_levels−1
    of the same rows) a categorical VAE on the raw levels joins the table.
    """
    L = n_components
    K = 50 if quick else 200
    n_mc_eval = 5 if quick else 10
    say = progress or (lambda msg: None)

    fitted = {}     # the FA row's model, reused by the mean-field row (one FA fit, one story)

    def linear(name, make, unit):
        def run(Xtr, Xte):
            t = time.perf_counter()
            model = make().fit(Xtr)
            fitted[name] = model
            return _linear_gaussian_row(name, model, Xtr, Xte, unit, time.perf_counter() - t,
                                        n_levels)
        return name, run

    def fa_mean_field(Xtr, Xte):
        t = time.perf_counter()
        fa = fitted.get("FA (EM)") or FactorAnalysis(L).fit(Xtr)
        q_tr, hist = mean_field_q(fa, Xtr)
        q_te, _ = mean_field_q(fa, Xte)
        secs = time.perf_counter() - t
        t = time.perf_counter()
        tr, te = fa.elbo(Xtr, q_tr).total, fa.elbo(Xte, q_te).total
        te_ll = fa.log_likelihood(Xte)
        row = ChainRow("FA + mean-field q(z|x)", tr, te, fa.log_likelihood(Xtr), te_ll, "exact",
                       te_ll - te, fa.n_parameters(), len(hist) // L, "CAVI sweeps", secs)
        row.bits_per_pixel = None if n_levels is None else bits_per_pixel(te_ll, Xte.shape[1],
                                                                         n_levels)
        row.eval_seconds = time.perf_counter() - t
        return row

    def vbpca(Xtr, Xte):
        t = time.perf_counter()
        m = VBPCA(L, tol=1e-7, random_state=random_state).fit(Xtr)
        secs = time.perf_counter() - t
        t = time.perf_counter()
        te = m.elbo(Xte, include_params=False).total
        te_ll = m.log_likelihood(Xte)
        row = ChainRow(f"VB-PCA (ARD: {m.n_effective_} of {L} on)", m.elbo(Xtr).total, te,
                       m.log_likelihood(Xtr), te_ll, "plug-in", te_ll - te, m.n_parameters(),
                       m.n_iter_, "CAVI sweeps", secs)
        row.bits_per_pixel = None if n_levels is None else bits_per_pixel(te_ll, Xte.shape[1],
                                                                         n_levels)
        row.eval_seconds = time.perf_counter() - t
        return row

    def train(name, m, Xtr, epochs):
        """Fit in about ten chunks (VAE.fit continues), reporting progress after each."""
        step = max(1, epochs // 10)
        done = 0
        while done < epochs:
            n = min(step, epochs - done)
            m.fit(Xtr, n)
            done += n
            say(f"  {name}: epoch {done}/{epochs}, train ELBO {m.history_[-1]:.2f}")
        return m

    def vae(name, epochs, *, exact=False, discrete=False, **kw):
        def run(Xtr, Xte):
            if discrete:
                Xtr, Xte = levels_split
            t = time.perf_counter()
            m = VAE(L, dtype=np.float64, random_state=random_state, **kw)
            train(name, m, Xtr, epochs)
            secs = time.perf_counter() - t
            t = time.perf_counter()
            rs = np.random.default_rng(random_state)
            tr = m.elbo(Xtr, n_samples=n_mc_eval, random_state=rs).total
            elbo_rows, iwae_rows = _vae_rows(m, Xte, n_mc_eval, K, rs)
            te = float(np.mean(elbo_rows))
            D = Xte.shape[1]
            if exact:
                b, W, var = _linear_vae_marginal(m)
                tr_ll = float(np.mean(gs.lowrank_logpdf(Xtr, b, W, var)))
                exact_rows = gs.lowrank_logpdf(Xte, b, W, var)
                te_ll = float(np.mean(exact_rows))
                gap, gap_se = _paired(exact_rows, elbo_rows)
                kind, ll_se = "exact", 0.0
                iwae_check = (float(np.mean(iwae_rows)), _paired(exact_rows, iwae_rows)[1])
            else:
                tr_ll = m.log_likelihood(Xtr, K, random_state=rs)
                te_ll = float(np.mean(iwae_rows))
                gap, gap_se = _paired(iwae_rows, elbo_rows)
                kind, ll_se, iwae_check = f"IWAE (K={K})", _se(iwae_rows), None
            if discrete:
                bpp = bits_per_pixel(te_ll, D)
            else:
                bpp = None if n_levels is None else bits_per_pixel(te_ll, D, n_levels)
            return ChainRow(name, tr, te, tr_ll, te_ll, kind, gap, m.n_parameters(), epochs,
                            "epochs", secs, test_elbo_se=_se(elbo_rows), test_log_lik_se=ll_se,
                            gap_se=gap_se, bits_per_pixel=bpp,
                            space="discrete" if discrete else "dequantised",
                            eval_seconds=time.perf_counter() - t, iwae_check=iwae_check)
        return name, run

    mlp = dict(hidden=(256,), activation="tanh", likelihood="gaussian", decoder_variance="output",
               batch_size=128, learning_rate=1e-3)
    lin_epochs = 10 * vae_epochs
    linear_vae = dict(hidden=(), likelihood="gaussian", batch_size=128, learning_rate=3e-3,
                      lr_decay=float(0.01 ** (1.0 / max(lin_epochs, 1))))
    models = [
        linear("FA (EM)", lambda: FactorAnalysis(L), "EM iterations"),
        linear("PPCA (closed form)", lambda: PPCA(L), "EM iterations"),
        linear("PPCA (EM)", lambda: PPCA(L, method="em", tol=1e-12, random_state=random_state),
               "EM iterations"),
        ("FA + mean-field q(z|x)", fa_mean_field),
        ("VB-PCA (ARD)", vbpca),
        vae("linear VAE (shared σ²)", lin_epochs, exact=True, decoder_variance="shared",
            **linear_vae),
        vae("linear VAE (per-feature σ²)", lin_epochs, exact=True, decoder_variance="per_feature",
            **linear_vae),
        vae("MLP VAE (Gaussian, 256 tanh)", vae_epochs, **mlp),
    ]
    if _vae_supports(objective="iwae", n_importance=5):
        models.append(vae("IWAE-trained VAE (K=5, 256 tanh)", vae_epochs,
                          objective="iwae", n_importance=5, **mlp))
    if _vae_supports(flow="iaf", n_flows=2):
        models.append(vae("IAF VAE (2 steps, 256 tanh)", vae_epochs, flow="iaf",
                          n_flows=2, **mlp))
    if levels_split is not None:
        models.append(vae(f"categorical VAE ({n_levels} levels, 256 tanh)", vae_epochs,
                          discrete=True, hidden=(256,), activation="tanh",
                          likelihood="categorical", n_levels=n_levels, batch_size=128,
                          learning_rate=1e-3))
    return models


def _vae_supports(**kw) -> bool:
    """Whether this VAE accepts the settings ``kw`` (rows that need newer VAE features skip)."""
    try:
        VAE(2, **kw)._check_config()
    except (TypeError, ValueError, AttributeError):
        return False
    return True


def categorical_available() -> bool:
    """Whether this VAE offers ``likelihood="categorical"`` (the raw-levels row needs it)."""
    return _vae_supports(likelihood="categorical", n_levels=3)


def run_chain(X, *, n_components: int = 10, test_fraction: float = 0.2, vae_epochs: int = 200,
              random_state=0, quick: bool = False, data_name: str = "custom data",
              n_levels: int | None = None, levels=None,
              progress: Callable[[str], None] | None = None) -> ChainResult:
    """Fit every model of the chain on one train/test split of X and return the table.

    Parameters
    ----------
    X : (N, D) array, a continuous density's data (dequantise integer data first).
    n_components : latent dimension L used by every model (1 <= L < D).
    test_fraction : share of rows held out for the test columns.
    vae_epochs : training epochs for the MLP VAE rows (linear VAEs get ten times as many).
    random_state : seed for the split and every model.
    quick : fewer importance samples and ELBO draws, for tests and a first look.
    n_levels : if X = (k + U[0,1)) / n_levels dequantises integers k in 0..n_levels−1, every row
        also reports the bound on the discrete pixels in bits per pixel (:func:`bits_per_pixel`).
    levels : optional (N, D) integers k of the same rows; adds a categorical VAE row on them.
    progress : called with a line of text before each model and during long fits.

    :func:`chain_inputs` returns ``X``, ``data_name``, ``n_levels`` and ``levels`` for the
    shipped data sets: ``run_chain(**chain_inputs("digits"), n_components=10)``.
    """
    X = check_array(X, "X", min_samples=10)
    L = check_int(n_components, "n_components")
    if L >= X.shape[1]:
        raise ValueError(f"n_components must be < n_features={X.shape[1]} (PPCA needs a noise "
                         f"subspace), got {L}")
    check_int(vae_epochs, "vae_epochs")
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if n_levels is not None:
        n_levels = check_int(n_levels, "n_levels", minimum=2)
    if levels is not None:
        if n_levels is None:
            raise ValueError("levels needs n_levels (the number of integer levels)")
        levels = check_array(levels, "levels")
        if levels.shape != X.shape:
            raise ValueError(f"levels must have X's shape {X.shape}, got {levels.shape}")
    rng = check_random_state(random_state)
    perm = rng.permutation(X.shape[0])
    n_test = max(1, int(round(test_fraction * X.shape[0])))
    Xte, Xtr = X[perm[:n_test]], X[perm[n_test:]]
    seed = int(rng.integers(2**31))
    notes = []          # warnings and skipped rows, then the general notes below
    split = None
    if levels is not None:
        if categorical_available():
            split = (levels[perm[n_test:]], levels[perm[:n_test]])
        else:
            notes.append("skipped the categorical VAE row: this VAE has no likelihood="
                         "'categorical' yet")
    rows = []
    for name, run in chain_models(L, vae_epochs=vae_epochs, random_state=seed, quick=quick,
                                  n_levels=n_levels, levels_split=split, progress=progress):
        if progress is not None:
            progress(f"fitting {name} ...")
        # warnings (e.g. FA's Heywood cases) become notes of the table, said once per model
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            rows.append(run(Xtr, Xte))
        seen = []
        for w in caught:
            text = f"{w.category.__name__}: {w.message}"
            if text not in seen:
                seen.append(text)
        notes.extend(f"{rows[-1].name}: {text}" for text in seen)
        if progress is not None:
            for text in seen:
                progress(f"  warning: {text}")
        if progress is not None:
            r = rows[-1]
            progress(f"  done: {_iterations(r)}, {r.seconds:.1f}s fit + {r.eval_seconds:.1f}s "
                     "evaluation")
    notes += [
        "log p(x) is exact for the linear-Gaussian rows and the linear VAEs (their marginal is "
        "N(b, W Wᵀ + diag σ²)); an importance-weighted (IWAE) estimate for the MLP VAEs, a lower "
        "bound in expectation that rises with K; for VB-PCA the likelihood with the "
        "posterior-mean parameters plugged in.",
        f"± are standard errors from the per-row estimates on the test rows; the gap's is paired "
        f"(per-row differences). Monte Carlo checks hold within {Z_SE:g} SE.",
        "VB-PCA's train ELBO includes KL(q(θ)‖p(θ))/N; its test ELBO omits it (a bound on the "
        "log predictive density of new rows).",
        "FA + mean-field q(z|x): its gap is KL(q‖p(z|x)). It is ~0 when FA's loadings are in the "
        "rotation where Wᵀ Ψ⁻¹ W is diagonal, which the profile-likelihood polish returns: the "
        "exact posterior then factorises.",
        "The linear VAEs' marginals are PPCA / FA models, so their log p(x) cannot exceed those "
        "rows' maxima; SGD approaches that optimum slowly (the rotation is weakly identified).",
    ]
    if n_levels is not None:
        notes.append(f"bits/pixel: −(log p − D·log {n_levels})/(D·log 2) for the dequantised rows, "
                     "an upper bound on the discrete pixels' bits (Theis et al. 2016); −log P/(D·log 2) "
                     "for the [discrete] row, whose nats are of the integer pixels. Uniform noise "
                     f"alone scores log2({n_levels}) = {math.log2(n_levels):.4f}.")
    return ChainResult(rows, data_name, Xtr.shape[0], Xte.shape[0], X.shape[1], L, notes,
                       n_levels=n_levels)
