"""Accuracy of surrogate BPTT (the foundation issue's numbers), mean over seeds.

Runs ``jsnn train`` once per seed (skipping runs whose ``result.json`` already exists, so
it can be re-run after an interruption) and writes ``bench/results/accuracy_bptt_<data>.json``.

    .venv/bin/python bench/accuracy_bptt.py --data mnist --data-dir ../shared/data/mnist --seeds 0 1
    .venv/bin/python bench/accuracy_bptt.py --data digits --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=["digits", "mnist", "yinyang"], default="digits")
    parser.add_argument("--data-dir")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--runs", default=str(ROOT / "runs"), help="folder for the run outputs")
    parser.add_argument("extra", nargs=argparse.REMAINDER, help="more `jsnn train` flags after --")
    args = parser.parse_args()
    records = []
    for seed in args.seeds:
        out = Path(args.runs) / f"{args.data}_s{seed}"
        result_file = out / "result.json"
        if not result_file.exists():
            cmd = [sys.executable, "-m", "jsnn.cli", "train", "--method", "bptt", "--data", args.data,
                   "--seed", str(seed), "--out", str(out), "--no-progress"]
            if args.data_dir:
                cmd += ["--data-dir", args.data_dir]
            cmd += [a for a in args.extra if a != "--"]
            if (out / "checkpoint.eqx").exists():
                cmd.append("--resume")
            subprocess.run(cmd, check=True)
        result = json.loads(result_file.read_text())
        records.append({"seed": seed, "test_accuracy": result["test_accuracy"], "wall_s": result["wall_s"],
                        "config": result["config"]})
    accs = [r["test_accuracy"] for r in records]
    summary = {
        "benchmark": f"accuracy_bptt_{args.data}",
        "mean_test_accuracy": statistics.mean(accs),
        "min_test_accuracy": min(accs),
        "max_test_accuracy": max(accs),
        "runs": records,
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "date": time.strftime("%F")},
    }
    path = ROOT / "bench" / "results" / f"accuracy_bptt_{args.data}.json"
    atomic_write_text(path, json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "runs"}, indent=2))


if __name__ == "__main__":
    main()
