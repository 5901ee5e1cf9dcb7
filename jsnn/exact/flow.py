"""Closed-form CuBa-LIF flow and the threshold-crossing time with its implicit-function-theorem tangent.

Between events a current-based LIF neuron obeys (ALGORITHMS §0.4)

    tau_mem dV/dt = -V + I,      tau_syn dI/dt = -I,

a linear ODE whose flow over a duration s is the matrix ``Phi(s)``:

    V(s) = phi_vv(s) V0 + phi_vi(s) I0,     I(s) = phi_ii(s) I0,
    phi_vv = exp(-s/tau_mem),  phi_ii = exp(-s/tau_syn),
    phi_vi = tau_syn/(tau_syn - tau_mem) (exp(-s/tau_syn) - exp(-s/tau_mem))   (tau_mem != tau_syn)
    phi_vi = (s/tau) exp(-s/tau)                                               (tau_mem == tau_syn == tau)

The same coefficients propagate forward tangents (FP) and, transposed, the adjoint (EventProp).

A spike is the first upward crossing V(s*) = threshold. ``crossing_time`` finds s* by the closed form for
tau_mem = 2 tau_syn (a quadratic in exp(-s/tau_mem)) and otherwise by bracketed, safeguarded Newton with one
final Newton step (the time error is then that of evaluating V, about eps threshold / Vdot), and declares the
implicit-function-theorem tangent

    ds* = -(phi_vv(s*) dV0 + phi_vi(s*) dI0) / Vdot(s*),      Vdot(s*) = (I(s*) - threshold) / tau_mem,

as a ``jax.custom_jvp``; so ``jax.jvp``/``jax.jacfwd`` through a simulation are forward propagation (FP) and
``jax.grad`` is reverse mode. The denominator is guarded (``|Vdot| >= eps_graze``).

References:
  Lee, Haghighatshoar, Karbasi, "Exact gradient computation for spiking neural networks via forward
  propagation", AISTATS 2023, arXiv 2210.15415.
  Wunderlich and Pehle, "Event-based backpropagation can compute exact gradients for spiking neural
  networks", Sci. Rep. 2021, arXiv 2009.08378.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

__all__ = ["LIFConfig", "FlowCoefficients", "flow_coefficients", "flow", "crossing_time"]


@dataclass(frozen=True)
class LIFConfig:
    """Static constants of a continuous-time CuBa-LIF population (hashable; never traced).

    Attributes:
      tau_syn: synaptic time constant.
      tau_mem: membrane time constant.
      threshold: firing threshold (> 0).
      t_end: end of the simulated window [0, t_end].
      reset: ``"zero"`` (V <- 0) or ``"subtract"`` (V <- V - threshold). In continuous time they coincide
        at an exact crossing (V = threshold); both are differentiated consistently.
      eps_graze: smallest |dV/dt| accepted at a crossing; smaller slopes are clipped in the IFT
        denominator and counted as grazing events. ``None`` means ``1e-6 * threshold / tau_mem``.
      root: ``"auto"`` uses the closed form when ``tau_mem == 2 tau_syn`` and Newton otherwise;
        ``"newton"`` forces the bracketed Newton solver.
      newton_iters: maximum iterations of the safeguarded Newton solver, whose root then gets one more
        Newton step (0: no iterations and no final step, for an existence test only).

    Example:
      >>> LIFConfig(tau_syn=5.0, tau_mem=10.0).closed_form
      True
    """

    tau_syn: float = 5.0
    tau_mem: float = 10.0
    threshold: float = 1.0
    t_end: float = 20.0
    reset: Literal["zero", "subtract"] = "zero"
    eps_graze: float | None = None
    root: Literal["auto", "newton"] = "auto"
    newton_iters: int = 60

    def __post_init__(self) -> None:
        for name in ("tau_syn", "tau_mem", "threshold", "t_end"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and value > 0):
                raise ValueError(f"LIFConfig.{name} must be a positive number; got {value!r}.")
        if self.reset not in ("zero", "subtract"):
            raise ValueError(f"LIFConfig.reset must be 'zero' or 'subtract'; got {self.reset!r}.")
        if self.root not in ("auto", "newton"):
            raise ValueError(f"LIFConfig.root must be 'auto' or 'newton'; got {self.root!r}.")
        if self.eps_graze is not None and not self.eps_graze > 0:
            raise ValueError(f"LIFConfig.eps_graze must be positive or None; got {self.eps_graze!r}.")

    @property
    def equal_taus(self) -> bool:
        """Whether tau_mem == tau_syn (the degenerate flow)."""
        return self.tau_mem == self.tau_syn

    @property
    def closed_form(self) -> bool:
        """Whether spike times come from the quadratic closed form (tau_mem == 2 tau_syn)."""
        return self.root == "auto" and self.tau_mem == 2.0 * self.tau_syn

    @property
    def graze(self) -> float:
        """The grazing guard actually used."""
        return self.eps_graze if self.eps_graze is not None else 1e-6 * self.threshold / self.tau_mem


class FlowCoefficients(NamedTuple):
    """Entries of the flow matrix Phi(s) and of its integral over [0, s]."""

    vv: Array
    vi: Array
    ii: Array
    int_vv: Array
    int_vi: Array


def flow_coefficients(s: Float[Array, "..."], cfg: LIFConfig) -> FlowCoefficients:
    """Flow-matrix entries over a duration ``s`` (and their integrals, for voltage losses).

    ``V(s) = vv V0 + vi I0``, ``I(s) = ii I0``, ``int_0^s V = int_vv V0 + int_vi I0``.

    Args:
      s: non-negative durations.
      cfg: neuron constants.

    Returns:
      The five coefficient arrays, shaped like ``s``.

    Example:
      >>> import jax.numpy as jnp
      >>> c = flow_coefficients(jnp.array(0.0), LIFConfig())
      >>> float(c.vv), abs(float(c.vi)), float(c.ii)
      (1.0, 0.0, 1.0)
    """
    ts, tm = cfg.tau_syn, cfg.tau_mem
    e_m = jnp.exp(-s / tm)
    e_s = jnp.exp(-s / ts)
    int_vv = tm * (1 - e_m)
    if cfg.equal_taus:
        vi = (s / tm) * e_m
        int_vi = tm * (1 - e_m * (1 + s / tm))
    else:
        k = ts / (ts - tm)
        vi = k * (e_s - e_m)
        int_vi = k * (ts * (1 - e_s) - tm * (1 - e_m))
    return FlowCoefficients(e_m, vi, e_s, int_vv, int_vi)


def flow(v0: Array, i0: Array, s: Array, cfg: LIFConfig) -> tuple[Array, Array]:
    """Advance (V, I) by a duration ``s`` with the closed-form flow.

    Example:
      >>> import jax.numpy as jnp
      >>> v, i = flow(jnp.array(0.0), jnp.array(1.0), jnp.array(0.0), LIFConfig())
      >>> float(v), float(i)
      (0.0, 1.0)
    """
    c = flow_coefficients(s, cfg)
    return c.vv * v0 + c.vi * i0, c.ii * i0


def _peak_duration(v0: Array, i0: Array, cfg: LIFConfig) -> Array:
    """Duration to the single stationary point of V (inf if none lies ahead)."""
    ts, tm = cfg.tau_syn, cfg.tau_mem
    inf = jnp.asarray(jnp.inf, v0.dtype)
    if cfg.equal_taus:
        safe_i = jnp.where(i0 != 0, i0, jnp.ones_like(i0))
        s_peak = tm * (1 - v0 / safe_i)
        ok = i0 != 0
    else:
        b = i0 * ts / (ts - tm)
        a = v0 - b
        arg_num = -b * tm
        arg_den = a * ts
        safe_den = jnp.where(arg_den != 0, arg_den, jnp.ones_like(arg_den))
        arg = arg_num / safe_den
        ok = (arg_den != 0) & (arg > 0)
        s_peak = jnp.log(jnp.where(ok, arg, jnp.ones_like(arg))) / (1 / ts - 1 / tm)
    return jnp.where(ok & (s_peak > 0), s_peak, inf)


def _solve_closed_form(v0, i0, horizon, cfg: LIFConfig):
    # tau_mem = 2 tau_syn, x = exp(-s/tau_mem): V = (V0 + I0) x - I0 x^2; earliest crossing = largest root <= 1.
    theta = cfg.threshold
    p = v0 + i0
    disc = p * p - 4 * i0 * theta
    possible = (i0 > 0) & (v0 < i0) & (p > 0) & (disc >= 0) & (v0 < theta)
    safe_i = jnp.where(possible, i0, jnp.ones_like(i0))
    x = (p + jnp.sqrt(jnp.where(possible, disc, jnp.zeros_like(disc)))) / (2 * safe_i)
    x = jnp.where(possible, x, jnp.ones_like(x))
    s = -cfg.tau_mem * jnp.log(jnp.clip(x, jnp.finfo(x.dtype).tiny, 1.0))
    has = possible & (s <= horizon)
    return jnp.where(has, s, jnp.zeros_like(s)), has


def _solve_newton(v0, i0, horizon, cfg: LIFConfig):
    theta, tm = cfg.threshold, cfg.tau_mem
    rising = (i0 - v0) > 0
    hi = jnp.minimum(_peak_duration(v0, i0, cfg), horizon)
    v_hi, _ = flow(v0, i0, hi, cfg)
    has = rising & (v0 < theta) & (v_hi >= theta)
    lo = jnp.zeros_like(v0)
    hi = jnp.where(has, hi, lo)
    tol = 4 * jnp.finfo(v0.dtype).eps

    def body(state):
        k, lo, hi, s = state
        v, i = flow(v0, i0, s, cfg)
        f = v - theta
        lo = jnp.where(f < 0, s, lo)
        hi = jnp.where(f >= 0, s, hi)
        vdot = (i - v) / tm
        safe = jnp.where(vdot > 0, vdot, jnp.ones_like(vdot))
        newton = s - f / safe
        inside = (vdot > 0) & (newton > lo) & (newton < hi)
        s_new = jnp.where(inside, newton, 0.5 * (lo + hi))
        return k + 1, lo, hi, s_new

    def cond(state):
        k, lo, hi, s = state
        return (k < cfg.newton_iters) & jnp.any(has & ((hi - lo) > tol * jnp.maximum(hi, 1.0))
                                                & (jnp.abs(flow(v0, i0, s, cfg)[0] - theta) > tol * theta))

    _, lo, hi, s = jax.lax.while_loop(cond, body, (0, lo, hi, 0.5 * (lo + hi)))
    return jnp.where(has, s, jnp.zeros_like(s)), has


def _polish(v0, i0, horizon, s, has, cfg: LIFConfig):
    """One more Newton step from a root ``s`` found to ``|V - threshold| <= 4 eps threshold``.

    That stopping rule leaves a time error up to ``4 eps threshold / Vdot`` (5e-9 at Vdot near the grazing
    guard); one Newton step from there brings it down to the error of evaluating V itself (quadratic
    convergence). Taken only where the slope is above the grazing guard and the step stays in [0, horizon].
    """
    v, i = flow(v0, i0, s, cfg)
    vdot = (i - v) / cfg.tau_mem
    steep = has & (vdot >= cfg.graze)
    s_new = s - (v - cfg.threshold) / jnp.where(steep, vdot, jnp.ones_like(vdot))
    return jnp.where(steep & (s_new >= 0) & (s_new <= horizon), s_new, s)


@partial(jax.custom_jvp, nondiff_argnums=(3,))
def crossing_time(
    v0: Float[Array, "..."], i0: Float[Array, "..."], horizon: Float[Array, "..."], cfg: LIFConfig
) -> tuple[Float[Array, "..."], Bool[Array, "..."]]:
    """Duration to the first upward threshold crossing within ``[0, horizon]``.

    Solves ``V(s*) = threshold`` for the earliest s* in ``(0, horizon]`` given the state (V0, I0)
    (ALGORITHMS §2.2): V rises only until its single stationary point, so a crossing exists iff V0 <
    threshold, dV/dt(0) > 0 and V(min(s_peak, horizon)) >= threshold. The tangent is the IFT rule
    ``ds* = -(dV(s*)/dV0 dV0 + dV(s*)/dI0 dI0) / Vdot(s*)`` with a guarded denominator; the horizon gets
    no tangent (a crossing exactly at the horizon has measure zero).

    Args:
      v0: membrane potential after the last event.
      i0: synaptic current after the last event.
      horizon: time to the next input event or the end of the window.
      cfg: neuron constants (static).

    Returns:
      ``(s, has)``: the duration (0 where there is no crossing) and whether a crossing exists.

    References:
      Lee, Haghighatshoar, Karbasi, arXiv 2210.15415 (IFT at spike times).

    Example:
      >>> import jax.numpy as jnp
      >>> s, has = crossing_time(jnp.array(0.0), jnp.array(5.0), jnp.array(100.0), LIFConfig())
      >>> bool(has), round(float(s), 6)  # V = 5x - 5x^2 = 1 at x = (5 + sqrt(5)) / 10
      (True, 3.235072)
    """
    if cfg.closed_form:  # its root is as accurate as V's evaluation already: a Newton step would add noise
        return _solve_closed_form(v0, i0, horizon, cfg)
    s, has = _solve_newton(v0, i0, horizon, cfg)
    if cfg.newton_iters == 0:  # an existence test only (jsnn.exact.parallel's search)
        return s, has
    return _polish(v0, i0, horizon, s, has, cfg), has


def crossing_slope(i_at: Array, cfg: LIFConfig) -> tuple[Array, Array]:
    """Guarded dV/dt at a crossing, ``(I - threshold)/tau_mem``, and whether it grazed (was clipped)."""
    vdot = (i_at - cfg.threshold) / cfg.tau_mem
    grazing = vdot < cfg.graze
    return jnp.where(grazing, jnp.full_like(vdot, cfg.graze), vdot), grazing


@crossing_time.defjvp
def _crossing_time_jvp(cfg: LIFConfig, primals, tangents):
    v0, i0, horizon = primals
    dv0, di0, _ = tangents
    s, has = crossing_time(v0, i0, horizon, cfg)
    c = flow_coefficients(s, cfg)
    vdot, _ = crossing_slope(c.ii * i0, cfg)
    ds = jnp.where(has, -(c.vv * dv0 + c.vi * di0) / vdot, jnp.zeros_like(s))
    return (s, has), (ds, jnp.zeros(has.shape, jax.dtypes.float0))
