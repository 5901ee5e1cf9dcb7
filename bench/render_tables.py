"""Render the benchmark results in ``bench/results/`` into docs/results.md.

For every results file this script knows (the ``RENDERERS`` dict: file name ->
render function), it replaces the text between the markers
``<!-- bench:<stem>:start -->`` and ``<!-- bench:<stem>:end -->`` of docs/results.md
with the rendered Markdown, where ``<stem>`` is the file name without ``.json``
(``b1`` for ``b1.json``). A README without the markers is left alone, and the
script says so. To add a benchmark, write ``render_<name>(results) -> str`` and
add ``"<name>.json": render_<name>`` to ``RENDERERS``.

Usage::

    .venv/bin/python bench/render_tables.py [--readme docs/results.md] [--results bench/results]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from common import atomic_write_text, markdown_table

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
MISSING = "—"


def _ratio(value: float | None) -> str:
    if value is None:
        return MISSING
    return f"{value:.2f}x" if value >= 0.1 else f"{value:.2g}x"


def b1_table(results: dict[str, Any], *, ratio_bases: Sequence[str] = ("reference",)) -> str:
    """Markdown table of workload B1 results, notes on skipped runs, and the machine line.

    Args:
        results: Content of ``bench/results/b1.json`` as written by ``bench/run_b1.py``.
        ratio_bases: Implementations to show ``speedup vs <base>`` columns for
            (``base_ms / impl_ms``, both measured in the same run).

    Returns:
        Markdown text without a trailing newline.

    Raises:
        ValueError: If ``results`` lacks the ``records``, ``settings`` or ``machine`` keys.
    """
    missing = {"records", "settings", "machine"} - set(results)
    if missing:
        raise ValueError(f"not a B1 results file (missing {sorted(missing)})")
    headers = ["config", "impl", "ms/step (median)", "compile s", *(f"speedup vs {b}" for b in ratio_bases),
               *(f"CPU-time speedup vs {b}" for b in ratio_bases)]
    rows, notes = [], []
    for rec in results["records"]:
        config = f"T={rec['T']} hidden={rec['hidden']} batch={rec['batch']}"
        if rec["status"] == "ok":
            ms = rec["median_ms"]
            rows.append([
                config, rec["impl"], f"{ms:.2f}" if ms < 100 else f"{ms:.1f}", f"{rec['compile_s']:.2f}",
                *(_ratio(rec.get(f"speedup_vs_{base}")) for base in ratio_bases),
                *(_ratio(rec.get(f"cpu_speedup_vs_{base}")) for base in ratio_bases),
            ])
        else:
            rows.append([config, rec["impl"], rec["status"], MISSING, *(MISSING for _ in 2 * ratio_bases)])
        if rec.get("note"):
            notes.append(f"- {rec['impl']}, {config}: {rec['note']}")
    settings, machine = results["settings"], results["machine"]
    devices = sorted({rec["device"] for rec in results["records"] if rec["status"] == "ok"})
    load = f"load average {machine['load_average_start'][0]:.2f} at start"
    if "load_average_end" in machine:
        load += f", {machine['load_average_end'][0]:.2f} at end"
    machine_line = (
        f"Machine: {machine['cpu_model']}, {machine['cpu_count']} CPUs, {machine['platform']}, "
        f"Python {machine['python']}, device {'/'.join(devices) or MISSING}; {machine['date']}; {load}. "
        f"Median over {settings['rounds']} interleaved rounds of the median of {settings['steps']} steps "
        f"after {settings['warmup']} warmup steps; speedup = other ms / impl ms in the same run."
    )
    parts = [markdown_table(headers, rows), ""]
    if notes:
        parts += [*notes, ""]
    parts.append(machine_line)
    return "\n".join(parts)


def render_b1(results: dict[str, Any]) -> str:
    """README block for ``b1.json``: ms/step, compile time and speedup against the reference."""
    return b1_table(results, ratio_bases=("reference", "spyx", "snntorch"))


def render_b1_gpu_unroll(results: dict[str, Any]) -> str:
    """README block for ``b1_gpu_unroll.json``: jsnn's scan unroll factors against reference and spyx on a GPU.

    Raises:
        ValueError: If a (round, T) group lacks the reference or spyx row.
    """
    headers = ["T", "impl", "ms/step", "compile s", "speedup vs reference", "speedup vs spyx"]
    rows = []
    for rnd, steps in dict.fromkeys((r["round"], r["T"]) for r in results["records"]):
        group = [r for r in results["records"] if (r["round"], r["T"]) == (rnd, steps)]
        base = {r["impl"]: r["median_ms"] for r in group}
        if not {"reference", "spyx"} <= set(base):
            raise ValueError(f"round {rnd}, T={steps} lacks the reference or spyx row")
        rows += [[str(steps), r["impl"], f"{r['median_ms']:.2f}", f"{r['compile_s']:.1f}",
                  _ratio(base["reference"] / r["median_ms"]), _ratio(base["spyx"] / r["median_ms"])] for r in group]
    machine, settings = results["machine"], results["settings"]
    return "\n".join([markdown_table(headers, rows), "",
                      f"Machine: {machine['device']}, JAX {machine['jax']}; {machine['date']}; hidden "
                      f"{settings['hidden']}, batch {settings['batch']}, median of {settings['steps']} steps; "
                      f"{settings['rounds_done']} round. {settings['how']}"])


#: results file name (in bench/results/) -> function rendering its README block
RENDERERS: dict[str, Callable[[dict[str, Any]], str]] = {
    "b1.json": render_b1,
    "b1_gpu_h200.json": render_b1,
    "b1_gpu_unroll.json": render_b1_gpu_unroll,
}


def replace_block(text: str, key: str, body: str) -> str | None:
    """Replace what lies between ``<!-- bench:key:start -->`` and ``<!-- bench:key:end -->``.

    Args:
        text: README content.
        key: Block name, e.g. ``"b1"``.
        body: New content of the block.

    Returns:
        The new text, or ``None`` if either marker is absent.

    Raises:
        ValueError: If a marker appears twice or the end marker comes first.

    Example:
        >>> replace_block("a <!-- bench:b1:start -->old<!-- bench:b1:end --> b", "b1", "new")
        'a <!-- bench:b1:start -->\\nnew\\n<!-- bench:b1:end --> b'
    """
    start, end = f"<!-- bench:{key}:start -->", f"<!-- bench:{key}:end -->"
    if start not in text or end not in text:
        return None
    if text.count(start) != 1 or text.count(end) != 1 or text.index(end) < text.index(start):
        raise ValueError(f"README must hold exactly one {start} followed by exactly one {end}; fix the markers.")
    head, rest = text.split(start)
    _, tail = rest.split(end)
    return f"{head}{start}\n{body}\n{end}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Render bench/results/*.json into the README's bench blocks.")
    parser.add_argument("--readme", type=Path, default=REPO / "docs" / "results.md",
                        help="file to update (default docs/results.md)")
    parser.add_argument("--results", type=Path, default=BENCH / "results", help="results folder (default bench/results)")
    args = parser.parse_args(argv)
    if not args.readme.is_file():
        print(f"{args.readme} not found: nothing to update (pass --readme PATH).", file=sys.stderr)
        return 1
    text = original = args.readme.read_text(encoding="utf-8")
    for name, render in RENDERERS.items():
        path = args.results / name
        key = Path(name).stem
        if not path.is_file():
            print(f"{path} not found: run bench/run_{key}.py first; block {key} left as it is.")
            continue
        try:
            results = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise SystemExit(f"{path} is not valid JSON ({err}); rerun bench/run_{key}.py.") from None
        try:
            body = render(results)
        except (ValueError, KeyError, TypeError) as err:
            raise SystemExit(f"{path}: cannot render it ({err}); rerun bench/run_{key}.py.") from None
        try:
            new_text = replace_block(text, key, body)
        except ValueError as err:
            raise SystemExit(f"{args.readme}: {err}") from None
        if new_text is None:
            print(f"{args.readme} has no <!-- bench:{key}:start/end --> markers: block {key} not rendered.")
            continue
        text = new_text
        print(f"rendered {name} into {args.readme}")
    if text != original:
        atomic_write_text(args.readme, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
