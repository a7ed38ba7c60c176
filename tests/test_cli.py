"""The command line, run in-process (``cli.run``/``cli.main`` with argv) to save start-up time."""

import json

import pytest

from latentmodels.cli import main, run


def test_synthetic_chain_exits_zero_with_every_check_ok(synthetic_cli_run):
    out = synthetic_cli_run["stdout"]
    assert synthetic_cli_run["code"] == 0
    assert "[FAIL]" not in out and out.count("[ok]") == len(synthetic_cli_run["result"].checks())
    assert "exit status 0" in out and "reflects the checks" in out
    assert "evaluation" in out and "fitting" in out            # both times reported
    assert "epoch 15/15" in out                                # progress inside the VAE fits


def test_text_table_is_aligned_and_not_markdown(synthetic_cli_run):
    out = synthetic_cli_run["stdout"].splitlines()
    head = next(i for i, line in enumerate(out) if line.startswith("model"))
    table = out[head:head + 2 + len(synthetic_cli_run["result"].rows)]
    assert not any(" | " in line or "\\|" in line or "---|" in line for line in table)
    rule = table[1]
    assert set(rule) <= {"-", " "}
    # every column's right edge (numbers are right-aligned) sits at the same place in every row
    edges = [i for i in range(1, len(rule)) if rule[i - 1] == "-" and rule[i] == " "]
    edges.append(len(rule))
    right = [e for j, e in enumerate(edges) if j not in (0, 3)]   # model, "log p(x) is": left
    for line in table[2:]:
        assert len(line) == len(rule)
        for e in right:
            assert line[e - 1] != " ", (e, line)


def test_json_file_and_json_format(tmp_path, capsys, monkeypatch):
    from latentmodels import chain as chain_module

    def tiny(X, **kw):          # the formatting path without the fits
        from latentmodels.chain import ChainResult, ChainRow
        return ChainResult([ChainRow("FA (EM)", -1.0, -1.1, -1.0, -1.1, "exact", 0.0, 3, 2,
                                     "EM iterations", 0.1)], kw["data_name"], 8, 2, 20, 1)

    monkeypatch.setattr(chain_module, "run_chain", tiny)
    code = main(["chain", "--data", "synthetic", "--quick", "--format", "json",
                 "--components", "1"])
    captured = capsys.readouterr()
    data = json.loads(captured.out)                            # stdout is pure JSON
    assert code == 0 and data["all_checks_hold"] and data["rows"][0]["name"] == "FA (EM)"
    assert "seconds" in data and "data:" in captured.err      # progress went to stderr
    main(["chain", "--data", "synthetic", "--quick", "--format", "markdown", "--components", "1"])
    assert "| model |" in capsys.readouterr().out


def test_failing_check_gives_exit_status_one(capsys, monkeypatch):
    from latentmodels import chain as chain_module
    from latentmodels.chain import ChainResult, ChainRow

    def failing(X, **kw):       # an ELBO above an exact log p(x): the check must fail
        return ChainResult([ChainRow("FA (EM)", -1.0, -1.0, -1.5, -1.5, "exact", -0.5, 3, 2,
                                     "EM iterations", 0.1)], kw["data_name"], 8, 2, 20, 1)

    monkeypatch.setattr(chain_module, "run_chain", failing)
    assert main(["chain", "--data", "synthetic", "--quick", "--components", "1"]) == 1
    out = capsys.readouterr().out
    assert "[FAIL]" in out and "exit status 1" in out


def test_help_and_usage(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    assert "chain" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        main(["chain", "--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and "--format" in out and "Exit status" in out
    assert run is not None
