"""The settings of an equilibrium forward/backward pass: :class:`EquilibriumConfig`."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from jsnn.equilibrium.solvers import SOLVERS

__all__ = ["EquilibriumConfig"]


@dataclass(frozen=True)
class EquilibriumConfig:
    """How :func:`jsnn.equilibrium.equilibrium` simulates and differentiates (hashable, static under jit).

    Attributes:
      T: forward time steps (>= 1).
      backward: "ide" (linear solve with ``solver``) or "spide" (ternary spiking backward neurons).
      solver: IDE solver, a key of :data:`jsnn.equilibrium.SOLVERS`.
      tol: relative residual ``||(I - J^T) y - g|| / ||g||`` the solver must reach (per sample).
      max_iter: iteration cap of the solver.
      on_fail: what a solve above ``tol`` (or a non-finite one) does: "warn" (a Python warning with
        the residual), "error" (a runtime error inside jit, via ``eqx.error_if``) or "ignore" (the
        residual is still returned in the backward statistics).
      T_backward: SPIDE backward time steps ``T_b`` (>= 1).
      loss_scale: SPIDE's ``sf``, per sample: the spiking backward of sample ``i`` runs on
        ``sf * B * dL/da_i`` (``sf`` times the gradient of its own term of a batch-mean loss), so that
        gradients sit well above the rate resolution ``1/T_b`` but below ``A``; the result is divided by
        the same factor, so the learning rate and weight decay mean what they mean for IDE. (The
        authors train ``sf * CE`` averaged over 128 samples with ``lr / sf``: their sf = 100 is
        ``loss_scale`` = 100/128 here, and their effective weight decay is divided by ``sf``.)
      threshold_backward: SPIDE backward threshold ``theta_b``; ``u_rest_b = -theta_b``, so a backward
        spike is ``+-A`` with ``A = 2 theta_b`` (1 by default), and ``|g| < A`` is representable.
    """

    T: int = 30
    backward: Literal["ide", "spide"] = "ide"
    solver: str = "broyden"
    tol: float = 1e-4
    max_iter: int = 30
    on_fail: Literal["warn", "error", "ignore"] = "warn"
    T_backward: int = 100
    loss_scale: float = 1.0
    threshold_backward: float = 0.5

    def __post_init__(self):
        if not isinstance(self.T, int) or self.T < 1:
            raise ValueError(f"T (forward time steps) must be an integer >= 1; got {self.T!r}.")
        if not isinstance(self.T_backward, int) or self.T_backward < 1:
            raise ValueError(f"T_backward (SPIDE backward time steps) must be an integer >= 1; got {self.T_backward!r}.")
        if self.backward not in ("ide", "spide"):
            raise ValueError(f"backward must be 'ide' or 'spide'; got {self.backward!r}.")
        if self.solver not in SOLVERS:
            raise ValueError(f"unknown solver {self.solver!r}; choose one of {sorted(SOLVERS)}.")
        if self.on_fail not in ("warn", "error", "ignore"):
            raise ValueError(f"on_fail must be 'warn', 'error' or 'ignore'; got {self.on_fail!r}.")
        if not self.tol > 0 or not isinstance(self.max_iter, int) or self.max_iter < 1:
            raise ValueError(f"tol must be > 0 and max_iter an integer >= 1; got tol={self.tol}, "
                             f"max_iter={self.max_iter}.")
        if not self.loss_scale > 0 or not self.threshold_backward > 0:
            raise ValueError("loss_scale and threshold_backward must be positive; got "
                             f"{self.loss_scale}, {self.threshold_backward}.")

    def to_dict(self) -> dict:
        return asdict(self)
