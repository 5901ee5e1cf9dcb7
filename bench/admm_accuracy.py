"""ADMM accuracy runs: digits (1 hidden layer, 3 seeds) and MNIST (1 and 3 hidden layers).

Each run goes through :func:`jsnn.optim.admm_method.build_admm` (what ``jsnn train --method admm``
runs) and appends one JSON line to ``bench/results/admm_accuracy.jsonl`` (written atomically):
data, config, test accuracy, iterations, wall time. CPU is scarce here, so MNIST runs use a
subset of the training set (``train_samples``) and T = 8; the full test set (10 000) is used.

Usage:
  .venv/bin/python bench/admm_accuracy.py digits            # 3 seeds, 1 hidden layer
  .venv/bin/python bench/admm_accuracy.py mnist1 mnist3     # MNIST, 1 and 3 hidden layers
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

RESULTS = Path(__file__).with_name("results") / "admm_accuracy.jsonl"
DATA_DIR = str(Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist")

CONFIGS = {
    "digits": [{"data": "digits", "seed": s} for s in (0, 1, 2)],
    "mnist1": [{"data": "mnist", "hidden": [512], "train_samples": 10000, "iters": 40, "warmup": 15,
                "chunk_size": 2500, "log_every": 10}],
    "mnist3": [{"data": "mnist", "hidden": [512, 512, 512], "train_samples": 10000, "iters": 40, "warmup": 15,
                "chunk_size": 2500, "log_every": 10}],
}


def _append(record: dict) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    old = RESULTS.read_text() if RESULTS.exists() else ""
    fd, tmp = tempfile.mkstemp(dir=RESULTS.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(old + json.dumps(record) + "\n")
    os.replace(tmp, RESULTS)


def main(names: list[str]) -> None:
    from jsnn.optim.admm_method import build_admm

    for name in names:
        for cfg in CONFIGS[name]:
            run = build_admm(cfg, data_dir=DATA_DIR)
            out = Path(tempfile.mkdtemp(prefix=f"admm_{name}_"))
            summary = run(out_dir=out, progress=False)
            history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
            record = {"bench": name, "train_samples": len(run.train[1]), "test_samples": len(run.test[1]),
                      **{k: summary[k] for k in ("test_accuracy", "train_accuracy", "iterations", "wall_s")},
                      "config": summary["config"], "history": history}
            _append(record)
            print(json.dumps({k: v for k, v in record.items() if k != "history"}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or ["digits"])
