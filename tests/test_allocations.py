"""No allocation in the steady state (DESIGN.md §3): a training step creates no new arrays.

Measured with tracemalloc, which sees every NumPy data buffer (in NumPy's own domain,
np.lib.tracemalloc_domain) and every Python object, including the ndarray object itself:
  - net: what a call leaves behind in NumPy's domain (arrays kept);
  - peak: the most memory held during a call above what was held before it. A step that
    creates an array, even one freed before the step ends, raises the peak by the array's
    size, while the call's fixed overhead (argument buffers, the result tuple) is the same
    for 0 steps and for 50. Python's free lists make that overhead vary by a few hundred
    bytes from call to call, so the batch is 256 rows: every array a step could need (the
    gathered targets, 2 KiB, and larger) stands well above the 1 KiB slack.
The control tests run the same measurements on runners that do allocate, to show that these
assertions fail when a step allocates.
"""
import contextlib
import gc
import tracemalloc

import numpy as np
import pytest

import cnet
from cnet import (CrossEntropyLoss, Dense, MSELoss, ReLU, Sequential, Tanh, Trainer, _engine,
                  optim)
from helpers import every_product_shared

NUMPY = tracemalloc.DomainFilter(True, np.lib.tracemalloc_domain)
N, BATCH = 12800, 256        # 50 steps per epoch
STEPS = 50
PEAK_SLACK = 1024            # bytes: half the smallest batch-sized array, (256,) int64


def measure(fn):
    """Run fn once untraced-warm, then traced: (numpy net bytes, numpy net blocks, peak above
    the start in bytes)."""
    gc.disable()
    tracemalloc.start()
    try:
        fn()
        before = tracemalloc.take_snapshot().filter_traces([NUMPY])
        start, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        fn()
        _, peak = tracemalloc.get_traced_memory()
        after = tracemalloc.take_snapshot().filter_traces([NUMPY])
    finally:
        tracemalloc.stop()
        gc.enable()
    diff = after.compare_to(before, "filename")
    return (sum(s.size_diff for s in diff), sum(s.count_diff for s in diff), peak - start)


SETUPS = {
    "cross_entropy-adam-float32": (CrossEntropyLoss, lambda p: optim.Adam(p, lr=1e-3), "float32"),
    "mse-sgd_momentum-float64": (MSELoss, lambda p: optim.SGD(p, lr=1e-2, momentum=0.9),
                                 "float64"),
    "cross_entropy-adam-float32-team": (CrossEntropyLoss, lambda p: optim.Adam(p, lr=1e-3),
                                        "float32"),
}


@contextlib.contextmanager
def threads_for(name):
    """For a '-team' setup, a team of two threads sharing every layer it can (the two
    hidden ones by batch rows: 256 rows through 48 and 32 outputs; the head by its 32
    inputs), else the defaults."""
    if not name.endswith("-team"):
        yield
        return
    with every_product_shared():
        cnet.set_num_threads(2)
        yield


def setup(name):
    make_loss, make_opt, dtype = SETUPS[name]
    rng = np.random.default_rng(0)
    model = Sequential(Dense(64, 48), ReLU(), Dense(48, 32), Tanh(), Dense(32, 10),
                       dtype=dtype, seed=0)
    X = rng.random((N, 64)).astype(dtype)
    if make_loss is CrossEntropyLoss:
        y = rng.integers(0, 10, N).astype(np.int64)
    else:
        y = rng.standard_normal((N, 10)).astype(dtype)
    trainer = Trainer(model, make_loss(), make_opt(model.parameters()))
    trainer.fit(X, y, epochs=1, batch_size=BATCH, seed=0, verbose=0)   # warm up: the runner
    return trainer, X, y


def runner_call(runner, X, y, order, losses, correct):
    return lambda steps: runner.train_batches(X, y, order, 0, steps, losses, correct)


def step_costs(call, repeats=5):
    """(numpy net bytes, blocks, peak above the same call's 0-step peak) over STEPS steps.
    Each is the smallest of a few runs: a Python free list that happens to be empty costs
    one object's allocation at random; an array created per step costs it every time."""
    runs = [measure(lambda: call(STEPS)) for _ in range(repeats)]
    base = min(measure(lambda: call(0))[2] for _ in range(repeats))
    return (min(r[0] for r in runs), min(r[1] for r in runs), min(r[2] for r in runs) - base)


@pytest.mark.parametrize("name", SETUPS)
def test_train_batches_allocates_nothing_per_step(name):
    with threads_for(name):
        trainer, X, y = setup(name)
        runner = trainer._runner(BATCH, training=True)
        order = np.random.default_rng(1).permutation(N)
        losses, correct = np.empty(STEPS), np.zeros(STEPS, np.int64)
        before = trainer.model.flat_data.copy()
        net_bytes, net_blocks, extra_peak = step_costs(runner_call(runner, X, y, order,
                                                                   losses, correct))
        if name.endswith("-team") and _engine.HAS_TEAM:
            assert runner.shared_layers() == {0: ("rows", 2), 2: ("rows", 2), 4: ("inputs", 2)}
    assert not np.array_equal(trainer.model.flat_data, before)   # the steps did train
    assert np.isfinite(losses).all()
    assert (net_bytes, net_blocks) == (0, 0)
    assert extra_peak <= PEAK_SLACK, f"{STEPS} steps held {extra_peak} bytes more than 0 steps"


@pytest.mark.parametrize("name", SETUPS)
def test_fit_allocation_does_not_grow_with_the_number_of_steps(name):
    with threads_for(name):
        trainer, X, y = setup(name)
        fit = lambda epochs: trainer.fit(X, y, epochs=epochs, batch_size=BATCH,  # noqa: E731
                                         seed=2, verbose=0)
        # 2 and 6 epochs both hold two epoch permutations at once at their peak; 6 epochs
        # run 200 more steps. Per-epoch bookkeeping (History) is small; per-step arrays not.
        net2, blocks2, peak2 = measure(lambda: fit(2))
        net6, blocks6, peak6 = measure(lambda: fit(6))
    assert (net2, blocks2) == (0, 0)
    assert (net6, blocks6) == (0, 0)
    extra_steps = 4 * (N // BATCH)
    assert peak6 - peak2 < 4096, f"{peak6 - peak2} bytes more for {extra_steps} more steps"


# --- controls: the same measurements catch a step that allocates ------------------------------

class ScratchRunner:
    """The real runner driven one step per call, optionally creating one (B,) int64 array
    per step: the same structure either way, so only the array differs."""

    def __init__(self, runner, allocate):
        self.runner, self.allocate = runner, allocate
        self.threaded = runner.threaded

    def train_batches(self, X, y, order, first, n, losses, correct, stop_on_nan=True,
                      one_thread=False):
        scratch = None
        for k in range(max(n, 1)):
            self.runner.train_batches(X, y, order, first + k, 1 if n else 0, losses, correct,
                                      stop_on_nan, one_thread)
            if self.allocate:
                scratch = np.empty(BATCH, np.int64)   # lives until the next step's
        return n, -1


class KeepingRunner(ScratchRunner):
    """Keeps one small array per step (a leak)."""

    def __init__(self, runner):
        super().__init__(runner, allocate=False)
        self.kept = []

    def train_batches(self, X, y, order, first, n, losses, correct, stop_on_nan=True,
                      one_thread=False):
        for k in range(n):
            self.runner.train_batches(X, y, order, first + k, 1, losses[k:k + 1],
                                      correct[k:k + 1], stop_on_nan, one_thread)
            self.kept.append(np.zeros(1))
        return n, -1


@pytest.mark.parametrize("allocate", [False, True])
def test_control_a_step_that_creates_an_array_is_caught(allocate):
    trainer, X, y = setup("cross_entropy-adam-float32")
    runner = ScratchRunner(trainer._runner(BATCH, training=True), allocate)
    order = np.random.default_rng(1).permutation(N)
    losses, correct = np.empty(STEPS), np.zeros(STEPS, np.int64)
    _, _, extra_peak = step_costs(runner_call(runner, X, y, order, losses, correct))
    assert (extra_peak > PEAK_SLACK) == allocate, extra_peak


def test_control_a_fit_that_keeps_an_array_per_step_is_caught():
    trainer, X, y = setup("cross_entropy-adam-float32")
    runner = KeepingRunner(trainer._runner(BATCH, training=True))
    trainer._runners[(BATCH, True)] = (runner, trainer._runners[(BATCH, True)][1])  # in its place
    net, blocks, _ = measure(lambda: trainer.fit(X, y, epochs=1, batch_size=BATCH, seed=2,
                                                 verbose=0))
    assert blocks >= N // BATCH and net >= 8 * (N // BATCH)
