"""The step runner's machinery that results must not depend on: each layer's optimizer update
fused into backward, flushing denormals during compiled runs, and the BLAS thread policy."""
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import cnet
from cnet import CrossEntropyLoss, Dense, ReLU, Sequential, Tanh, Trainer, _blas, _engine, optim
from helpers import TINY32, first_moment_after_zero_gradients, scipy_blas_threads


def model_and_data(dtype="float64", seed=0):
    model = Sequential(Dense(6, 8), Tanh(), Dense(8, 5), ReLU(), Dense(5, 3), dtype=dtype,
                       seed=seed)
    rng = np.random.default_rng(seed)
    return model, rng.standard_normal((50, 6)).astype(dtype), rng.integers(0, 3, 50)


def groups_cutting_layers(model):
    """Three groups whose boundaries fall inside layers, one parameter left out (frozen)."""
    p = list(model.parameters())     # 0.weight 0.bias 2.weight 2.bias 4.weight 4.bias
    return [{"params": [p[0]]}, {"params": [p[1], p[2], p[5]], "lr": 0.02},
            {"params": [p[3]], "lr": 0.003}]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", ["SGD", "Adam", "RMSprop", "Adagrad"])
def test_update_inside_backward_equals_update_after_it(name, dtype):
    """Without clipping each layer is updated as soon as its backward is done; with clipping
    (here a bound no gradient reaches, so it scales nothing) every update waits for the
    whole backward. The two orders must give bit-identical weights."""
    results = []
    for max_grad_norm in (None, 1e30):
        model, X, y = model_and_data(dtype)
        frozen = model[4].weight.data.copy()
        opt = getattr(optim, name)(groups_cutting_layers(model), lr=0.05)
        Trainer(model, CrossEntropyLoss(), opt, max_grad_norm=max_grad_norm).fit(
            X, y, epochs=3, batch_size=8, seed=1, verbose=0)
        assert_array_equal(model[4].weight.data, frozen)   # not in any group
        results.append(model.flat_data.copy())
    assert not np.array_equal(results[0], model_and_data(dtype)[0].flat_data)
    assert_array_equal(results[0], results[1])


@pytest.mark.parametrize("name", ["SGD", "Adam"])
def test_per_layer_updates_match_optimizer_step(name):
    """The spans cut per layer cover exactly the groups' parameters with each group's
    hyper-parameters: fit agrees with backward + optimizer.step() batch by batch."""
    from helpers import train_manually
    fitted, X, y = model_and_data()
    manual = model_and_data()[0]
    Trainer(fitted, CrossEntropyLoss(),
            getattr(optim, name)(groups_cutting_layers(fitted), lr=0.05)).fit(
        X, y, epochs=2, batch_size=8, shuffle=False, verbose=0)
    train_manually(manual, getattr(optim, name)(groups_cutting_layers(manual), lr=0.05),
                   CrossEntropyLoss(), X, y, batch_size=8, epochs=2)
    assert_allclose(fitted.flat_data, manual.flat_data, rtol=1e-12, atol=1e-14)
    assert not np.array_equal(fitted.flat_data, model_and_data()[0].flat_data)


def test_op_spans_cut_group_spans_at_parameters():
    # Two ops: op 0 owns [0, 10) and [10, 13), op 2 owns [13, 20).
    ranges = [(0, 0, 10), (0, 10, 3), (2, 13, 7)]
    groups = [(None, [(0, 20)])]
    assert _engine.op_spans(ranges, groups) == [(0, 0, 13, 0), (2, 13, 7, 0)]
    groups = [(None, [(5, 10)]), (None, [(0, 5), (15, 2)])]
    assert _engine.op_spans(ranges, groups) == [(0, 0, 5, 1), (0, 5, 8, 0), (2, 13, 2, 0),
                                                (2, 15, 2, 1)]


def test_op_spans_reject_entries_outside_the_parameters():
    with pytest.raises(ValueError, match="not parameters"):
        _engine.op_spans([(0, 0, 4)], [(None, [(0, 6)])])


# --- denormals ---------------------------------------------------------------------------



flush_supported = cnet.set_flush_denormal(cnet.get_flush_denormal())


@pytest.mark.skipif(not flush_supported, reason="this CPU has no flush-to-zero mode")
def test_denormals_flush_to_zero_during_training():
    assert cnet.get_flush_denormal()           # the default
    flushed, _ = first_moment_after_zero_gradients(True)
    # Every result that would be denormal is 0: the moment either reached 0 or stayed at
    # the smallest normal values (its decrement 0.1 m is itself denormal, so flushed).
    assert np.all((flushed == 0) | (flushed >= TINY32))
    kept, _ = first_moment_after_zero_gradients(False)
    assert np.all((kept > 0) & (kept < TINY32))   # IEEE gradual underflow when turned off
    assert_allclose(kept, 1.5 * TINY32 * 0.9**5, rtol=1e-3)


def test_flush_mode_does_not_leak_out_of_compiled_runs():
    model, X, y = model_and_data("float32")
    trainer = Trainer(model, CrossEntropyLoss(), optim.Adam(model.parameters()))
    trainer.fit(X, y, epochs=1, batch_size=8, verbose=0)
    trainer.predict(X)
    # NumPy in this thread still produces denormals.
    assert np.float32(TINY32) / np.float32(16) > 0


def test_set_flush_denormal_returns_support_and_keeps_the_mode():
    previous = cnet.get_flush_denormal()
    try:
        assert cnet.set_flush_denormal(False) == flush_supported
        assert cnet.get_flush_denormal() is False
        cnet.set_flush_denormal(True)
        assert cnet.get_flush_denormal() is flush_supported
    finally:
        cnet.set_flush_denormal(previous)


# --- BLAS threads ------------------------------------------------------------------------

@pytest.mark.parametrize("threshold", [0, 1, 1 << 40])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_products_agree_under_any_thread_threshold(threshold, dtype):
    rng = np.random.default_rng(3)
    a = rng.standard_normal((70, 90)).astype(dtype)
    b = rng.standard_normal((50, 90)).astype(dtype)
    out = np.empty((70, 50), dtype)
    previous = cnet.set_threaded_min_work(threshold)
    try:
        _blas.matmul(out, a, b, trans_b=True)
        assert cnet.set_threaded_min_work(previous) == threshold
    finally:
        cnet.set_threaded_min_work(previous)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    assert_allclose(out, a @ b.T, rtol=rtol, atol=rtol)



def test_concurrent_single_threaded_products_leave_the_blas_thread_count_as_it_was():
    """The one-thread setting is process-wide in scipy's OpenBLAS: two threads toggling it
    around their products must not leave it at 1 when both are done."""
    import threading
    before = scipy_blas_threads()
    a, b = np.ones((96, 96), np.float32), np.ones((96, 96), np.float32)

    def work():
        out = np.empty((96, 96), np.float32)   # long enough for the threads to overlap
        for _ in range(1000):
            _blas.matmul(out, a, b)
    previous = cnet.set_threaded_min_work(1 << 40)
    try:
        threads = [threading.Thread(target=work) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        cnet.set_threaded_min_work(previous)
    assert scipy_blas_threads() == before


def test_single_threaded_products_restore_the_blas_thread_count():
    before = scipy_blas_threads()
    previous = cnet.set_threaded_min_work(1 << 40)
    try:
        out = np.empty((96, 96), np.float32)
        _blas.matmul(out, np.ones((96, 96), np.float32), np.ones((96, 96), np.float32))
    finally:
        cnet.set_threaded_min_work(previous)
    assert scipy_blas_threads() == before
    assert_array_equal(out, 96)   # 96^3 multiply-adds: over OpenBLAS's own one-thread limit


@pytest.mark.parametrize("bad, error", [(-1, ValueError), (2**63, ValueError), (1.5, TypeError),
                                        (True, TypeError), ("8", TypeError), (None, TypeError)])
def test_set_threaded_min_work_rejects_what_is_not_a_count(bad, error):
    previous = cnet.get_threaded_min_work()
    with pytest.raises(error, match="work: expected an int"):
        cnet.set_threaded_min_work(bad)
    assert cnet.get_threaded_min_work() == previous   # unchanged by the bad call


def test_get_threaded_min_work_reads_what_set_wrote():
    previous = cnet.set_threaded_min_work(12345)
    try:
        assert cnet.get_threaded_min_work() == 12345
    finally:
        cnet.set_threaded_min_work(previous)
    assert cnet.get_threaded_min_work() == previous


@pytest.mark.parametrize("bad", [1, 0, "yes", None, 0.0])
def test_set_flush_denormal_takes_only_a_bool(bad):
    previous = cnet.get_flush_denormal()
    with pytest.raises(TypeError, match="mode: expected True or False"):
        cnet.set_flush_denormal(bad)
    assert cnet.get_flush_denormal() is previous


# --- choosing between threaded and one-thread products ------------------------------------

class RecordingRunner:
    """The real runner, recording each call's (first batch, batches, one_thread)."""

    def __init__(self, runner):
        self.runner, self.calls, self.threaded = runner, [], runner.threaded

    def train_batches(self, X, y, order, first, n, losses, correct, stop_on_nan=True,
                      one_thread=False):
        self.calls.append((first, n, one_thread))
        return self.runner.train_batches(X, y, order, first, n, losses, correct, stop_on_nan,
                                         one_thread)

    def refresh_optimizer(self):
        self.runner.refresh_optimizer()


def wide_problem(rows=64 * 40, seed=0):
    """Batches of 64 through a 300-wide first layer: a 1.2M multiply-add product, which
    OpenBLAS threads (it keeps products under 262k on one thread)."""
    model = Sequential(Dense(300, 64), ReLU(), Dense(64, 10), dtype="float64", seed=seed)
    rng = np.random.default_rng(seed)
    return model, rng.standard_normal((rows, 300)), rng.integers(0, 10, rows)


def fit_recorded(model, X, y, batch=64):
    trainer = Trainer(model, CrossEntropyLoss(), optim.Adam(model.parameters(), lr=1e-3))
    recorder = RecordingRunner(trainer._runner(batch, training=True, y=y))
    trainer._runners[(batch, True)] = (recorder, trainer._runners[(batch, True)][1])
    trainer.fit(X, y, epochs=1, batch_size=batch, seed=0, verbose=0)
    return recorder.calls


@pytest.fixture
def thread_settings():
    work, autotune = cnet.set_threaded_min_work(0), cnet.set_thread_autotune(True)
    yield
    cnet.set_threaded_min_work(work)
    cnet.set_thread_autotune(autotune)


def test_fit_times_both_ways_then_trains_the_faster(thread_settings):
    if not _blas.THREAD_CONTROL:
        pytest.skip("scipy's BLAS offers no per-thread control, so there is nothing to choose")
    model, X, y = wide_problem()
    calls = fit_recorded(model, X, y)
    assert calls[:3] == [(0, 1, False), (1, 2, False), (3, 2, True)]   # 40 batches: trial 2
    assert calls[3][0] == 5 and sum(n for _, n, _ in calls) == 40
    assert len({one for _, _, one in calls[3:]}) == 1                 # one choice for the rest


def test_no_trial_when_off_small_or_short(thread_settings):
    model, X, y = wide_problem()
    cnet.set_thread_autotune(False)
    assert fit_recorded(model, X, y) == [(0, 40, False)]
    cnet.set_thread_autotune(True)
    cnet.set_threaded_min_work(1 << 40)            # no product large enough to thread
    assert fit_recorded(model, X, y) == [(0, 40, False)]
    cnet.set_threaded_min_work(0)
    model, X, y = wide_problem(rows=64 * 15)       # under 16 batches: not worth a trial
    assert fit_recorded(model, X, y) == [(0, 15, False)]


def test_threaded_and_one_thread_products_train_alike(thread_settings):
    """The trial may pick either way from epoch to epoch: the weights may differ only in
    the last bits (which is why the trial is off by default)."""
    weights = []
    for work, autotune in ((0, False), (1 << 40, False), (0, True)):
        cnet.set_threaded_min_work(work)
        cnet.set_thread_autotune(autotune)
        model, X, y = wide_problem()
        Trainer(model, CrossEntropyLoss(), optim.Adam(model.parameters(), lr=1e-3)).fit(
            X, y, epochs=2, batch_size=64, seed=0, verbose=0)
        weights.append(model.flat_data.copy())
    assert_allclose(weights[0], weights[1], rtol=1e-12, atol=1e-14)
    assert_allclose(weights[0], weights[2], rtol=1e-12, atol=1e-14)
    assert not np.array_equal(weights[0], wide_problem()[0].flat_data)


def test_thread_autotune_is_off_by_default():
    assert cnet.get_thread_autotune() is False


@pytest.mark.parametrize("bad", [1, "yes", None])
def test_set_thread_autotune_takes_only_a_bool(bad, thread_settings):
    with pytest.raises(TypeError, match="mode: expected True or False"):
        cnet.set_thread_autotune(bad)
    assert cnet.get_thread_autotune() is True


def test_an_epoch_is_cut_into_calls_of_about_call_seconds(monkeypatch):
    """Python (and so Ctrl-C) runs only between compiled calls: each is cut to about
    CALL_SECONDS, from a guess of a batch's time, then the measured one."""
    from cnet import trainer as trainer_module
    model, X, y = wide_problem()
    monkeypatch.setattr(trainer_module, "CALL_SECONDS", 0.0)
    assert fit_recorded(model, X, y) == [(i, 1, False) for i in range(40)]
    monkeypatch.setattr(trainer_module, "CALL_SECONDS", 1e9)
    assert fit_recorded(model, X, y) == [(0, 40, False)]
