"""C output of lowered tables: a header of ``const`` integer arrays and a reference program.

``jsnn_net.h`` holds the arrays and one descriptor per layer; ``jsnn_net.c`` (the same
text for every network) includes it and runs the integer semantics of the manifest on
an input file, with 64-bit intermediates and explicit wrap/saturate, so it needs only a
C99 compiler: ``cc -O2 -o net jsnn_net.c && ./net input.txt``.

Input file: text, ``T N`` then ``T*N`` integer counts (row-major, time first).
Output: for every layer and step one line ``L<layer> <t> <values...>`` (spikes, or
potentials of an ``li`` readout), then ``overflow L<layer> <u events> <v events>``.
"""

from __future__ import annotations

import numpy as np

from jsnn.lower.tables import Tables

__all__ = ["c_header", "c_program"]

_ENC = {"none": 0, "shift": 1, "mul12_rtz": 2, "mul_u32_floor": 3}
_KIND = {"lif": 0, "cuba": 1, "li": 2}


def _array(name: str, values: np.ndarray) -> str:
    flat = np.asarray(values).reshape(-1)
    body = ",".join(str(int(v)) for v in flat)
    return f"static const int32_t {name}[{max(flat.size, 1)}] = {{{body if flat.size else '0'}}};\n"


def c_header(tables: Tables) -> str:
    """The C header (``const int32_t`` arrays and a layer table) for ``tables``.

    Example:
      >>> import jax, numpy as np
      >>> from jsnn.nn import mlp
      >>> from jsnn.lower.tables import lower
      >>> tables, _ = lower(mlp(4, [3], 2, key=jax.random.key(0)), "xylo", np.ones((1, 5, 4)))
      >>> "JSNN_NUM_LAYERS 2" in c_header(tables)
      True
    """
    m = tables.manifest
    lines = [f"/* jsnn lowered tables: target {m['target']}, jsnn {m['jsnn_version']}, format "
             f"{m['format']} v{m['format_version']}. Generated: do not edit. */\n",
             "#ifndef JSNN_NET_H\n#define JSNN_NET_H\n#include <stdint.h>\n",
             f"#define JSNN_NUM_LAYERS {len(m['layers'])}\n",
             f"#define JSNN_INPUT_FEATURES {m['input']['features']}\n",
             f"#define JSNN_INPUT_MAX {m['input']['max']}\n"]
    descriptors = []
    for layer in m["layers"]:
        i = layer["index"]
        p = f"layer{i}."
        n = layer["out_features"]
        lines.append(_array(f"L{i}_WEIGHT", tables.arrays[p + "weight"]))
        lines.append(_array(f"L{i}_BIAS", tables.arrays[p + "bias"]))
        spiking = layer["kind"] != "li"
        lines.append(_array(f"L{i}_THRESHOLD", tables.arrays[p + "threshold"] if spiking else np.zeros(n)))
        lines.append(_array(f"L{i}_RESET", tables.arrays[p + "reset"] if spiking else np.zeros(n)))
        dm, ds = layer["decay_mem"], layer["decay_syn"] or {"encoding": "none", "code": 0}
        descriptors.append(
            f"  {{{_KIND[layer['kind']]}, {layer['in_features']}, {n}, L{i}_WEIGHT, L{i}_BIAS, L{i}_THRESHOLD, "
            f"L{i}_RESET, {layer['threshold_shift']}, {_ENC[dm['encoding']]}, {dm['code']}LL, "
            f"{_ENC[ds['encoding']]}, {ds['code']}LL, {layer['state_bits']}, "
            f"{int(layer['overflow'] == 'wrap')}, {layer['current_bits']}, "
            f"{int(layer['current_overflow'] == 'wrap')}, {int(layer.get('reset') == 'zero')}, "
            f"{int(layer.get('order') == 'reset_first')}, {int(layer.get('cmp') == '>=')}}}")
    lines.append(
        "typedef struct {\n  int kind, n_in, n_out;\n  const int32_t *weight, *bias, *threshold, *reset;\n"
        "  int shift, dec_mem_enc; int64_t dec_mem;\n  int dec_syn_enc; int64_t dec_syn;\n"
        "  int state_bits, state_wrap, current_bits, current_wrap, reset_zero, reset_first, cmp_ge;\n"
        "} jsnn_layer;\n")
    lines.append("static const jsnn_layer JSNN_LAYERS[JSNN_NUM_LAYERS] = {\n" + ",\n".join(descriptors) + "\n};\n")
    lines.append("#endif\n")
    return "".join(lines)


_PROGRAM = r"""/* jsnn reference integer simulator: runs the tables of jsnn_net.h on an input file.
 * Semantics: see "semantics" in manifest.json. Build: cc -O2 -o net jsnn_net.c
 * Usage: ./net input.txt   (input: "T N" then T*N counts, time first)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include "jsnn_net.h"

static int64_t floor_shift(int64_t x, int k) {  /* floor(x / 2^k), also for negative x */
  return x >= 0 ? (x >> k) : -((-x + (((int64_t)1 << k) - 1)) >> k);
}

static int64_t decay(int64_t v, int enc, int64_t code) {
  switch (enc) {
    case 1: return v - floor_shift(v, (int)code);
    case 2: { int64_t a = v < 0 ? -v : v; int64_t p = (a * (4096 - code)) >> 12; return v < 0 ? -p : p; }
    case 3: return floor_shift(v * code, 32);
    default: return v;
  }
}

static int64_t overflow(int64_t x, int bits, int wrap, long *events) {
  int64_t half = (int64_t)1 << (bits - 1), y;
  if (wrap) {
    uint64_t m = ((uint64_t)1 << bits) - 1;
    y = (int64_t)((uint64_t)x & m);
    if (y >= half) y -= (int64_t)1 << bits;
  } else {
    y = x > half - 1 ? half - 1 : (x < -(half - 1) ? -(half - 1) : x);
  }
  if (y != x) (*events)++;
  return y;
}

int main(int argc, char **argv) {
  if (argc != 2) { fprintf(stderr, "usage: %s input.txt\n", argv[0]); return 2; }
  FILE *f = fopen(argv[1], "r");
  if (!f) { fprintf(stderr, "cannot open %s\n", argv[1]); return 2; }
  int T, N;
  if (fscanf(f, "%d %d", &T, &N) != 2 || T < 1 || N != JSNN_INPUT_FEATURES) {
    fprintf(stderr, "bad header: expected 'T %d'\n", JSNN_INPUT_FEATURES); return 2;
  }
  int64_t *x = malloc(sizeof(int64_t) * (size_t)T * N);
  for (long i = 0; i < (long)T * N; i++) {
    long long value;
    if (fscanf(f, "%lld", &value) != 1 || value < 0 || value > JSNN_INPUT_MAX) {
      fprintf(stderr, "bad count at %ld (need %d..%d)\n", i, 0, JSNN_INPUT_MAX); return 2;
    }
    x[i] = value;
  }
  fclose(f);
  for (int l = 0; l < JSNN_NUM_LAYERS; l++) {
    const jsnn_layer *L = &JSNN_LAYERS[l];
    int64_t *y = malloc(sizeof(int64_t) * (size_t)T * L->n_out);
    int64_t *u = calloc(L->n_out, sizeof(int64_t)), *v = calloc(L->n_out, sizeof(int64_t));
    int64_t *s = calloc(L->n_out, sizeof(int64_t));
    long u_events = 0, v_events = 0;
    for (int t = 0; t < T; t++) {
      printf("L%d %d", l, t);
      for (int j = 0; j < L->n_out; j++) {
        int64_t c = L->bias[j];
        for (int i = 0; i < L->n_in; i++) c += (int64_t)L->weight[(long)j * L->n_in + i] * x[(long)t * L->n_in + i];
        c *= (int64_t)1 << L->shift;
        int64_t cur = c;
        if (L->kind == 1) {
          u[j] = overflow(decay(u[j], L->dec_syn_enc, L->dec_syn) + c, L->current_bits, L->current_wrap, &u_events);
          cur = u[j];
        }
        int64_t amount = (int64_t)L->reset[j] << L->shift, pre;
        if (L->kind == 2) pre = decay(v[j], L->dec_mem_enc, L->dec_mem) + cur;
        else if (L->reset_zero) pre = decay(s[j] ? 0 : v[j], L->dec_mem_enc, L->dec_mem) + cur;
        else if (L->reset_first) pre = decay(v[j] - amount * s[j], L->dec_mem_enc, L->dec_mem) + cur;
        else pre = decay(v[j], L->dec_mem_enc, L->dec_mem) - amount * s[j] + cur;
        v[j] = overflow(pre, L->state_bits, L->state_wrap, &v_events);
        int64_t theta = (int64_t)L->threshold[j] << L->shift;
        s[j] = L->kind == 2 ? 0 : (L->cmp_ge ? v[j] >= theta : v[j] > theta);
        y[(long)t * L->n_out + j] = L->kind == 2 ? v[j] : s[j];
        printf(" %lld", (long long)y[(long)t * L->n_out + j]);
      }
      printf("\n");
    }
    printf("overflow L%d %ld %ld\n", l, u_events, v_events);
    free(x); free(u); free(v); free(s);
    x = y;
  }
  free(x);
  return 0;
}
"""


def c_program() -> str:
    """The self-contained C program that runs ``jsnn_net.h`` on an input count file."""
    return _PROGRAM
