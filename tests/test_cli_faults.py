"""Faults against the command line: one line on stderr, the right exit status, nothing good lost.

Each row of ``CASES`` is a user error that must be refused before any work starts: the
arguments, the exit status, a fragment of the message, and the files that must not exist
afterwards. The rows run in-process through ``jsnn.cli.main`` (the console script's entry);
a few cases that need a real signal or a trained run follow the table.
"""

import json
import os
import signal
import subprocess
import sys
import time

import jax.numpy as jnp
import pytest

from jsnn.checkpoint import read_header, save_checkpoint
from jsnn.cli import main

TINY = ["--data", "digits", "--epochs", "1", "--hidden", "8", "--T", "2", "--no-progress"]


def run_cli(capsys, *argv):
    status = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def one_line_error(status, err, code=2):
    assert status == code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jsnn: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny finished BPTT run: (run folder, its result)."""
    out = tmp_path_factory.mktemp("run")
    assert main(["train", *TINY, "--out", str(out)]) == 0
    return out, json.loads((out / "result.json").read_text())


@pytest.fixture
def paths(tmp_path, trained):
    """Named paths the table refers to: a plain file, an empty folder, a foreign folder, the trained run."""
    (tmp_path / "file.txt").write_text("not a folder")
    (tmp_path / "empty").mkdir()
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("keep me")
    ckpt = trained[0] / "checkpoint.eqx"
    header = read_header(ckpt)
    for name, change in [("newer_method", {"method": "hyperdrive"}), ("newer_data", {"data": "cifar99"})]:
        save_checkpoint(tmp_path / f"{name}.eqx", {"w": jnp.ones(2)}, {**header, "config": {**header["config"], **change}})
    return {"FILE": tmp_path / "file.txt", "EMPTY": tmp_path / "empty", "FOREIGN": tmp_path / "foreign",
            "RUN": trained[0], "CKPT": ckpt, "TMP": tmp_path,
            "NEWER_METHOD": tmp_path / "newer_method.eqx", "NEWER_DATA": tmp_path / "newer_data.eqx"}


#: (case id, argv with {NAME} placeholders, exit status, message fragment, paths that must not exist after)
CASES = [
    ("empty-out", ["train", *TINY, "--out", ""], 2, "--out is empty", []),
    ("out-is-a-file", ["train", *TINY, "--out", "{FILE}"], 2, "is a file", []),
    ("out-below-a-file", ["train", *TINY, "--out", "{FILE}/run"], 2, "lies below the file", []),
    ("huge-seed", ["train", *TINY, "--seed", "99999999999999999999", "--out", "{TMP}/a"], 2, "seed", ["{TMP}/a"]),
    ("negative-seed", ["train", *TINY, "--seed", "-1", "--out", "{TMP}/a"], 2, "non-negative", ["{TMP}/a"]),
    ("decay-negative", ["train", *TINY, "--decay", "-1", "--out", "{TMP}/a"], 2, "[0, 1]", ["{TMP}/a"]),
    ("decay-above-one", ["train", *TINY, "--decay", "1.5", "--out", "{TMP}/a"], 2, "[0, 1]", ["{TMP}/a"]),
    ("decay-nan", ["train", *TINY, "--decay", "nan", "--out", "{TMP}/a"], 2, "finite", ["{TMP}/a"]),
    ("lr-inf", ["train", *TINY, "--lr", "inf", "--out", "{TMP}/a"], 2, "finite", ["{TMP}/a"]),
    ("lr-zero", ["train", *TINY, "--lr", "0", "--out", "{TMP}/a"], 2, "positive", ["{TMP}/a"]),
    ("threshold-inf", ["train", *TINY, "--threshold", "inf", "--out", "{TMP}/a"], 2, "finite", ["{TMP}/a"]),
    ("warmup-negative", ["train", "--method", "admm", "--warmup", "-3", "--out", "{TMP}/a"], 2, "non-negative",
     ["{TMP}/a"]),
    ("admm-huge-penalties", ["train", "--method", "admm", "--rho", "1e30", "--beta", "1e30", "--out", "{TMP}/a"],
     2, "--rho must be at most 1e+06", ["{TMP}/a/checkpoint.eqx"]),
    ("data-dir-for-generated-data", ["train", "--data", "yinyang", "--data-dir", "/nonexistent", "--out",
                                     "{TMP}/a"], 2, "--data-dir applies to --data mnist", ["{TMP}/a"]),
    ("flag-of-another-method", ["train", "--method", "bptt", "--rho", "1", "--out", "{TMP}/a"], 2, "--rho applies",
     ["{TMP}/a"]),
    ("resume-without-checkpoint", ["train", "--resume", "--out", "{EMPTY}"], 2, "no checkpoint", []),
    ("evaluate-folder-without-checkpoint", ["evaluate", "{EMPTY}"], 2, "folder without a checkpoint.eqx", []),
    ("evaluate-missing", ["evaluate", "{TMP}/nothing.eqx"], 2, "does not exist", []),
    ("evaluate-newer-method", ["evaluate", "{NEWER_METHOD}"], 2, "'hyperdrive', which this jsnn does not know", []),
    ("evaluate-newer-data", ["evaluate", "{NEWER_DATA}"], 2, "'cifar99', which this jsnn does not know", []),
    ("lower-negative-dt", ["lower", "{CKPT}", "--target", "loihi", "--dt", "-1", "--out", "{TMP}/t"], 2,
     "--dt must be", ["{TMP}/t"]),
    ("lower-zero-dt", ["lower", "{CKPT}", "--target", "loihi", "--dt", "0", "--out", "{TMP}/t"], 2, "--dt must be",
     ["{TMP}/t"]),
    ("lower-nan-headroom", ["lower", "{CKPT}", "--target", "loihi", "--headroom", "nan", "--out", "{TMP}/t"], 2,
     "--headroom", ["{TMP}/t"]),
    ("lower-weight-bits", ["lower", "{CKPT}", "--target", "loihi", "--weight-bits", "0", "--out", "{TMP}/t"], 2,
     "--weight-bits", ["{TMP}/t"]),
    ("lower-out-is-a-file", ["lower", "{CKPT}", "--target", "loihi", "--out", "{FILE}"], 2, "is a file", []),
    ("lower-out-below-a-file", ["lower", "{CKPT}", "--target", "loihi", "--out", "{FILE}/t"], 2,
     "lies below the file", []),
    ("lower-foreign-folder", ["lower", "{CKPT}", "--target", "loihi", "--out", "{FOREIGN}"], 2,
     "did not write", ["{FOREIGN}/manifest.json", "{FOREIGN}/tables.npz"]),
    ("lower-unknown-target", ["lower", "{CKPT}", "--target", "tpu", "--out", "{TMP}/t"], 2, "tpu", ["{TMP}/t"]),
]


@pytest.mark.parametrize(("argv", "code", "fragment", "absent"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_user_error_is_one_line_before_any_work(capsys, paths, argv, code, fragment, absent):
    fill = lambda text: text.format(**paths)  # noqa: E731
    status, out, err = run_cli(capsys, *map(fill, argv))
    assert fragment in one_line_error(status, err, code)
    assert out == ""
    for path in map(fill, absent):
        assert not os.path.exists(path), path
    assert (paths["FOREIGN"] / "notes.txt").read_text() == "keep me"


def test_evaluate_accepts_a_run_folder(capsys, trained):
    out, result = trained
    status, stdout, err = run_cli(capsys, "evaluate", out)
    assert status == 0, err
    assert json.loads(stdout)["test_accuracy"] == result["test_accuracy"]


def test_resume_of_a_finished_run_keeps_its_accuracy(capsys, trained):
    out, result = trained
    status, stdout, err = run_cli(capsys, "train", "--resume", "--out", out)  # method and data from the checkpoint
    assert status == 0, err
    assert json.loads(stdout)["test_accuracy"] == result["test_accuracy"]
    assert json.loads((out / "result.json").read_text())["test_accuracy"] == result["test_accuracy"]


def test_stdout_is_json_lines(capsys, tmp_path):
    status, stdout, err = run_cli(capsys, "train", *TINY[:-1], "--out", tmp_path / "r")
    assert status == 0, err
    records = [json.loads(line) for line in stdout.splitlines()]  # every line parses
    assert "test_acc" in records[0] and abs(records[-1]["test_accuracy"] - records[0]["test_acc"]) < 1e-4


def test_exploding_loss_stops_the_run_without_a_checkpoint(capsys, tmp_path):
    status, _, err = run_cli(capsys, "train", *TINY, "--lr", "1e30", "--out", tmp_path / "r")
    assert "training diverged" in one_line_error(status, err) and "exploded" in err
    assert not (tmp_path / "r" / "checkpoint.eqx").exists()


def test_disk_full_is_one_line_and_keeps_the_old_checkpoint(capsys, trained, tmp_path, monkeypatch):
    import jsnn.checkpoint

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(jsnn.checkpoint.os, "fsync", full)
    status, _, err = run_cli(capsys, "train", *TINY, "--out", tmp_path / "r")
    assert "No space left on device" in one_line_error(status, err)
    assert not list((tmp_path / "r").glob("*.eqx")) and not list((tmp_path / "r").glob(".*.tmp"))


def test_lower_replaces_its_own_output_whole(capsys, trained, tmp_path):
    out = tmp_path / "t"
    status, _, err = run_cli(capsys, "lower", trained[0], "--target", "loihi", "--nir", "--calibration-samples", 8,
                             "--out", out)
    assert status == 0, err
    assert (out / "network.nir").exists()
    status, stdout, err = run_cli(capsys, "lower", trained[0], "--target", "xylo", "--calibration-samples", 8,
                                  "--out", out)
    assert status == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["jsnn_net.c", "jsnn_net.h", "manifest.json", "tables.npz"]
    assert json.loads((out / "manifest.json").read_text())["target"] == json.loads(stdout)["target"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left behind


def _start(args, cwd):
    return subprocess.Popen([sys.executable, "-m", "jsnn.cli", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _interrupt_when(proc, path, timeout=240):
    deadline = time.time() + timeout
    while not path.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


@pytest.mark.parametrize("method", ["bptt", "admm"])
def test_ctrl_c_saves_exits_130_and_says_how_to_resume(tmp_path, method):
    out = tmp_path / "r"
    flags = {"bptt": ["--epochs", "500", "--hidden", "8", "--T", "2"],
             "admm": ["--iters", "100000", "--hidden", "8", "--T", "2", "--train-samples", "64", "--log-every", "1",
                      "--checkpoint-every", "100000", "--no-refit-readout"]}[method]
    proc = _start(["train", "--method", method, *flags, "--no-progress", "--out", str(out)], tmp_path)
    status, _, err = _interrupt_when(proc, out / "metrics.jsonl")
    assert status == 130, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "jsnn train --resume --out" in lines[0], err
    header = read_header(out / "checkpoint.eqx")  # saved at the interrupt, not only at a periodic save
    assert header["step"] >= 1
