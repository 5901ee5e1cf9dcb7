"""Test accuracy of a training method on a data set, mean over seeds (the issues' accuracy numbers).

Runs ``jsnn train --method METHOD`` once per seed into ``runs/[METHOD_]DATA_sSEED`` (no prefix for
bptt), skipping runs whose ``result.json`` already exists and resuming interrupted ones, and writes
``bench/results/accuracy_<method>_<data>.json`` with each run's config.

    .venv/bin/python bench/accuracy.py --data mnist --data-dir ../shared/data/mnist --seeds 0 1
    .venv/bin/python bench/accuracy.py --data digits --seeds 0 1 2
    .venv/bin/python bench/accuracy.py --method exact --data mnist --data-dir ../shared/data/mnist --seeds 0
    .venv/bin/python bench/accuracy.py --method ide --data digits --seeds 0 1 2    (also spide)
    .venv/bin/python bench/accuracy.py --method shortcut --data digits --seeds 0 1
    .venv/bin/python bench/accuracy.py --method bptt --data mnist --name bptt_mnist_deep10 -- --depth 10 ...

``--name`` names the result file (``accuracy_<name>.json``) and the run folders, for variants of one method.
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
    parser.add_argument("--method", choices=["bptt", "exact", "ide", "spide", "shortcut"], default="bptt")
    parser.add_argument("--data", choices=["digits", "mnist", "yinyang"], default="digits")
    parser.add_argument("--data-dir")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--name", help="result name (default: METHOD_DATA); runs go to runs/NAME_sSEED")
    parser.add_argument("--runs", default=str(ROOT / "runs"), help="folder for the run outputs")
    parser.add_argument("extra", nargs=argparse.REMAINDER, help="more `jsnn train` flags after --")
    args = parser.parse_args()
    records = []
    for seed in args.seeds:
        prefix = "" if args.method == "bptt" else f"{args.method}_"
        out = Path(args.runs) / (f"{args.name}_s{seed}" if args.name else f"{prefix}{args.data}_s{seed}")
        result_file = out / "result.json"
        if not result_file.exists():
            cmd = [sys.executable, "-m", "jsnn.cli", "train", "--method", args.method, "--data", args.data,
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
        "benchmark": f"accuracy_{args.name or f'{args.method}_{args.data}'}",
        "mean_test_accuracy": statistics.mean(accs),
        "min_test_accuracy": min(accs),
        "max_test_accuracy": max(accs),
        "runs": records,
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "date": time.strftime("%F")},
    }
    path = ROOT / "bench" / "results" / f"{summary['benchmark']}.json"
    atomic_write_text(path, json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "runs"}, indent=2))


if __name__ == "__main__":
    main()
