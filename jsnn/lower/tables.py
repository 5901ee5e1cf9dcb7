"""Lowering a trained network to integer tables, and the table files.

``lower(net, target, calibration_inputs)`` quantises a feed-forward spiking network
(``Linear`` followed by ``LIF``/``IF``/``CubaLIF``, ending in an ``LI`` or spiking readout)
for a :class:`~jsnn.lower.profiles.Profile` and returns :class:`Tables` (a manifest and
named integer arrays) with a per-layer calibration report.

Scales (ALGORITHMS §5.3): layer l's weights get ``s_l`` (per layer or per output
channel); its bias, threshold and states get ``S_l = S_in(l) * s_l`` where ``S_in`` is the
input count scale ``(2**input_bits - 1) / x_max`` for the first layer and 1 for spike
inputs. ``s_l`` is the largest value (a power of two with ``pow2``) such that

* the weights fit ``weight_bits`` and the biases ``bias_bits``;
* the threshold fits its register (Xylo-style rescaling instead of clipping);
* states fit their registers (times ``2**threshold_shift``): a wrapping state, a synaptic
  current and the ``LI`` readout keep the peak seen on the calibration data within
  ``headroom`` of the range; a *saturating* spiking state need only hold the threshold plus
  the largest one-step drive seen (c, or u for CubaLIF), so a neuron never saturates
  below threshold, and higher excursions saturate. Sizing the range by the peak instead
  costs the weights their precision: on MNIST (direct input, Xylo-like 16-bit state) the
  peak |v| is ~50 thresholds (strongly inhibited or saturated-rate neurons), which left
  the 8-bit weights ~5 bits and 91 % hidden-spike agreement; with this rule the weights
  keep 8 bits and agreement rises to ~96 % (the rest is the shift decay and 4-bit input).
  The report gives each layer's ``saturation_fraction`` on the calibration data.
* **Weight exponent** (targets with ``weight_exp_max``, e.g. Loihi-like). The integer weights
  are ``mantissa << e`` with the mantissas at ``s_l`` and the layer's states, bias and
  threshold at ``S_l = S_in(l) s_l 2**e``, e the largest (<= ``weight_exp_max``) that keeps
  the calibration peaks of v and u within ``headroom`` of their ranges, the threshold and bias
  in their registers and every sum within int32. The states then use their range: with the
  round-toward-zero decay a state of a few weight units otherwise loses a whole unit per step
  (at dt = tau/100 that is several times its true decay; the exact Yin-Yang net at dt = 0.05
  read 93.4 % on integers against 94.5 % for its float shadow, and equals it with the exponent).
* **Decay compensation** (opt-in). A decay the target cannot hold (0.9 as a shift decay
  is 0.875) lowers a leaky neuron's DC gain ``1 / (1 - delta)``; ``compensate_decay=True``
  multiplies the layer's weights and bias by ``(1 - delta_eff) / (1 - delta)`` to restore
  it (``decay_gain``). It trades spike fidelity for accuracy: on a digits BPTT net trained
  with decay 0.9 it took the Xylo-like 8-bit gap from +0.56 to 0.00 points but the hidden
  spike agreement with the float model from 92 % to 78 %. Nets trained with a decay the
  target holds exactly (the BPTT default 0.875) need neither.

Files (``save_tables``): ``tables.npz`` (int32 arrays, float64 scales), ``manifest.json``
(format ``jsnn-lower-tables`` version 1: layer order, shapes, dtypes, bit widths, scales,
decays, thresholds, reset, dt, target, jsnn version, a sha256 of each array), a C header
``jsnn_net.h`` and a C program ``jsnn_net.c``. ``load_tables`` verifies every checksum,
shape and dtype and refuses a manifest that does not match its arrays.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from jsnn.checkpoint import atomic_write_bytes
from jsnn.lower.profiles import Profile, get_profile
from jsnn.lower.quantize import decay_code, decay_effective, pow2_floor, quantize, round_mode, signed_max
from jsnn.neurons import IF, LI, LIF, CubaLIF
from jsnn.nn import Linear, Sequential

__all__ = ["FORMAT", "FORMAT_VERSION", "LoweringError", "Tables", "TablesError", "load_tables", "lower",
           "quantize_inputs", "save_tables", "shadow_network"]

FORMAT = "jsnn-lower-tables"
# 2: the manifest carries an integrity record (checksums of every field and of tables.npz).
# 3: each layer's weights are mantissa << weight_exp (an older reader would run them unshifted, so it must refuse).
FORMAT_VERSION = 3
_ACC_LIMIT = 2**30  # static bound on every pre-overflow sum (int32 with a guard bit)

SEMANTICS = [
    "Integers are int32; x_t are input counts in [0, input.max] (layer 0) or spikes (later layers).",
    "c_t = (W x_t + b) << k, k = threshold_shift; W is (out, in) = mantissa << weight_exp, |mantissa| <= weight_max.",
    "cuba: u_t = ovf_u(D_syn(u_{t-1}) + c_t); other kinds: u_t = c_t.",
    "subtract, leak_first: v_t = ovf_v(D_mem(v_{t-1}) - (reset << k) s_{t-1} + u_t).",
    "subtract, reset_first: v_t = ovf_v(D_mem(v_{t-1} - (reset << k) s_{t-1}) + u_t).",
    "zero: v_t = ovf_v(D_mem((1 - s_{t-1}) v_{t-1}) + u_t); li: v_t = ovf_v(D_mem(v_{t-1}) + u_t), no spikes.",
    "s_t = 1[v_t > (threshold << k)] for cmp '>', 1[v_t >= (threshold << k)] for '>='.",
    "D: none v; shift v - (v >> code) (floor); mul12_rtz sign(v)((|v| (4096 - code)) >> 12); "
    "mul_u32_floor floor(v code / 2^32).",
    "ovf wrap: two's complement to the width; saturate: clip to +-(2^(bits-1) - 1).",
    "A float value is the integer divided by the layer's scale (per output neuron).",
    "decay_gain is informational: W and b already include it (the DC gain of an inexact decay restored).",
]


class LoweringError(ValueError):
    """The network cannot be lowered to the target (layer type, range, sign, structure)."""


class TablesError(ValueError):
    """Table files are missing, corrupt, or the manifest does not match the arrays."""


class Tables(NamedTuple):
    """Integer tables of a lowered network.

    Attributes:
      manifest: JSON-ready description (see the module docstring and ``SEMANTICS``).
      arrays: name -> numpy array (``layer{i}.weight``, ``.bias``, ``.threshold``,
        ``.reset``, ``.scale``).
    """

    manifest: dict[str, Any]
    arrays: dict[str, np.ndarray]


def _param(value, n: int, what: str) -> np.ndarray:
    arr = np.broadcast_to(np.asarray(value, np.float64), (n,)).copy()
    if not np.isfinite(arr).all():
        raise LoweringError(f"{what} contains NaN or infinity; check the trained network.")
    return arr


def _scalar_decay(value, what: str) -> float:
    arr = np.unique(np.asarray(value, np.float64))
    if arr.size != 1:
        raise LoweringError(f"{what} differs between neurons ({arr.size} values); targets hold one decay per "
                            "layer: train with a scalar decay.")
    return float(arr[0])


def _layer_pairs(net, profile: Profile) -> list[tuple[Linear, Any]]:
    if not isinstance(net, Sequential):
        raise LoweringError(f"expected a spiking network (jsnn.nn.Sequential); got {type(net).__name__}. "
                            "Pass a checkpoint written by `jsnn train`.")
    layers = list(net.layers)
    if len(layers) < 2 or len(layers) % 2:
        raise LoweringError("a lowerable network alternates Linear and neuron layers "
                            f"(Linear, LIF, ..., Linear, LI); got {[type(x).__name__ for x in layers]}.")
    pairs = []
    for i in range(0, len(layers), 2):
        lin, neuron = layers[i], layers[i + 1]
        for j, layer in ((i, lin), (i + 1, neuron)):
            name = type(layer).__name__
            allowed = Linear if j % 2 == 0 else (LIF, IF, CubaLIF, LI)
            if not isinstance(layer, allowed) or (j % 2 and name not in profile.neurons):
                raise LoweringError(
                    f"target {profile.name!r} cannot hold layer {j} ({name}); it holds Linear layers followed "
                    f"by {', '.join(profile.neurons)} neurons, in a feed-forward chain.")
        if isinstance(neuron, LI) and i + 2 != len(layers):
            raise LoweringError(f"layer {i + 1} is an LI readout but is not the last layer.")
        if getattr(neuron, "reset", "subtract") == "none":
            raise LoweringError(f"layer {i + 1} has reset='none'; targets reset by 'subtract' or 'zero'.")
        pairs.append((lin, neuron))
    if not any(not isinstance(n, LI) for _, n in pairs):
        raise LoweringError("the network has no spiking layer; it is not a spiking net.")
    return pairs


def _decay_codes(neuron, profile: Profile, index: int) -> dict[str, dict[str, Any]]:
    """The target's encoding of a neuron layer's decays: ``{"mem": ..., "syn": ...}`` records."""
    cuba = isinstance(neuron, CubaLIF)
    decays = {"mem": neuron.decay_mem if cuba else getattr(neuron, "decay", 1.0)}
    if cuba:
        decays["syn"] = neuron.decay_syn
    codes = {}
    for name, value in decays.items():
        trained = _scalar_decay(value, f"layer {index} decay" + ("_syn" if name == "syn" else ""))
        try:
            encoding, code = decay_code(trained, profile.decay_encoding)
        except ValueError as err:
            raise LoweringError(f"layer {index}: {err}") from None
        codes[name] = {"encoding": encoding, "code": code, "trained": trained,
                       "effective": decay_effective(encoding, code)}
    return codes


def _dc_gain(codes: dict[str, dict[str, Any]]) -> float:
    """``prod (1 - delta_eff) / (1 - delta)``: restores the steady state of a leaky layer under a constant input."""
    gain = 1.0
    for record in codes.values():
        if record["trained"] < 1.0:
            gain *= (1.0 - record["effective"]) / (1.0 - record["trained"])
    return gain


def _effective_decays(neuron, mem: dict[str, Any], syn: dict[str, Any] | None, dtype) -> dict[str, Array]:
    """The ``dataclasses.replace`` changes that give ``neuron`` the decays a target realises."""
    if isinstance(neuron, CubaLIF):
        return {"decay_mem": jnp.asarray(mem["effective"], dtype), "decay_syn": jnp.asarray(syn["effective"], dtype)}
    return {"decay": jnp.asarray(mem["effective"], dtype)} if hasattr(neuron, "decay") else {}


def _as_target_runs(lin: Linear, neuron, codes: dict[str, dict[str, Any]], gain: float) -> tuple[Linear, Any]:
    """The layer pair with its weights and bias times ``gain`` and the decays the target realises."""
    if gain != 1.0:
        lin = eqx.tree_at(lambda m: m.weight, lin, lin.weight * gain)
        if lin.bias is not None:
            lin = eqx.tree_at(lambda m: m.bias, lin, lin.bias * gain)
    changes = _effective_decays(neuron, codes["mem"], codes.get("syn"), jnp.asarray(lin.weight).dtype)
    return lin, dataclasses.replace(neuron, **changes)


def _calibration_inputs(calibration_inputs, n_in: int) -> np.ndarray:
    x = np.asarray(calibration_inputs)
    if x.ndim != 3 or x.shape[-1] != n_in:
        raise ValueError(f"calibration inputs must have shape (batch, time, {n_in}); got {x.shape}. "
                         "Encode samples first (e.g. jsnn.encode.direct) and stack a few batches.")
    if not np.issubdtype(x.dtype, np.number) and x.dtype != np.bool_:
        raise TypeError(f"calibration inputs must be numeric; got {x.dtype}.")
    x = x.astype(np.float64)
    if not np.isfinite(x).all():
        raise ValueError("calibration inputs contain NaN or infinity; clean the data first.")
    if (x < 0).any():
        raise ValueError("calibration inputs must be non-negative: the first layer receives unsigned counts. "
                         "Shift or rectify the inputs.")
    return x


def quantize_inputs(tables: Tables, x: Float[Array, "... T n"]) -> np.ndarray:
    """Analog inputs in ``[0, x_max]`` to the integer counts the tables expect.

    ``q = clip(round_half_even(x * input.scale), 0, input.max)`` (as recorded in the manifest).

    Example:
      >>> # counts = quantize_inputs(tables, encoded_batch)   # (B, T, n) int32
    """
    spec = tables.manifest["input"]
    q, _ = quantize(np.asarray(x, np.float64), spec["scale"], spec["max"], lower=0)
    return q.astype(np.int32)


def _peaks(pairs, x: np.ndarray) -> list[dict[str, np.ndarray]]:
    """Calibration statistics of the float model, per layer.

    ``v``: per-neuron peak |v|; ``drive``: per-neuron peak positive input to v in one step
    (c, or u for CubaLIF); ``trace``: all potentials ``(B, T, n)``; ``u``: peak |u| (CubaLIF).
    """
    out = []
    h = x
    for lin, neuron in pairs:
        c = h @ np.asarray(lin.weight, np.float64).T
        if lin.bias is not None:
            c = c + np.asarray(lin.bias, np.float64)
        dtype = jnp.asarray(lin.weight).dtype
        outputs, trace = jax.vmap(neuron)(jnp.asarray(c, dtype))
        v = np.asarray(trace.v, np.float64)
        peak = {"v": np.abs(v).max(axis=(0, 1)), "drive": np.maximum(c, 0).max(axis=(0, 1)), "trace": v}
        if isinstance(neuron, CubaLIF):
            d = _scalar_decay(neuron.decay_syn, "decay_syn")
            u = np.zeros(c.shape[::2])
            pu = np.zeros(c.shape[-1])
            drive = np.zeros(c.shape[-1])
            for t in range(c.shape[1]):
                u = d * u + c[:, t]
                pu = np.maximum(pu, np.abs(u).max(axis=0))
                drive = np.maximum(drive, u.max(axis=0))
            peak["u"] = pu
            peak["drive"] = drive
        out.append(peak)
        h = np.asarray(outputs, np.float64)
    return out


def _weight_exponent(profile: Profile, s: np.ndarray, room: np.ndarray, w: np.ndarray, b: np.ndarray, theta,
                     x_bound: int, s_in: float) -> int:
    """The largest weight exponent e <= ``profile.weight_exp_max`` with ``s * 2**e <= room`` for every neuron.

    ``room`` is each neuron's smallest bound of the state unit (bias, threshold and state registers, peaks
    within headroom); e also keeps the worst-case sum within the int32 simulator's bound. A finer state
    unit shrinks the relative error of the round-toward-zero decay on small states: with dt/tau ~ 0.01 a
    current of a few weight units otherwise loses a whole unit per step, several times its true decay.
    """
    ratio = float(np.min(room / s))
    if not profile.weight_exp_max or not np.isfinite(ratio):
        return 0
    exp = int(np.clip(np.floor(np.log2(ratio)), 0, profile.weight_exp_max))
    k, bits = profile.threshold_shift, max(profile.state_bits, profile.current_bits)
    l1 = np.abs(np.clip(round_mode(w * s[:, None], profile.rounding), -profile.weight_max, profile.weight_max)).sum(1)
    while exp > 0:
        big = s * 2**exp * s_in
        acc = (l1.max() * 2**exp * x_bound + np.abs(round_mode(b * big, profile.rounding)).max()
               + (0 if theta is None else round_mode(theta * big, profile.rounding).max())) * 2**k
        if acc + 2 ** (bits - 1) <= 2**31 - 1:
            break
        exp -= 1
    return exp


def _reduce(values: np.ndarray, per_channel: bool) -> np.ndarray:
    return values if per_channel else np.full_like(values, values.min())


def lower(
    net: Sequential,
    target: str | Profile,
    calibration_inputs: Float[Array, "B T n_in"],
    *,
    x_max: float | None = None,
    headroom: float = 0.5,
    dt: float = 1e-3,
    compensate_decay: bool = False,
    state_slack: float = 1.0,
    weight_slack: float = 1.0,
    scales: Sequence[Float[np.ndarray, " n_out"]] | None = None,
    weight_exps: Sequence[int] | None = None,
) -> tuple[Tables, list[dict[str, Any]]]:
    """Quantise ``net`` for ``target`` and calibrate its scales on a few input batches.

    Args:
      net: a feed-forward :class:`~jsnn.nn.Sequential` of ``Linear`` + neuron pairs.
      target: a profile name (see :data:`~jsnn.lower.profiles.PROFILES`) or a Profile.
      calibration_inputs: encoded inputs ``(B, T, n_in)``, non-negative (e.g. direct code).
      x_max: the input value mapped to the largest count (default: the calibration maximum).
      headroom: fraction of each state range the calibrated peak may use.
      dt: the time step in seconds (recorded; used by NIR).
      compensate_decay: where the target cannot hold a trained decay exactly (a shift
        decay realises 0.875 for 0.9), scale the layer's weights and bias by the DC-gain
        ratio ``prod (1 - delta_eff) / (1 - delta)`` over its decays, so that a constant
        input still settles at the trained potential (reported as ``decay_gain``; 1 where
        the decay is exact).
      state_slack: on a saturating target, let the scale grow until the state holds only
        ``(threshold + peak drive) / state_slack``: finer weights, more saturation (see
        :func:`~jsnn.lower.calibrate.lower_calibrated`, which picks it on data).
      weight_slack: let the scale grow to ``weight_slack`` times the one that maps the
        largest weight to the largest code, clipping the few largest weights (reported as
        ``weight_clip_fraction``) for finer steps on all the others.
      scales: one array of per-output-neuron scales ``S_l`` per layer (the ``layer{l}.scale``
        arrays of earlier tables) to use instead of choosing them; with ``x_max`` from the
        same tables this re-lowers a network onto an earlier lowering's grid (see
        :func:`~jsnn.lower.finetune.fit_to_tables`). The parameter checks still run.
      weight_exps: with ``scales``, each layer's weight exponent (the ``weight_exp`` of the
        earlier tables' layers; default 0).

    Returns:
      ``(tables, report)``: the integer tables and one report dict per layer (scale, clip
      fractions, peak state against the range, overflow risk, decay trained/effective).

    Raises:
      UnknownTargetError: unknown target name.
      LoweringError: a layer the target cannot hold, a parameter out of range or sign.
      ValueError: bad calibration inputs.

    References:
      Pedersen et al., "Neuromorphic intermediate representation", arXiv 2311.14641.

    Example:
      >>> import jax, numpy as np
      >>> from jsnn.nn import mlp
      >>> net = mlp(4, [3], 2, key=jax.random.key(0))
      >>> tables, report = lower(net, "xylo", np.ones((2, 5, 4)))
      >>> tables.arrays["layer0.weight"].dtype, report[0]["kind"]
      (dtype('int32'), 'lif')
    """
    profile = get_profile(target)
    if not 0 < headroom <= 1:
        raise ValueError(f"headroom must be in (0, 1]; got {headroom}.")
    if not (state_slack >= 1 and weight_slack >= 1):
        raise ValueError(f"state_slack and weight_slack must be >= 1; got {state_slack}, {weight_slack}.")
    pairs = _layer_pairs(net, profile)
    if scales is not None and len(scales) != len(pairs):
        raise ValueError(f"scales needs one array per layer ({len(pairs)}); got {len(scales)}.")
    if weight_exps is not None and (scales is None or len(weight_exps) != len(pairs)):
        raise ValueError(f"weight_exps goes with scales, one per layer ({len(pairs)}); got {weight_exps}.")
    decay_codes = [_decay_codes(neuron, profile, 2 * i + 1) for i, (_, neuron) in enumerate(pairs)]
    gains = [_dc_gain(codes) if compensate_decay else 1.0 for codes in decay_codes]
    pairs = [_as_target_runs(lin, neuron, codes, gain) for (lin, neuron), codes, gain in zip(pairs, decay_codes, gains)]
    x = _calibration_inputs(calibration_inputs, pairs[0][0].in_features)
    x_max = float(x.max()) if x_max is None else float(x_max)
    if not x_max > 0:
        raise ValueError("the calibration inputs are all zero; pass real data or x_max.")
    in_scale = profile.input_max / x_max
    xq, _ = quantize(x, in_scale, profile.input_max, lower=0)
    peaks = _peaks(pairs, xq / in_scale)
    k = profile.threshold_shift
    per_channel = profile.scale_mode == "per_channel"
    arrays: dict[str, np.ndarray] = {}
    layers, report = [], []
    for i, ((lin, neuron), peak, codes, gain) in enumerate(zip(pairs, peaks, decay_codes, gains, strict=True)):
        n_out, n_in = lin.out_features, lin.in_features
        kind = {"LI": "li", "CubaLIF": "cuba"}.get(type(neuron).__name__, "lif")
        spiking = kind != "li"
        w = np.asarray(lin.weight, np.float64)
        if not np.isfinite(w).all():
            raise LoweringError(f"layer {2 * i} has NaN or infinite weights.")
        b = _param(0.0 if lin.bias is None else lin.bias, n_out, f"layer {2 * i} bias")
        s_in = in_scale if i == 0 else 1.0
        x_bound = profile.input_max if i == 0 else 1
        with np.errstate(divide="ignore"):
            limits = [_reduce(weight_slack * profile.weight_max / np.abs(w).max(axis=1), per_channel),
                      signed_max(profile.bias_bits) / (s_in * np.abs(b))]
            room = list(limits[1:])  # what bounds the state unit below the weights' (the weight exponent)
            if spiking:
                theta = _param(neuron.threshold, n_out, f"layer {2 * i + 1} threshold")
                if (theta <= 0).any():
                    raise LoweringError(f"layer {2 * i + 1} has a non-positive threshold; targets need theta > 0.")
                limits.append((profile.threshold_max - 1) / (s_in * theta))
                room.append(limits[-1])
            saturating = spiking and profile.overflow == "saturate"
            # a saturating spiking state need only hold the threshold plus one step's peak drive, so a
            # neuron below threshold never saturates on its way up; larger excursions saturate (reported)
            if saturating:  # a state below 1 + 2^-8 thresholds could not exceed the threshold
                state_need = np.maximum((theta + peak["drive"]) / state_slack, theta * (1 + 2.0**-8))
            else:
                state_need = peak["v"] / headroom
            limits.append(signed_max(profile.state_bits) / (s_in * state_need * 2**k))
            # the exponent never saturates a state the calibration saw: peaks stay within headroom
            room.append(signed_max(profile.state_bits) / (s_in * np.maximum(peak["v"] / headroom, state_need) * 2**k))
            if "u" in peak:
                limits.append(headroom * signed_max(profile.current_bits) / (s_in * peak["u"] * 2**k))
                room.append(limits[-1])
        s = np.min(np.stack([np.broadcast_to(lim, (n_out,)) for lim in limits]), axis=0)
        s = _reduce(np.where(np.isfinite(s), s, 1.0), per_channel)
        if profile.pow2:
            s = pow2_floor(s)
        if scales is not None:
            exp = 0 if weight_exps is None else int(weight_exps[i])
            s = np.broadcast_to(np.asarray(scales[i], np.float64), (n_out,)) / (s_in * 2**exp)
        else:
            exp = _weight_exponent(profile, s, np.min(np.stack([np.broadcast_to(r, (n_out,)) for r in room]), axis=0),
                                   w, b, theta if spiking else None, x_bound, s_in)
        big = s * 2**exp * s_in
        wq, w_clip = quantize(w, s[:, None], profile.weight_max, mode=profile.rounding)
        wq = wq << exp
        bq, b_clip = quantize(b, big, signed_max(profile.bias_bits), mode=profile.rounding)
        if profile.weight_sign == "excitatory" and (wq < 0).any() or profile.weight_sign == "inhibitory" and (
                wq > 0).any():
            raise LoweringError(f"target {profile.name!r} holds only {profile.weight_sign} weights but layer "
                                f"{2 * i} has weights of the other sign.")
        # static bound of every pre-overflow sum: max row L1 norm of the weights times the input bound
        acc = (int(np.abs(wq).sum(axis=1).max()) * x_bound + int(np.abs(bq).max())) * 2**k
        prefix = f"layer{i}."
        arrays[prefix + "weight"] = wq.astype(np.int32)
        arrays[prefix + "bias"] = bq.astype(np.int32)
        arrays[prefix + "scale"] = big.astype(np.float64)
        entry: dict[str, Any] = {
            "index": i, "kind": kind, "source": type(neuron).__name__, "in_features": n_in, "out_features": n_out,
            "input_max": x_bound, "weight_max": profile.weight_max, "weight_exp": exp, "threshold_shift": k,
            "decay_mem": codes["mem"], "decay_syn": codes.get("syn"), "decay_gain": gain,
            "state_bits": profile.state_bits, "overflow": profile.overflow,
            "current_bits": profile.current_bits, "current_overflow": profile.current_overflow,
        }
        row: dict[str, Any] = {"layer": i, "kind": kind, "scale_min": float(big.min()), "scale_max": float(big.max()),
                               "weight_exp": exp,
                               "weight_clip_fraction": w_clip, "bias_clip_fraction": b_clip,
                               "decay_trained": codes["mem"]["trained"], "decay_effective": codes["mem"]["effective"],
                               "decay_gain": gain}
        state_peak = float((peak["v"] * big).max()) * 2**k
        saturated = np.abs(peak["trace"]) * big * 2**k > signed_max(profile.state_bits)
        row.update(peak_state=state_peak, state_max=signed_max(profile.state_bits),
                   state_policy="saturate_above_threshold_plus_drive" if saturating else "peak_within_headroom",
                   saturation_fraction=float(saturated.mean()))
        if spiking:
            tq, t_clip = quantize(theta, big, profile.threshold_max, mode=profile.rounding)
            if t_clip or (tq < 1).any():
                raise LoweringError(f"layer {2 * i + 1}: thresholds do not fit {profile.threshold_bits} bits at the "
                                    "scale the weights need; lower the threshold or use a wider target.")
            model_cmp = neuron.cmp
            compare = tq + {(">", ">="): 1, (">=", ">"): -1}.get((model_cmp, profile.spike_cmp), 0)
            arrays[prefix + "threshold"] = compare.astype(np.int32)
            arrays[prefix + "reset"] = tq.astype(np.int32)
            acc += int(tq.max()) * 2**k
            order = getattr(neuron, "order", "leak_first")
            entry.update(reset=profile.reset, model_reset=neuron.reset, order=order, cmp=profile.spike_cmp,
                         model_cmp=model_cmp)
            row.update(threshold_min=int(tq.min()), threshold_max=int(tq.max()),
                       reset_mismatch=neuron.reset != profile.reset)
        if "u" in peak:
            row.update(peak_current=float((peak["u"] * big).max()) * 2**k,
                       current_max=signed_max(profile.current_bits))
        if acc + 2 ** (max(profile.state_bits, profile.current_bits) - 1) > 2**31 - 1:
            raise LoweringError(f"layer {2 * i}: the worst-case sum ({acc}) of {n_in} inputs does not fit the int32 "
                                "simulator with a guard bit; use fewer weight or input bits, or a narrower state.")
        row["overflow_risk"] = bool((not saturating and row["peak_state"] > headroom * row["state_max"])
                                    or row.get("peak_current", 0) > headroom * row.get("current_max", 1))
        entry["arrays"] = sorted(name for name in arrays if name.startswith(prefix))
        layers.append(entry)
        report.append(row)
    from jsnn import __version__

    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "jsnn_version": __version__,
        "target": profile.name, "profile": profile.to_dict(), "dt": float(dt),
        "input": {"features": pairs[0][0].in_features, "bits": profile.input_bits, "max": profile.input_max,
                  "x_max": x_max, "scale": in_scale,
                  "encoding": "counts per step: clip(round_half_even(x * scale), 0, max) of the analog "
                              "(direct-encoded) input; spikes are counts of 0 or 1"},
        "layers": layers,
        "output": {"kind": layers[-1]["kind"], "features": layers[-1]["out_features"],
                   "decode": "float value = integer / scale (per output neuron)"},
        "semantics": SEMANTICS,
    }
    manifest["arrays"] = _describe(arrays)
    return Tables(manifest, arrays), report


def shadow_network(net: Sequential, tables: Tables, *, dtype=jnp.float32) -> Sequential:
    """The float *shadow* of lowered tables: ``net`` with every parameter the tables realise.

    Weights, biases and thresholds are the dequantised table entries (``W_q / s_l``,
    ``b_q / S_l``, ``theta_q / S_l``), decays the effective ones of their encodings (e.g.
    0.875 for a trained 0.9 as a shift), the reset is the target's. Run it on the
    dequantised inputs ``counts / input.scale``: it then differs from the integer
    simulator only by the rounding inside the integer decay and by saturation
    (ALGORITHMS §5.6 item 1), so comparing float vs integer against the shadow separates
    quantisation effects from simulator defects.

    Args:
      net: the network that was lowered.
      tables: its tables (from :func:`lower`).
      dtype: float dtype of the shadow's parameters.

    Returns:
      A :class:`~jsnn.nn.Sequential` of the same structure.

    Example:
      >>> import jax, numpy as np
      >>> from jsnn.nn import mlp
      >>> net = mlp(4, [3], 2, key=jax.random.key(0))
      >>> tables, _ = lower(net, "xylo", np.ones((1, 5, 4)))
      >>> float(shadow_network(net, tables).layers[1].decay)
      0.875
    """
    s_in = tables.manifest["input"]["scale"]
    layers = list(net.layers)
    for entry in tables.manifest["layers"]:
        i, prefix = entry["index"], f"layer{entry['index']}."
        big = tables.arrays[prefix + "scale"]
        w = tables.arrays[prefix + "weight"] * ((s_in if i == 0 else 1.0) / big)[:, None]
        lin = layers[2 * i]
        lin = eqx.tree_at(lambda m: m.weight, lin, jnp.asarray(w, dtype))
        if lin.bias is not None:
            lin = eqx.tree_at(lambda m: m.bias, lin, jnp.asarray(tables.arrays[prefix + "bias"] / big, dtype))
        layers[2 * i] = lin
        neuron = layers[2 * i + 1]
        changes = _effective_decays(neuron, entry["decay_mem"], entry["decay_syn"], dtype)
        if entry["kind"] != "li":
            changes.update(threshold=jnp.asarray(tables.arrays[prefix + "reset"] / big, dtype), reset=entry["reset"])
        layers[2 * i + 1] = dataclasses.replace(neuron, **changes)
    return Sequential(layers)


def _describe(arrays: dict[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    return {name: {"shape": list(a.shape), "dtype": a.dtype.name,
                   "sha256": hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()}
            for name, a in sorted(arrays.items())}


def _field_digests(manifest: dict[str, Any]) -> dict[str, str]:
    """Checksums of every field of a manifest, by path (``dt``, ``profile.weight_bits``, ``layers[0].decay``)."""
    fields: dict[str, Any] = {}
    for key, value in manifest.items():
        if isinstance(value, dict):
            fields.update({f"{key}.{k}": v for k, v in value.items()})
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            fields.update({f"{key}[{i}].{k}": v for i, item in enumerate(value) for k, v in item.items()})
        else:
            fields[key] = value
    canonical = lambda v: json.dumps(v, sort_keys=True, separators=(",", ":")).encode()  # noqa: E731
    return {path: hashlib.sha256(canonical(v)).hexdigest()[:16] for path, v in sorted(fields.items())}


def save_tables(tables: Tables, out_dir: str | os.PathLike) -> dict[str, str]:
    """Write ``tables.npz``, ``manifest.json``, ``jsnn_net.h`` and ``jsnn_net.c`` into ``out_dir``.

    Every file is rendered in memory first and written atomically (temporary name, then
    rename), so an error leaves no partial output. The manifest gets an ``integrity`` record:
    a checksum of every field (so :func:`load_tables` refuses an edited threshold shift, decay,
    ``dt`` or profile field and names it) and of the ``tables.npz`` file.

    Returns:
      file kind -> path.
    """
    from jsnn.lower.cgen import c_header, c_program

    if _describe(tables.arrays) != tables.manifest.get("arrays"):
        raise TablesError("the manifest does not describe these arrays; rebuild the tables with lower().")
    buffer = io.BytesIO()
    np.savez(buffer, **tables.arrays)
    npz = buffer.getvalue()
    manifest = {**tables.manifest, "integrity": {"fields": _field_digests(tables.manifest),
                                                 "tables_npz_sha256": hashlib.sha256(npz).hexdigest()}}
    files = {
        "tables": ("tables.npz", npz),
        "manifest": ("manifest.json", json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n"),
        "header": ("jsnn_net.h", c_header(tables).encode()),
        "program": ("jsnn_net.c", c_program().encode()),
    }
    out = Path(out_dir)
    for name, data in files.values():
        atomic_write_bytes(out / name, data)
    return {kind: str(out / name) for kind, (name, _) in files.items()}


def load_tables(path: str | os.PathLike) -> Tables:
    """Read tables written by :func:`save_tables`, verifying the manifest against the arrays.

    Raises:
      TablesError: a file is missing or damaged, the format is unknown, a manifest field was
        edited (the message names it), or an array's name, shape, dtype or checksum differs
        from the manifest.
    """
    folder = Path(path)
    mpath, apath = folder / "manifest.json", folder / "tables.npz"
    for p in (mpath, apath):
        if not p.is_file():
            raise TablesError(f"{p} does not exist; pass the folder that `jsnn lower --out` wrote.")
    try:
        manifest = json.loads(mpath.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise TablesError(f"{mpath} is not valid JSON ({err}).") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise TablesError(f"{mpath} is not a jsnn tables manifest.")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise TablesError(f"{mpath} has format version {manifest.get('format_version')}; this jsnn reads "
                          f"{FORMAT_VERSION}.")
    integrity = manifest.pop("integrity", None)
    if not isinstance(integrity, dict) or not isinstance(integrity.get("fields"), dict):
        raise TablesError(f"{mpath} has no integrity record; it was edited or not written by `jsnn lower`.")
    stored, actual = integrity["fields"], _field_digests(manifest)
    edited = sorted(p for p in set(stored) | set(actual) if stored.get(p) != actual.get(p))
    if edited:
        raise TablesError(f"{mpath} was edited: {', '.join(edited)} no longer match(es) the values `jsnn lower` "
                          "wrote; lower the checkpoint again instead of editing the tables.")
    try:
        with np.load(apath, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise TablesError(f"{apath} is damaged: not a readable npz file ({err}).") from None
    described = _describe(arrays)
    expected = manifest.get("arrays", {})
    if described != expected:
        bad = sorted(n for n in set(described) | set(expected) if described.get(n) != expected.get(n))
        raise TablesError(f"the manifest does not match the arrays in {apath} (names, shapes, dtypes or "
                          f"checksums differ for {bad}); the files were altered or mixed up.")
    if hashlib.sha256(apath.read_bytes()).hexdigest() != integrity.get("tables_npz_sha256"):
        raise TablesError(f"{apath} is damaged or was altered (its checksum does not match the manifest); "
                          "lower the checkpoint again.")
    try:
        Profile.from_dict(manifest["profile"])
    except (TypeError, ValueError, KeyError) as err:
        raise TablesError(f"{mpath} holds an invalid profile ({err}).") from None
    return Tables(manifest, arrays)
