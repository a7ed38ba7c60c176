"""Time one VAE training epoch of latentmodels against the same model in PyTorch (CPU), in one run.

    python benchmarks/bench_vae.py [--repeats 3] [--n 60000] [--variants | --grid]

The model is the PyTorch-examples VAE: 784-400-20 encoder with ReLU, 20-400-784 decoder, Bernoulli
likelihood, Adam with learning rate 1e-3, batch 128, one ε draw per row, float32. Data: 60000×784
binary images, made by upsampling the shipped 8×8 digits to 28×28 and thresholding noisy copies
(MNIST itself cannot be downloaded here; the timing depends only on the shapes). Runs alternate
between the two implementations; the script prints every epoch time, the medians, the ratio
(ours / PyTorch: below 1 means we are faster), and the training ELBO each reached. PyTorch is
optional (`pip install torch==2.13.0` installs the CPU build on this machine). With ``--variants``
the same loop also times an IWAE (K = 5) epoch, an IAF epoch (2 steps, MADE width 40, context
from the 400-unit hidden layer) and a planar-flow epoch (4 maps), each reported as a multiple of
the plain VAE epoch (issue 14).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from latentmodels import VAE, load_digits


def make_binary_images(n=60000, seed=0):
    rng = np.random.default_rng(seed)
    X, _ = load_digits()
    big = np.stack([np.kron(x.reshape(8, 8), np.ones((4, 4))) for x in X])  # 32x32
    big = big[:, 2:30, 2:30].reshape(len(X), 784) / 16.0
    idx = rng.integers(0, len(X), n)
    return (rng.uniform(size=(n, 784)) < 0.9 * big[idx] + 0.02).astype(np.float32)


def torch_epoch_runner(X, seed=0, hidden=400, batch=128):
    import torch
    from torch import nn

    torch.manual_seed(seed)

    class TorchVAE(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = nn.Linear(784, hidden)
            self.mu = nn.Linear(hidden, 20)
            self.logvar = nn.Linear(hidden, 20)
            self.dec = nn.Linear(20, hidden)
            self.out = nn.Linear(hidden, 784)

        def forward(self, x):
            h = torch.relu(self.enc(x))
            mu, lv = self.mu(h), self.logvar(h)
            z = mu + torch.exp(0.5 * lv) * torch.randn_like(mu)
            logits = self.out(torch.relu(self.dec(z)))
            rec = nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="sum")
            kl = 0.5 * torch.sum(mu * mu + lv.exp() - 1 - lv)
            return (rec + kl) / x.shape[0]

    model = TorchVAE()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    data = torch.from_numpy(X)

    def epoch():
        perm = torch.randperm(data.shape[0])
        total = 0.0
        for s in range(0, data.shape[0], batch):
            xb = data[perm[s:s + batch]]
            opt.zero_grad()
            loss = model(xb)
            loss.backward()
            opt.step()
            total += -loss.item() * xb.shape[0]
        return total / data.shape[0]

    return epoch, torch.get_num_threads()


VARIANTS = {
    # name: extra VAE keyword arguments on top of the plain model
    "IWAE K=5": dict(objective="iwae", n_importance=5),
    "IAF 2 steps": dict(flow="iaf", n_flows=2),
    "planar 4": dict(flow="planar", n_flows=4),
}


def grid(X, repeats):
    """Issue 14's table: median epoch times (ours, PyTorch) and their ratio for batch 32, 128, 512
    and hidden 400, 1024, runs alternating within each cell."""
    print(f"{'hidden':>6s} {'batch':>5s} {'ours (s)':>9s} {'PyTorch (s)':>11s} {'ratio':>6s}")
    for hidden in (400, 1024):
        for batch in (32, 128, 512):
            ours = VAE(20, hidden=(hidden,), batch_size=batch, learning_rate=1e-3,
                       dtype=np.float32, random_state=0).initialize(784, X)
            theirs, _ = torch_epoch_runner(X, hidden=hidden, batch=batch)
            a, b = [], []
            for _ in range(repeats):
                t = time.perf_counter()
                ours.fit(X, 1)
                a.append(time.perf_counter() - t)
                t = time.perf_counter()
                theirs()
                b.append(time.perf_counter() - t)
            print(f"{hidden:6d} {batch:5d} {np.median(a):9.2f} {np.median(b):11.2f} "
                  f"{np.median(a) / np.median(b):6.2f}", flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--n", type=int, default=60000)
    ap.add_argument("--variants", action="store_true",
                    help="also time the IWAE (K=5), IAF and planar-flow epochs against the plain one")
    ap.add_argument("--grid", action="store_true",
                    help="issue 14's table: batch 32/128/512 x hidden 400/1024 against PyTorch")
    args = ap.parse_args(argv)
    X = make_binary_images(args.n)
    if args.grid:
        grid(X, args.repeats)
        return
    kw = dict(hidden=(400,), activation="relu", likelihood="bernoulli", batch_size=128,
              learning_rate=1e-3, optimizer="adam", dtype=np.float32, random_state=0)
    runners = {"latentmodels": VAE(20, **kw).initialize(784, X)}
    if args.variants:
        for name, extra in VARIANTS.items():
            runners[name] = VAE(20, **kw, **extra).initialize(784, X)
    try:
        theirs, threads = torch_epoch_runner(X)
    except ImportError:
        theirs, threads = None, 0
        print("PyTorch not installed: timing latentmodels only")
    times = {name: [] for name in runners}
    t_theirs = []
    for r in range(args.repeats):
        line = [f"run {r + 1}:"]
        for name, model in runners.items():
            t = time.perf_counter()
            model.fit(X, 1)
            times[name].append(time.perf_counter() - t)
            line.append(f"{name} {times[name][-1]:.2f} s ({model.history_[-1]:.2f})")
        if theirs is not None:
            t = time.perf_counter()
            elbo = theirs()
            t_theirs.append(time.perf_counter() - t)
            line.append(f"PyTorch {t_theirs[-1]:.2f} s ({elbo:.2f})")
        print("  ".join(line), flush=True)
    print(f"data: {X.shape[0]}x{X.shape[1]} binary, batch 128, 784-400-20 ReLU, Adam 1e-3, float32 "
          "(training bound per epoch in parentheses)")
    base = np.median(times["latentmodels"])
    print(f"latentmodels median epoch: {base:.2f} s")
    if theirs is not None:
        print(f"PyTorch ({threads} threads) median epoch: {np.median(t_theirs):.2f} s")
        print(f"ratio ours / PyTorch: {base / np.median(t_theirs):.2f}")
    for name in list(runners)[1:]:
        med = np.median(times[name])
        print(f"{name:>12s} median epoch: {med:.2f} s = {med / base:.2f}x the plain VAE epoch")


if __name__ == "__main__":
    main()
