"""ADMM sharded over 4 simulated CPU devices equals one device (ALGORITHMS §1.7.6), to 1e-10 in float64.

The device count must be set before JAX initialises, so the comparison runs in a fresh Python
process with ``XLA_FLAGS=--xla_force_host_platform_device_count=4``; it prints the largest
differences as JSON, which this test checks.
"""

import json
import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import json
    import jax, jax.numpy as jnp, numpy as np
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_numpy_dtype_promotion", "strict")
    from jsnn.optim import StateLayout, admm_metrics, admm_step, init_params, init_state, make_batch

    assert len(jax.devices()) == 4, jax.devices()
    n, T, sizes = 7, 4, [5, 4, 3, 2]
    rng = np.random.default_rng(0)
    x, labels = rng.random((n, T, sizes[0])), rng.integers(0, 2, n)
    mesh = jax.make_mesh((4,), ("data",))
    step = jax.jit(admm_step, static_argnames=("options", "mesh"))
    out = {}
    for name, layout in (("one", StateLayout(n, T, chunk_size=1)), ("four", StateLayout(n, T, chunk_size=1, mesh=mesh))):
        batch = make_batch(x, labels, layout, dtype=jnp.float64)  # four: 8 chunks, 2 per device, 1 padded
        params = init_params(sizes, dtype=jnp.float64)
        ref = init_state(params, StateLayout(n, T), seed=3)  # the same draws for both layouts
        pad = layout.num_chunks - n
        chunk = lambda v: jnp.concatenate([v[0], jnp.zeros((pad,) + v.shape[2:])])[:, None]
        state = ref._replace(z=tuple(map(chunk, ref.z)), a=tuple(map(chunk, ref.a)), dual=chunk(ref.dual))
        for _ in range(3):
            params, state = step(params, state, batch, warmup=1, mesh=layout.mesh)
        flat = [np.asarray(v).reshape((-1,) + v.shape[2:])[:n] for v in (*state.z, *state.a, state.dual)]
        out[name] = (params, flat, admm_metrics(params, state, batch, mesh=layout.mesh))
    leaves = lambda p: [np.asarray(v) for v in jax.tree.leaves(p)]
    diff_p = max(float(np.max(np.abs(a - b))) for a, b in zip(leaves(out["one"][0]), leaves(out["four"][0])))
    diff_s = max(float(np.max(np.abs(a - b))) for a, b in zip(out["one"][1], out["four"][1]))
    diff_m = abs(out["one"][2]["lagrangian"] - out["four"][2]["lagrangian"])
    sharding = str(state.z[0].sharding)
    print(json.dumps({"params": diff_p, "state": diff_s, "lagrangian": diff_m, "sharding": sharding}))
    """
)


def test_sharded_over_four_devices_equals_one_device():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["params"] < 1e-10 and result["state"] < 1e-10 and result["lagrangian"] < 1e-10, result
    assert "data" in result["sharding"], result  # the state really lives sharded over the mesh
