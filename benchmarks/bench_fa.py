"""Time latentmodels.FactorAnalysis against scikit-learn's FactorAnalysis in one run.

    python benchmarks/bench_fa.py [--repeats 5] [--n 20000 --d 100 --l 10]

Synthetic FA data (N=20000, D=100, L=10 by default). Both estimators fit the same array with
their default settings (ours: n_init=6 starts, SQUAREM, the polish), alternating, several
repeats; the script prints each one's median fit time, its mean log-likelihood per sample (nats,
from our exact formula on both fitted models), and the ratio. scikit-learn is optional: without
it only our timings are printed.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from latentmodels import FactorAnalysis, make_fa_data
from latentmodels import gaussian as gs


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--d", type=int, default=100)
    ap.add_argument("--l", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    X, _ = make_fa_data(args.n, args.d, args.l, random_state=0)
    try:
        from sklearn.decomposition import FactorAnalysis as SkFA
    except ImportError:  # pragma: no cover
        SkFA = None
        print("scikit-learn not installed: timing latentmodels only")

    ours_t, theirs_t = [], []
    ours_ll = theirs_ll = None
    for _ in range(args.repeats):
        t = time.perf_counter()
        ours = FactorAnalysis(args.l).fit(X)
        ours_t.append(time.perf_counter() - t)
        ours_ll = ours.log_likelihood(X)
        if SkFA is not None:
            t = time.perf_counter()
            sk = SkFA(args.l, random_state=0).fit(X)
            theirs_t.append(time.perf_counter() - t)
            theirs_ll = float(np.mean(gs.lowrank_logpdf(X, sk.mean_, sk.components_.T,
                                                        sk.noise_variance_)))
    print(f"data: N={args.n} D={args.d} L={args.l}, {args.repeats} repeats")
    print(f"latentmodels  median {np.median(ours_t) * 1e3:9.1f} ms   log p(x) {ours_ll:.6f} "
          f"nats/sample   ({ours.n_iter_} EM iterations of the best of n_init={ours.n_init} starts; "
          f"their log-likelihoods span {np.ptp(ours.init_log_likelihoods_):.2e} nats)")
    if SkFA is not None:
        print(f"scikit-learn  median {np.median(theirs_t) * 1e3:9.1f} ms   log p(x) "
              f"{theirs_ll:.6f} nats/sample   ({sk.n_iter_} iterations)")
        print(f"speed-up (sklearn / ours): {np.median(theirs_t) / np.median(ours_t):.1f}x;  "
              f"log-likelihood difference (ours - sklearn): {ours_ll - theirs_ll:+.2e} nats/sample")


if __name__ == "__main__":
    main()
