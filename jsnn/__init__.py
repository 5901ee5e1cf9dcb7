"""jsnn: spiking neural networks in JAX.

Surrogate BPTT, ADMM, exact spike-time gradients, and lowering to integer tables,
as pure functions over pytrees, Equinox modules and optax transformations. ``jsnn.fit`` trains
any method on your own arrays with its tuned defaults (the Python face of ``jsnn train``).
"""

__version__ = "0.1.0"

# first, before any JAX computation starts XLA's threads: keep freed host memory (see jsnn.hostmem)
from jsnn import hostmem as hostmem  # noqa: I001
from jsnn import encode as encode
from jsnn import losses as losses
from jsnn import optim as optim
from jsnn import shortcut as shortcut
from jsnn import surrogate as surrogate
from jsnn import sweep as sweep
from jsnn.methods import Fitted as Fitted
from jsnn.methods import fit as fit
from jsnn.neurons import IF as IF
from jsnn.neurons import LI as LI
from jsnn.neurons import LIF as LIF
from jsnn.neurons import CubaLIF as CubaLIF
from jsnn.neurons import Trace as Trace
from jsnn.nn import AvgPool2d as AvgPool2d
from jsnn.nn import Conv2d as Conv2d
from jsnn.nn import Flatten as Flatten
from jsnn.nn import Linear as Linear
from jsnn.nn import Recurrent as Recurrent
from jsnn.nn import Sequential as Sequential
from jsnn.nn import conv_net as conv_net
from jsnn.nn import mlp as mlp
from jsnn.simulate import simulate as simulate
from jsnn.simulate import simulate_batch as simulate_batch
