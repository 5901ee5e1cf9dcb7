"""Tables, manifest and checksums; lowering errors; the `jsnn lower` CLI piece."""

import argparse
import json
import re

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jsnn.checkpoint import save_checkpoint
from jsnn.lower import (LoweringError, TablesError, UnknownTargetError, load_tables, lower, quantize_inputs,
                        save_tables, simulate_int)
from jsnn.lower import cli as lower_cli
from jsnn.methods import build_bptt
from jsnn.neurons import LI, LIF
from jsnn.nn import Conv2d, Flatten, Linear, Recurrent, Sequential, mlp
from jsnn.simulate import simulate


@pytest.fixture(scope="module")
def tables():
    net = mlp(5, [4], 3, key=jax.random.key(0), scale=2.0)
    return lower(net, "loihi", np.random.default_rng(0).uniform(0, 1, (3, 6, 5)))


def test_save_load_round_trip_is_exact(tmp_path, tables):
    tables, report = tables
    files = save_tables(tables, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["jsnn_net.c", "jsnn_net.h", "manifest.json", "tables.npz"]
    back = load_tables(tmp_path)
    assert back.manifest == tables.manifest
    assert back.arrays.keys() == tables.arrays.keys()
    for name, a in tables.arrays.items():
        assert back.arrays[name].dtype == a.dtype and np.array_equal(back.arrays[name], a)
    manifest = json.loads(open(files["manifest"]).read())
    for key in ("target", "dt", "jsnn_version", "layers", "input", "semantics", "profile"):
        assert key in manifest
    assert manifest["arrays"]["layer0.weight"]["shape"] == [4, 5]
    assert {r["layer"] for r in report} == {0, 1}
    assert all({"scale_min", "weight_clip_fraction", "peak_state", "state_max", "overflow_risk"} <= set(r)
               for r in report)


def test_tampered_manifest_is_refused(tmp_path, tables):
    save_tables(tables[0], tmp_path)
    path = tmp_path / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["arrays"]["layer0.bias"]["sha256"] = "0" * 64
    path.write_text(json.dumps(manifest))
    with pytest.raises(TablesError, match="layer0.bias"):
        load_tables(tmp_path)


def test_altered_array_is_refused(tmp_path, tables):
    save_tables(tables[0], tmp_path)
    arrays = dict(np.load(tmp_path / "tables.npz"))
    arrays["layer1.weight"] = arrays["layer1.weight"] + 1
    np.savez(tmp_path / "tables.npz", **arrays)
    with pytest.raises(TablesError, match="layer1.weight"):
        load_tables(tmp_path)


def test_missing_files_are_reported(tmp_path):
    with pytest.raises(TablesError, match="does not exist"):
        load_tables(tmp_path)


@pytest.mark.parametrize("net,match", [
    (Sequential([Conv2d(1, 2, 3, key=jax.random.key(0)), LIF(), Flatten(), Linear(2, 2, key=jax.random.key(1))]),
     "cannot hold layer 0 \\(Conv2d\\)"),
    (Sequential([Linear(3, 4, key=jax.random.key(0)), Recurrent(4, key=jax.random.key(1))]),
     "cannot hold layer 1 \\(Recurrent\\)"),
    (Sequential([Linear(3, 2, key=jax.random.key(0)), LI()]), "not a spiking net"),
    ({"weight": np.ones(3)}, "expected a spiking network"),
])
def test_unlowerable_networks_are_refused(net, match):
    with pytest.raises(LoweringError, match=match):
        lower(net, "xylo", np.ones((1, 2, 3)))


def test_leaky_net_on_a_leakless_target_is_refused():
    with pytest.raises(LoweringError, match="no leak"):
        lower(mlp(3, [2], 2, key=jax.random.key(0)), "speck", np.ones((1, 2, 3)))


def test_bad_calibration_inputs_are_refused():
    net = mlp(3, [2], 2, key=jax.random.key(0))
    with pytest.raises(ValueError, match="shape"):
        lower(net, "xylo", np.ones((2, 3)))
    with pytest.raises(ValueError, match="NaN"):
        lower(net, "xylo", np.full((1, 2, 3), np.nan))


# ----------------------------------------------------------------------------- CLI piece
def _parse(argv):
    parser = argparse.ArgumentParser()
    lower_cli.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["lower", *argv])


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    config = {"method": "bptt", "data": "digits", "hidden": [8], "T": 4, "epochs": 1, "batch_size": 32, "seed": 0}
    run = build_bptt(config)
    path = tmp_path_factory.mktemp("ckpt") / "checkpoint.eqx"
    save_checkpoint(path, run.method.init(jax.random.key(0)), {"config": run.config, "step": 0, "epoch": 0,
                                                                 "batch": 0})
    return path


def test_cli_writes_tables_and_nir(tmp_path, checkpoint):
    out = tmp_path / "out"
    result = lower_cli.run(_parse([str(checkpoint), "--target", "xylo", "--out", str(out), "--nir",
                                   "--calibration-samples", "16"]))
    assert result["target"] == "xylo" and len(result["report"]) == 2
    assert load_tables(out).manifest["input"]["features"] == 64
    assert (out / "network.nir").is_file()


def test_cli_fine_tunes_onto_the_grid(tmp_path, checkpoint):
    plain, tuned = tmp_path / "plain", tmp_path / "tuned"
    common = ["--target", "xylo", "--calibration-samples", "16"]
    lower_cli.run(_parse([str(checkpoint), *common, "--out", str(plain)]))
    lower_cli.run(_parse([str(checkpoint), *common, "--out", str(tuned), "--finetune-epochs", "1"]))
    before, after = load_tables(plain), load_tables(tuned)
    np.testing.assert_array_equal(after.arrays["layer0.scale"], before.arrays["layer0.scale"])
    assert not np.array_equal(after.arrays["layer0.weight"], before.arrays["layer0.weight"])


@pytest.mark.parametrize("argv,error,match", [
    (["--target", "tpu"], UnknownTargetError, "unknown target"),
    (["--target", "speck"], LoweringError, "no leak"),
    (["--target", "xylo", "--finetune-epochs", "-1"], lower_cli.LowerUsageError, "finetune-epochs"),
])
def test_cli_errors_leave_no_output(tmp_path, checkpoint, argv, error, match):
    out = tmp_path / "out"
    with pytest.raises(error, match=match):
        lower_cli.run(_parse([str(checkpoint), *argv, "--out", str(out)]))
    assert not out.exists()


def test_cli_refuses_a_file_that_is_not_a_checkpoint(tmp_path):
    bogus = tmp_path / "x.eqx"
    bogus.write_text("hello\n")
    with pytest.raises(ValueError, match="not a jsnn checkpoint"):
        lower_cli.run(_parse([str(bogus), "--target", "xylo", "--out", str(tmp_path / "out")]))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("compensate", [False, True])
def test_decay_compensation_restores_the_steady_state(compensate):
    # a silent LIF layer (threshold far above its drive) under a constant input settles at
    # W x / (1 - delta); the Xylo-like shift decay holds 0.9 as 0.875, which settles 20 % lower
    first = eqx.tree_at(lambda m: m.weight, Linear(3, 2, key=jax.random.key(1)),
                        jnp.array([[0.5, 0.3, 0.2], [-0.4, -0.4, -0.1]], jnp.float32))
    net = Sequential([first, LIF(decay=0.9, threshold=100.0), Linear(2, 2, key=jax.random.key(2)), LI(decay=0.9)])
    x = np.ones((1, 60, 3))
    tables, report = lower(net, "xylo", x, compensate_decay=compensate)
    _, traces = simulate(net, jnp.asarray(x[0], jnp.float32), record=True)
    want = np.asarray(traces[1].v[-1])
    got = np.asarray(simulate_int(tables, quantize_inputs(tables, x[0])).v[0][-1]) / tables.arrays["layer0.scale"]
    gain = 1.25 if compensate else 1.0
    assert report[0]["decay_gain"] == tables.manifest["layers"][0]["decay_gain"] == pytest.approx(gain)
    # 4-bit input counts times 8-bit weights round the drive by ~3 %; the decays differ by 20 %
    np.testing.assert_allclose(got, want * gain * 0.1 / 0.125, rtol=0.05)


def test_decay_compensation_is_one_where_the_decay_is_exact():
    net = mlp(4, [3], 2, key=jax.random.key(0))
    _, report = lower(net, "spinnaker", np.ones((1, 5, 4)))
    assert [r["decay_gain"] for r in report] == pytest.approx([1.0, 1.0], abs=1e-9)


def _edit(manifest, path):
    """Apply one edit that changes what the tables compute; returns the field's name as the error names it."""
    edits = {
        "layers[0].threshold_shift": lambda m: m["layers"][0].__setitem__("threshold_shift",
                                                                         m["layers"][0].get("threshold_shift", 0) + 1),
        "layers[0].out_features": lambda m: m["layers"][0].__setitem__("out_features", 5),
        "dt": lambda m: m.__setitem__("dt", 2e-3),
        "input.scale": lambda m: m["input"].__setitem__("scale", m["input"]["scale"] * 2),
        "profile.weight_bits": lambda m: m["profile"].__setitem__("weight_bits", 4),
        "profile.state_bits": lambda m: m["profile"].__setitem__("state_bits", 12),
    }
    edits[path](manifest)


@pytest.mark.parametrize("field", ["layers[0].threshold_shift", "layers[0].out_features", "dt", "input.scale",
                                   "profile.weight_bits", "profile.state_bits"])
def test_any_edit_of_a_computing_field_is_refused_by_name(tmp_path, tables, field):
    save_tables(tables[0], tmp_path)
    path = tmp_path / "manifest.json"
    manifest = json.loads(path.read_text())
    _edit(manifest, field)
    path.write_text(json.dumps(manifest, indent=2))
    with pytest.raises(TablesError, match=re.escape(field)):
        load_tables(tmp_path)


def test_decay_code_edit_is_refused(tmp_path, tables):
    save_tables(tables[0], tmp_path)
    path = tmp_path / "manifest.json"
    manifest = json.loads(path.read_text())
    layer = next(i for i, l in enumerate(manifest["layers"]) if "decay" in json.dumps(l))
    key = next(k for k in manifest["layers"][layer] if "decay" in k)
    manifest["layers"][layer][key] = {"edited": True}
    path.write_text(json.dumps(manifest))
    with pytest.raises(TablesError, match=re.escape(f"layers[{layer}].{key}")):
        load_tables(tmp_path)


def test_manifest_without_integrity_record_is_refused(tmp_path, tables):
    save_tables(tables[0], tmp_path)
    path = tmp_path / "manifest.json"
    manifest = json.loads(path.read_text())
    del manifest["integrity"]
    path.write_text(json.dumps(manifest))
    with pytest.raises(TablesError, match="no integrity record"):
        load_tables(tmp_path)


@pytest.mark.parametrize("offset", [0, "middle", -1])
def test_a_flipped_byte_in_the_npz_says_damaged(tmp_path, tables, offset):
    save_tables(tables[0], tmp_path)
    path = tmp_path / "tables.npz"
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if offset == "middle" else offset
    data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(TablesError, match="damaged"):
        load_tables(tmp_path)
