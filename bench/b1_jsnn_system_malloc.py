"""Workload B1 with jsnn on glibc's default ``malloc`` settings (``JSNN_HOST_MALLOC=system``).

A diagnostic for the T-scaling run: it shows what ``jsnn.hostmem`` saves at long sequences,
where XLA:CPU's temporary block of every step is otherwise mapped and page-faulted afresh.
Same interface as b1_jsnn.py.
"""

import os

os.environ["JSNN_HOST_MALLOC"] = "system"  # before jsnn is imported

from b1_jsnn import main

if __name__ == "__main__":
    main("jsnn_system_malloc")
