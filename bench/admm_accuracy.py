"""ADMM accuracy runs: digits (1 hidden layer, 3 seeds) and MNIST (1 and 3 hidden layers).

Each run goes through :func:`jsnn.optim.admm_method.build_admm` (what ``jsnn train --method admm``
runs) and appends one JSON line to ``bench/results/admm_accuracy.jsonl`` (written atomically):
data, config, test accuracy, iterations, wall time. CPU is scarce here, so MNIST runs use a
subset of the training set (``train_samples``) and T = 8; the full test set (10 000) is used.

Usage:
  .venv/bin/python bench/admm_accuracy.py digits            # 3 seeds, 1 hidden layer
  .venv/bin/python bench/admm_accuracy.py mnist1 mnist3     # MNIST, 1 and 3 hidden layers
  .venv/bin/python bench/admm_accuracy.py --continue mnist1 OUT_DIR 80   # resume a run to 80 iterations

The wall time of a resumed run adds the earlier segment's last logged time to the new segment's time.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

RESULTS = Path(__file__).with_name("results") / "admm_accuracy.jsonl"
DATA_DIR = str(Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist")

CONFIGS = {
    "digits": [{"data": "digits", "seed": s} for s in (0, 1, 2)],
    "mnist1": [{"data": "mnist", "hidden": [512], "train_samples": 10000, "iters": 40, "warmup": 15,
                "chunk_size": 2500, "log_every": 10}],
    "mnist1wide": [{"data": "mnist", "hidden": [1024], "train_samples": 10000, "iters": 70, "warmup": 15,
                    "chunk_size": 2500, "log_every": 10}],
    "mnist3": [{"data": "mnist", "hidden": [512, 512, 512], "train_samples": 10000, "iters": 80, "warmup": 15,
                "chunk_size": 2500, "log_every": 10}],
}


def _append(record: dict) -> None:
    from jsnn.checkpoint import atomic_write_bytes

    old = RESULTS.read_text() if RESULTS.exists() else ""
    atomic_write_bytes(RESULTS, (old + json.dumps(record) + "\n").encode())


def _run(name: str, cfg: dict, out: Path, resume: bool = False) -> None:
    from jsnn.optim.admm_method import build_admm

    from jsnn.checkpoint import read_header

    run = build_admm(cfg, data_dir=DATA_DIR)
    start = read_header(out / "checkpoint.eqx")["step"] if resume else 0
    summary = run(out_dir=out, progress=False, resume=resume)
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    earlier = max([r["wall_s"] for r in history if r["iter"] <= start], default=0.0)
    record = {"bench": name, "train_samples": len(run.train[1]), "test_samples": len(run.test[1]),
              **{k: summary[k] for k in ("test_accuracy", "test_accuracy_before_refit", "train_accuracy",
                                         "iterations") if k in summary},
              "wall_s": round(earlier + summary["wall_s"], 2),
              "config": summary["config"], "history": history, "out_dir": str(out)}
    _append(record)
    print(json.dumps({k: v for k, v in record.items() if k != "history"}), flush=True)


def main(argv: list[str]) -> None:
    if argv and argv[0] == "--continue":  # --continue NAME OUT_DIR ITERS: resume a run to more iterations
        name, out, iters = argv[1], Path(argv[2]), int(argv[3])
        _run(name, {**CONFIGS[name][0], "iters": iters}, out, resume=True)
        return
    for name in argv or ["digits"]:
        for cfg in CONFIGS[name]:
            _run(name, cfg, Path(tempfile.mkdtemp(prefix=f"admm_{name}_")))


if __name__ == "__main__":
    main(sys.argv[1:])
