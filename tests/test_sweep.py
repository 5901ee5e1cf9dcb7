"""Sweeps: a lane is its separate run, devices and chunks do not change results, failures stay in their lane."""

import json
import os
import subprocess
import sys
import textwrap

import equinox as eqx
import jax
import numpy as np
import pytest

from jsnn.bptt import trainable
from jsnn.cli import main
from jsnn.methods import bptt_run, load_run_data
from jsnn.optim.admm_method import admm_run
from jsnn.sweep import Random, expand_space, sweep
from jsnn.train import fit

BPTT = {"data": "digits", "hidden": [8], "T": 2, "epochs": 1, "batch_size": 512}
BPTT_SPACE = {"lr": [3e-3, 3e-2], "decay": [0.8, 0.95]}
#: two shapes (hidden 4 and 6), two lanes each
BPTT_LIST = [{"hidden": [4], "lr": 3e-3, "decay": 0.8}, {"hidden": [6], "lr": 3e-2, "decay": 0.95},
             {"hidden": [4], "lr": 3e-2, "decay": 0.95}, {"hidden": [6], "lr": 3e-3, "decay": 0.8}]
ADMM = {"data": "digits", "hidden": [4], "T": 2, "iters": 4, "warmup": 1, "log_every": 2, "train_samples": 64}
ADMM_SPACE = {"rho": [0.5, 2.0], "beta": [0.1, 0.4]}


@pytest.fixture(scope="module")
def digits():
    train, test, num_classes = load_run_data({"data": "digits"}, None, keep_time=True)
    return train, test, num_classes


@pytest.fixture(scope="module")
def bptt_sweep():
    return sweep("bptt", BPTT, BPTT_LIST, progress=False, keep_states=True)


def max_diff(a, b):
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in
               zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def test_space_grid_list_and_random():
    grid = expand_space({"lr": [1, 2], "seed": [0, 1, 2]})
    assert len(grid) == 6 and grid[0] == {"lr": 1, "seed": 0} and grid[-1] == {"lr": 2, "seed": 2}
    assert expand_space([{"lr": 1}, {"lr": 5}]) == [{"lr": 1}, {"lr": 5}]
    drawn = expand_space(Random({"lr": (1e-4, 1e-2), "seed": [3, 4]}, n=50), key=jax.random.key(1))
    assert all(1e-4 <= c["lr"] <= 1e-2 and c["seed"] in (3, 4) for c in drawn)
    assert drawn == expand_space(Random({"lr": (1e-4, 1e-2), "seed": [3, 4]}, n=50), key=jax.random.key(1))
    for empty in ({}, [], {"lr": []}):
        with pytest.raises(ValueError, match="empty"):
            expand_space(empty)


def test_shape_changing_parameters_group_and_compile_once_per_group(bptt_sweep):
    assert [(g["static"], g["configurations"], g["compiled_programs"]) for g in bptt_sweep.groups] == [
        ({"hidden": [4]}, 2, 1), ({"hidden": [6]}, 2, 1)]
    assert [row["group"] for row in bptt_sweep.rows] == [0, 1, 0, 1]
    assert all(g["memory_estimate_bytes"] > 0 for g in bptt_sweep.groups)


def test_bptt_lane_equals_its_separate_run(bptt_sweep, digits):
    train, test, num_classes = digits
    assert [row["status"] for row in bptt_sweep.rows] == ["ok"] * 4
    for config, row, state in zip(BPTT_LIST, bptt_sweep.rows, bptt_sweep.states):
        run = bptt_run(train, test, {**BPTT, **config}, num_classes)
        alone = fit(run.method, train, test, epochs=1, batch_size=BPTT["batch_size"], seed=0, progress=False)
        assert max_diff(trainable(state.net), trainable(alone.state.net)) < 1e-5  # vmap's matmuls round apart
        assert row["final_test_accuracy"] == alone.test_accuracy


@pytest.mark.slow  # four separate ADMM runs, each compiling its own step: about a minute; run with -m slow
def test_admm_lane_equals_its_separate_run(digits):
    train, test, num_classes = digits
    result = sweep("admm", ADMM, ADMM_SPACE, progress=False, keep_states=True)
    assert [row["status"] for row in result.rows] == ["ok"] * 4
    assert len(result.curves[0]) == 2 and result.curves[0][-1]["step"] == 4  # iters / log_every records
    for config, row, (_, model) in zip(expand_space(ADMM_SPACE), result.rows, result.states):
        run = admm_run(train, test, {**ADMM, **config}, num_classes)
        summary = run(out_dir=None, progress=False)
        assert max_diff(model, run.model) < 1e-4
        assert row["final_test_accuracy"] == summary["test_accuracy"]


def test_a_nan_lane_fails_alone_and_leaves_the_others_unchanged():
    # the same program as the chunks of the resume test below (two lanes, lr and decay traced): compiled once
    good = sweep("bptt", BPTT, [{"lr": 3e-2, "decay": 0.8}, {"lr": 1e-2, "decay": 0.8}], progress=False,
                 keep_states=True)
    bad = sweep("bptt", BPTT, [{"lr": 3e-2, "decay": 0.8}, {"lr": 1e38, "decay": 0.8}], progress=False,
                keep_states=True)
    assert bad.rows[1]["status"].startswith("failed") and bad.rows[1]["final_test_accuracy"] is None
    assert bad.rows[0]["status"] == "ok" and bad.best == 0
    assert max_diff(bad.states[0], good.states[0]) == 0.0
    assert bad.rows[0] == good.rows[0]
    assert good.groups[0]["compiled_programs"] == 1 and bad.groups[0]["compiled_programs"] == 0  # reused


def test_four_devices_give_the_one_device_result(tmp_path):
    script = textwrap.dedent(f"""
        import json, jax, numpy as np
        from jsnn.sweep import sweep
        assert len(jax.devices()) == 4
        runs = [sweep("bptt", {BPTT!r}, {BPTT_SPACE!r}, devices=d, progress=False, keep_states=True)
                for d in (jax.devices(), jax.devices()[:1])]
        diff = max(float(np.max(np.abs(a - b))) for a, b in zip(jax.tree.leaves([s for s in runs[0].states]),
                                                                   jax.tree.leaves([s for s in runs[1].states])))
        print(json.dumps({{"rows": [r.rows for r in runs], "diff": diff}}))
    """)
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    sharded, single = report["rows"]
    for a, b in zip(sharded, single, strict=True):  # the partitioned program rounds apart from the plain one
        assert a["status"] == b["status"] == "ok" and a["final_test_accuracy"] == b["final_test_accuracy"]
        assert a["final_loss"] == pytest.approx(b["final_loss"], rel=1e-5)
    assert report["diff"] < 1e-5


def test_resumed_sweep_equals_the_uninterrupted_one_and_the_cli_writes_its_outputs(tmp_path, capsys):
    config = tmp_path / "sweep.toml"
    config.write_text(textwrap.dedent("""
        method = "bptt"
        [base]
        data = "digits"
        hidden = [8]
        T = 2
        epochs = 1
        batch_size = 512
        [grid]
        lr = [3e-3, 3e-2]
        decay = [0.8, 0.95]
    """))
    whole = tmp_path / "whole"
    assert main(["sweep", str(config), "--out", str(whole), "--chunk", "2", "--plot", "--no-progress"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {p.name for p in whole.iterdir()} >= {"results.csv", "results.json", "checkpoint.eqx", "sweep.png"}
    assert main(["evaluate", str(whole / "checkpoint.eqx")]) == 0
    evaluated = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert evaluated["test_accuracy"] == summary["best"]["final_test_accuracy"]

    parts = tmp_path / "parts"
    first = sweep("bptt", BPTT, BPTT_SPACE, chunk=2, out_dir=parts, progress=False, stop_after_chunks=1)
    assert first.interrupted and not (parts / "results.csv").exists()
    assert len(list((parts / "chunks").glob("*.json"))) == 1
    rest = sweep("bptt", BPTT, BPTT_SPACE, chunk=2, out_dir=parts, resume=True, progress=False)
    assert json.loads((parts / "results.json").read_text())["rows"] == json.loads(
        (whole / "results.json").read_text())["rows"]
    assert (parts / "results.csv").read_text() == (whole / "results.csv").read_text()
    assert rest.best == summary["best"]["index"]


def one_line_error(status, err):
    assert status == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jsnn: error: ") and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize(("args", "toml", "fragment"), [
    (["--grid", "learning_rate=1,2"], None, "unknown hyperparameter 'learning_rate'"),
    (["--grid", "rho=1,2"], None, "'rho' is not read by method 'bptt'"),
    (["--method", "admm", "--grid", "lr=1,2"], None, "'lr' is not read by method 'admm'"),
    (["--method", "exact", "--grid", "lr=1,2"], None, "cannot be swept"),
    ([], None, "the space is empty"),
    (["CONFIG"], "method = 'bptt'\n[grid]\nlr = []\n", "non-empty list"),
    (["CONFIG"], "method = \"bptt\n[grid", "is not valid TOML"),
    (["CONFIG", "--out", "FILE"], "[grid]\nlr = [0.1]\n", "is a file"),
])
def test_bad_sweep_input_is_one_line_and_exit_2(tmp_path, capsys, args, toml, fragment):
    (tmp_path / "file.txt").write_text("not a folder")
    if toml is not None:
        (tmp_path / "c.toml").write_text(toml)
    paths = {"CONFIG": str(tmp_path / "c.toml"), "FILE": str(tmp_path / "file.txt")}
    argv = [paths.get(a, a) for a in args]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "out")]
    line = one_line_error(main(["sweep", *argv, "--no-progress"]), capsys.readouterr().err)
    assert fragment in line
    assert not (tmp_path / "out").exists()
