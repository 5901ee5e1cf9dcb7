"""Optimizers of jsnn that go beyond surrogate gradients, each an optax transformation.

ADMM (ALGORITHMS §1): :func:`admm` is the optax face; :func:`admm_step` one full iteration;
the closed-form blocks are in :mod:`jsnn.optim.admm_blocks` and the exact Heaviside subroutine
in :mod:`jsnn.optim.heaviside`. The tuned recipe (:data:`ADMM_COMMON`, :data:`ADMM_DEFAULTS`,
:func:`calibrated_params`, :func:`refit_readout`) runs through :func:`admm_run` on arrays
(``jsnn.fit(..., method="admm")``) and :func:`build_admm` for ``jsnn train --method admm``.
"""

from jsnn.optim import admm_blocks as admm_blocks
from jsnn.optim.admm import AdmmBatch as AdmmBatch
from jsnn.optim.admm import AdmmOptions as AdmmOptions
from jsnn.optim.admm import AdmmState as AdmmState
from jsnn.optim.admm import StateLayout as StateLayout
from jsnn.optim.admm import admm as admm
from jsnn.optim.admm import admm_metrics as admm_metrics
from jsnn.optim.admm import admm_step as admm_step
from jsnn.optim.admm import forward_state as forward_state
from jsnn.optim.admm import from_sequential as from_sequential
from jsnn.optim.admm import init_params as init_params
from jsnn.optim.admm import init_state as init_state
from jsnn.optim.admm import make_batch as make_batch
from jsnn.optim.admm import to_sequential as to_sequential
from jsnn.optim.admm_method import ADMM_COMMON as ADMM_COMMON
from jsnn.optim.admm_method import ADMM_DEFAULTS as ADMM_DEFAULTS
from jsnn.optim.admm_method import AdmmRun as AdmmRun
from jsnn.optim.admm_method import DivergenceError as DivergenceError
from jsnn.optim.admm_method import admm_run as admm_run
from jsnn.optim.admm_method import build_admm as build_admm
from jsnn.optim.admm_method import calibrated_params as calibrated_params
from jsnn.optim.admm_method import refit_readout as refit_readout
from jsnn.optim.heaviside import heaviside_prox as heaviside_prox

__all__ = [
    "ADMM_COMMON",
    "ADMM_DEFAULTS",
    "AdmmBatch",
    "AdmmOptions",
    "AdmmRun",
    "AdmmState",
    "DivergenceError",
    "StateLayout",
    "admm",
    "admm_blocks",
    "admm_metrics",
    "admm_run",
    "admm_step",
    "build_admm",
    "calibrated_params",
    "forward_state",
    "from_sequential",
    "heaviside_prox",
    "init_params",
    "init_state",
    "make_batch",
    "refit_readout",
    "to_sequential",
]
