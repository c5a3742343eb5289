"""Run every benchmark: python -m bench (make bench). Each prints its figures and writes bench/results/."""
from __future__ import annotations

import runpy
import sys

# bench.chaos last: the full run takes minutes (a local stack, 50 visitors, 3 agents) and exits
# non-zero when a message was lost, duplicated or never seen.
BENCHMARKS = ["bench.widget_size", "bench.cost", "bench.sweep_reads", "bench.local_store", "bench.chaos"]

if __name__ == "__main__":
    for name in BENCHMARKS:
        print(f"== {name}", flush=True)
        sys.argv = [name]
        runpy.run_module(name, run_name="__main__")
