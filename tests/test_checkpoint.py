"""Checkpoints: round trip, atomic writes, and clear errors for damaged files."""

import jax.numpy as jnp
import numpy as np
import pytest

from jsnn.checkpoint import CheckpointError, load_checkpoint, read_header, save_checkpoint


def _state():
    return {"w": jnp.arange(6.0, dtype=jnp.float32).reshape(2, 3), "n": jnp.int32(4)}


def test_round_trip(tmp_path):
    path = tmp_path / "c.eqx"
    save_checkpoint(path, _state(), {"step": 12, "config": {"T": 3}})
    state, header = load_checkpoint(path, {"w": jnp.zeros((2, 3), jnp.float32), "n": jnp.int32(0)})
    np.testing.assert_array_equal(state["w"], _state()["w"])
    assert int(state["n"]) == 4 and header["step"] == 12 and header["config"] == {"T": 3}
    assert header["jsnn_version"]
    assert [p.name for p in tmp_path.iterdir()] == ["c.eqx"]  # no temporary file left


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda raw: raw[: len(raw) - 5], "truncated or corrupted"),
        (lambda raw: raw[:-1] + bytes([raw[-1] ^ 1]), "truncated or corrupted"),
        (lambda raw: b"garbage" + raw, "not a jsnn checkpoint"),
        (lambda raw: b"", "not a jsnn checkpoint"),
    ],
)
def test_damaged_files_are_refused(tmp_path, damage, message):
    path = tmp_path / "c.eqx"
    save_checkpoint(path, _state(), {"step": 1})
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(CheckpointError, match=message):
        read_header(path)


def test_structure_mismatch_is_explained(tmp_path):
    path = tmp_path / "c.eqx"
    save_checkpoint(path, _state(), {"step": 1})
    with pytest.raises(CheckpointError, match="does not match"):
        load_checkpoint(path, {"w": jnp.zeros((3, 3), jnp.float32), "n": jnp.int32(0)})


def test_missing_file_is_explained(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        read_header(tmp_path / "nope.eqx")


def test_failed_write_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / "c.eqx"
    save_checkpoint(path, _state(), {"step": 1})
    before = path.read_bytes()
    with pytest.raises(TypeError):
        save_checkpoint(path, _state(), {"step": object()})  # header not JSON-serialisable
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.eqx"]
