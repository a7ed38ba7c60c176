import json

import numpy as np
import pytest

from latentmodels import gaussian as gs
from latentmodels import make_fa_data
from latentmodels.chain import chain_data, run_chain
from latentmodels.cli import main

EXPECTED_ROWS = ["FA (EM)", "PPCA (closed form)", "PPCA (EM)", "FA + mean-field q(z|x)",
                 "VB-PCA", "linear VAE (shared σ²)", "linear VAE (per-feature σ²)", "MLP VAE"]


@pytest.fixture(scope="module")
def synthetic_chain():
    X, truth = make_fa_data(1000, 12, 3, psi_range=(0.05, 1.0), random_state=4)
    return run_chain(X, n_components=3, vae_epochs=15, quick=True, random_state=0,
                     data_name="synthetic"), X, truth


def test_every_row_and_the_lectures_relations_hold(synthetic_chain):
    result, _, _ = synthetic_chain
    names = [r.name for r in result.rows]
    for expected in EXPECTED_ROWS:
        assert any(n.startswith(expected) for n in names), expected
    failed = [(c, d) for c, h, d in result.checks() if not h]
    assert not failed, failed
    fa, pp = result.row("FA (EM)"), result.row("PPCA (closed form)")
    assert fa.train_log_lik > pp.train_log_lik          # heteroscedastic noise: FA wins
    assert abs(result.row("PPCA (EM)").train_log_lik - pp.train_log_lik) < 1e-6


def test_fa_row_matches_the_true_model_on_held_out_rows(synthetic_chain):
    result, X, truth = synthetic_chain
    # the same split run_chain makes (seeded), recomputed here
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(X))
    Xte = X[perm[:result.n_test]]
    true_ll = np.mean(gs.lowrank_logpdf(Xte, truth["mu"], truth["W"], truth["psi"]))
    # ML overfits by about (#params)/(2N) = 0.04 nats per sample here; 0.2 leaves room for noise
    assert abs(result.row("FA (EM)").test_log_lik - true_ll) < 0.2


def test_table_formats(synthetic_chain):
    result, _, _ = synthetic_chain
    md = result.to_markdown()
    assert md.count("\n") == len(result.rows) + 1
    d = json.loads(json.dumps(result.to_dict()))
    assert len(d["rows"]) == len(result.rows) and all(c["holds"] for c in d["checks"])
    assert {"train_elbo", "test_elbo", "test_log_lik", "gap", "n_params", "seconds"} <= set(
        d["rows"][0])


def test_gap_is_zero_for_exact_posteriors_and_positive_for_vaes(synthetic_chain):
    result, _, _ = synthetic_chain
    for r in result.rows:
        if r.name.startswith(("FA (EM)", "PPCA")):
            assert abs(r.gap) < 1e-8
        if "VAE" in r.name:
            assert r.gap > 0 and r.log_lik_kind.startswith("IWAE")


def test_cli_quick_prints_the_table_and_writes_json(tmp_path, capsys):
    path = tmp_path / "chain.json"
    code = main(["chain", "--quick", "--json", str(path)])
    out = capsys.readouterr().out
    assert code == 0
    assert "| model |" in out and "dequantised" in out
    for expected in EXPECTED_ROWS:
        assert expected in out
    assert "[FAIL]" not in out
    data = json.loads(path.read_text())
    assert data["n_features"] == 64 and data["n_train"] + data["n_test"] == 1797


def test_chain_data_and_bad_arguments():
    X, desc = chain_data("digits", random_state=0)
    assert X.shape == (1797, 64) and 0 <= X.min() and X.max() < 1 and "dequantised" in desc
    with pytest.raises(ValueError, match="data must be"):
        chain_data("mnist")
    with pytest.raises(ValueError, match="test_fraction"):
        run_chain(X, test_fraction=1.5)


def test_cli_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    assert "chain" in capsys.readouterr().out
