"""Stream a large float64 memmap from disk through sufficient_statistics, then fit FA on the result.

    python benchmarks/bench_memmap.py [--n 10000000 --d 100 --l 10] [--path FILE] [--repeats 2]

Creates (or reuses, if its size matches) an N×D float64 file (default 10⁷ × 100 = 8 GB under /tmp),
filled block by block with factor-analysis data plus an offset of 1e3. Each measurement runs in its
own subprocess so that its peak resident memory (``resource.getrusage(RUSAGE_SELF).ru_maxrss``,
which counts touched pages of the mapping) is its own:

- ``plain``: one NumPy pass over the memmap, the physical limit — the column sums of each row block
  (``block.sum(axis=0)``), same block size;
- ``gram``: block-wise ``Bᵀ B`` (the GEMM of the naive formula E[xxᵀ] − x̄x̄ᵀ: the arithmetic floor
  of any second-moment pass, N D² multiply-adds), same block size;
- ``stats``: :func:`latentmodels.statistics.sufficient_statistics` on the memmap (row blocks; the
  pages of each processed block are released), then ``FactorAnalysis(L).fit_covariance`` on the
  resulting covariance, timed separately.

Prints, for each repeat, the seconds and peak RSS of both, the median ratio stats/plain, and the
mean log-likelihood of the fit. The file stays in the page cache between runs if RAM allows (it
is then a warm-cache measurement; the table says which run came first after creating the file).
Run with OMP_NUM_THREADS=1 for a single-core comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

DEFAULT_PATH = "/tmp/latentmodels_bench_memmap_{n}x{d}.f64"
BLOCK_BYTES = 64 * 2 ** 20


def _peak_rss_mb() -> float:
    """Peak resident set of this process in MB: ru_maxrss (Linux: kB), which includes the touched
    pages of file mappings and is inherited across fork+exec (hence every step in a subprocess
    of a small parent)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def create(path: str, n: int, d: int, n_comp: int, seed: int = 0) -> None:
    """Write FA data x = 1e3 + W z + ε block by block (never more than one block in memory)."""
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((d, n_comp))
    sd = np.sqrt(rng.uniform(0.2, 1.0, d))
    mm = np.memmap(path, dtype=np.float64, mode="w+", shape=(n, d))
    step = max(1, BLOCK_BYTES // (8 * d))
    for start in range(0, n, step):
        m = min(step, n - start)
        block = 1e3 + rng.standard_normal((m, n_comp)) @ W.T + rng.standard_normal((m, d)) * sd
        mm[start:start + m] = block
    mm.flush()
    del mm


def worker(kind: str, path: str, n: int, d: int, n_comp: int) -> dict:
    mm = np.memmap(path, dtype=np.float64, mode="r", shape=(n, d))
    out = {"kind": kind}
    step = max(1, BLOCK_BYTES // (8 * d))
    if kind == "plain":
        t = time.perf_counter()
        total = np.zeros(d)
        for start in range(0, n, step):
            total += mm[start:start + step].sum(axis=0)
        out["seconds"] = time.perf_counter() - t
        out["check"] = float(total[0] / n)
    elif kind == "gram":
        t = time.perf_counter()
        total = np.zeros((d, d))
        for start in range(0, n, step):
            B = mm[start:start + step]
            total += B.T @ B
        out["seconds"] = time.perf_counter() - t
        out["check"] = float(total[0, 0] / n)
    else:
        from latentmodels.fa import FactorAnalysis
        from latentmodels.statistics import sufficient_statistics

        t = time.perf_counter()
        stats = sufficient_statistics(mm, block_bytes=BLOCK_BYTES)
        out["seconds"] = time.perf_counter() - t
        out["rss_after_stats_mb"] = _peak_rss_mb()
        t = time.perf_counter()
        fa = FactorAnalysis(n_comp).fit_covariance(stats.covariance(), stats.n, stats.mean)
        out["fit_seconds"] = time.perf_counter() - t
        # mean log-likelihood per row from the statistics: −½[D log 2π + log|C| + tr(C⁻¹ S)]
        C = fa.get_covariance()
        sign, logdet = np.linalg.slogdet(C)
        out["loglik"] = float(-0.5 * (d * np.log(2 * np.pi) + logdet
                                      + np.trace(np.linalg.solve(C, stats.covariance()))))
        out["check"] = float(stats.mean[0])
    out["peak_rss_mb"] = _peak_rss_mb()
    return out


def _run(kind, args):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", kind, "--path", args.path,
           "--n", str(args.n), "--d", str(args.d), "--l", str(args.l)]
    res = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000_000)
    ap.add_argument("--d", type=int, default=100)
    ap.add_argument("--l", type=int, default=10)
    ap.add_argument("--path", default=None)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--worker", choices=["plain", "gram", "stats", "create"], default=None)
    args = ap.parse_args(argv)
    args.path = args.path or DEFAULT_PATH.format(n=args.n, d=args.d)
    if args.worker == "create":
        create(args.path, args.n, args.d, args.l)
        return
    if args.worker:
        print(json.dumps(worker(args.worker, args.path, args.n, args.d, args.l)))
        return
    size = args.n * args.d * 8
    if not (os.path.exists(args.path) and os.path.getsize(args.path) == size):
        t = time.perf_counter()
        # in a subprocess: ru_maxrss survives fork+exec, so the parent must stay small
        subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", "create", "--path",
                        args.path, "--n", str(args.n), "--d", str(args.d), "--l", str(args.l)],
                       check=True)
        print(f"created {args.path} ({size / 1e9:.2f} GB) in {time.perf_counter() - t:.1f} s")
    else:
        print(f"reusing {args.path} ({size / 1e9:.2f} GB)")
    print(f"N={args.n} D={args.d} L={args.l}, block {BLOCK_BYTES // 2 ** 20} MiB, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    print(f"{'run':>3} {'plain pass s':>13} {'plain RSS MB':>13} {'X^T X s':>9} {'stats s':>9} "
          f"{'stats RSS MB':>13} {'FA fit s':>9} {'stats/plain':>12} {'stats/XtX':>10}")
    ratios, gram_ratios = [], []
    for r in range(args.repeats):
        p = _run("plain", args)
        g = _run("gram", args)
        s = _run("stats", args)
        ratios.append(s["seconds"] / p["seconds"])
        gram_ratios.append(s["seconds"] / g["seconds"])
        print(f"{r:>3} {p['seconds']:13.2f} {p['peak_rss_mb']:13.0f} {g['seconds']:9.2f} "
              f"{s['seconds']:9.2f} {s['peak_rss_mb']:13.0f} {s['fit_seconds']:9.2f} "
              f"{ratios[-1]:12.2f} {gram_ratios[-1]:10.2f}")
    assert abs(p["check"] - s["check"]) < 1e-9 * abs(p["check"]), (p["check"], s["check"])
    print(f"median ratio (sufficient_statistics / plain NumPy pass): {np.median(ratios):.2f}; "
          f"against block-wise X^T X (the naive formula's GEMM, the compute floor of any "
          f"covariance): {np.median(gram_ratios):.2f}; "
          f"peak RSS of the streaming fit {s['peak_rss_mb']:.0f} MB "
          f"({'below' if s['peak_rss_mb'] < 1024 else 'ABOVE'} 1 GB); "
          f"FA log-likelihood {s['loglik']:.6f} nats/row")


if __name__ == "__main__":
    main()
