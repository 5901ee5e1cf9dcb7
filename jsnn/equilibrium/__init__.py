"""Equilibrium training of feedback spiking networks: IDE and its spike-based form SPIDE (ALGORITHMS §3).

* :mod:`~jsnn.equilibrium.network`: :class:`FeedbackNet` (single-layer, multi-layer, convolutional)
  and its forward simulation to the firing-rate equilibrium.
* :mod:`~jsnn.equilibrium.ide`: :func:`equilibrium`, whose ``custom_vjp`` is the implicit gradient.
* :mod:`~jsnn.equilibrium.solvers`: fixed-point, Broyden, GMRES and BiCGSTAB for ``(I - J^T) g = dL/da``.
* :mod:`~jsnn.equilibrium.spide`: the spiking backward of ternary neuron couples.
* :mod:`~jsnn.equilibrium.reparam`: spectral (IDE) and Frobenius (SPIDE) weight-norm restrictions.
* :mod:`~jsnn.equilibrium.method`: ``jsnn train --method ide|spide`` builders.

References:
  Xiao et al., "Training feedback spiking neural networks by implicit differentiation on the
  equilibrium state", NeurIPS 2021, arXiv 2109.14247.
  Xiao et al., "SPIDE: a purely spike-based method for training feedback spiking neural
  networks", Neural Networks 2023, arXiv 2302.00232.
"""

from .config import EquilibriumConfig as EquilibriumConfig
from .ide import BACKWARD_STATS as BACKWARD_STATS
from .ide import EquilibriumInfo as EquilibriumInfo
from .ide import backward_stats as backward_stats
from .ide import equilibrium as equilibrium
from .ide import implicit_vjp as implicit_vjp
from .network import FeedbackNet as FeedbackNet
from .network import SimResult as SimResult
from .network import feedback_conv as feedback_conv
from .network import feedback_fc as feedback_fc
from .network import simulate_rates as simulate_rates
from .reparam import FrobeniusNorm as FrobeniusNorm
from .reparam import SpectralNorm as SpectralNorm
from .reparam import trainable as trainable
from .solvers import SOLVERS as SOLVERS
from .spide import cyclic_adjoint as cyclic_adjoint
from .spide import local_gradients as local_gradients
from .spide import spiking_backward as spiking_backward
from .method import IDE_DEFAULTS as IDE_DEFAULTS
from .method import SPIDE_DEFAULTS as SPIDE_DEFAULTS
from .method import EquilibriumRunConfig as EquilibriumRunConfig
from .method import build_ide as build_ide
from .method import build_spide as build_spide
from .method import equilibrium_method as equilibrium_method
