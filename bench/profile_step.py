"""Run training epochs of one benchmark configuration, for a profiler to watch.

    perf record -o /tmp/perf.data python bench/profile_step.py mnist cnet 8
    perf report -i /tmp/perf.data --no-children --sort symbol

impl: cnet (Trainer.fit), floor (the GEMM floor's products only) or reference (NumPy).
Prints wall and CPU microseconds per step; the data are made before the first epoch, so a
profile of many epochs is mostly steady-state training.
"""
import argparse
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import conftest as bench  # noqa: E402  (the suite's configurations and helpers)
from test_training import cnet_epoch, gemm_floor_epoch, reference_epoch  # noqa: E402

import cnet  # noqa: E402

EPOCHS = {"cnet": cnet_epoch, "floor": gemm_floor_epoch, "reference": reference_epoch}
ROWS = {"mnist": 60_000, "wide": 8192}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", choices=sorted(bench.CONFIGS))
    parser.add_argument("impl", choices=sorted(EPOCHS), nargs="?", default="cnet")
    parser.add_argument("epochs", type=int, nargs="?", default=5)
    parser.add_argument("--threaded-min-work", type=int, default=None, metavar="N",
                        help="cnet.set_threaded_min_work(N) first (a huge N: one BLAS thread)")
    parser.add_argument("--autotune", action="store_true",
                        help="cnet.set_thread_autotune(True) first")
    args = parser.parse_args(argv)
    if args.threaded_min_work is not None:
        cnet.set_threaded_min_work(args.threaded_min_work)
    cnet.set_thread_autotune(args.autotune)
    spec = bench.CONFIGS[args.config]
    X, y = bench.make_data(spec["data"], ROWS.get(spec["data"]))
    epoch = EPOCHS[args.impl](bench.make_model(spec["widths"]), X, y, spec["batch"])
    epoch(0)                                       # warm-up
    wall, cpu = time.perf_counter(), time.process_time()
    for r in range(args.epochs):
        epoch(r + 1)
    steps = math.ceil(len(X) / spec["batch"]) * args.epochs
    print(f"{args.config} {args.impl}: {(time.perf_counter() - wall) / steps * 1e6:.1f} µs "
          f"per step, CPU {(time.process_time() - cpu) / steps * 1e6:.1f} µs")


if __name__ == "__main__":
    main()
