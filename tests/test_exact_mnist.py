"""The MNIST recipe of ``jsnn train --method exact`` (EXACT_DEFAULTS['mnist']) learns on real MNIST.

The full run (>= 97.5 % after 12 epochs) is ``bench/accuracy.py --method exact --data mnist``; this
test runs the same config for 60 steps, enough to tell a recipe that learns from one that does not
(at initialisation the accuracy is ~10 %; collapsed or silent outputs stay there).
"""

import os
import subprocess
import sys
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jsnn.exact.method import build_exact

REAL_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


def accuracy_after_60_steps() -> float:
    """Test accuracy (first 1000 test samples) of the MNIST recipe after 60 training steps."""
    run = build_exact({"data": "mnist", "seed": 0}, data_dir=str(REAL_MNIST))
    assert (run.config["loss"], run.config["readout"], run.config["sim"]) == ("voltage", "integrator", "parallel")
    method, (x, y), (x_test, y_test) = run.method, run.train, run.test
    state = method.init(jax.random.key(0))
    step, predict = eqx.filter_jit(method.step), eqx.filter_jit(method.predict)
    rng = np.random.default_rng(0)
    batch = run.config["batch_size"]
    for i in range(60):
        idx = rng.choice(len(y), batch, replace=False)
        state, metrics = step(state, jnp.asarray(x[idx]), jnp.asarray(y[idx]), jax.random.key(i))
        assert np.isfinite(float(metrics["loss"]))
    accuracy = float(np.mean(np.asarray(predict(state, jnp.asarray(x_test[:1000]))) == y_test[:1000]))
    return accuracy


def test_mnist_default_recipe_learns_on_real_data():
    if not REAL_MNIST.is_dir():
        pytest.skip(f"real MNIST IDX files not found in {REAL_MNIST}")
    # Execution-bound (the rest of the suite is compile-bound and compiles at XLA's optimisation level 0,
    # see ../conftest.py): run it in a process at the default level, where it is about 3x faster.
    flags = os.environ.get("XLA_FLAGS", "").replace("--xla_backend_optimization_level=0", "").strip()
    code = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import test_exact_mnist as t; " \
           "print(t.accuracy_after_60_steps())"
    proc = subprocess.run([sys.executable, "-c", code], env={**os.environ, "XLA_FLAGS": flags}, capture_output=True,
                          text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    accuracy = float(proc.stdout.split()[-1])
    assert accuracy > 0.75, accuracy
