"""The README's Python examples run as written (a user copies them first)."""

import pathlib
import re

import pytest

README = pathlib.Path(__file__).parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_the_readme_has_its_examples():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index):
    code = BLOCKS[index]
    if "dask" in code:
        pytest.importorskip("dask.distributed")
    namespace = {"__name__": "__readme__", "print": lambda *a, **k: None}
    exec(compile(code, f"README.md example {index}", "exec"), namespace)
    # each example ends with fitted models whose results are finite
    import numpy as np

    for name, value in namespace.items():
        if name != "Xh" and isinstance(value, np.ndarray) and value.dtype.kind == "f":  # Xh has holes
            assert np.all(np.isfinite(value))
    if "filled" in namespace:                   # imputation leaves the observed entries alone
        Xh, filled = namespace["Xh"], namespace["filled"]
        observed = ~np.isnan(Xh)
        assert not np.isnan(filled).any()
        np.testing.assert_array_equal(filled[observed], Xh[observed])
