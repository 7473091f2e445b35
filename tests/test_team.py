"""The step runner's team of threads: large Dense layers split by output feature (by input
feature, where the outputs are too few; by batch rows, where the batch holds at least twice
the outputs) among threads must train, evaluate and predict as one thread does (to the last
bits, where the BLAS picks another kernel for a smaller product or a weight gradient is
summed in parts), and repeat bit for bit."""
import os
import time

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal

import cnet
from cnet import (BatchNorm1d, CrossEntropyLoss, Dense, Dropout, MSELoss, ReLU, Sequential,
                  Tanh, Trainer, _engine, optim)
from helpers import (TINY32, every_product_shared, first_moment_after_zero_gradients,
                     in_threads, scipy_blas_threads)

needs_team = pytest.mark.skipif(not _engine.HAS_TEAM, reason="no threads on this platform")
TOL = {"float32": dict(rtol=2e-5, atol=1e-6), "float64": dict(rtol=1e-12, atol=1e-14)}


@pytest.fixture
def threads():
    """every_product_shared for the test; yields set_num_threads."""
    with every_product_shared():
        yield cnet.set_num_threads


def problem(dtype, seed=0):
    """Widths that split into unequal pieces (40 and 70 outputs: blocks of 16), a layer with
    too few outputs to split that is split by its 70 inputs instead (20 outputs), one too
    narrow either way (20 to 4), dropout and batch norm between."""
    model = Sequential(Dense(30, 40), Tanh(), Dense(40, 70), BatchNorm1d(70), ReLU(),
                       Dropout(0.2), Dense(70, 20), ReLU(), Dense(20, 4), dtype=dtype,
                       seed=seed)
    rng = np.random.default_rng(seed)
    return model, rng.standard_normal((83, 30)).astype(dtype), rng.integers(0, 4, 83)


def groups_cutting_pieces(model):
    """Param groups whose boundaries fall inside layers that are split among threads."""
    p = list(model.parameters())   # 0.w 0.b 2.w 2.b 3.w 3.b 6.w 6.b 8.w 8.b
    return [{"params": [p[0], p[3]]}, {"params": [p[1], p[2], p[4], p[5]], "lr": 0.003},
            {"params": p[6:]}]


def train(n_threads, dtype, name, max_grad_norm=None, make=problem, batch=16,
          groups=groups_cutting_pieces):
    """Three epochs of the problem `make` makes; (model, trainer, runner, X, y)."""
    cnet.set_num_threads(n_threads)
    model, X, y = make(dtype)
    opt = getattr(optim, name)(groups(model), lr=0.01)
    trainer = Trainer(model, CrossEntropyLoss(), opt, max_grad_norm=max_grad_norm)
    trainer.fit(X, y, epochs=3, batch_size=batch, seed=1, verbose=0)
    runner = trainer._runner(batch, training=True, y=y)
    return model, trainer, runner, X, y


@needs_team
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", ["SGD", "Adam", "RMSprop", "Adagrad"])
@pytest.mark.parametrize("n_threads", [2, 3, 7])
def test_team_trains_as_one_thread(threads, n_threads, name, dtype):
    alone, trainer_alone, runner_alone, X, y = train(1, dtype, name)
    shared, trainer_shared, runner_shared, _, _ = train(n_threads, dtype, name)
    assert runner_alone.team_size == 1
    # At most one thread per whole block of 16 outputs: 2 for 40 outputs, 4 for 70.
    assert runner_shared.team_size == min(n_threads, 4)
    assert not np.array_equal(alone.flat_data, problem(dtype)[0].flat_data)
    assert_allclose(shared.flat_data, alone.flat_data, **TOL[dtype])
    assert_allclose(shared.flat_buffers, alone.flat_buffers, **TOL[dtype])  # batch norm
    assert_allclose(trainer_shared.predict(X), trainer_alone.predict(X), **TOL[dtype])
    loss_shared, loss_alone = trainer_shared.evaluate(X, y), trainer_alone.evaluate(X, y)
    assert loss_shared == pytest.approx(loss_alone, rel=TOL[dtype]["rtol"])
    again = train(n_threads, dtype, name)[0]     # the same team: the same bits
    assert_array_equal(again.flat_data, shared.flat_data)


@needs_team
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", ["SGD", "Adam"])
def test_team_splits_a_narrow_head_by_input_feature(threads, name, dtype):
    """Where only a layer with few outputs is large enough to share (a classifier's head
    after a wide layer), the team splits it by input feature: its rows of the batch forward,
    its columns of the weight gradient and of d loss / d input; it trains as one thread."""
    X = np.random.default_rng(3).standard_normal((100, 2)).astype(dtype)
    y = np.random.default_rng(4).integers(0, 8, 100)
    cnet.set_threaded_min_work(40_000)     # the head (64 x 128 x 8) only, not 64 x 2 x 128
    results = []
    for n_threads in (1, 2):
        cnet.set_num_threads(n_threads)
        model = narrow_head_model(dtype)
        trainer = Trainer(model, CrossEntropyLoss(),
                          getattr(optim, name)(model.parameters(), lr=0.05))
        trainer.fit(X, y, epochs=3, batch_size=64, seed=1, verbose=0)
        assert trainer._runner(64, training=True).team_size == n_threads
        results.append(model.flat_data)
    assert not np.array_equal(results[0], narrow_head_model(dtype).flat_data)
    assert_allclose(results[1], results[0], **TOL[dtype])


def narrow_head_model(dtype):
    return Sequential(Dense(2, 128), ReLU(), Dense(128, 8), dtype=dtype, seed=5)


def rows_problem(dtype):
    """Batches of 96 rows, at least twice the outputs of the first two Dense layers (48 and
    40), which the team then splits by rows; a last batch of two rows (194 = 2 x 96 + 2), fewer
    than three threads; batch norm after a layer shared by rows (without a bias: its
    gradient would be rounding noise, which Adam scales up to whole steps); a head too
    narrow to split by outputs."""
    model = Sequential(Dense(30, 48), Tanh(), Dense(48, 40, bias=False), BatchNorm1d(40), ReLU(),
                       Dense(40, 4), dtype=dtype, seed=2)
    rng = np.random.default_rng(2)
    return model, rng.standard_normal((194, 30)).astype(dtype), rng.integers(0, 4, 194)


def train_by_rows(n_threads, dtype, name, max_grad_norm=None):
    return train(n_threads, dtype, name, max_grad_norm, make=rows_problem, batch=96,
                 groups=lambda model: model.parameters())


@needs_team
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name, max_grad_norm", [("SGD", None), ("Adam", None),
                                                 ("Adam", 0.05)])
@pytest.mark.parametrize("n_threads", [2, 3])
def test_team_shares_a_large_batch_by_rows(threads, n_threads, name, max_grad_norm, dtype):
    """Where a batch has at least twice a layer's outputs, each thread takes its rows of
    the batch through the layer (gathering them itself, for the first), and the activation
    after it; the weight gradient is its threads' partial sums added. It trains as one
    thread does, and repeats bit for bit."""
    alone, trainer_alone, runner_alone, X, _ = train_by_rows(1, dtype, name, max_grad_norm)
    shared, trainer, runner, _, _ = train_by_rows(n_threads, dtype, name, max_grad_norm)
    assert runner_alone.shared_layers() == {}
    assert runner.shared_layers() == {0: ("rows", n_threads), 2: ("rows", 2),
                                      5: ("inputs", 2)}
    assert not np.array_equal(alone.flat_data, rows_problem(dtype)[0].flat_data)
    # float32 gradients summed in parts differ in the last bits, which Adam's normalised
    # steps carry into the weights (up to 5e-6 after 9 steps with SSE2 kernels); a part
    # missing or added twice would move them by about the learning rate (1e-2).
    tol = dict(rtol=1e-3, atol=2e-5) if dtype == "float32" else TOL[dtype]
    assert_allclose(shared.flat_data, alone.flat_data, **tol)
    assert_allclose(shared.flat_buffers, alone.flat_buffers, **tol)
    assert_allclose(trainer.predict(X), trainer_alone.predict(X), **tol)
    again = train_by_rows(n_threads, dtype, name, max_grad_norm)[0]
    assert_array_equal(again.flat_data, shared.flat_data)


@needs_team
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_team_with_clipping_updates_after_the_whole_backward(threads, dtype):
    """Clipping needs every gradient first, so the pieces leave the update to the end."""
    alone = train(1, dtype, "Adam", max_grad_norm=0.05)[0]
    shared = train(3, dtype, "Adam", max_grad_norm=0.05)[0]
    assert_allclose(shared.flat_data, alone.flat_data, **TOL[dtype])
    assert not np.array_equal(alone.flat_data, train(1, dtype, "Adam")[0].flat_data)


@needs_team
@pytest.mark.parametrize("rows", [40, 130])     # 130: the two hidden layers shared by rows
def test_team_gradients_for_closure_optimizers(threads, rows):
    """loss_and_grad (LBFGS's closure) runs forward and backward with the team too."""
    results = []
    rng = np.random.default_rng(1)
    X, target = rng.standard_normal((rows, 30)), rng.standard_normal((rows, 5))
    for n_threads in (1, 4):
        cnet.set_num_threads(n_threads)
        model = Sequential.mlp([30, 64, 48, 5], dtype="float64", seed=0)
        trainer = Trainer(model, MSELoss(),
                          optim.LBFGS(model.parameters(), lr=0.5, max_iter=5))
        trainer.fit(X, target, epochs=2, batch_size=None, verbose=0)
        results.append(model.flat_data.copy())
    how = "rows" if rows == 130 else "outputs"
    assert trainer._runner(rows, training=True).shared_layers()[0] == (how, 4)
    assert_allclose(results[0], results[1], **TOL["float64"])
    assert not np.array_equal(results[0], Sequential.mlp([30, 64, 48, 5], dtype="float64",
                                                         seed=0).flat_data)


@needs_team
def test_team_predicts_each_thread_its_rows(threads):
    """Prediction splits each batch by rows (at least 16 a thread), read in place."""
    model = Sequential(Dense(50, 96), ReLU(), Dropout(0.5), Dense(96, 3), dtype="float32",
                       seed=2)
    X = np.random.default_rng(0).standard_normal((700, 50)).astype(np.float32)
    runner = _engine.StepRunner(model, 64)
    outputs = []
    for n_threads, size in ((1, 1), (2, 2), (3, 3), (6, 4)):    # 64 rows: at most 4
        cnet.set_num_threads(n_threads)
        out = np.empty((700, 3), np.float32)
        assert runner.predict(X, out) == -1
        assert runner.team_size == size
        outputs.append(out)
    assert_allclose(outputs[3], outputs[0], **TOL["float32"])
    assert_allclose(outputs[1], outputs[0], **TOL["float32"])
    assert_allclose(outputs[2], outputs[0], **TOL["float32"])
    expected = np.maximum(X @ model[0].weight.data.T + model[0].bias.data, 0)
    expected = expected @ model[3].weight.data.T + model[3].bias.data
    np.testing.assert_allclose(outputs[0], expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("n_threads", [1, 2])
@given(n=st.integers(1, 140), batch=st.integers(1, 20) | st.integers(64, 70),
       seed=st.integers(0, 2**16),
       bad=st.lists(st.integers(0, 69), min_size=1, max_size=3),
       value=st.sampled_from([np.nan, np.inf, -np.inf]),
       dtype=st.sampled_from(["float32", "float64"]))
def test_fit_names_the_first_non_finite_row_in_the_shuffled_order(n_threads, n, batch, seed,
                                                                   bad, value, dtype):
    """Each batch's rows are gathered in the epoch's order: fit names the first non-finite
    row in that order, whatever the batch size, and with or without a team sharing the first
    layer, by outputs (every thread gathers the batch) or by rows (batches of 64 or more:
    each its own rows). The gather requests rows a few ahead of its copy, and a team's
    workers the next batch's while they wait: under AddressSanitizer (scripts/sanitize.sh)
    this test also catches either reading past the order's last entry (checked by moving
    each bound)."""
    bad = sorted({b % n for b in bad})
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 40)).astype(dtype)
    X[bad, rng.integers(0, 40, len(bad))] = value
    y = rng.integers(0, 3, n)
    expected = next(int(row) for row in np.random.default_rng(seed).permutation(n)
                    if row in bad)
    model = Sequential(Dense(40, 32), ReLU(), Dense(32, 3), dtype=dtype, seed=0)
    before = model.flat_data.copy()
    with every_product_shared():
        cnet.set_num_threads(n_threads)
        trainer = Trainer(model, CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1))
        with pytest.raises(ValueError, match=f"at row {expected}$"):
            trainer.fit(X, y, batch_size=batch, seed=seed, verbose=0)
        if n_threads == 2 and _engine.HAS_TEAM:     # 32 outputs: two blocks of 16
            runner = trainer._runner(min(batch, n), training=True, y=y)
            how = "rows" if min(batch, n) >= 64 else "outputs"
            assert runner.shared_layers()[0] == (how, 2)
    assert np.array_equal(model.flat_data, before)


@needs_team
def test_prediction_nan_rows_and_batch_norm(threads):
    """Each thread checks its own rows: the first non-finite row is found wherever it is.
    A BatchNorm layer keeps prediction on one thread (its statistics buffers are shared)."""
    cnet.set_num_threads(3)
    model = Sequential(Dense(20, 40), ReLU(), Dense(40, 2), dtype="float64", seed=0)
    runner = _engine.StepRunner(model, 96)
    X = np.random.default_rng(0).standard_normal((500, 20))
    out = np.empty((500, 2))
    # [10, 80]: two in one batch of 96, in the shares of threads 0 and 2: the first is named
    for bad_rows in ([450], [130, 420], [96], [0, 499], [10, 80]):
        Xbad = X.copy()
        Xbad[bad_rows, 3] = np.nan
        assert runner.predict(Xbad, out) == bad_rows[0]
        assert runner.team_size == 3
    model = Sequential(Dense(20, 40), BatchNorm1d(40), Dense(40, 2), dtype="float64", seed=0)
    model.eval()
    runner = _engine.StepRunner(model, 96)
    assert runner.predict(X, out) == -1 and runner.team_size == 1


def fit_team_size(model, batch=16):
    """The team size of one epoch of fit (batches of 16 rows)."""
    X = np.ones((batch * 3, model.in_features), model.dtype)
    y = np.arange(batch * 3) % model.out_features
    trainer = Trainer(model, CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1))
    trainer.fit(X, y, epochs=1, batch_size=batch, verbose=0)
    return trainer._runner(batch, training=True, y=y).team_size


@needs_team
def test_who_shares_a_layer(threads):
    """Only Dense layers with at least two blocks of 16 outputs and a product of at least
    set_threaded_min_work multiply-adds; set_num_threads(1) keeps every step alone."""
    cnet.set_num_threads(4)
    model = Sequential(Dense(8, 31), ReLU(), Dense(31, 4), dtype="float32", seed=0)
    assert fit_team_size(model) == 1          # 31 outputs: one block
    model = Sequential(Dense(8, 32), ReLU(), Dense(32, 4), dtype="float32", seed=0)
    assert fit_team_size(model) == 2
    cnet.set_threaded_min_work(16 * 8 * 32 + 1)   # the product is now too small
    assert fit_team_size(model) == 1
    cnet.set_threaded_min_work(0)
    cnet.set_num_threads(1)
    assert fit_team_size(model) == 1


def test_default_team_follows_the_blas(threads):
    """By default as many threads as the BLAS may use: under threadpoolctl's limit of one,
    the calling thread alone."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    cnet.set_num_threads(None)
    model = Sequential(Dense(8, 64), ReLU(), Dense(64, 4), dtype="float32", seed=0)
    runner = _engine.StepRunner(model, 64)
    X, out = np.ones((64, 8), np.float32), np.empty((64, 4), np.float32)
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        runner.predict(X, out)
        assert runner.team_size == 1
    runner.predict(X, out)
    if _engine.HAS_TEAM and cnet._blas.THREAD_CONTROL:
        assert runner.team_size == min(scipy_blas_threads(), 4)


@needs_team
@pytest.mark.skipif(not cnet.set_flush_denormal(cnet.get_flush_denormal()),
                    reason="this CPU has no flush-to-zero mode")
def test_workers_flush_denormals_as_the_calling_thread(threads):
    """Adam's first moments of a layer whose gradient is zero decay into the denormals;
    flushed on every thread, each is 0 or still normal, in the rows the workers own too."""
    cnet.set_num_threads(4)
    for flush in (True, False):
        moment, trainer = first_moment_after_zero_gradients(flush, hidden=64)
        assert trainer._runner(8, training=True).team_size == 4
        if flush:
            assert np.all((moment == 0) | (moment >= TINY32))
        else:
            assert np.all((moment > 0) & (moment < TINY32))


@pytest.mark.parametrize("bad, error", [(0, ValueError), (-2, ValueError), (1025, ValueError),
                                        (2.0, TypeError), (True, TypeError), ("4", TypeError)])
def test_set_num_threads_rejects_what_is_not_a_count(threads, bad, error):
    cnet.set_num_threads(3)
    with pytest.raises(error, match="n: expected an int"):
        cnet.set_num_threads(bad)
    assert cnet.get_num_threads() == 3


def test_set_num_threads_returns_the_previous_setting(threads):
    cnet.set_num_threads(None)
    assert cnet.get_num_threads() is None      # the default: follow the BLAS
    assert cnet.set_num_threads(5) is None
    assert cnet.set_num_threads(np.int64(2)) == 5
    assert cnet.get_num_threads() == 2


@needs_team
def test_models_with_teams_trained_in_parallel_threads_match_one_after_the_other(threads):
    """Two trainers at once, each with its own team (4 threads on however many cores):
    the same bits as one after the other."""
    cnet.set_num_threads(2)

    def weights(dtype, seed, start=None):
        model, X, y = problem(dtype, seed)
        trainer = Trainer(model, CrossEntropyLoss(), optim.Adam(model.parameters(), lr=0.01))
        if start is not None:
            start.wait()
        trainer.fit(X, y, epochs=3, batch_size=16, seed=seed, verbose=0)
        assert trainer._runner(16, training=True, y=y).team_size == 2
        return model.flat_data.tobytes()

    jobs = [(weights, ("float32", 1)), (weights, ("float64", 2))]
    sequential = [fn(*args) for fn, args in jobs]
    results = in_threads(jobs)     # under threadpoolctl's one BLAS thread: the team's 2 stay
    assert results == sequential


def thread_count():
    return len(os.listdir("/proc/self/task"))


@needs_team
@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs Linux's /proc")
def test_workers_wait_between_calls_and_exit_with_their_runner(threads):
    """A runner starts its workers once and keeps them (waiting, not spinning) from call to
    call; a new size restarts them; they exit when the runner goes."""
    import gc
    model = Sequential(Dense(8, 64), ReLU(), Dense(64, 4), dtype="float32", seed=0)
    X, out = np.ones((64, 8), np.float32), np.empty((64, 4), np.float32)
    gc.collect()                           # earlier tests' runners, and their workers, go
    before = thread_count()
    runner = _engine.StepRunner(model, 64)
    cnet.set_num_threads(3)
    runner.predict(X, out)
    assert thread_count() == before + 2
    cpu = os.times()
    time.sleep(0.2)
    spent = sum(os.times()[:2]) - sum(cpu[:2])
    assert spent < 0.1                     # parked workers burn no CPU while we sleep
    for _ in range(50):
        runner.predict(X, out)
    assert thread_count() == before + 2
    cnet.set_num_threads(2)
    runner.predict(X, out)
    assert runner.team_size == 2 and thread_count() == before + 1
    del runner
    gc.collect()
    assert thread_count() == before


@needs_team
@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs Linux's /proc")
def test_a_sweep_of_batch_sizes_keeps_a_bounded_number_of_runners_and_threads(threads,
                                                                              monkeypatch):
    """Each step runner keeps its team's workers parked; a Trainer keeps the most recently
    used MAX_RUNNERS of them, so a sweep over batch sizes does not pile up threads, and a
    runner dropped and made again trains as before."""
    import gc
    from cnet.trainer import MAX_RUNNERS
    cnet.set_num_threads(3)
    gc.collect()
    before = thread_count()
    model, X, y = problem("float64")    # dropout and batch norm: runners bind their state
    trainer = Trainer(model, CrossEntropyLoss(), optim.Adam(model.parameters(), lr=0.01))
    sizes = [8, 9, 10, 11, 12, 13, 8]
    for size in sizes:
        trainer.fit(X, y, epochs=1, batch_size=size, seed=size, verbose=0)
        trainer.predict(X[:size])
        gc.collect()
        assert len(trainer._runners) <= MAX_RUNNERS
        assert thread_count() <= before + 2 * MAX_RUNNERS
    assert list(trainer._runners)[-2:] == [(8, True), (8, False)]

    monkeypatch.setattr(cnet.trainer, "MAX_RUNNERS", len(sizes))    # every runner kept
    again, X, y = problem("float64")
    keeping = Trainer(again, CrossEntropyLoss(), optim.Adam(again.parameters(), lr=0.01))
    for size in sizes:
        keeping.fit(X, y, epochs=1, batch_size=size, seed=size, verbose=0)
    assert len(keeping._runners) == len(sizes) - 1
    assert_array_equal(again.flat_data, model.flat_data)


@needs_team
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_starts_its_own_workers(threads):
    """A child forked after the workers started has the runner but not its threads: its
    calls start new ones and give the parent's results."""
    cnet.set_num_threads(2)
    model = Sequential(Dense(30, 64), ReLU(), Dense(64, 3), dtype="float64", seed=1)
    X = np.random.default_rng(0).standard_normal((40, 30))
    runner = _engine.StepRunner(model, 40)
    out = np.empty((40, 3))
    runner.predict(X, out)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:                            # the child: report and leave without cleanup
        try:
            child_out = np.empty((40, 3))
            runner.predict(X, child_out)
            os.write(write, child_out.tobytes() + bytes([runner.team_size]))
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        data = pipe.read()
    assert os.waitpid(pid, 0)[1] == 0
    assert data[-1] == 2
    assert np.frombuffer(data[:-1]).tobytes() == out.tobytes()


@needs_team
@given(widths=st.lists(st.integers(1, 80), min_size=2, max_size=4),
       batch=st.integers(4, 40), rows=st.integers(1, 90), n_threads=st.integers(2, 5),
       dtype=st.sampled_from(["float32", "float64"]), seed=st.integers(0, 2**16))
def test_team_on_random_shapes_trains_and_predicts_as_one_thread(widths, batch, rows,
                                                                  n_threads, dtype, seed):
    """Any widths (pieces of unequal size, layers split by input feature or too narrow to
    share), batch sizes with a short last batch, and team sizes: the same training and
    prediction as one thread. Plain SGD for one epoch (at most 23 steps): training
    amplifies the last-bit differences of another BLAS kernel from step to step (float32,
    batches of one row, momentum 0.9: 1e-8 after 5 steps, 1e-5 after 72), and Adam's
    m / sqrt(v) can make a visible one of a near-zero gradient's."""
    with every_product_shared():
        rng = np.random.default_rng(seed)
        X = rng.standard_normal((rows, widths[0])).astype(dtype)
        y = rng.integers(0, widths[-1], rows)
        results = []
        for threads in (1, n_threads):
            cnet.set_num_threads(threads)
            model = Sequential.mlp(widths, dtype=dtype, seed=seed)
            trainer = Trainer(model, CrossEntropyLoss(),
                              optim.SGD(model.parameters(), lr=0.05))
            trainer.fit(X, y, epochs=1, batch_size=batch, seed=seed, verbose=0)
            results.append((model.flat_data.copy(), trainer.predict_proba(X)))
        # A piece computed wrong or left out would differ by far more.
        tol = dict(rtol=1e-4, atol=1e-5) if dtype == "float32" else dict(rtol=1e-9, atol=1e-11)
        assert_allclose(results[1][0], results[0][0], **tol)
        assert_allclose(results[1][1], results[0][1], **tol)


@needs_team
def test_autotune_asks_the_runner_whether_it_threads(threads):
    """The trial compares the runner's threads against one thread: none with
    set_num_threads(1); with a team, even for products OpenBLAS itself keeps on one thread."""
    model = Sequential(Dense(8, 64), ReLU(), Dense(64, 4), dtype="float32", seed=0)
    runner = _engine.StepRunner(model, 16, CrossEntropyLoss(), optim.SGD(model.parameters(),
                                                                         lr=0.1))
    cnet.set_num_threads(2)
    assert runner.threaded()                  # 16 * 8 * 64 multiply-adds, threshold 0
    cnet.set_num_threads(1)
    assert not runner.threaded()
    cnet.set_num_threads(2)
    cnet.set_threaded_min_work(16 * 8 * 64 + 1)
    assert not runner.threaded()


@needs_team
def test_a_team_follows_the_blas_setting_not_another_calls_one_thread_request(threads):
    """With the default set_num_threads(None), a team is as large as the BLAS's own thread
    count, also while another trainer's call (which holds the BLAS at one thread for its
    duration) is running: else its size and last bits would depend on that timing."""
    import threading
    blas = scipy_blas_threads()
    cnet.set_num_threads(None)
    model, X, y = problem("float32", 0)
    expected = fit_team_size(model)
    assert expected == min(blas, 2)    # the widest layer here has 70 outputs: blocks of 16
    busy, done = Sequential(Dense(64, 256), ReLU(), Dense(256, 10), seed=1), threading.Event()
    busy_trainer = Trainer(busy, CrossEntropyLoss(), optim.SGD(busy.parameters(), lr=0.01))
    X_busy = np.ones((64 * 400, 64), np.float32)
    y_busy = np.arange(len(X_busy)) % 10
    thread = threading.Thread(target=lambda: (busy_trainer.fit(
        X_busy, y_busy, epochs=40, batch_size=64, verbose=0), done.set()))
    thread.start()
    time.sleep(0.2)             # inside its long calls (if they ended already, nothing tested)
    during = {fit_team_size(problem("float32", 0)[0]) for _ in range(5)}
    overlapped = not done.is_set()
    thread.join()
    assert during == {expected} or not overlapped
