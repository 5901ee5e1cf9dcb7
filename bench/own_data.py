"""Every method on data no default was tuned on, with default settings, from the CLI and from Python.

Builds three ``.npz`` files (layout: ``jsnn.data.npz``) in ``runs/own_data/``:

- ``digits_std``: the embedded digits standardised per feature (zero mean, unit variance: signed values);
- ``gauss5``: a 20-dimensional, 5-class Gaussian mixture with signed features (2000 train, 1000 test);
- ``sine``: noisy sine-frequency classification, 4 classes, time series ``(N, T=32, F=1)``.

Then runs ``jsnn train --method M --data FILE.npz --seed 0 --out runs/own_data/M_DATA`` for each method
M in bptt, admm, exact and each file (one line each, no other flag), and ``jsnn.fit(x, y, method=M,
test=..., seed=0)`` on one file to show that the Python route gives the same accuracy. Writes
``bench/results/own_data.json``.

    nice -n 10 .venv/bin/python bench/own_data.py [--data digits_std gauss5 sine] [--methods bptt admm exact]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from common import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "runs" / "own_data"
RESULT = ROOT / "bench" / "results" / "own_data.json"


def digits_std() -> dict[str, np.ndarray]:
    """The embedded digits, standardised with the training split's per-feature mean and std."""
    from jsnn.data import load_digits

    train, test = load_digits("train"), load_digits("test")
    mean, std = train.x.mean(axis=0), train.x.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return {"x_train": (train.x - mean) / std, "y_train": train.y, "x_test": (test.x - mean) / std,
            "y_test": test.y}


def gauss5(seed: int = 1) -> dict[str, np.ndarray]:
    """5 classes, 20 features; each class a Gaussian around a random centre (norm 2), unit noise."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(5, 20))
    centres *= 2.0 / np.linalg.norm(centres, axis=1, keepdims=True)

    def draw(n):
        y = rng.integers(0, 5, n)
        return (centres[y] + rng.normal(size=(n, 20)) * 0.8).astype(np.float32), y.astype(np.int32)

    (xa, ya), (xb, yb) = draw(2000), draw(1000)
    return {"x_train": xa, "y_train": ya, "x_test": xb, "y_test": yb}


def sine(seed: int = 2, steps: int = 32) -> dict[str, np.ndarray]:
    """Class k: sin(2 pi f_k t / T + phase) + noise, f in (1, 2, 3, 4) cycles per window, random phase."""
    rng = np.random.default_rng(seed)

    def draw(n):
        y = rng.integers(0, 4, n)
        t = np.arange(steps)[None, :]
        phase = rng.uniform(0, 2 * np.pi, (n, 1))
        x = np.sin(2 * np.pi * (y[:, None] + 1) * t / steps + phase) + rng.normal(size=(n, steps)) * 0.5
        return x[:, :, None].astype(np.float32), y.astype(np.int32)

    (xa, ya), (xb, yb) = draw(1500), draw(500)
    return {"x_train": xa, "y_train": ya, "x_test": xb, "y_test": yb}


DATA = {"digits_std": digits_std, "gauss5": gauss5, "sine": sine}


def make_files() -> dict[str, Path]:
    RUNS.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, make in DATA.items():
        paths[name] = RUNS / f"{name}.npz"
        if not paths[name].exists():
            np.savez(paths[name], **make())
    return paths


def cli_run(method: str, path: Path, name: str) -> dict:
    out = RUNS / f"{method}_{name}"
    result_file = out / "result.json"
    if not result_file.exists():
        cmd = [sys.executable, "-m", "jsnn.cli", "train", "--method", method, "--data", str(path), "--seed", "0",
               "--out", str(out), "--no-progress"]
        if (out / "checkpoint.eqx").exists():
            cmd.append("--resume")
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    result = json.loads(result_file.read_text())
    config = {k: v for k, v in result["config"].items() if k not in ("input_shift", "input_scale")}
    return {"method": method, "data": name, "route": "cli",
            "command": f"jsnn train --method {method} --data {path.relative_to(ROOT)} --seed 0 --out {out.relative_to(ROOT)}",
            "test_accuracy": result["test_accuracy"], "wall_s": result["wall_s"], "config": config}


def python_run(method: str, path: Path, name: str) -> dict:
    import jsnn

    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    start = time.perf_counter()
    model = jsnn.fit(arrays["x_train"], arrays["y_train"], method=method, test=(arrays["x_test"], arrays["y_test"]),
                     seed=0)
    predicted = model.predict(arrays["x_test"])
    return {"method": method, "data": name, "route": "python",
            "command": f"jsnn.fit(x_train, y_train, method={method!r}, test=(x_test, y_test), seed=0)",
            "test_accuracy": model.test_accuracy,
            "predict_accuracy": float(np.mean(predicted == arrays["y_test"])),
            "wall_s": round(time.perf_counter() - start, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", choices=sorted(DATA), default=list(DATA))
    parser.add_argument("--methods", nargs="+", choices=["bptt", "admm", "exact"], default=["bptt", "admm", "exact"])
    parser.add_argument("--python-data", default="gauss5", help="the file also run through jsnn.fit")
    args = parser.parse_args()
    paths = make_files()
    previous = json.loads(RESULT.read_text())["runs"] if RESULT.exists() else []
    runs = {(r["method"], r["data"], r["route"]): r for r in previous}
    load = [os.getloadavg()[0]]

    def save():
        rows = sorted(runs.values(), key=lambda r: (r["data"], r["method"], r["route"]))
        table = {}
        for r in rows:
            if r["route"] == "cli":
                table.setdefault(r["data"], {})[r["method"]] = r["test_accuracy"]
        gaps = {d: {f"{m}_minus_bptt": round(100 * (v[m] - v["bptt"]), 2) for m in v if m != "bptt"}
                for d, v in table.items() if "bptt" in v}
        summary = {"benchmark": "own_data", "test_accuracy": table, "gap_points": gaps, "runs": rows,
                   "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
                              f"{platform.platform()}, Python {platform.python_version()}",
                   "load_average": [round(v, 2) for v in load],
                   "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        RESULT.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(RESULT, json.dumps(summary, indent=2) + "\n")

    for name in args.data:
        for method in args.methods:
            runs[(method, name, "cli")] = cli_run(method, paths[name], name)
            load.append(os.getloadavg()[0])
            save()
            if name == args.python_data:
                runs[(method, name, "python")] = python_run(method, paths[name], name)
                load.append(os.getloadavg()[0])
                save()
            print(json.dumps({k: runs[(method, name, "cli")][k] for k in ("method", "data", "test_accuracy")}))


if __name__ == "__main__":
    main()
