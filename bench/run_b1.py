"""Run workload B1 for every implementation side by side and write ``bench/results/b1.json``.

Each implementation script (``bench/b1_<impl>.py``) runs as its own subprocess,
one after another on the same machine in the same run: jsnn and the JAX
reference with this interpreter (``sys.executable``, normally ``.venv``), spyx
and snnTorch with ``.venv-peers/bin/python`` when that environment exists. A
missing script or environment is skipped with a note in the results. The
whole round (every config, every implementation, in an order that rotates
from round to round) is repeated ``--rounds`` times, and the median over the
rounds is kept per implementation, because the machines here are shared and
noisy. Speed is reported as ratios against the reference measured in the same
run, never as an absolute figure alone.

Usage::

    .venv/bin/python bench/run_b1.py                      # all three configs, 3 rounds
    .venv/bin/python bench/run_b1.py --configs T25_h256 --impls reference jsnn
    .venv/bin/python bench/run_b1.py --quick --rounds 1   # smoke run, writes b1_quick.json
    .venv/bin/python bench/run_b1.py --configs T_scaling --impls reference jsnn spyx  # T = 25..400:
                                                          # b1_scaling.json and b1_scaling.png

Then ``.venv/bin/python bench/render_tables.py`` puts the table in README.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
from pathlib import Path
from typing import Any

from common import atomic_write_text, non_negative_int, positive_int, run_worker_process
from plot_b1_scaling import per_step_series, plot_scaling
from render_tables import b1_table

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
PEERS_PYTHON = REPO / ".venv-peers" / "bin" / "python"

#: implementation name -> which environment runs it ("main": sys.executable, "peers": .venv-peers)
IMPLS = {"reference": "main", "jsnn": "main", "jsnn_bf16": "main", "jsnn_system_malloc": "main", "spyx": "peers",
         "snntorch": "peers"}
#: implementations run when --impls is not given (jsnn_system_malloc is a diagnostic: name it to run it)
DEFAULT_IMPLS = ["reference", "jsnn", "jsnn_bf16", "spyx", "snntorch"]
#: ratios printed in the terminal table (README shows only the reference)
RATIO_BASES = ("reference", "spyx", "snntorch")
CONFIGS = {
    "T25_h256": {"T": 25, "hidden": 256},
    "T100_h256": {"T": 100, "hidden": 256},
    "T25_h1024": {"T": 25, "hidden": 1024},
    "T50_h256": {"T": 50, "hidden": 256},
    "T200_h256": {"T": 200, "hidden": 256},
    "T400_h256": {"T": 400, "hidden": 256},
    "T100_h1024": {"T": 100, "hidden": 1024},
}
#: a name given to --configs that stands for several configs
CONFIG_GROUPS = {"T_scaling": ["T25_h256", "T50_h256", "T100_h256", "T200_h256", "T400_h256"]}
#: configs run when --configs is not given
DEFAULT_CONFIGS = ["T25_h256", "T100_h256", "T25_h1024"]
QUICK_CONFIG = {"quick_T8_h32": {"T": 8, "hidden": 32}}
FULL_RUN = {"batch": 128, "steps": 20, "warmup": 3}
QUICK_RUN = {"batch": 16, "steps": 5, "warmup": 3}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Run workload B1 (one surrogate-gradient training step of a 784-hidden-10 LIF MLP) "
        "for jsnn, the straightforward JAX reference, spyx and snnTorch, side by side.",
    )
    parser.add_argument(
        "--configs", nargs="+", choices=sorted(CONFIGS) + sorted(CONFIG_GROUPS), default=None,
        help=f"configs to run (default: {' '.join(DEFAULT_CONFIGS)}); T_scaling stands for "
        f"{' '.join(CONFIG_GROUPS['T_scaling'])} and writes results/b1_scaling.json and its plot",
    )
    parser.add_argument(
        "--impls", nargs="+", choices=list(IMPLS), default=DEFAULT_IMPLS,
        help=f"implementations to run (default: {' '.join(DEFAULT_IMPLS)})",
    )
    parser.add_argument("--rounds", type=positive_int, default=3, help="interleaved repetitions (default 3)")
    parser.add_argument(
        "--quick", action="store_true",
        help="tiny smoke run (T=8, hidden=32, batch 16, 5 steps); writes bench/results/b1_quick.json",
    )
    parser.add_argument("--batch", type=positive_int, default=None, help="samples per step (default 128; quick 16)")
    parser.add_argument("--steps", type=positive_int, default=None, help="timed steps per run (default 20; quick 5)")
    parser.add_argument("--warmup", type=non_negative_int, default=None, help="untimed steps after the first (default 3)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seed of data and parameters (default 0)")
    parser.add_argument("--timeout", type=positive_int, default=600, help="seconds allowed per subprocess (default 600)")
    parser.add_argument("--out", type=Path, default=None, help="results file (default bench/results/b1.json)")
    parser.add_argument(
        "--peers-python", type=Path, default=PEERS_PYTHON,
        help="interpreter that runs spyx and snnTorch (default .venv-peers/bin/python; on a machine whose "
        "own python holds every package, give that one)",
    )
    args = parser.parse_args(argv)
    args.impls = list(dict.fromkeys(args.impls))  # a name given twice runs once
    if args.quick and args.configs is not None:
        parser.error("--quick runs its own tiny config; drop --configs, or drop --quick to choose configs.")
    defaults = QUICK_RUN if args.quick else FULL_RUN
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    names = [member for name in args.configs or DEFAULT_CONFIGS for member in CONFIG_GROUPS.get(name, [name])]
    args.config_specs = QUICK_CONFIG if args.quick else {name: CONFIGS[name] for name in dict.fromkeys(names)}
    if args.out is None:
        stem = "b1_quick" if args.quick else "b1_scaling" if "T_scaling" in (args.configs or ()) else "b1"
        args.out = BENCH / "results" / f"{stem}.json"
    return args


def machine_info() -> dict[str, Any]:
    """Platform, CPU count and model, date and load average of the machine running the benchmark."""
    cpu_model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "load_average_start": list(os.getloadavg()),
    }


def interpreter(impl: str, peers_python: Path) -> tuple[str | None, str]:
    """The Python that runs ``impl``, or ``None`` and the reason to skip it."""
    script = BENCH / f"b1_{impl}.py"
    if not script.exists():
        return None, f"bench/{script.name} does not exist yet"
    if IMPLS[impl] == "main":
        return sys.executable, ""
    if not peers_python.exists():
        return None, f"{peers_python} not found: build .venv-peers with the recipe in bench/README.md"
    return str(peers_python), ""


def run_one(python: str, impl: str, spec: dict[str, int], args: argparse.Namespace) -> dict[str, Any]:
    """Run one implementation script once; return its JSON record or a failure note."""
    cmd = [python, str(BENCH / f"b1_{impl}.py"), "--T", str(spec["T"]), "--hidden", str(spec["hidden"]),
           "--batch", str(args.batch), "--steps", str(args.steps), "--warmup", str(args.warmup),
           "--seed", str(args.seed)]
    record = run_worker_process(cmd, cwd=REPO, timeout=args.timeout)
    missing = {"impl", "median_ms", "p10_ms", "p90_ms", "compile_s"} - set(record)
    if record["status"] == "ok" and missing:
        return {"status": "failed", "note": f"record lacks {sorted(missing)}"}
    return record


def aggregate(
    config: str, spec: dict[str, int], impl: str, runs: list[dict[str, Any]], args: argparse.Namespace
) -> dict[str, Any]:
    """Median over rounds of one (config, impl); notes for skipped or failed rounds."""
    base = {"config": config, "impl": impl, **spec, "batch": args.batch}
    ok = [run for run in runs if run["status"] == "ok"]
    notes = sorted({run["note"] for run in runs if run["status"] != "ok"})
    if not ok:
        status = "skipped" if runs and runs[0]["status"] == "skipped" else "failed"
        return {**base, "status": status, "note": "; ".join(notes)}
    record = {
        **base,
        "status": "ok",
        "median_ms": statistics.median(run["median_ms"] for run in ok),
        "ms_per_time_step": statistics.median(run["median_ms"] for run in ok) / spec["T"],
        "p10_ms": statistics.median(run["p10_ms"] for run in ok),
        "p90_ms": statistics.median(run["p90_ms"] for run in ok),
        "compile_s": statistics.median(run["compile_s"] for run in ok),
        "cpu_median_ms": statistics.median(run["cpu_median_ms"] for run in ok),
        "rounds_median_ms": [run["median_ms"] for run in ok],
        "rounds_warmup_s": [run.get("warmup_s") for run in ok],
        "loss_first": ok[0].get("loss_first"),
        "loss_last": ok[0].get("loss_last"),
        "versions": ok[0].get("versions", {}),
        "device": ok[0].get("device", "unknown"),
    }
    if notes:
        record["note"] = f"{len(runs) - len(ok)} of {len(runs)} rounds failed: " + "; ".join(notes)
    return record


def add_ratios(records: list[dict[str, Any]]) -> None:
    """Add ``speedup_vs_<base> = base_ms / impl_ms`` within each config (None if the base did not run)."""
    for config in {r["config"] for r in records}:
        rows = [r for r in records if r["config"] == config]
        base_ms = {r["impl"]: r["median_ms"] for r in rows if r["status"] == "ok"}
        base_cpu = {r["impl"]: r["cpu_median_ms"] for r in rows if r["status"] == "ok"}
        for row in rows:
            if row["status"] != "ok":
                continue
            for base in RATIO_BASES:
                row[f"speedup_vs_{base}"] = base_ms[base] / row["median_ms"] if base in base_ms else None
                row[f"cpu_speedup_vs_{base}"] = base_cpu[base] / row["cpu_median_ms"] if base in base_cpu else None


def scaling_summary(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per ``impl@hidden`` run at more than one T: ms per time step by T and largest / smallest of them."""
    summary = {}
    cpu = per_step_series(results, "cpu_median_ms")
    for (impl, hidden), points in per_step_series(results).items():
        if len(points) > 1:
            wall, cpu_ms = [ms for _, ms in points], [ms for _, ms in cpu[(impl, hidden)]]
            summary[f"{impl}@h{hidden}"] = {"ms_per_time_step": {str(t): ms for t, ms in points},
                                           "largest_over_smallest": max(wall) / min(wall),
                                           "cpu_ms_per_time_step": {str(t): ms for t, ms in cpu[(impl, hidden)]},
                                           "cpu_largest_over_smallest": max(cpu_ms) / min(cpu_ms)}
    return summary


def write_results(args: argparse.Namespace, machine: dict[str, Any],
                  runs: dict[tuple[str, str], list[dict[str, Any]]], rounds_done: int) -> dict[str, Any]:
    """Aggregate the rounds run so far and write them atomically to ``args.out``; return the results."""
    machine = {**machine, "load_average_end": list(os.getloadavg())}
    records = [aggregate(config, args.config_specs[config], impl, rs, args) for (config, impl), rs in runs.items()]
    add_ratios(records)
    results = {
        "workload": "B1",
        "settings": {"rounds": args.rounds, "rounds_done": rounds_done, "batch": args.batch, "steps": args.steps,
                     "warmup": args.warmup, "seed": args.seed, "quick": args.quick},
        "machine": machine,
        "records": records,
    }
    scaling = scaling_summary(results)
    if scaling:
        results["scaling_in_T"] = scaling
    atomic_write_text(args.out, json.dumps(results, indent=2) + "\n")
    return results


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    machine = machine_info()
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {
        (config, impl): [] for config in args.config_specs for impl in args.impls
    }
    for round_index in range(args.rounds):
        shift = round_index % len(args.impls)
        order = args.impls[shift:] + args.impls[:shift]  # rotate so no impl always runs first
        for config, spec in args.config_specs.items():
            for impl in order:
                python, reason = interpreter(impl, args.peers_python)
                if python is None:
                    result = {"status": "skipped", "note": reason}
                else:
                    result = run_one(python, impl, spec, args)
                runs[(config, impl)].append(result)
                shown = f"{result['median_ms']:.2f} ms/step" if result["status"] == "ok" else result["note"]
                print(f"[round {round_index + 1}/{args.rounds}] {config} {impl}: {result['status']}: {shown}",
                      file=sys.stderr, flush=True)
        # every finished round is on disk, so a run stopped early keeps what it measured
        results = write_results(args, machine, runs, round_index + 1)
    print(b1_table(results, ratio_bases=RATIO_BASES))
    if "scaling_in_T" in results:
        for name, row in results["scaling_in_T"].items():
            shown = ", ".join(f"T={t}: {ms:.3f}" for t, ms in row["ms_per_time_step"].items())
            print(f"{name}: ms per time step {shown}; largest/smallest {row['largest_over_smallest']:.3f} "
                  f"(CPU time: {row['cpu_largest_over_smallest']:.3f})")
        print(f"plot: {plot_scaling(results, args.out.with_suffix('.png'))}")
    try:
        shown_out = args.out.resolve().relative_to(REPO)
    except ValueError:
        shown_out = args.out
    print(f"\nwrote {shown_out}")

if __name__ == "__main__":
    main()
