"""Exact spike-time gradients for event-driven CuBa-LIF networks: FP (forward mode) and EventProp (adjoint).

References:
  Lee, Haghighatshoar, Karbasi, "Exact gradient computation for spiking neural networks via forward
  propagation", AISTATS 2023, arXiv 2210.15415.
  Wunderlich and Pehle, "Event-based backpropagation can compute exact gradients for spiking neural
  networks", Sci. Rep. 2021, arXiv 2009.08378.
"""

from jsnn.exact.adjoint import layer_core_adjoint as layer_core_adjoint
from jsnn.exact.discrete import bin_spikes as bin_spikes
from jsnn.exact.discrete import check_dt as check_dt
from jsnn.exact.discrete import discrete_first_spike_times as discrete_first_spike_times
from jsnn.exact.discrete import from_sequential as from_sequential
from jsnn.exact.discrete import max_dt as max_dt
from jsnn.exact.discrete import n_steps as n_steps
from jsnn.exact.discrete import to_sequential as to_sequential
from jsnn.exact.flow import LIFConfig as LIFConfig
from jsnn.exact.flow import crossing_time as crossing_time
from jsnn.exact.flow import flow as flow
from jsnn.exact.flow import flow_coefficients as flow_coefficients
from jsnn.exact.losses import first_spike_times as first_spike_times
from jsnn.exact.losses import predict_count as predict_count
from jsnn.exact.losses import predict_first_spike as predict_first_spike
from jsnn.exact.losses import predict_voltage as predict_voltage
from jsnn.exact.losses import spike_count_loss as spike_count_loss
from jsnn.exact.losses import ttfs_loss as ttfs_loss
from jsnn.exact.losses import voltage_loss as voltage_loss
from jsnn.exact.method import EXACT_DEFAULTS as EXACT_DEFAULTS
from jsnn.exact.method import ExactConfig as ExactConfig
from jsnn.exact.method import build_exact as build_exact
from jsnn.exact.method import calibrated_init as calibrated_init
from jsnn.exact.method import exact_method as exact_method
from jsnn.exact.method import exact_run as exact_run
from jsnn.exact.net import EventNet as EventNet
from jsnn.exact.net import spike_time_jacobian as spike_time_jacobian
from jsnn.exact.nir import exact_from_nir as exact_from_nir
from jsnn.exact.nir import exact_to_nir as exact_to_nir
from jsnn.exact.nir import read_exact_nir as read_exact_nir
from jsnn.exact.nir import write_exact_nir as write_exact_nir
from jsnn.exact.readout import integrator_readout as integrator_readout
from jsnn.exact.recurrent import recurrent_layer_core as recurrent_layer_core
from jsnn.exact.recurrent import simulate_recurrent_layer as simulate_recurrent_layer
from jsnn.exact.simulate import LayerResult as LayerResult
from jsnn.exact.simulate import layer_core as layer_core
from jsnn.exact.simulate import simulate_layer as simulate_layer
from jsnn.exact.simulate import sort_events as sort_events
