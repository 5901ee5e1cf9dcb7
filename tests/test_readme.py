"""The README's Python examples run as written, so they cannot go stale."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(section: str) -> list[str]:
    """The ```python blocks of the README section headed ``## <section>``."""
    text = README.read_text(encoding="utf-8")
    match = re.search(rf"^## {re.escape(section)}\n(.*?)(?=^## )", text, flags=re.S | re.M)
    assert match, f"README has no section '## {section}'"
    return re.findall(r"```python\n(.*?)```", match.group(1), flags=re.S)


def test_the_low_level_example_runs():
    (block,) = python_blocks("Using it from Python")
    namespace: dict = {}
    exec(compile(block, "README: Using it from Python", "exec"), namespace)
    assert namespace["out"].shape == (8, 10)


def test_own_data_examples_train_save_and_predict(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the examples write runs/mine_*
    blocks = python_blocks("Your own data")
    assert len(blocks) == 3, "one example per method: BPTT, ADMM, exact gradients"
    namespace: dict = {}
    for block, method in zip(blocks, ("bptt", "admm", "exact")):
        exec(compile(block, f"README: own data, {method}", "exec"), namespace)
        model = namespace["model"]
        assert model.run.config["method"] == method
        assert (tmp_path / "runs" / f"mine_{method}" / "checkpoint.eqx").is_file()
        # three well-separated classes: every method must beat chance (1/3) by far
        assert model.test_accuracy > 0.6, (method, model.test_accuracy)
        assert (model.predict(namespace["test"][0]) == namespace["test"][1]).mean() == pytest.approx(
            model.test_accuracy)
