"""Exact spike-time gradients for event-driven CuBa-LIF networks: FP (forward mode) and EventProp (adjoint)."""
