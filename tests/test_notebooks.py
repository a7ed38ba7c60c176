"""Every lecture notebook executes afresh, top to bottom, in quick mode, and every claim cell holds.

The notebooks state each claim of the lecture as a cell that *asserts* it, so executing a notebook is
checking its claims: a failing assertion raises ``CellExecutionError`` here. ``LATENTMODELS_QUICK=1``
makes the notebooks train for fewer epochs and draw fewer Monte Carlo samples; their assertions are
chosen (margins from the mathematics or from standard errors computed from the draws) to hold in
both modes. One BLAS thread per kernel keeps the suite's time predictable on a shared machine.
"""

import ast
import pathlib

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = sorted((pathlib.Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


def _code(nb):
    return [c.source for c in nb.cells if c.cell_type == "code"]


def _asserts(source):
    """Number of assert statements in one code cell (IPython magics stripped first)."""
    lines = [ln for ln in source.splitlines() if not ln.lstrip().startswith(("%", "!"))]
    return sum(isinstance(node, ast.Assert) for node in ast.walk(ast.parse("\n".join(lines))))


def test_there_is_one_notebook_per_part_of_the_lecture():
    stems = [p.stem[:2] for p in NOTEBOOKS]
    assert stems[:6] == ["01", "02", "03", "04", "05", "06"]
    assert stems == [f"{i:02d}" for i in range(1, len(stems) + 1)]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_notebook_states_its_claims_as_assertions(path):
    nb = nbformat.read(path, as_version=4)
    n = sum(_asserts(src) for src in _code(nb))
    assert n >= 5, f"{path.name} asserts only {n} claims"
    assert any("LATENTMODELS_QUICK" in src for src in _code(nb)), f"{path.name} has no quick mode"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_and_its_assertions_hold(path, monkeypatch):
    monkeypatch.setenv("LATENTMODELS_QUICK", "1")
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.setenv(var, "1")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(path.parent)}})
    client.execute()          # raises CellExecutionError on the first failing cell or assertion
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "error"]
    assert not errors
    # each notebook shows the package at work: at least one figure or table
    shown = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
             if o.output_type in ("display_data", "execute_result")]
    assert shown
