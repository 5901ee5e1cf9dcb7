"""Optimizers of jsnn that go beyond surrogate gradients, each an optax transformation.

ADMM (ALGORITHMS §1): :func:`admm` is the optax face; :func:`admm_step` one full iteration;
the closed-form blocks are in :mod:`jsnn.optim.admm_blocks` and the exact Heaviside subroutine
in :mod:`jsnn.optim.heaviside`.
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
from jsnn.optim.heaviside import heaviside_prox as heaviside_prox

__all__ = [
    "AdmmBatch",
    "AdmmOptions",
    "AdmmState",
    "StateLayout",
    "admm",
    "admm_blocks",
    "admm_metrics",
    "admm_step",
    "forward_state",
    "from_sequential",
    "heaviside_prox",
    "init_params",
    "init_state",
    "make_batch",
    "to_sequential",
]
