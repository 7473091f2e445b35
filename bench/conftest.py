"""Shared pieces of the benchmark suite: configurations, data, models and the machine header.

Run the suite:            python -m pytest bench/ --benchmark-json=/tmp/bench.json
Smoke run (CI, < 1 min):   python -m pytest bench/ --benchmark-disable

Environment:
  CNET_BENCH_SAMPLES       rows of the MNIST-shaped data (default 60,000; 1,024 with
                           --benchmark-disable)
  CNET_BENCH_WIDE_SAMPLES  rows for the wide configuration (default 8,192; 256 disabled)
  CNET_BENCH_ROUNDS        timed rounds of each one-epoch benchmark (default 5, after
                           0.2 s of warm-up rounds; at least a configuration's min_rounds, and as
                           many as fill MIN_SECONDS)
  CNET_BENCH_INTERLEAVED_ROUNDS  rounds of the round-robin cross-check (default 3)
  CNET_BENCH_PAUSE         seconds of sleep before a benchmark that calls BLAS (default 0.5:
                           lets the other libraries' BLAS/OpenMP threads go idle)
"""
import math
import os
import statistics
import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest

import cnet
from cnet import CrossEntropyLoss, Dense, Sequential, Trainer, optim
from cnet.data import load_digits

# DESIGN.md §6: widths, batch size, data set.
# min_rounds: an epoch of tiny lasts under a millisecond for cnet, so five rounds would be
# five samples of a few page faults and cold caches; 100 rounds at least (and MIN_SECONDS of
# them, below) give a median that repeats from run to run.
CONFIGS = {
    "tiny": dict(widths=(64, 32, 10), batch=16, data="digits", min_rounds=100),
    "mnist": dict(widths=(784, 128, 64, 10), batch=64, data="mnist"),
    "mnist-b32": dict(widths=(784, 128, 64, 10), batch=32, data="mnist"),
    "mnist-b256": dict(widths=(784, 128, 64, 10), batch=256, data="mnist"),
    "wide": dict(widths=(784, 1024, 1024, 10), batch=256, data="wide"),
}
LR = 1e-3
# Every one-epoch benchmark times at least this long: on this 2-core virtual machine,
# stretches of 0.1-0.3 s ran a single thread's epochs 1.4-1.5x slower on either core (the
# host's other work), and all of cnet's 100 tiny rounds (60 ms) once fell in one (11.6x the
# reference instead of 16x).
MIN_SECONDS = 1.5

# The benchmark modules import these helpers as `bench_common` (with --import-mode=importlib
# a conftest is not importable by name, and tests/conftest.py would shadow it anyway).
sys.modules["bench_common"] = sys.modules[__name__]


def _disabled(config):
    return bool(config.getoption("benchmark_disable", False))


def _env_int(name, default):
    value = os.environ.get(name)
    return int(value) if value else default


def make_model(widths, seed=0, dtype="float32"):
    """Dense layers of the given widths with ReLU between them (PyTorch's init, seeded)."""
    return Sequential.mlp(widths, dtype=dtype, seed=seed)


def make_trainer(model):
    return Trainer(model, CrossEntropyLoss(), optim.Adam(model.parameters(), lr=LR))


def torch_model(model):
    """The same network in PyTorch, loaded with the cnet model's weights (same keys)."""
    torch = pytest.importorskip("torch")
    layers = []
    for layer in model.layers:
        if isinstance(layer, Dense):
            layers.append(torch.nn.Linear(layer.in_features, layer.out_features))
        else:
            layers.append(torch.nn.ReLU())
    net = torch.nn.Sequential(*layers)
    net.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    return net


PAUSE_S = float(os.environ.get("CNET_BENCH_PAUSE", "0.5"))


def settle(benchmark):
    """Sleep before a benchmark that calls BLAS: cnet (scipy's OpenBLAS), the reference
    (NumPy's own OpenBLAS) and PyTorch (its OpenMP pool) each keep worker threads spinning
    for ~0.1 s after their last call, and on 2 cores the next library's threads then wait for
    time slices (an epoch right after another library's ran 10-100× slower here). A user's
    process runs one of them, so the comparison lets the others go idle first."""
    if not benchmark.disabled:
        time.sleep(PAUSE_S)


class Rounds:
    """Calls fn(round_index) and records each call's CPU seconds (user + sys of the process,
    all threads: time.process_time)."""

    def __init__(self, fn):
        self.fn, self.cpu, self.wall, self.calls = fn, [], [], 0

    def __call__(self):
        self.calls += 1
        c0, t0 = time.process_time(), time.perf_counter()
        result = self.fn(self.calls)
        c1, t1 = time.process_time(), time.perf_counter()
        self.cpu.append(c1 - c0)
        self.wall.append(t1 - t0)
        return result

    def info(self, warmup):
        timed = self.cpu[warmup:] or self.cpu
        return {"cpu_s": statistics.median(timed), "cpu_s_rounds": timed}


def run_rounds(benchmark, fn, rounds, extra):
    """benchmark.pedantic over one-epoch runs: untimed warm-up rounds (two at least, the
    first building what a first call builds, and 0.2 s at least), then `rounds` timed ones,
    or as many as fill MIN_SECONDS at the fastest warm-up round's time after the first;
    records CPU seconds per round and the load average in extra_info."""
    recorder = Rounds(fn)
    warmup = 0
    if not benchmark.disabled:
        start = time.perf_counter()
        while warmup < 2 or time.perf_counter() - start < 0.2:
            recorder()
            warmup += 1
        rounds = max(rounds, min(10_000, math.ceil(MIN_SECONDS / min(recorder.wall[1:]))))
    result = benchmark.pedantic(recorder, rounds=rounds, iterations=1)
    benchmark.extra_info.update(extra)
    benchmark.extra_info.update({"warmup_rounds": warmup, "min_seconds": MIN_SECONDS})
    benchmark.extra_info.update(recorder.info(warmup))
    benchmark.extra_info["loadavg_after"] = os.getloadavg()[0]
    return result


@pytest.fixture(scope="session")
def settings(pytestconfig):
    disabled = _disabled(pytestconfig)
    return SimpleNamespace(
        disabled=disabled,
        mnist_samples=_env_int("CNET_BENCH_SAMPLES", 1024 if disabled else 60_000),
        wide_samples=_env_int("CNET_BENCH_WIDE_SAMPLES", 256 if disabled else 8192),
        rounds=1 if disabled else _env_int("CNET_BENCH_ROUNDS", 5),
        interleaved_rounds=1 if disabled else _env_int("CNET_BENCH_INTERLEAVED_ROUNDS", 3),
    )


def make_data(name, rows=None):
    """(X float32 C-contiguous, y int64) of a configuration's data: the digits, or `rows`
    seeded MNIST-shaped rows ("mnist", "wide")."""
    if name == "digits":
        X, y = load_digits()
        return np.ascontiguousarray(X / 16, dtype=np.float32), y
    rng = np.random.default_rng(1234 if name == "mnist" else 4321)
    X = rng.random((rows, 784), dtype=np.float32)   # uniform [0, 1), MNIST-shaped
    return X, rng.integers(0, 10, rows, dtype=np.int64)


@pytest.fixture(scope="session")
def datasets(settings):
    """datasets(name) -> (X, y) of make_data, built once per session."""
    cache = {}

    def get(name):
        if name not in cache:
            rows = settings.mnist_samples if name == "mnist" else settings.wide_samples
            cache[name] = make_data(name, rows)
        return cache[name]

    return get


@pytest.fixture(scope="session")
def inference_data():
    """10,000 MNIST-shaped rows for the predict benchmarks."""
    return np.random.default_rng(99).random((10_000, 784), dtype=np.float32)


_LOAD_AT_START = []


def pytest_sessionstart(session):
    _LOAD_AT_START.extend(os.getloadavg())


def pytest_benchmark_update_machine_info(config, machine_info):
    """The header report.py prints: BLAS and its threads, library versions, CPU count, load."""
    import scipy
    try:
        import torch   # loads its own BLAS / OpenMP runtimes, so threadpoolctl lists them
    except ImportError:
        torch = None
    info = {
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "cnet": cnet.__version__,
        "cnet_threads": cnet.get_num_threads(),        # None: as many as the BLAS uses
        "cnet_threaded_min_work": cnet.get_threaded_min_work(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "loadavg_start": _LOAD_AT_START,
        "loadavg_end": os.getloadavg(),
        "argv": sys.argv,
        "env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                           "MKL_NUM_THREADS", "CNET_BENCH_SAMPLES",
                                           "CNET_BENCH_WIDE_SAMPLES", "CNET_BENCH_ROUNDS",
                                           "CNET_BENCH_INTERLEAVED_ROUNDS", "CNET_BENCH_PAUSE")
                if k in os.environ},
    }
    try:
        from threadpoolctl import threadpool_info
        info["threadpools"] = [
            {k: pool.get(k) for k in ("user_api", "internal_api", "version", "num_threads",
                                      "threading_layer", "architecture", "filepath")}
            for pool in threadpool_info()]
    except ImportError:
        info["threadpools"] = None
    info["torch"] = torch.__version__ if torch else None
    info["torch_threads"] = torch.get_num_threads() if torch else None
    machine_info["cnet_bench"] = info
