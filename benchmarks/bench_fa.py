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

It prints a table of medians and the ratios ours/pass and sklearn/ours, with the difference of
the mean log-likelihoods per sample of both fits on all of X (our exact formula, from the
covariance). Sizes whose data would not fit comfortably in memory (3 copies above 60 % of
MemAvailable) are skipped and listed. Time what users call: BLAS threads are left as the
environment sets them.

Measured 2026-12-01 (after issue 14's second round: subspace-iteration eigenpairs, Fisher
scoring in the polish, the recorded first start) on the 2-core VM with no other job of ours
running, OpenBLAS, Python 3.11, OMP_NUM_THREADS=OPENBLAS_NUM_THREADS=1 (the VM's speed drifted by
~25 % during the day — the pass took 10.3 ms at N=2e4 D=100 in quiet spells, 12-14 ms in slow
ones — so read the ratios):

            N    D |   pass ms   ours ms ours/pass | sklearn ms  sk/pass  sk/ours | ll ours - sk
        20000   50 |       5.1      15.7      3.09 |     1041.8    204.6     66.2 |    +6.16e-07
       200000   50 |      62.0      68.2      1.10 |    17468.7    281.8    256.3 |    +7.19e-08
      2000000   50 |     608.5     602.1      0.99 |    skipped (predicted 175 s)
        20000  100 |      12.9      23.0      1.78 |      919.9     71.5     40.1 |    +1.16e-07
       200000  100 |     158.3     164.9      1.04 |    14895.5     94.1     90.3 |    +6.64e-09
      2000000  100 |    1397.0    1345.3      0.96 |    skipped (predicted 149 s)
        20000  400 |     100.1     136.0      1.36 |     1643.5     16.4     12.1 |    +3.86e-09
       200000  400 |     985.8    1041.8      1.06 |    21627.6     21.9     20.8 |    +2.15e-10
      2000000  400 |    skipped: X is 6.4 GB, three copies above 60 % of 24 GB available

At N=2e4 the fit's own work (about 5-10 ms: six starts, their EM and one polish, all on the
D x D correlation matrix) is what stands beyond the pass; at N >= 2e5 the statistics pass is
nearly all of the fit, and it (a centred copy and one dsyrk, the input checks read off its
results) takes about the time of the plain one: ours/pass is 0.96-1.10 there.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from latentmodels.fa import FactorAnalysis
from latentmodels.linear_gaussian import log_likelihood_from_moments


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
                # both on all of X, from its covariance (both models put μ at the sample mean)
                S = ours.sample_covariance_
                ll_sk = log_likelihood_from_moments(S, sk.components_.T, sk.noise_variance_)
                ll_ours = log_likelihood_from_moments(S, ours.W_, ours.psi_)
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
