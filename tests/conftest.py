import contextlib
import io
import json
import os

# The suite runs on two pytest-xdist workers (setup.cfg): one BLAS thread each, set before NumPy is
# imported, so that two workers' OpenBLAS pools do not oversubscribe a 2-core machine (spinning
# BLAS threads made such runs 10-20x slower). Notebook kernels inherit the setting.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile(
    "latentmodels", deadline=None, max_examples=25,
    suppress_health_check=[HealthCheck.too_slow],
)
# CI (env CI set, as GitHub Actions and .ci/run do): the same examples on every run
settings.register_profile(
    "ci", parent=settings.get_profile("latentmodels"), derandomize=True, print_blob=True,
)
settings.load_profile("ci" if os.environ.get("CI") else "latentmodels")


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def random_spd(rng, k, scale=1.0):
    A = rng.standard_normal((k, k))
    return scale * (A @ A.T / k + 0.5 * np.eye(k))


# ---- the chain, run once per test session and shared by test_chain.py and test_cli.py ----------

SYNTHETIC_ARGV = ["chain", "--data", "synthetic", "--quick", "--components", "4", "--seed", "0"]


@pytest.fixture(scope="session")
def synthetic_cli_run(tmp_path_factory):
    """``python -m latentmodels chain --data synthetic --quick --components 4`` run in-process once:
    dict(code, result (ChainResult), stdout, json (the --json file, parsed))."""
    from latentmodels.cli import run

    path = tmp_path_factory.mktemp("chain") / "chain.json"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code, result = run(SYNTHETIC_ARGV + ["--json", str(path)])
    return {"code": code, "result": result, "stdout": out.getvalue(),
            "json": json.loads(path.read_text())}


@pytest.fixture(scope="session")
def small_digits_chain():
    """The chain on 400 dequantised digits with the categorical row: tiny, for the bits-per-pixel
    and discrete-row plumbing (numbers too rough to mean anything beyond the checks)."""
    from latentmodels.chain import chain_inputs, run_chain

    d = chain_inputs("digits", random_state=0)
    rows = np.random.default_rng(0).permutation(d["X"].shape[0])[:400]
    return run_chain(d["X"][rows], n_components=3, vae_epochs=4, quick=True, random_state=0,
                     data_name="400 digits", n_levels=d["n_levels"], levels=d["levels"][rows])


_CHAIN_FIXTURES = {"synthetic_cli_run", "small_digits_chain"}


def pytest_collection_modifyitems(config, items):
    """Keep every test that uses a session chain run on one xdist worker (``--dist loadgroup``),
    so that the chain is computed once per suite, not once per worker."""
    for item in items:
        if _CHAIN_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.xdist_group("chain"))
