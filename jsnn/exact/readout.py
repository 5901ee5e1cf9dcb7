"""A non-spiking (leaky-integrator) readout layer for event-driven networks, in closed form.

The readout neurons have the CuBa-LIF dynamics ``tau_mem V' = -V + I``, ``tau_syn I' = -I`` without a
threshold. V is linear in the input spikes: a spike of source j at time t_j adds ``W[n, j] vi(t - t_j)``
(``flow_coefficients``) for t > t_j, so

    V_n(t_end) = sum_j W[n, j] sum_k vi(t_end - t_jk),   int_0^t_end V_n = sum_j W[n, j] sum_k int_vi(t_end - t_jk).

No root is solved and no reset makes V jump, so the mean potential is smooth in the weights and in the
input spike times: a voltage loss on it has no discontinuity when an output would have crossed a
threshold (a spiking readout resets there, and its mean potential drops), and the derivative through the
hidden spike times stays the exact IFT one.

References:
  Wunderlich and Pehle, "Event-based backpropagation can compute exact gradients for spiking neural
  networks", Sci. Rep. 2021, arXiv 2009.08378 (non-spiking leaky-integrator readouts with EventProp).
"""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, Float

from .flow import LIFConfig, flow_coefficients
from .simulate import LayerResult

__all__ = ["integrator_readout"]


def integrator_readout(weight: Float[Array, "n n_in"], in_times: Float[Array, "n_in K"],
                       cfg: LIFConfig) -> LayerResult:
    """Potential at ``t_end`` and its integral over [0, t_end] of a non-spiking readout layer.

    Args:
      weight: readout weights (n, n_in).
      in_times: spike times per input (n_in, K); ``inf`` (or any time >= ``cfg.t_end``) marks empty slots.
      cfg: neuron constants (the threshold and reset are not used).

    Returns:
      A ``LayerResult`` with ``v_end`` and ``v_int``; ``times`` is (n, 1) of ``inf`` (no spikes), ``count``,
      ``overflow`` and ``grazing`` are zero.

    Example:
      >>> import jax.numpy as jnp
      >>> from jsnn.exact.simulate import simulate_layer
      >>> w, t = jnp.array([[0.5], [-0.2]]), jnp.array([[1.0, 3.0]])
      >>> cfg = LIFConfig(t_end=20.0)
      >>> r = integrator_readout(w, t, cfg)
      >>> ref = simulate_layer(w, t, cfg, max_spikes=1)  # sub-threshold: the same potential
      >>> bool(jnp.allclose(r.v_int, ref.v_int)), bool(jnp.allclose(r.v_end, ref.v_end))
      (True, True)
    """
    live = in_times < cfg.t_end
    c = flow_coefficients(jnp.where(live, cfg.t_end - in_times, jnp.zeros_like(in_times)), cfg)
    zero = jnp.zeros_like(in_times)
    v_end = weight @ jnp.sum(jnp.where(live, c.vi, zero), axis=1)
    v_int = weight @ jnp.sum(jnp.where(live, c.int_vi, zero), axis=1)
    n = weight.shape[0]
    return LayerResult(times=jnp.full((n, 1), jnp.inf, weight.dtype), v_end=v_end, v_int=v_int,
                       i_spike=jnp.zeros((n, 1), weight.dtype), count=jnp.zeros((n,), jnp.int32),
                       overflow=jnp.zeros((n,), bool), grazing=jnp.zeros((n,), jnp.int32))
