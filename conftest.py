"""Run the tests with XLA's backend optimisation off.

The suite is compile-bound: hundreds of tiny programs, each compiled once and run a few times. At
``--xla_backend_optimization_level=0`` XLA:CPU skips LLVM's optimisation passes, which roughly halves
the suite's CPU time; the programs compute the same values (the tests' tolerances and bit-exact
comparisons hold). Subprocesses (CLI tests, notebook kernels) inherit the flag. Benchmarks and user
code are unaffected: only pytest loads this file.
"""

import os

_FLAG = "--xla_backend_optimization_level=0"
if _FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_FLAG}".strip()
