"""The ADMM run behind ``jsnn train --method admm``: metrics, checkpoints, exact resume, divergence."""

import json
import math

import jax
import numpy as np
import pytest

from jsnn.checkpoint import load_checkpoint
from jsnn.optim.admm_method import DivergenceError, build_admm

TINY = {"data": "digits", "hidden": [8], "T": 3, "warmup": 1, "log_every": 1, "checkpoint_every": 1,
        "train_samples": 60}


def _params(run, path):
    _, _, params, opt = run._setup()
    (params, _), header = load_checkpoint(path, (params, opt.init(params)))
    return params, header


def test_resumed_run_equals_the_uninterrupted_run(tmp_path):
    whole = build_admm({**TINY, "iters": 4, "plot": True})
    summary = whole(out_dir=tmp_path / "whole", progress=False)
    rows = [json.loads(line) for line in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in rows] == [1, 2, 3, 4]
    for key in ("loss", "lagrangian", "primal_residual", "rms_cz", "rms_ca", "train_accuracy",
                "spike_disagreement", "test_accuracy"):
        assert key in rows[-1]
    assert len(rows[-1]["rms_cz"]) == 2 and len(rows[-1]["rms_ca"]) == 1
    assert (tmp_path / "whole" / "metrics.png").stat().st_size > 0
    assert 0.0 <= summary["test_accuracy"] <= 1.0

    build_admm({**TINY, "iters": 2})(out_dir=tmp_path / "split", progress=False)
    build_admm({**TINY, "iters": 4})(out_dir=tmp_path / "split", resume=True, progress=False)
    a, header = _params(whole, tmp_path / "whole" / "checkpoint.eqx")
    b, _ = _params(whole, tmp_path / "split" / "checkpoint.eqx")
    assert header["step"] == 4
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(u, v)
    split_rows = [json.loads(line) for line in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    drop_time = lambda rs: [{k: v for k, v in r.items() if k != "wall_s"} for r in rs]  # noqa: E731
    assert drop_time(split_rows) == drop_time(rows)


def test_divergence_stops_with_the_last_good_checkpoint(tmp_path):
    build_admm({**TINY, "iters": 2})(out_dir=tmp_path, progress=False)
    with pytest.raises(DivergenceError, match=r"iteration 3.*last good checkpoint is .*checkpoint\.eqx"):
        build_admm({**TINY, "iters": 4, "ridge": math.nan})(out_dir=tmp_path, resume=True, progress=False)


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="--rho must be positive"):
        build_admm({**TINY, "rho": -1.0})
    with pytest.raises(ValueError, match="ADMM supports --data"):
        build_admm({**TINY, "data": "yinyang"})
