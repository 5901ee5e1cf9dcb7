"""Target profiles: the fixed-point format record of a neuromorphic chip family.

A :class:`Profile` says how a target stores and updates a network (ALGORITHMS §5.1):
weight bits and sign, scale granularity, threshold width and shift, the decay encoding,
the width and overflow rule of each state, the spike comparison, the reset, the
rounding of parameters and the width of the integer input counts. The four shipped
profiles follow ALGORITHMS §5.2 ("-like": reconstructed, not vendor-verified; the
fields marked there as unknown are documented choices here). Users define their own
with ``Profile(...)`` or ``dataclasses.replace(PROFILES["xylo"], weight_bits=4)``.

Integer semantics of one neuron layer at step t (what every profile parametrises;
``D`` is the decay of the encoding, ``k`` the threshold shift)::

    c_t = (W_q x_t + b_q) << k                       x_t: input counts or spikes
    u_t = ovf_u(D_syn(u_{t-1}) + c_t)                 CubaLIF only; else u_t = c_t
    v_t = ovf_v(D_mem(v_{t-1}) - (r_q << k) s_{t-1} + u_t)        leak_first, subtract
    v_t = ovf_v(D_mem(v_{t-1} - (r_q << k) s_{t-1}) + u_t)        reset_first, subtract
    v_t = ovf_v(D_mem((1 - s_{t-1}) v_{t-1}) + u_t)               zero reset
    s_t = 1[v_t > (theta_q << k)]   (or >=, the target's comparison)

Decay encodings (code stored per layer; ``none`` is used for a decay of exactly 1):

* ``shift``: ``v - (v >> dash)`` (arithmetic shift, floor), dash = round(log2(1/(1-delta))).
* ``mul12_rtz``: ``sign(v) * ((|v| * (4096 - d)) >> 12)``, d = round(4096 (1 - delta)).
* ``mul_u32_floor``: ``floor(v * d / 2**32)``, d = round(delta * 2**32) (u0.32).
* ``none``: the identity (no leak); a layer with delta != 1 is refused.

References:
  Pedersen et al., "Neuromorphic intermediate representation: a unified instruction set
  for interoperable brain-inspired computing", arXiv 2311.14641.
  Davies et al., "Loihi: a neuromorphic manycore processor with on-chip learning" (IEEE
  Micro 2018).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

__all__ = ["PROFILES", "Profile", "UnknownTargetError", "get_profile"]

DecayEncoding = Literal["shift", "mul12_rtz", "mul_u32_floor", "none"]
Overflow = Literal["wrap", "saturate"]
Rounding = Literal["half_even", "half_away", "floor", "toward_zero"]
NEURON_KINDS = ("LIF", "IF", "CubaLIF", "LI")


class UnknownTargetError(ValueError):
    """A target name that no profile has."""


@dataclass(frozen=True)
class Profile:
    """A fixed-point target format (ALGORITHMS §5.1).

    Attributes:
      name: target name written into the manifest.
      weight_bits: signed weight width; weights lie in ``±(2**(weight_bits-1) - 1)``.
      weight_sign: "mixed", "excitatory" (all >= 0) or "inhibitory" (all <= 0).
      scale_mode: "per_layer" (one scale per layer) or "per_channel" (one per output neuron).
      pow2: scales are powers of two (absorbed by a shift or exponent field on the chip).
      bias_bits: signed bias width.
      threshold_bits: threshold width; ``threshold_signed`` says whether a sign bit is spent.
      threshold_signed: whether the threshold register is signed.
      threshold_shift: k: threshold, reset amount and synaptic input are shifted left by k
        (Loihi compares with ``vth << 6`` and adds ``a_in << 6``).
      decay_encoding: "shift", "mul12_rtz", "mul_u32_floor" or "none" (see module docs).
      state_bits: width of the membrane state v (at most 31, see ``overflow``).
      overflow: "wrap" (two's complement) or "saturate" (clip to ``±(2**(b-1) - 1)``) for v.
      current_bits: width of the synaptic current u of CubaLIF layers (at most 31).
      current_overflow: overflow rule of u.
      spike_cmp: the target's comparison, ">" or ">=" (models trained with the other one
        are converted exactly on integers: v >= k <=> v > k - 1).
      reset: "subtract" or "zero"; a model with another reset runs with the target's
        reset, and the calibration report flags the mismatch.
      rounding: rounding of parameters: "half_even", "half_away", "floor", "toward_zero".
      input_bits: analog inputs become unsigned counts in ``[0, 2**input_bits - 1]`` per step.
      weight_exp_max: largest per-layer weight exponent e: a layer's integer weights are
        ``mantissa << e`` with ``|mantissa| <= weight_max`` (Loihi's weight exponent), so the
        states can use a finer unit than the weights (0: no exponent field).
      neurons: neuron types the target holds (of "LIF", "IF", "CubaLIF", "LI").

    Widths are limited to 31 bits so the int32 simulator sees every pre-overflow value
    exactly (one guard bit); lowering checks the static bound of every sum against it.

    Example:
      >>> import dataclasses
      >>> p = dataclasses.replace(PROFILES["xylo"], weight_bits=4, name="xylo4")
      >>> p.weight_max
      7
    """

    name: str
    weight_bits: int
    weight_sign: Literal["mixed", "excitatory", "inhibitory"] = "mixed"
    scale_mode: Literal["per_layer", "per_channel"] = "per_layer"
    pow2: bool = False
    bias_bits: int = 16
    threshold_bits: int = 16
    threshold_signed: bool = True
    threshold_shift: int = 0
    decay_encoding: DecayEncoding = "shift"
    state_bits: int = 16
    overflow: Overflow = "saturate"
    current_bits: int = 16
    current_overflow: Overflow = "saturate"
    spike_cmp: Literal[">", ">="] = ">"
    reset: Literal["subtract", "zero"] = "subtract"
    rounding: Rounding = "half_even"
    input_bits: int = 8
    weight_exp_max: int = 0
    neurons: tuple[str, ...] = NEURON_KINDS

    def __post_init__(self):
        def bad(field, value, allowed):
            raise ValueError(f"Profile {self.name!r}: {field} must be {allowed}; got {value!r}.")

        for field, lo, hi in [("weight_bits", 2, 16), ("bias_bits", 2, 31), ("threshold_bits", 2, 31),
                              ("state_bits", 2, 31), ("current_bits", 2, 31), ("input_bits", 1, 16),
                              ("threshold_shift", 0, 16), ("weight_exp_max", 0, 16)]:
            value = getattr(self, field)
            if not isinstance(value, int) or not lo <= value <= hi:
                bad(field, value, f"an integer in [{lo}, {hi}]")
        choices = {"weight_sign": ("mixed", "excitatory", "inhibitory"), "scale_mode": ("per_layer", "per_channel"),
                   "decay_encoding": ("shift", "mul12_rtz", "mul_u32_floor", "none"),
                   "overflow": ("wrap", "saturate"), "current_overflow": ("wrap", "saturate"),
                   "spike_cmp": (">", ">="), "reset": ("subtract", "zero"),
                   "rounding": ("half_even", "half_away", "floor", "toward_zero")}
        for field, allowed in choices.items():
            if getattr(self, field) not in allowed:
                bad(field, getattr(self, field), f"one of {allowed}")
        if not self.neurons or any(n not in NEURON_KINDS for n in self.neurons):
            bad("neurons", self.neurons, f"a non-empty tuple of {NEURON_KINDS}")
        if self.decay_encoding == "mul12_rtz" and max(self.state_bits, self.current_bits) > 24:
            bad("state_bits/current_bits", (self.state_bits, self.current_bits),
                "at most 24 with mul12_rtz (the split 12-bit product holds 24-bit states)")

    @property
    def weight_max(self) -> int:
        """Largest weight magnitude, ``2**(weight_bits-1) - 1``."""
        return 2 ** (self.weight_bits - 1) - 1

    @property
    def threshold_max(self) -> int:
        """Largest threshold register value."""
        return 2 ** (self.threshold_bits - int(self.threshold_signed)) - 1

    @property
    def input_max(self) -> int:
        """Largest input count per channel and step."""
        return 2**self.input_bits - 1

    def to_dict(self) -> dict:
        """JSON-ready record (the ``profile`` entry of a manifest)."""
        record = dataclasses.asdict(self)
        record["neurons"] = list(self.neurons)
        return record

    @classmethod
    def from_dict(cls, record: dict) -> Profile:
        """Inverse of :meth:`to_dict`."""
        return cls(**{**record, "neurons": tuple(record["neurons"])})


#: The shipped targets (ALGORITHMS §5.2). Fields marked * there are choices, documented here.
PROFILES: dict[str, Profile] = {
    # Xylo-like: 8-bit weights, 16-bit thresholds and states, shift decay, subtract reset,
    # <= 15 input events per channel and step (4-bit counts). Overflow* saturate, cmp* ">".
    "xylo": Profile(name="xylo", weight_bits=8, bias_bits=16, threshold_bits=16, decay_encoding="shift",
                    state_bits=16, overflow="saturate", current_bits=16, current_overflow="saturate",
                    spike_cmp=">", reset="subtract", input_bits=4),
    # Loihi-like: 8-bit mantissa x 2^exp weights (exp 0..7 here: the state unit may be finer than the
    # weights'), 13-bit bias mantissa, vth 17-bit unsigned compared as vth << 6, 12-bit multiplicative
    # decay rounded toward zero, u 24-bit wrapping, v 24-bit saturating, strict '>', reset to zero.
    # Scales need not be powers of two: vth is a free 17-bit integer, so a layer's scale (mantissa
    # step x 2^exp) is realised by its threshold, and the mantissas use all 8 bits.
    "loihi": Profile(name="loihi", weight_bits=8, bias_bits=13, threshold_bits=17,
                     threshold_signed=False, threshold_shift=6, decay_encoding="mul12_rtz", state_bits=24,
                     overflow="saturate", current_bits=24, current_overflow="wrap", spike_cmp=">",
                     reset="zero", input_bits=8, weight_exp_max=7),
    # SpiNNaker-like: 16-bit weights shifted into fixed point (pow2 scales), u0.32 decay with a
    # floored high-word product, '>=' and reset to zero*. The chip's s16.15 state is held as
    # 31 bits here (one guard bit for the int32 simulator); saturation* assumed.
    "spinnaker": Profile(name="spinnaker", weight_bits=16, pow2=True, bias_bits=16, threshold_bits=31,
                         decay_encoding="mul_u32_floor", state_bits=31, overflow="saturate", current_bits=31,
                         current_overflow="saturate", spike_cmp=">=", reset="zero", input_bits=8),
    # Speck-like: 8-bit weights and biases, 16-bit thresholds and states, integrate-and-fire
    # without leak*, '>=' and subtract reset* (as sinabs' IAF), saturation*.
    "speck": Profile(name="speck", weight_bits=8, bias_bits=8, threshold_bits=16, decay_encoding="none",
                     state_bits=16, overflow="saturate", current_bits=16, spike_cmp=">=", reset="subtract",
                     input_bits=4, neurons=("LIF", "IF", "LI")),
}


def get_profile(target: str | Profile) -> Profile:
    """Look up a shipped profile by name (a :class:`Profile` passes through).

    Raises:
      UnknownTargetError: the name is not one of :data:`PROFILES`.

    Example:
      >>> get_profile("loihi").threshold_shift
      6
    """
    if isinstance(target, Profile):
        return target
    if target not in PROFILES:
        raise UnknownTargetError(f"unknown target {target!r}; choose one of {sorted(PROFILES)} "
                                 "or pass a jsnn.lower.Profile.")
    return PROFILES[target]
