"""``jsnn sweep [CONFIG.toml] --out DIR``: a vmapped hyperparameter sweep from a TOML file or flags.

The file (read with the standard library's ``tomllib``)::

    method = "bptt"            # or "admm"
    [base]                     # settings every configuration shares (as for jsnn train)
    data = "digits"
    epochs = 3
    hidden = [64]
    [grid]                     # the full grid; or [[configs]] tables (an explicit list),
    lr = [1e-3, 3e-3]          # or [random] with n = 8 and lists / [low, high] ranges
    decay = [0.8, 0.9]
    seed = [0, 1]

Flags add to (or replace) the file: ``--method``, ``--data``, ``--set NAME=VALUE`` (a base setting, the
value parsed as JSON), ``--grid NAME=V1,V2,...`` (a grid axis). The outputs in ``--out``: ``results.csv``,
``results.json``, ``checkpoint.eqx`` (the best configuration, which ``jsnn evaluate`` and ``jsnn lower``
accept), ``chunks/`` (for ``--resume``) and, with ``--plot``, ``sweep.png``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

__all__ = ["add_parser", "load_spec", "run"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``sweep`` sub-command to an ``argparse`` sub-parser collection."""
    p = subparsers.add_parser("sweep", help="train a grid of configurations as one vmapped program",
                              description="Train many configurations of one method at once (jax.vmap over "
                                          "configurations, sharded over devices). See jsnn.sweep_cli for the "
                                          "TOML layout.")
    p.add_argument("config", nargs="?", help="a TOML file with method, [base] and [grid] / [[configs]] / [random]")
    p.add_argument("--method", help="training method (bptt or admm)")
    p.add_argument("--data", help="digits, mnist, yinyang or FILE.npz")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="a shared setting, e.g. --set epochs=3 --set hidden=[64] (JSON values)")
    p.add_argument("--grid", action="append", default=[], metavar="NAME=V1,V2",
                   help="a grid axis, e.g. --grid lr=1e-3,3e-3 --grid seed=0,1")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--chunk", type=int, help="configurations trained at once (default: what fits in memory)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted sweep in --out")
    p.add_argument("--plot", action="store_true", help="write sweep.png (needs matplotlib)")
    p.add_argument("--data-dir", help="folder with the MNIST IDX files")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def load_spec(path: str | Path | None, args: argparse.Namespace) -> tuple[str, dict[str, Any], Any]:
    """``(method, base config, space)`` from the TOML file (if any) and the flags.

    Raises:
      ValueError: a missing or malformed file, unknown sections, or no space at all.
    """
    import tomllib

    from jsnn.sweep import Random

    spec: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"{path}: no such file; give a TOML sweep file (see jsnn sweep --help).")
        try:
            spec = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{path} is not valid TOML: {err}") from None
        unknown = set(spec) - {"method", "base", "grid", "configs", "random"}
        if unknown:
            raise ValueError(f"{path}: unknown keys {sorted(unknown)}; use method, [base], [grid], [[configs]] "
                             "or [random].")
    method = args.method or spec.get("method", "bptt")
    base = dict(spec.get("base", {}))
    if args.data:
        base["data"] = args.data
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ValueError(f"--set expects NAME=VALUE; got {item!r}.")
        base[name] = _value(value)
    grid = dict(spec.get("grid", {}))
    for item in args.grid:
        name, sep, values = item.partition("=")
        if not sep or not name or not values:
            raise ValueError(f"--grid expects NAME=V1,V2,...; got {item!r}.")
        grid[name] = [_value(v) for v in values.split(",")]
    kinds = [k for k, v in (("grid", grid), ("configs", spec.get("configs")), ("random", spec.get("random"))) if v]
    if len(kinds) != 1:
        raise ValueError("give exactly one space: a [grid] (or --grid), [[configs]] or [random]; got "
                         f"{kinds or 'none (the space is empty)'}.")
    if kinds == ["grid"]:
        space: Any = grid
    elif kinds == ["configs"]:
        space = spec["configs"]
    else:
        random = dict(spec["random"])
        n = random.pop("n", None)
        if not isinstance(n, int):
            raise ValueError("[random] needs n = the number of configurations to draw.")
        space = Random({k: tuple(v) if isinstance(v, list) and len(v) == 2 and k != "seed" and all(
            isinstance(x, float) for x in v) else v for k, v in random.items()}, n)
    return method, base, space


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run ``jsnn sweep``; returns the JSON-able summary (best configuration, groups, outputs)."""
    import jax

    from jsnn.checkpoint import check_output_folder
    from jsnn.sweep import plot_sweep, sweep

    out = check_output_folder(args.out, flag="--out")
    method, base, space = load_spec(args.config, args)
    if args.chunk is not None and args.chunk < 1:
        raise ValueError(f"--chunk must be a positive number of configurations; got {args.chunk}.")
    if args.plot:
        import importlib.util

        if importlib.util.find_spec("matplotlib") is None:
            raise ValueError("--plot needs matplotlib: pip install 'jsnn[plot]'.")
    result = sweep(method, base, space, key=jax.random.key(0), chunk=args.chunk, data_dir=args.data_dir,
                   out_dir=out, resume=args.resume, progress=not args.no_progress)
    if args.plot and not result.interrupted:
        plot_sweep(result, out / "sweep.png")
    best = None if result.best is None else result.rows[result.best]
    return {"configurations": len(result.rows), "best": best, "groups": result.groups,
            "checkpoint": result.checkpoint, "results": str(out / "results.csv"), "interrupted": result.interrupted}
