"""Shared helpers for the jsnn benchmark scripts in ``bench/``.

Every implementation script of workload B1 (``bench/b1_<impl>.py``) uses these
helpers so that all of them parse the same flags, draw the same input batch,
time a training step the same way and print the same one-line JSON record.
The scripts run in two different virtual environments (``.venv`` for jsnn and
the JAX reference, ``.venv-peers`` for spyx and snnTorch), so this module uses
only the standard library and numpy, and never imports jsnn.

Workload B1 is specified in ``shared/BENCHMARKS.md``: a 784-hidden-10 MLP of
LIF neurons (decay 0.9, threshold 1, subtractive reset, fast-sigmoid surrogate
of slope 25), Bernoulli(0.2) input spikes, cross-entropy on the output spike
counts, Adam with learning rate 1e-3. One step is forward over T time steps,
backward and the parameter update.

Example:
    >>> import numpy as np
    >>> from common import b1_batch, time_steps, summarise
    >>> spikes, labels = b1_batch(T=4, batch=2, seed=0)
    >>> spikes.shape, spikes.dtype, labels.shape
    ((4, 2, 784), dtype('float32'), (2,))
    >>> state, compile_s, warmup_s, times_s, cpu_s = time_steps(lambda s: s + 1, 0, warmup=1, steps=3, block=lambda s: s)
    >>> state, len(warmup_s), len(times_s)
    (5, 1, 3)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

# Workload B1 constants (shared/BENCHMARKS.md).
N_IN = 784
N_OUT = 10
DECAY = 0.9
THRESHOLD = 1.0
SLOPE = 25.0
INPUT_RATE = 0.2
LEARNING_RATE = 1e-3

State = TypeVar("State")


def _int_at_least(minimum: int) -> Callable[[str], int]:
    """Return an argparse ``type`` that accepts integers ``>= minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {value}")
        return value

    return parse


positive_int = _int_at_least(1)
non_negative_int = _int_at_least(0)


def b1_arguments(impl: str, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command-line flags shared by every ``bench/b1_<impl>.py`` script.

    Args:
        impl: Name of the implementation, shown in ``--help``.
        argv: Arguments to parse; ``None`` reads ``sys.argv``.

    Returns:
        Namespace with integer fields ``T``, ``hidden``, ``batch``, ``steps``,
        ``warmup`` and ``seed``. A bad flag exits with status 2 and a message
        that names the flag and the accepted range (argparse's usual behaviour).

    Example:
        >>> b1_arguments("reference", ["--T", "5", "--hidden", "8"]).T
        5
    """
    parser = argparse.ArgumentParser(
        description=f"Workload B1 ({impl}): time one surrogate-gradient training step of a "
        "784-hidden-10 LIF MLP and print one JSON line.",
    )
    parser.add_argument("--T", type=positive_int, default=25, help="time steps per sample (default 25)")
    parser.add_argument("--hidden", type=positive_int, default=256, help="hidden LIF neurons (default 256)")
    parser.add_argument("--batch", type=positive_int, default=128, help="samples per step (default 128)")
    parser.add_argument("--steps", type=positive_int, default=20, help="timed steps (default 20)")
    parser.add_argument(
        "--warmup", type=non_negative_int, default=3, help="untimed steps after the first one (default 3)"
    )
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seed of data and parameters (default 0)")
    return parser.parse_args(argv)


def b1_batch(T: int, batch: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw the fixed B1 input batch, identical for every implementation.

    Args:
        T: Number of time steps.
        batch: Number of samples.
        seed: Seed of numpy's default generator.

    Returns:
        ``(spikes, labels)``: time-major float32 spikes of shape ``(T, batch, 784)``,
        each 1 with probability 0.2, and int32 class labels of shape ``(batch,)``.
    """
    rng = np.random.default_rng(seed)
    spikes = (rng.random((T, batch, N_IN)) < INPUT_RATE).astype(np.float32)
    labels = rng.integers(0, N_OUT, size=batch, dtype=np.int32)
    return spikes, labels


def time_steps(
    step: Callable[[State], State],
    state: State,
    *,
    warmup: int,
    steps: int,
    block: Callable[[State], State],
) -> tuple[State, float, list[float], list[float]]:
    """Time a training step: the first call, ``warmup`` calls, then ``steps`` calls.

    The median and percentiles reported come from the last ``steps`` calls only.
    The warmup calls are timed too, because some libraries recompile there (spyx
    recompiles in its second and third step when a weak-typed scalar parameter
    becomes strongly typed); the record shows them as ``warmup_s``.

    Each call is ``state = block(step(state))``, so ``block`` must wait until the
    step's results exist (``jax.block_until_ready``; the identity for eager
    PyTorch on CPU, which is synchronous).

    Args:
        step: One training step, mapping the state to the next state.
        state: Initial state (parameters, optimizer state, ... in any container).
        warmup: Untimed steps after the first (compiling) one.
        steps: Timed steps.
        block: Waits for a state to be computed and returns it.

    Returns:
        ``(state, compile_s, warmup_s, times_s, cpu_s)``: the final state, the wall time
        in seconds of the first call (tracing and compilation included), of each warmup
        call and of each timed call, and the process CPU time (all threads) of each
        timed call. CPU time is less sensitive than wall time to other jobs on a shared
        machine, so records carry both.
    """

    def timed(state: State) -> tuple[State, float, float]:
        start, cpu_start = time.perf_counter(), time.process_time()
        state = block(step(state))
        return state, time.perf_counter() - start, time.process_time() - cpu_start

    state, compile_s, _ = timed(state)
    warmup_s = []
    for _ in range(warmup):
        state, seconds, _ = timed(state)
        warmup_s.append(seconds)
    times_s, cpu_s = [], []
    for _ in range(steps):
        state, seconds, cpu_seconds = timed(state)
        times_s.append(seconds)
        cpu_s.append(cpu_seconds)
    return state, compile_s, warmup_s, times_s, cpu_s


def summarise(times_s: Sequence[float]) -> dict[str, float]:
    """Median, 10th and 90th percentile of step times, in milliseconds.

    Args:
        times_s: Step times in seconds (at least one).

    Returns:
        ``{"median_ms": ..., "p10_ms": ..., "p90_ms": ...}``.
    """
    if len(times_s) == 0:
        raise ValueError("summarise needs at least one step time; pass --steps 1 or more.")
    ms = np.asarray(times_s, dtype=np.float64) * 1e3
    return {
        "median_ms": float(np.median(ms)),
        "p10_ms": float(np.percentile(ms, 10)),
        "p90_ms": float(np.percentile(ms, 90)),
    }


def package_versions(names: Iterable[str]) -> dict[str, str]:
    """Installed versions of ``names`` (``"not installed"`` when absent), plus Python's.

    Args:
        names: Distribution names as pip knows them, e.g. ``["jax", "optax"]``.

    Returns:
        Mapping from each name, and ``"python"``, to its version string.
    """
    versions = {"python": sys.version.split()[0]}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def emit_b1_record(
    impl: str,
    args: argparse.Namespace,
    *,
    compile_s: float,
    warmup_s: Sequence[float],
    times_s: Sequence[float],
    cpu_s: Sequence[float],
    versions: dict[str, str],
    device: str,
    loss_first: float,
    loss_last: float,
) -> dict[str, Any]:
    """Print the one JSON line that every B1 script writes on stdout, and return it.

    Args:
        impl: Implementation name (``"reference"``, ``"jsnn"``, ``"spyx"``, ...).
        args: Parsed flags from :func:`b1_arguments`.
        compile_s: Wall time of the first step in seconds.
        warmup_s: Wall time of each warmup step in seconds.
        times_s: Wall time of each timed step in seconds.
        cpu_s: Process CPU time of each timed step in seconds.
        versions: Package versions, from :func:`package_versions`.
        device: ``"cpu"`` or ``jax.devices()[0].device_kind``.
        loss_first: Loss of the first step (sanity check: finite).
        loss_last: Loss of the last step (sanity check: finite; training moves it).

    Returns:
        The record that was printed.

    Raises:
        ValueError: If a loss is not finite, which means the implementation is broken
            and its timing is meaningless.
    """
    if not (np.isfinite(loss_first) and np.isfinite(loss_last)):
        raise ValueError(
            f"{impl}: loss is not finite (first {loss_first}, last {loss_last}); "
            "the implementation is broken, so no timing is reported."
        )
    record = {
        "impl": impl,
        "T": args.T,
        "hidden": args.hidden,
        "batch": args.batch,
        "compile_s": compile_s,
        **summarise(times_s),
        "cpu_median_ms": float(np.median(cpu_s)) * 1e3,
        "versions": versions,
        "device": device,
        "steps": args.steps,
        "warmup": args.warmup,
        "warmup_s": [float(s) for s in warmup_s],
        "seed": args.seed,
        "loss_first": float(loss_first),
        "loss_last": float(loss_last),
    }
    print(json.dumps(record), flush=True)
    return record


def run_worker_process(cmd: Sequence[str], *, cwd: Path, timeout: float) -> dict[str, Any]:
    """Run one benchmark worker; ``{"status": "ok", **its last stdout line as JSON}`` or a failure note."""
    import subprocess

    try:
        proc = subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"status": "failed", "note": f"timed out after {timeout} s (raise --timeout)"}
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode != 0 or not lines:
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        return {"status": "failed", "note": f"exit status {proc.returncode}: {tail}"}
    try:
        record = json.loads(lines[-1])
    except json.JSONDecodeError:
        return {"status": "failed", "note": f"last stdout line is not JSON: {lines[-1][:200]!r}"}
    return {"status": "ok", **record}


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and ``os.replace``.

    A reader never sees a half-written file, and an interrupted write leaves the
    old file untouched. The file keeps the permissions of the file it replaces (a
    new file gets the usual ``0o666`` less the umask, not ``mkstemp``'s ``0o600``).

    Args:
        path: Destination file; its folder is created if missing.
        text: Content, written as UTF-8.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Format a Markdown (GitHub) table with columns padded for reading in a terminal.

    Args:
        headers: Column titles.
        rows: Cells as strings, one sequence per row, as many as ``headers``.

    Returns:
        The table, one line per row, without a trailing newline.

    Example:
        >>> print(markdown_table(["a", "b"], [["1", "22"]]))
        | a | b  |
        | - | -- |
        | 1 | 22 |
    """
    rows = [list(row) for row in rows]
    for row in rows:
        if len(row) != len(headers):
            raise ValueError(f"row {row} has {len(row)} cells; the table has {len(headers)} columns.")
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])
