"""Plot B1 milliseconds per time step against T, one line per implementation.

    .venv/bin/python bench/plot_b1_scaling.py [bench/results/b1_scaling.json]

writes the plot next to the results file (``b1_scaling.png``). ``run_b1.py`` calls
:func:`plot_scaling` itself after a run with more than one T.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def per_step_series(results: dict[str, Any], key: str = "median_ms") -> dict[tuple[str, int], list[tuple[int, float]]]:
    """``(impl, hidden) -> [(T, ms per time step), ...]`` sorted by T, for the runs that succeeded.

    ``key`` is ``median_ms`` (wall time of a training step) or ``cpu_median_ms`` (process CPU time).
    """
    series: dict[tuple[str, int], list[tuple[int, float]]] = {}
    for rec in results["records"]:
        if rec["status"] == "ok":
            series.setdefault((rec["impl"], rec["hidden"]), []).append((rec["T"], rec[key] / rec["T"]))
    return {key: sorted(points) for key, points in series.items()}


def plot_scaling(results: dict[str, Any], path: Path) -> Path:
    """Draw wall and CPU ms per time step against T (log x axis), one line per implementation and hidden size."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, what in zip(axes, ("median_ms", "cpu_median_ms"), ("wall", "process CPU"), strict=True):
        for (impl, hidden), points in sorted(per_step_series(results, key).items()):
            ts, ms = zip(*points, strict=True)
            ax.plot(ts, ms, marker="o", label=f"{impl} (hidden {hidden})")
        ax.set_xscale("log")
        ax.set_xticks(sorted({rec["T"] for rec in results["records"]}), minor=False)
        ax.set_xticks([], minor=True)
        ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.set_xlabel("time steps T")
        ax.set_ylabel(f"{what} ms per time step (median step / T)")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    machine = results["machine"]
    load = f"{machine['load_average_start'][0]:.1f}-{machine.get('load_average_end', [float('nan')])[0]:.1f}"
    fig.suptitle(f"B1 scaling in T, batch {results['settings']['batch']}, {machine['cpu_count']} CPUs, "
                 f"load average {load}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


if __name__ == "__main__":
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "results" / "b1_scaling.json"
    print(plot_scaling(json.loads(source.read_text()), source.with_suffix(".png")))
