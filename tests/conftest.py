"""Test-suite configuration: float64 oracles and strict dtype promotion.

x64 must be enabled before any JAX array exists, so it is set here at import time.
Library code passes dtypes explicitly (float32 by default); tests build float64 oracles.
"""

import jax

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_dtype_promotion", "strict")
