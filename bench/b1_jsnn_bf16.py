"""Workload B1 with jsnn in mixed precision: bfloat16 matmul operands, float32 accumulation and state.

Binary input and hidden spikes are exact in bfloat16; only the weights are rounded in the
matmuls (the float32 master weights are what Adam updates). Same interface as b1_jsnn.py.
"""

from b1_jsnn import main

if __name__ == "__main__":
    main("jsnn_bf16", compute_dtype="bfloat16")
