"""``--method ide|spide``: the builders through the shared loop, and the CLI (tiny sizes)."""

import json
import subprocess
import sys

import numpy as np
import pytest

from jsnn.equilibrium import IDE_DEFAULTS, SPIDE_DEFAULTS, EquilibriumRunConfig, build_ide, build_spide
from jsnn.train import fit

TINY = {"data": "digits", "hidden": [8], "T": 4, "T_backward": 8, "batch_size": 64, "epochs": 1}


@pytest.mark.parametrize(("build", "keys"), [
    (build_ide, {"solver_iters", "solver_residual"}),
    (build_spide, {"bwd_rate", "bwd_syn_ops"}),
])
def test_builders_train_through_the_shared_loop_and_log_equilibrium_metrics(build, keys):
    config = {k: v for k, v in TINY.items() if build is build_spide or k != "T_backward"}
    run = build(config)
    result = fit(run.method, run.train, None, epochs=1, batch_size=64, log_every=1, progress=False,
                 stop_after_steps=3)
    assert result.interrupted
    step = eqx_step_metrics(run)
    assert {"loss", "correct", "fwd_rate", "eq_residual", "syn_ops"} | keys <= set(step)
    assert all(np.isfinite(v) for v in step.values())
    assert 0 < step["fwd_rate"] < 1 and step["syn_ops"] > 0
    assert run.config["method"] == run.config["backward"]


def eqx_step_metrics(run):
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    state = run.method.init(jax.random.key(0))
    x, y = jnp.asarray(run.train[0][:16]), jnp.asarray(run.train[1][:16])
    _, metrics = eqx.filter_jit(run.method.step)(state, x, y, jax.random.key(1))
    return {k: float(v) for k, v in metrics.items()}


def test_defaults_cover_digits_and_mnist_and_validate():
    for defaults, backward in ((IDE_DEFAULTS, "ide"), (SPIDE_DEFAULTS, "spide")):
        assert set(defaults) == {"digits", "mnist"}
        for d in defaults.values():
            EquilibriumRunConfig.from_dict({**d, "backward": backward})
    with pytest.raises(ValueError, match="unknown solver"):
        build_ide({"data": "digits", "solver": "newton"})
    with pytest.raises(ValueError, match="defaults for"):
        build_ide({"data": "yinyang"})


def jsnn(*args):
    return subprocess.run([sys.executable, "-m", "jsnn.cli", *args], capture_output=True, text=True, timeout=300)


@pytest.mark.slow  # end-to-end training runs: bench-sized, run with -m slow
def test_cli_trains_and_evaluates_spide(tmp_path):
    proc = jsnn("train", "--method", "spide", "--data", "digits", "--hidden", "8", "--T", "4", "--T-backward", "8",
                "--epochs", "1", "--batch-size", "128", "--out", str(tmp_path), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["config"]["T_backward"] == 8 and result["config"]["reset"] == "modified"
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert "bwd_rate" in json.loads(lines[0])
    proc = jsnn("evaluate", str(tmp_path / "checkpoint.eqx"))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["test_accuracy"] == result["test_accuracy"]


@pytest.mark.parametrize(("flags", "message"), [
    (["--method", "ide", "--T-backward", "10"], "--T_backward applies to --method spide"),
    (["--method", "spide", "--solver", "gmres"], "--solver applies to --method ide"),
    (["--method", "ide", "--solver", "newton"], "invalid choice: 'newton'"),
    (["--method", "spide", "--T-backward", "0"], "expected a positive integer"),
    (["--method", "ide", "--T", "0"], "expected a positive integer"),
])
def test_cli_bad_equilibrium_flags_are_one_line_errors(tmp_path, flags, message):
    proc = jsnn("train", *flags, "--out", str(tmp_path))
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
