"""Command line: ``python -m latentmodels chain`` and ``python -m latentmodels figures``."""

from __future__ import annotations

import argparse
import sys
import time


def _chain(args) -> int:
    from .chain import chain_data, run_chain

    t0 = time.perf_counter()
    X, desc = chain_data(args.data, random_state=args.seed, quick=args.quick)
    epochs = args.epochs if args.epochs is not None else (15 if args.quick else 150)
    print(f"data: {desc}", flush=True)

    def progress(msg):
        print(f"  [{time.perf_counter() - t0:6.1f}s] {msg}", flush=True)

    result = run_chain(X, n_components=args.components, vae_epochs=epochs,
                       random_state=args.seed, quick=args.quick, data_name=desc,
                       progress=progress)
    print()
    print(f"The chain on {desc}; L = {args.components}; {result.n_train} train / "
          f"{result.n_test} test rows; every number is mean nats per sample.")
    print()
    print(result.to_markdown())
    print()
    print("Checks the lecture predicts:")
    print(result.format_checks())
    for note in result.notes:
        print(f"note: {note}")
    if args.json:
        result.to_json(args.json)
        print(f"wrote {args.json}")
    print(f"total {time.perf_counter() - t0:.1f}s")
    return 0 if all(h for _, h, _ in result.checks()) else 1


def _figures(args) -> int:
    from . import plots

    written = plots.make_all(args.out, quick=args.quick, progress=print)
    for path in written:
        print(f"wrote {path}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m latentmodels",
        description="Classical latent-variable models, every claim of the lecture checked.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("chain", help="fit FA → PPCA → EM → VI → VAE on one data set, print the table",
                       description="Fit the lecture's chain of models on one train/test split "
                                   "and print one table in mean nats per sample.")
    p.add_argument("--data", choices=["digits", "synthetic"], default="digits",
                   help="dequantised 8×8 digits (default) or synthetic FA data")
    p.add_argument("--components", type=int, default=10, metavar="L",
                   help="latent dimension for every model (default 10)")
    p.add_argument("--epochs", type=int, default=None, metavar="E",
                   help="VAE training epochs (default 150, or 15 with --quick)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default 0)")
    p.add_argument("--json", metavar="PATH", help="also write the table as JSON")
    p.add_argument("--quick", action="store_true", help="a fast, rougher run (used by tests)")
    p.set_defaults(func=_chain)
    f = sub.add_parser("figures", help="regenerate every figure as PNG",
                       description="Regenerate every figure of the README and the notebooks.")
    f.add_argument("--out", default="figures", help="output folder (default figures/)")
    f.add_argument("--quick", action="store_true", help="fewer training steps (for tests)")
    f.set_defaults(func=_figures)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
