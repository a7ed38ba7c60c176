"""ELBO-trained vs IWAE-trained (K = 5) vs flow-posterior VAEs on the binarised digits.

Issue 11's "Done when" experiment: same architecture and budget, held-out log-likelihood by IWAE
with K = 5000 (mean ± standard error over the test rows, and the paired difference to the
ELBO-trained model with its paired standard error), the gap log p(x) − ELBO, the IWAE-5 bound,
active units, and the cost of one epoch of each model.

    OMP_NUM_THREADS=1 python benchmarks/bench_blur_models.py [--quick] [--out FILE]
        [--configs L:EPOCHS,...] [--seeds N] [--k-eval K] [--synthetic] [--timing]

Data: the 1,797 digits / 16, stochastically binarised once (``datasets.binarize``, seed 0), split
1437 / 360 by a fixed permutation. Every model: one hidden layer of 200 ReLU units, Adam 1e-3,
batch 128. Per-row ELBO = the mean over R repeats of the K = 1 importance estimate (the A form,
the same for every q); per-row IWAE-5 the same with K = 5.

``--synthetic``: the same comparison (2 latent dimensions) on data drawn from a teacher whose posterior is
bimodal by symmetry (:func:`teacher`), with the true held-out log p(x) by quadrature, so that each model's
distance to the truth is known.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from latentmodels.blur import iwae_rows, mean_and_se
from latentmodels.datasets import binarize, load_digits
from latentmodels.vae import VAE

MODELS = {
    "elbo": dict(),
    "iwae5": dict(objective="iwae", n_importance=5, estimator="A"),
    "planar8": dict(flow="planar", n_flows=8, estimator="A"),
    "iaf2": dict(flow="iaf", n_flows=2, estimator="A"),
}


def data():
    X, _ = load_digits()
    Xb = binarize(X / 16.0, random_state=0)
    perm = np.random.default_rng(0).permutation(len(Xb))
    return Xb[perm[:1437]], Xb[perm[1437:]]


def _teacher_params(seed=123):
    rng = np.random.default_rng(seed)
    b, a, c = rng.standard_normal(64), 0.6 * rng.standard_normal(64), rng.standard_normal(64)
    return rng, (lambda Z: b + np.outer(Z[:, 0] ** 2 - 1, a) + np.outer(Z[:, 1], c))


def teacher_gaussian_gap(X, log_px, seed=123, n_gh=24):
    """For the teacher's own decoder: min over full-covariance Gaussians q of KL(q ‖ p(z | x)) =
    log p(x) − max_q ELBO(q), per row, by Nelder–Mead on (m, log sds, atanh ρ) from both modes' sides,
    with E_q by n_gh² Gauss–Hermite nodes. The approximation gap any Gaussian encoder would have on
    this model (≈ log 2 where the two modes are separated)."""
    from scipy import optimize
    _, logits = _teacher_params(seed)
    t, w = np.polynomial.hermite.hermgauss(n_gh)
    T = np.stack(np.meshgrid(t, t, indexing="ij"), -1).reshape(-1, 2) * np.sqrt(2.0)
    W = np.outer(w, w).ravel() / np.pi
    out = np.empty(len(X))
    for i, x in enumerate(X):
        def neg_elbo(th, x=x):
            m, s, r = th[:2], np.exp(th[2:4]), np.tanh(th[4])
            Lc = np.array([[s[0], 0.0], [r * s[1], np.sqrt(1 - r * r) * s[1]]])
            Z = m + T @ Lc.T
            lg = logits(Z)
            lj = lg @ x - np.sum(np.logaddexp(0.0, lg), axis=1) - 0.5 * np.sum(Z * Z, 1) - np.log(2 * np.pi)
            ent = np.log(2 * np.pi * np.e) + np.sum(np.log(s)) + 0.5 * np.log(1 - r * r)
            return -(W @ lj + ent)
        opts = dict(maxiter=3000, xatol=1e-6, fatol=1e-9)
        best = min(optimize.minimize(neg_elbo, np.array([z1, 0.0, np.log(0.3), np.log(0.3), 0.0]),
                                     method="Nelder-Mead", options=opts).fun for z1 in (-1.0, 0.0, 1.0))
        out[i] = log_px[i] + best
    return out


def teacher(n_train=10000, n_test=1000, seed=123):
    """Binary 8×8 data from a fixed 2-latent model whose posterior is bimodal by symmetry:
    logits(z) = b + a (z₁² − 1) + c z₂, z ~ N(0, I₂), so p(z | x) = p((−z₁, z₂) | x) exactly and, once x
    pins z₁² away from 0, the posterior has two separated modes that no Gaussian q can cover.
    Returns (X_train, X_test, true log p(X_test)), the last by the trapezoid rule on a 401² grid over
    [−5, 5]² (spacing 0.025; posterior sds here are ≳ 0.05)."""
    rng, logits = _teacher_params(seed)
    Z = rng.standard_normal((n_train + n_test, 2))
    Xall = (rng.uniform(size=(len(Z), 64)) < 1 / (1 + np.exp(-logits(Z)))).astype(np.float64)
    Xtr, Xt = Xall[:n_train], Xall[n_train:]
    return Xtr, Xt, teacher_log_px(Xt, logits)


def teacher_log_px(X, logits, h=0.025, lim=5.0):
    from scipy.special import logsumexp
    g = np.arange(-lim, lim + h / 2, h)
    G = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    lg = logits(G)
    base = -np.sum(np.logaddexp(0.0, lg), axis=1) - 0.5 * np.sum(G * G, axis=1) - np.log(2 * np.pi)
    out = np.empty(len(X))
    for s in range(0, len(X), 50):
        out[s:s + 50] = logsumexp(X[s:s + 50] @ lg.T + base, axis=1) + 2 * np.log(h)
    return out


def synthetic(a, say):
    Xtr, Xt, truth = teacher(a.n_train, a.n_test)
    say(f"# synthetic teacher: train {Xtr.shape}, test {Xt.shape}; true held-out log p(x) "
        f"{truth.mean():.3f} ± {truth.std(ddof=1) / np.sqrt(len(truth)):.3f} (grid quadrature)")
    tg = teacher_gaussian_gap(Xt[:a.n_gap], truth[:a.n_gap])
    say(f"# the teacher's own decoder under the best full-covariance Gaussian q (first {a.n_gap} test rows): "
        f"approximation gap {tg.mean():.3f} ± {tg.std(ddof=1) / np.sqrt(len(tg)):.3f} nats (log 2 = 0.693)")
    if a.gap_only:
        return
    for seed in range(a.seeds):
        rows = {}
        for name in a.models.split(","):
            m = VAE(n_latent=2, hidden=(200,), random_state=seed, **MODELS[name])
            t0 = time.perf_counter()
            m.fit(Xtr, epochs=a.syn_epochs)
            sec = (time.perf_counter() - t0) / a.syn_epochs
            ll, elbo, l5 = evaluate(m, Xt, a.k_eval, a.repeats, 2000 + seed)
            rows[name] = ll
            llm, llse = mean_and_se(ll)
            gt, gtse = mean_and_se(truth - ll)
            gap, gap_se = mean_and_se(ll - elbo)
            rec = dict(synthetic=True, epochs=a.syn_epochs, seed=seed, model=name, sec_per_epoch=sec,
                       test_ll=llm, test_ll_se=llse, truth_minus_ll=gt, truth_minus_ll_se=gtse,
                       test_elbo=float(elbo.mean()), gap=gap, gap_se=gap_se, test_iwae5=float(l5.mean()))
            vs = _versus_elbo(rec, name, ll, rows)
            say(json.dumps(rec))
            say(f"  synthetic seed={seed} {name:8s} {1e3 * sec:7.1f} ms/epoch  "
                f"test log p(x) {llm:8.3f} ± {llse:.3f}"
                f"  truth − it {gt:.3f} ± {gtse:.3f}  ELBO {elbo.mean():8.3f}  gap {gap:.3f} ± {gap_se:.3f}"
                + vs)


def _versus_elbo(rec, name, ll, rows):
    """Add the paired difference of per-row test log p(x) against the ELBO-trained model to
    ``rec`` (when that model has run); returns its text for the printed line, or ''."""
    if name == "elbo" or "elbo" not in rows:
        return ""
    d, dse = mean_and_se(ll - rows["elbo"])
    rec.update(diff_vs_elbo=d, diff_vs_elbo_se=dse)
    return f"  Δ vs elbo {d:+.3f} ± {dse:.3f}"


def timing(a, say, repeats=5, epochs=10):
    """Median seconds per epoch of each model over ``repeats`` runs of ``epochs`` epochs (after one
    warm-up epoch), on the 1437 binarised training digits, and the ratio to the plain VAE's."""
    Xtr, _ = data()
    med = {}
    for name in a.models.split(","):
        m = VAE(n_latent=8, hidden=(200,), random_state=0, **MODELS[name]).fit(Xtr, epochs=1)
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            m.fit(Xtr, epochs=epochs)
            ts.append((time.perf_counter() - t0) / epochs)
        med[name] = float(np.median(ts))
        say(json.dumps(dict(timing=True, model=name, median_sec_per_epoch=med[name], runs=ts)))
        say(f"  timing {name:8s} median {1e3 * med[name]:7.1f} ms/epoch"
            + (f"  = {med[name] / med['elbo']:.2f} × the plain VAE's" if "elbo" in med else ""))


def evaluate(model, Xt, k_eval, repeats, seed):
    rng = np.random.default_rng(seed)
    ll = iwae_rows(model, Xt, k_eval, random_state=rng)
    elbo = np.mean([iwae_rows(model, Xt, 1, random_state=rng) for _ in range(repeats)], axis=0)
    l5 = np.mean([iwae_rows(model, Xt, 5, random_state=rng) for _ in range(max(1, repeats // 5))],
                 axis=0)
    return ll, elbo, l5


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=None)
    ap.add_argument("--configs", default="8:300,8:1500,32:1500")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--k-eval", type=int, default=5000)
    ap.add_argument("--repeats", type=int, default=100)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--synthetic", action="store_true", help="the teacher data set with a bimodal posterior")
    ap.add_argument("--timing", action="store_true", help="median epoch cost of each model")
    ap.add_argument("--n-gap", type=int, default=100)
    ap.add_argument("--gap-only", action="store_true")
    ap.add_argument("--syn-epochs", type=int, default=100)
    ap.add_argument("--n-train", type=int, default=10000)
    ap.add_argument("--n-test", type=int, default=1000)
    a = ap.parse_args(argv)
    if a.quick:
        a.configs, a.seeds, a.k_eval, a.repeats = "4:20", 1, 200, 10
        a.syn_epochs, a.n_train, a.n_test = 3, 500, 100
    out = open(a.out, "a") if a.out else sys.stdout
    Xtr, Xt = data()

    def say(s):
        print(s, file=out, flush=True)

    if a.synthetic:
        synthetic(a, say)
        return
    if a.timing:
        timing(a, say)
        return
    say(f"# bench_blur_models {time.strftime('%Y-%m-%d %H:%M:%S')} configs={a.configs} seeds={a.seeds} "
        f"K_eval={a.k_eval} repeats={a.repeats}; train {Xtr.shape}, test {Xt.shape}, hidden=(200,)")
    for cfg in a.configs.split(","):
        L, epochs = (int(v) for v in cfg.split(":"))
        for seed in range(a.seeds):
            rows = {}
            for name in a.models.split(","):
                m = VAE(n_latent=L, hidden=(200,), random_state=seed, **MODELS[name])
                t0 = time.perf_counter()
                m.fit(Xtr, epochs=epochs)
                sec = (time.perf_counter() - t0) / epochs
                ll, elbo, l5 = evaluate(m, Xt, a.k_eval, a.repeats, 1000 + seed)
                rows[name] = ll
                llm, llse = mean_and_se(ll)
                gap, gap_se = mean_and_se(ll - elbo)
                gap5, gap5_se = mean_and_se(ll - l5)
                rec = dict(L=L, epochs=epochs, seed=seed, model=name, sec_per_epoch=sec,
                           train_bound=m.history_[-1], test_ll=llm, test_ll_se=llse,
                           test_elbo=float(elbo.mean()), gap=gap, gap_se=gap_se, test_iwae5=float(l5.mean()),
                           gap5=gap5, gap5_se=gap5_se, active_units=m.active_units(Xt))
                vs = _versus_elbo(rec, name, ll, rows)
                say(json.dumps(rec))
                say(f"  L={L:2d} epochs={epochs:5d} seed={seed} {name:8s} {1e3 * sec:7.1f} ms/epoch  "
                    f"test log p(x) {llm:8.3f} ± {llse:.3f}  ELBO {elbo.mean():8.3f}  gap {gap:.3f} ± "
                    f"{gap_se:.3f}  IWAE5 {l5.mean():8.3f}  AU {rec['active_units']}" + vs)
    if a.out:
        out.close()


if __name__ == "__main__":
    main()
