"""ELBO-trained vs IWAE-trained (K = 5) vs flow-posterior VAEs on the binarised digits.

Issue 11's "Done when" experiment: same architecture and budget, held-out log-likelihood by IWAE
with K = 5000 (mean ± standard error over the test rows, and the paired difference to the
ELBO-trained model with its paired standard error), the gap log p(x) − ELBO, the IWAE-5 bound,
active units, and the cost of one epoch of each model.

    OMP_NUM_THREADS=1 python benchmarks/bench_blur_models.py [--quick] [--out FILE]
        [--configs L:EPOCHS,...] [--seeds N] [--k-eval K]

Data: the 1,797 digits / 16, stochastically binarised once (``datasets.binarize``, seed 0), split
1437 / 360 by a fixed permutation. Every model: one hidden layer of 200 ReLU units, Adam 1e-3,
batch 128. Per-row ELBO = the mean over R repeats of the K = 1 importance estimate (the A form,
the same for every q); per-row IWAE-5 the same with K = 5.
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
    a = ap.parse_args(argv)
    if a.quick:
        a.configs, a.seeds, a.k_eval, a.repeats = "4:20", 1, 200, 10
    out = open(a.out, "a") if a.out else sys.stdout
    Xtr, Xt = data()

    def say(s):
        print(s, file=out, flush=True)

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
                if name != "elbo" and "elbo" in rows:
                    d, dse = mean_and_se(ll - rows["elbo"])
                    rec.update(diff_vs_elbo=d, diff_vs_elbo_se=dse)
                say(json.dumps(rec))
                say(f"  L={L:2d} epochs={epochs:5d} seed={seed} {name:8s} {1e3 * sec:7.1f} ms/epoch  "
                    f"test log p(x) {llm:8.3f} ± {llse:.3f}  ELBO {elbo.mean():8.3f}  gap {gap:.3f} ± "
                    f"{gap_se:.3f}  IWAE5 {l5.mean():8.3f}  AU {rec['active_units']}"
                    + (f"  Δ vs elbo {rec['diff_vs_elbo']:+.3f} ± {rec['diff_vs_elbo_se']:.3f}"
                       if "diff_vs_elbo" in rec else ""))
    if a.out:
        out.close()


if __name__ == "__main__":
    main()
