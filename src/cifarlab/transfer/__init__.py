"""Transfer learning: pretrained and cifarlab starting weights, freezing and gradual unfreezing,
discriminative learning rates, input upsampling, and the cached-feature probes of frozen backbones."""
from .freeze import Freezer, transfer_param_groups
from .probe import ProbeResult, linear_probe
from .setup import apply_preprocessing, prepare_model
from .weights import LoadReport, init_from, load_matching, read_state_file

__all__ = ["Freezer", "LoadReport", "ProbeResult", "apply_preprocessing", "init_from", "linear_probe",
           "load_matching", "prepare_model", "read_state_file", "transfer_param_groups"]
