"""Lowering trained networks to fixed-point tables, a bit-exact integer simulator, C and NIR.

References:
  Pedersen et al., "Neuromorphic intermediate representation: a unified instruction set
  for interoperable brain-inspired computing", arXiv 2311.14641.
"""

from jsnn.lower.calibrate import lower_calibrated as lower_calibrated
from jsnn.lower.calibrate import spike_agreement as spike_agreement
from jsnn.lower.exact import agreement_report as agreement_report
from jsnn.lower.exact import cuba_targets as cuba_targets
from jsnn.lower.exact import lower_exact as lower_exact
from jsnn.lower.finetune import fit_to_tables as fit_to_tables
from jsnn.lower.finetune import grid_inputs as grid_inputs
from jsnn.lower.finetune import grid_network as grid_network
from jsnn.lower.intsim import IntResult as IntResult
from jsnn.lower.intsim import simulate_int as simulate_int
from jsnn.lower.profiles import PROFILES as PROFILES
from jsnn.lower.profiles import Profile as Profile
from jsnn.lower.profiles import UnknownTargetError as UnknownTargetError
from jsnn.lower.profiles import get_profile as get_profile
from jsnn.lower.tables import LoweringError as LoweringError
from jsnn.lower.tables import Tables as Tables
from jsnn.lower.tables import TablesError as TablesError
from jsnn.lower.tables import load_tables as load_tables
from jsnn.lower.tables import lower as lower
from jsnn.lower.tables import quantize_inputs as quantize_inputs
from jsnn.lower.tables import save_tables as save_tables
from jsnn.lower.tables import shadow_network as shadow_network
