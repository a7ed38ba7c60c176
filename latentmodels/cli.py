"""Command line: ``python -m latentmodels chain`` and ``python -m latentmodels figures``.

Every argument is validated before any work starts; a usage error prints a message naming the
argument to stderr and exits with status 2 (argparse's convention). ``chain`` exits 0 when every
check the lecture predicts holds and 1 otherwise, and says so in its output.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

EPILOG = ("Exit status: 0 if every check holds, 1 if any check fails, 2 for a usage error.")


def _validate_chain(parser, args) -> None:
    """Refuse bad arguments before loading data or fitting anything (exit status 2)."""
    from .chain import DATA_SETS

    D = DATA_SETS[args.data]
    if not 1 <= args.components < D:
        parser.error(f"argument --components: must be between 1 and {D - 1} for --data "
                     f"{args.data} ({D} features; PPCA needs L < D), got {args.components}")
    if args.seed < 0 or args.seed >= 2**32:
        parser.error(f"argument --seed: must be an integer in [0, 2**32), got {args.seed}")
    if args.epochs is not None and args.epochs < 1:
        parser.error(f"argument --epochs: must be >= 1, got {args.epochs}")
    if args.json is not None:
        path = os.path.abspath(args.json)
        folder = os.path.dirname(path)
        if os.path.isdir(path):
            parser.error(f"argument --json: {args.json!r} is a directory; give a file path")
        if not os.path.isdir(folder):
            parser.error(f"argument --json: the directory {folder!r} does not exist")
        if not os.access(folder, os.W_OK):
            parser.error(f"argument --json: the directory {folder!r} is not writable")


def _validate_figures(parser, args) -> None:
    """The output folder must be a directory we can create or write into (exit status 2)."""
    path = os.path.abspath(args.out)
    if os.path.exists(path) and not os.path.isdir(path):
        parser.error(f"argument --out: {args.out!r} exists and is not a directory")
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing) or not os.access(existing, os.W_OK):
        parser.error(f"argument --out: cannot create a folder inside {existing!r}")


def _chain(args) -> int:
    from .chain import Z_SE, chain_inputs, run_chain

    t0 = time.perf_counter()
    fmt = args.format
    # progress goes to stderr when stdout carries JSON, so that the JSON stays parseable
    log = sys.stderr if fmt == "json" else sys.stdout

    def say(msg):
        print(msg, file=log, flush=True)

    inputs = chain_inputs(args.data, random_state=args.seed, quick=args.quick)
    epochs = args.epochs if args.epochs is not None else (15 if args.quick else 150)
    say(f"data: {inputs['data_name']}")
    say(f"fitting the chain: L = {args.components}, seed {args.seed}, MLP VAEs {epochs} epochs, "
        f"linear VAEs {10 * epochs}" + (" (--quick)" if args.quick else ""))

    def progress(msg):
        say(f"  [{time.perf_counter() - t0:6.1f}s] {msg}")

    result = run_chain(inputs["X"], n_components=args.components, vae_epochs=epochs,
                       random_state=args.seed, quick=args.quick, data_name=inputs["data_name"],
                       n_levels=inputs["n_levels"], levels=inputs["levels"], progress=progress)
    ok = result.all_checks_hold()
    fit_s = sum(r.seconds for r in result.rows)
    eval_s = sum(r.eval_seconds for r in result.rows)
    if fmt == "json":
        d = result.to_dict()
        d["seconds"] = {"fit": fit_s, "evaluation": eval_s, "total": time.perf_counter() - t0}
        import json
        print(json.dumps(d, indent=2))
    else:
        table = result.to_markdown() if fmt == "markdown" else result.to_text()
        print()
        print(f"The chain on {result.data}; L = {args.components}; {result.n_train} train / "
              f"{result.n_test} test rows; every number is mean nats per sample (± one standard "
              "error where it is a Monte Carlo estimate), except bits/pixel.")
        print()
        print(table)
        print()
        print(f"Checks the lecture predicts (Monte Carlo ones within {Z_SE:g} standard errors):")
        print(result.format_checks())
        for note in result.notes:
            print(f"note: {note}")
        print(f"time: fitting {fit_s:.1f}s, evaluation {eval_s:.1f}s, total "
              f"{time.perf_counter() - t0:.1f}s")
        n_fail = sum(not h for _, h, _ in result.checks())
        print(f"exit status {0 if ok else 1}: "
              + ("every check holds." if ok else f"{n_fail} check(s) failed.")
              + " (The exit status reflects the checks: 0 all hold, 1 some fail.)")
    if args.json:
        result.to_json(args.json)
        say(f"wrote {args.json}")
    return 0 if ok else 1, result


def _figures(args) -> int:
    from . import plots

    written = plots.make_all(args.out, quick=args.quick, progress=print)
    for path in written:
        print(f"wrote {path}")
    return 0, written


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m latentmodels",
        description="Classical latent-variable models, every claim of the lecture checked.",
        epilog=EPILOG,
    )
    sub = parser.add_subparsers(dest="command", metavar="command")
    sub.required = True
    p = sub.add_parser("chain", help="fit FA → PPCA → EM → VI → VAE on one data set, print the table",
                       description="Fit the lecture's chain of models on one train/test split "
                                   "and print one table in mean nats per sample, with bits per "
                                   "pixel and the checks the lecture predicts.",
                       epilog=EPILOG)
    p.add_argument("--data", choices=["digits", "synthetic"], default="digits",
                   help="dequantised 8×8 digits (default) or synthetic FA data (20 features)")
    p.add_argument("--components", type=int, default=10, metavar="L",
                   help="latent dimension for every model, 1 <= L < D (default 10)")
    p.add_argument("--epochs", type=int, default=None, metavar="E",
                   help="MLP VAE training epochs, >= 1 (default 150, or 15 with --quick); the "
                        "linear VAEs get 10 E")
    p.add_argument("--seed", type=int, default=0, metavar="S",
                   help="random seed, 0 <= S < 2**32 (default 0)")
    p.add_argument("--format", choices=["text", "markdown", "json"], default="text",
                   help="table format on stdout: an aligned terminal table (default), Markdown, "
                        "or JSON (progress then goes to stderr)")
    p.add_argument("--json", metavar="PATH", help="also write the table as JSON to PATH")
    p.add_argument("--quick", action="store_true",
                   help="a fast, rougher run: 15 epochs, fewer importance samples (used by tests)")
    p.set_defaults(func=_chain, validate=_validate_chain)
    f = sub.add_parser("figures", help="regenerate every figure as PNG",
                       description="Regenerate every figure of the README and the notebooks.")
    f.add_argument("--out", default="figures", help="output folder (default figures/)")
    f.add_argument("--quick", action="store_true", help="fewer training steps (for tests)")
    f.set_defaults(func=_figures, validate=_validate_figures)
    parser.commands = {"chain": p, "figures": f}    # for errors reported by the right subparser
    return parser


def run(argv=None):
    """Run the command line in-process: ``(exit status, result)``, the result being the
    :class:`~latentmodels.chain.ChainResult` of ``chain`` or the list of files of ``figures``.

    Usage errors raise ``SystemExit(2)`` after printing the message, as argparse does.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.validate is not None:
        args.validate(parser.commands[args.command], args)
    return args.func(args)


def main(argv=None) -> int:
    """Run the command line on ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    return run(argv)[0]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
