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

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def per_step_series(results: dict[str, Any]) -> dict[tuple[str, int], list[tuple[int, float]]]:
    """``(impl, hidden) -> [(T, median ms per time step), ...]`` sorted by T, for the runs that succeeded."""
    series: dict[tuple[str, int], list[tuple[int, float]]] = {}
    for rec in results["records"]:
        if rec["status"] == "ok":
            series.setdefault((rec["impl"], rec["hidden"]), []).append((rec["T"], rec["median_ms"] / rec["T"]))
    return {key: sorted(points) for key, points in series.items()}


def plot_scaling(results: dict[str, Any], path: Path) -> Path:
    """Draw ms per time step against T (log x axis) for every implementation and hidden size into ``path``."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for (impl, hidden), points in sorted(per_step_series(results).items()):
        ts, ms = zip(*points, strict=True)
        ax.plot(ts, ms, marker="o", label=f"{impl} (hidden {hidden})")
    machine = results["machine"]
    ax.set_xscale("log", base=2)
    ax.set_xlabel("time steps T")
    ax.set_ylabel("ms per time step (median training step / T)")
    ax.set_ylim(bottom=0)
    ax.set_title(f"B1 scaling in T, batch {results['settings']['batch']}; load {machine['load_average_start'][0]:.1f}",
                 fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


if __name__ == "__main__":
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "results" / "b1_scaling.json"
    print(plot_scaling(json.loads(source.read_text()), source.with_suffix(".png")))
