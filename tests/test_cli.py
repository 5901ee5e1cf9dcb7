"""The jsnn command line, run in subprocesses on tiny sizes."""

import json
import subprocess
import sys

import pytest

TINY = ["--data", "digits", "--epochs", "1", "--hidden", "8", "--T", "2", "--no-progress"]


def jsnn(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "jsnn.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


def _one_line_error(proc):
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jsnn: error:"), proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    proc = jsnn("train", *TINY, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return out, json.loads(proc.stdout)


def test_train_writes_checkpoint_metrics_and_result(trained):
    out, result = trained
    assert (out / "checkpoint.eqx").exists() and (out / "metrics.jsonl").exists()
    assert json.loads((out / "result.json").read_text()) == result
    assert result["config"]["hidden"] == [8] and 0.0 <= result["test_accuracy"] <= 1.0


def test_evaluate_reproduces_the_test_accuracy(trained):
    out, result = trained
    proc = jsnn("evaluate", str(out / "checkpoint.eqx"))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["test_accuracy"] == result["test_accuracy"]


def test_resume_of_a_finished_run_keeps_the_result(trained):
    out, result = trained
    proc = jsnn("train", *TINY, "--out", str(out), "--resume")
    assert proc.returncode == 0, proc.stderr


def test_resume_with_other_flags_is_refused(trained):
    out, _ = trained
    line = _one_line_error(jsnn("train", *TINY[:-3], "16", "--T", "2", "--out", str(out), "--resume"))
    assert "different config" in line


def test_existing_output_needs_resume(trained):
    out, _ = trained
    assert "--resume" in _one_line_error(jsnn("train", *TINY, "--out", str(out)))


def test_unknown_flag(tmp_path):
    line = _one_line_error(jsnn("train", "--epochz", "3", "--out", str(tmp_path)))
    assert "--epochz" in line and "--help" in line


def test_bad_flag_value(tmp_path):
    assert "positive integer" in _one_line_error(jsnn("train", "--T", "0", "--out", str(tmp_path)))


def test_missing_mnist_directory(tmp_path):
    line = _one_line_error(jsnn("train", "--data", "mnist", "--data-dir", str(tmp_path / "nowhere"),
                                "--out", str(tmp_path / "o")))
    assert "nowhere" in line


def test_corrupt_checkpoint(tmp_path):
    bad = tmp_path / "checkpoint.eqx"
    bad.write_bytes(b'{"format": "jsnn-checkpoint"}\nnot really')
    assert "checkpoint" in _one_line_error(jsnn("evaluate", str(bad)))


def test_data_info_reports_the_embedded_digits():
    proc = jsnn("data", "info")
    assert proc.returncode == 0, proc.stderr
    assert "digits" in json.loads(proc.stdout)


def test_module_runs_outside_the_repository(tmp_path):
    # The package must not depend on the working directory (the digits ship inside it).
    proc = jsnn("data", "info", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr


def test_flag_of_another_method_is_refused(tmp_path):
    line = _one_line_error(jsnn("train", "--method", "bptt", "--grad", "fp", "--out", str(tmp_path)))
    assert "--grad applies to --method exact" in line


@pytest.mark.parametrize(("method", "flags"), [("admm", ["--iters", "2", "--warmup", "1", "--train-samples", "64"]),
                                               ("exact", ["--epochs", "1", "--grad", "adjoint"])])
def test_other_methods_train_and_evaluate(tmp_path, method, flags):
    data = "digits" if method == "admm" else "yinyang"
    proc = jsnn("train", "--method", method, "--data", data, "--hidden", "4", "--T", "2", *flags,
                "--out", str(tmp_path), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["config"]["method"] == method
    proc = jsnn("evaluate", str(tmp_path / "checkpoint.eqx"))
    assert proc.returncode == 0, proc.stderr
