"""Run every benchmark: python -m bench (make bench). Each prints its figures and writes bench/results/.

Each runs in a process of its own: the app reads its settings (and the store it talks to) once.
"""
from __future__ import annotations

import subprocess
import sys

# bench.scale_model reads what bench.cost measured. bench.local_load takes a few minutes (1,000
# sockets, four rates). bench.chaos last: the full run takes minutes (a local stack, 50 visitors,
# 3 agents) and exits non-zero when a message was lost, duplicated or never seen.
BENCHMARKS = ["bench.widget_size", "bench.cost", "bench.scale_model", "bench.sweep_reads", "bench.cold_start",
              "bench.local_store", "bench.local_load", "bench.chaos"]

if __name__ == "__main__":
    for name in BENCHMARKS:
        print(f"== {name}", flush=True)
        subprocess.run([sys.executable, "-m", name], check=True)
