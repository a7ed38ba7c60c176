"""Time latentmodels.FactorAnalysis against one covariance pass over X and against scikit-learn.

    python benchmarks/bench_fa.py [--quick] [--repeats 9] [--l 10] [--sklearn-limit 60]

For every size in the grid (N in {2e4, 2e5, 2e6} x D in {50, 100, 400}; ``--quick``: N in {2e4, 2e5}
x D in {50, 100}) it draws synthetic FA data (L = 10 factors) and times, alternating in one
process, with the medians of ``--repeats`` runs:

- **pass**: one centred covariance pass, ``Xc = X - X.mean(0); Xc.T @ Xc`` (the physical limit:
  FA on complete data needs exactly these sufficient statistics);
- **ours**: ``FactorAnalysis(L).fit(X)`` with its defaults (n_init=6 starts, SQUAREM, the polish);
- **sklearn**: ``sklearn.decomposition.FactorAnalysis(L, random_state=0).fit(X)`` (optional;
  skipped at a size where one fit is predicted, from the previous N, to take longer than
  ``--sklearn-limit`` seconds, and said so in the table).

It prints a table of medians and the ratios ours/pass and sklearn/ours, with the mean
log-likelihood per sample of both fits (our exact formula). Sizes whose data would not fit
comfortably in memory (3 copies above 60 % of MemAvailable) are skipped and listed. Time what
users call: BLAS threads are left as the environment sets them.

Measured 2026-12-01 on a 2-core VM shared with ~7 other jobs (load 2-5), OpenBLAS, Python 3.11,
OMP_NUM_THREADS=OPENBLAS_NUM_THREADS=1 (with threads unset the small D x D work is slowed by
thread contention on a loaded machine and the numbers are erratic):

            N    D |   pass ms   ours ms ours/pass | sklearn ms  sk/pass  sk/ours
        20000   50 |       6.0      24.2      4.02 |      890.1    148.0     36.8
       200000   50 |      51.5      72.2      1.40 |    15402.8    298.8    213.5
      2000000   50 |     480.6     551.5      1.15 |    skipped (predicted 154 s)
        20000  100 |      11.0      27.9      2.53 |      738.1     67.0     26.4
       200000  100 |     141.3     172.1      1.22 |    12733.9     90.1     74.0
      2000000  100 |    1322.5    1464.2      1.11 |    skipped (predicted 127 s)
        20000  400 |      96.4     199.4      2.07 |     1614.5     16.7      8.1
       200000  400 |     918.0    1199.8      1.31 |    19439.0     21.2     16.2
      2000000  400 |    skipped: X is 6.4 GB, three copies above 60 % of 24 GB available
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from latentmodels import gaussian as gs
from latentmodels.fa import FactorAnalysis


def fa_data(n, d, n_comp, seed=0):
    """x = W z + e, z ~ N(0, I_L), e ~ N(0, diag psi), psi ~ U(0.2, 1): written in chunks into
    one float64 array, so that the peak memory is that array."""
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((d, n_comp))
    sd = np.sqrt(rng.uniform(0.2, 1.0, d))
    X = np.empty((n, d))
    for a in range(0, n, 100_000):
        b = min(n, a + 100_000)
        X[a:b] = rng.standard_normal((b - a, n_comp)) @ W.T + rng.standard_normal((b - a, d)) * sd
    return X


def covariance_pass(X):
    Xc = X - X.mean(axis=0)
    return Xc.T @ Xc


def available_bytes():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:  # pragma: no cover
        pass
    return None


def _timed(fn, *args):
    t = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t


def fit_ours(X, n_comp):
    return FactorAnalysis(n_comp).fit(X)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="N in {2e4, 2e5} x D in {50, 100}")
    ap.add_argument("--n", type=int, nargs="*", default=None)
    ap.add_argument("--d", type=int, nargs="*", default=None)
    ap.add_argument("--l", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--sklearn-limit", type=float, default=60.0,
                    help="skip scikit-learn where one fit is predicted to take longer (s)")
    args = ap.parse_args(argv)
    ns = args.n or ([20_000, 200_000] if args.quick else [20_000, 200_000, 2_000_000])
    ds = args.d or ([50, 100] if args.quick else [50, 100, 400])
    try:
        from sklearn.decomposition import FactorAnalysis as SkFA
    except ImportError:  # pragma: no cover
        SkFA = None
        print("scikit-learn not installed: timing latentmodels only")
    threads = {k: os.environ.get(k, "unset") for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    print(f"L={args.l}, medians of {args.repeats} alternated runs (fewer at N=2e6), "
          f"threads {threads}, {os.cpu_count()} CPUs")
    header = (f"{'N':>9} {'D':>4} | {'pass ms':>9} {'ours ms':>9} {'ours/pass':>9} | "
              f"{'sklearn ms':>10} {'sk/pass':>8} {'sk/ours':>8} | {'ll ours - sk':>12}")
    print(header)
    print("-" * len(header))
    rows, skipped = [], []
    for d in ds:
        sk_per_row = None          # seconds per sample of sklearn at the previous N (same D)
        for n in ns:
            avail = available_bytes()
            if avail is not None and 3 * n * d * 8 > 0.6 * avail:
                skipped.append(f"N={n} D={d}: X is {n * d * 8 / 1e9:.1f} GB, "
                               f"{avail / 1e9:.1f} GB available")
                continue
            X = fa_data(n, d, args.l)
            reps = args.repeats if n < 2_000_000 else max(3, args.repeats // 3)
            t_pass, t_ours = [], []
            FactorAnalysis(args.l).fit(X)                  # warm-up (imports, caches)
            for _ in range(reps):
                t_pass.append(_timed(covariance_pass, X))
                t_ours.append(_timed(fit_ours, X, args.l))
            ours = FactorAnalysis(args.l).fit(X)
            p, o = np.median(t_pass), np.median(t_ours)
            sk_txt = f"{'skipped':>10} {'':>8} {'':>8} | {'':>12}"
            if SkFA is not None and (sk_per_row is None or sk_per_row * n <= args.sklearn_limit):
                sk_reps = 3 if n < 2_000_000 else 1
                t_sk = []
                for _ in range(sk_reps):
                    t = time.perf_counter()
                    sk = SkFA(args.l, random_state=0).fit(X)
                    t_sk.append(time.perf_counter() - t)
                s = float(np.median(t_sk))
                sk_per_row = s / n
                ll_sk = float(np.mean(gs.lowrank_logpdf(X[:200_000], sk.mean_, sk.components_.T,
                                                        sk.noise_variance_)))
                ll_ours = ours.log_likelihood(X[:200_000])
                sk_txt = (f"{s * 1e3:10.1f} {s / p:8.1f} {s / o:8.1f} | {ll_ours - ll_sk:+12.2e}")
            elif SkFA is not None:
                skipped.append(f"sklearn at N={n} D={d}: predicted {sk_per_row * n:.0f} s "
                               f"> {args.sklearn_limit:.0f} s")
            line = f"{n:>9} {d:>4} | {p * 1e3:9.1f} {o * 1e3:9.1f} {o / p:9.2f} | {sk_txt}"
            print(line, flush=True)
            rows.append(line)
            X = None
    for s in skipped:
        print("skipped:", s)
    return rows


if __name__ == "__main__":
    main()
