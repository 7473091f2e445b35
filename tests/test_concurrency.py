"""Concurrency and determinism (issue 6).

- Models trained at the same time in different threads give exactly (bit for bit) what they
  give trained one after the other: the kernels release the GIL and share no global state.
  Trainer.fit and the manual PyTorch-style loop, float32 and float64 (also mixed).
- A Trainer used from two threads at once serialises its calls (its step runners share
  workspaces) and still gives the right results; a second Trainer of a model in use in
  another thread is refused (they would share its arena), and so are saving the model and
  reading or loading its state_dict (they would mix steps).
- The same seed gives bit-identical weights across runs, in one process and in another,
  with one BLAS thread (threadpoolctl).
"""
import copy
import os
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import cnet
from cnet import optim
from cnet.callbacks import Callback
from cnet.data import iterate_minibatches, load_digits
from cnet.layers import BatchNorm1d, Dense, Dropout, ReLU
from cnet.losses import CrossEntropyLoss
from cnet.model import Sequential, _InUse
from cnet.trainer import Trainer
from helpers import in_threads


@pytest.fixture(autouse=True)
def one_blas_thread():
    with threadpool_limits(1):
        yield


def digits(dtype):
    X, y = load_digits()
    return (X / 16).astype(dtype), y


def build(dtype, seed):
    return Sequential(Dense(64, 48), BatchNorm1d(48), ReLU(), Dropout(0.1), Dense(48, 10),
                      dtype=dtype, seed=seed)


def fit_weights(dtype, seed, start=None, epochs=3):
    X, y = digits(dtype)
    model = build(dtype, seed)
    trainer = Trainer(model, CrossEntropyLoss(), optim.Adam(model.parameters(), lr=1e-3))
    if start is not None:
        start.wait()
    trainer.fit(X, y, epochs=epochs, batch_size=16, seed=seed, verbose=0)
    return np.concatenate([model.flat_data, model.flat_buffers]).tobytes()


def manual_weights(dtype, seed, start=None, epochs=2):
    X, y = digits(dtype)
    model = build(dtype, seed)
    loss_fn = CrossEntropyLoss()
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    if start is not None:
        start.wait()
    for epoch in range(epochs):
        for xb, yb in iterate_minibatches(X, y, 32, seed=seed + epoch):
            opt.zero_grad()
            loss_fn(model(xb), yb)
            model.backward(loss_fn.backward())
            opt.step()
    return np.concatenate([model.flat_data, model.flat_buffers]).tobytes()


@pytest.mark.parametrize("train", [fit_weights, manual_weights], ids=["fit", "manual"])
@pytest.mark.parametrize("dtypes", [("float32", "float32"), ("float64", "float64"),
                                    ("float32", "float64")])
def test_models_trained_in_parallel_threads_match_one_after_the_other(train, dtypes):
    jobs = [(train, (dtype, seed)) for seed, dtype in enumerate(dtypes, start=1)]
    sequential = [fn(*args) for fn, args in jobs]
    assert sequential[0] != sequential[1]
    for _ in range(3):
        assert in_threads(jobs) == sequential


def test_four_threads_at_once():
    jobs = [(fit_weights, ("float32", 1)), (fit_weights, ("float64", 2)),
            (manual_weights, ("float32", 3)), (manual_weights, ("float64", 4))]
    sequential = [fn(*args) for fn, args in jobs]
    assert in_threads(jobs) == sequential


def test_training_releases_the_gil():
    """While a thread trains, the main thread keeps running: the step runner holds no GIL
    (were it held, the main thread would stall for a whole epoch)."""
    rng = np.random.default_rng(0)
    model = Sequential(Dense(128, 512), ReLU(), Dense(512, 10), seed=0)
    trainer = Trainer(model, CrossEntropyLoss(), optim.Adam(model.parameters()))
    rows = 10_000
    while True:   # an epoch (one call into the step runner) long enough to tell: >= 0.2 s
        X = rng.standard_normal((rows, 128)).astype(np.float32)
        y = rng.integers(0, 10, rows)
        trainer.fit(X[:64], y[:64], epochs=1, batch_size=64, verbose=0)     # warm up
        began = time.perf_counter()
        trainer.fit(X, y, epochs=1, batch_size=64, verbose=0)
        epoch = time.perf_counter() - began
        if epoch >= 0.2 or rows >= 640_000:
            break
        rows *= 2
    worker = threading.Thread(target=trainer.fit, args=(X, y),
                              kwargs=dict(epochs=2, batch_size=64, verbose=0))
    gaps, last = [], time.perf_counter()
    worker.start()
    while worker.is_alive():
        time.sleep(0.001)
        now = time.perf_counter()
        gaps.append(now - last)
        last = now
    worker.join()
    assert len(gaps) > 10
    assert max(gaps) < epoch / 2, (max(gaps), epoch)


def test_one_trainer_shared_by_threads_serialises_its_calls():
    """predict and evaluate from several threads on one Trainer: each gets its own answer."""
    rng = np.random.default_rng(0)
    model = Sequential(Dense(64, 128), ReLU(), Dense(128, 10), seed=0)
    trainer = Trainer(model, CrossEntropyLoss(), optim.SGD(model.parameters()))
    inputs = [rng.standard_normal((1500, 64)).astype(np.float32) for _ in range(3)]
    labels = rng.integers(0, 10, 1500)
    expected = [trainer.predict_proba(X) for X in inputs]
    expected_loss = trainer.evaluate(inputs[0], labels)
    wrong = []

    def work(i, start):
        start.wait()
        for _ in range(20):
            if not np.array_equal(trainer.predict_proba(inputs[i]), expected[i]):
                wrong.append(i)
            if i == 0 and trainer.evaluate(inputs[0], labels) != expected_loss:
                wrong.append("evaluate")

    in_threads([(work, (i,)) for i in range(3)])
    assert wrong == []


def test_same_seed_same_weights_across_runs():
    runs = {fit_weights("float64", 5) for _ in range(3)}
    runs |= {fit_weights("float64", 5)}
    assert len(runs) == 1
    assert len({manual_weights("float32", 5) for _ in range(2)}) == 1
    assert fit_weights("float64", 6) not in runs


CHILD = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    from threadpoolctl import threadpool_limits
    from test_concurrency import fit_weights
    with threadpool_limits(1):
        sys.stdout.write(fit_weights("float64", 5).hex())
""").format(tests=os.path.dirname(os.path.abspath(__file__)))


def test_same_seed_same_weights_in_another_process():
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                         check=True, timeout=300).stdout
    assert bytes.fromhex(out) == fit_weights("float64", 5)


EXIT_CHILD = textwrap.dedent("""
    import threading, time
    import numpy as np
    from cnet import CrossEntropyLoss, Sequential, Trainer, optim
    rng = np.random.default_rng(0)
    X = rng.standard_normal((20000, 784)).astype(np.float32)
    y = rng.integers(0, 10, len(X))
    model = Sequential.mlp((784, 1024, 1024, 10), seed=0)
    trainer = Trainer(model, CrossEntropyLoss(), optim.Adam(model.parameters()))
    {job}
    threading.Thread(target=job, daemon=True).start()
    time.sleep(1.5)
    print("main exits", flush=True)
""")


@pytest.mark.parametrize("job", [
    "job = lambda: trainer.fit(X, y, epochs=1000, batch_size=256, verbose=0)",
    "job = lambda: [trainer.predict(X) for _ in range(1000)]",
])
def test_exit_while_a_daemon_thread_trains_or_predicts_is_clean(job):
    """The main thread exits while a daemon thread is inside a compiled call: no new call
    starts, those in flight are waited for, and the BLAS is not torn down under them
    (a segfault in most runs before)."""
    for _ in range(2):
        result = subprocess.run([sys.executable, "-c", EXIT_CHILD.format(job=job)],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr[-2000:]
        assert result.stdout == "main exits\n" and result.stderr == ""


def attempt_during_fit(trainer, X, y, attempt, in_callback):
    """attempt() in another thread while trainer.fit is held in a callback, so that the two
    overlap, then in_callback() in the callback itself; returns the messages of the
    RuntimeErrors attempt raised."""
    inside, tried, errors = threading.Event(), threading.Event(), []

    class Hold(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            inside.set()
            assert tried.wait(10)
            in_callback()

    def other():
        assert inside.wait(10)
        try:
            attempt()
        except RuntimeError as exc:
            errors.append(str(exc))
        tried.set()

    thread = threading.Thread(target=other)
    thread.start()
    trainer.fit(X, y, epochs=1, verbose=0, callbacks=[Hold()])
    thread.join()
    return errors


def pausing_lock(inside, go):
    """A model lock whose first call, once it holds the lock, sets `inside` and waits for
    `go`: another thread's call then overlaps it."""
    class Paused(_InUse):
        def _acquire(self, fitting):
            super()._acquire(fitting)
            if not inside.is_set():
                inside.set()
                assert go.wait(30)
    return Paused()


def small_problem():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 8)).astype(np.float32)
    y = rng.integers(0, 3, 64)
    return Sequential(Dense(8, 16), ReLU(), Dense(16, 3), seed=0), X, y


def test_a_second_trainer_of_a_model_in_use_in_another_thread_is_refused():
    """Two Trainers of one model would both update its arena: while one thread is in a call,
    another thread's call through the other Trainer raises, and the model is left to the
    first. The calling thread itself may call another Trainer of its model."""
    model, X, y = small_problem()
    first, second = (Trainer(model, CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1))
                     for _ in range(2))
    def in_callback():
        assert second.evaluate(X, y)["loss"] > 0

    errors = attempt_during_fit(first, X, y, lambda: second.fit(X, y, epochs=1, verbose=0),
                                in_callback)
    assert len(errors) == 1 and "another Trainer" in errors[0]
    second.fit(X, y, epochs=1, verbose=0)     # free again once the first call returned


@pytest.mark.parametrize("call", ["save", "state_dict", "load_state_dict", "deepcopy"])
def test_the_state_of_a_model_training_in_another_thread_is_neither_saved_nor_loaded(
        call, tmp_path):
    """cnet.save, state_dict, load_state_dict and copy.deepcopy read or write every
    parameter: during another thread's fit they would mix the weights of different steps, so
    they raise and change nothing; in the training thread itself (a callback saving a
    checkpoint) they run."""
    model, X, y = small_problem()
    trainer = Trainer(model, CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1))
    path, weights, held = tmp_path / "m.safetensors", model.state_dict(), []
    calls = {"save": lambda: cnet.save(model, path),
             "state_dict": model.state_dict,
             "load_state_dict": lambda: model.load_state_dict(weights),
             "deepcopy": lambda: held.append(copy.deepcopy(model).flat_data)}

    def in_callback():          # the training thread itself may
        held.append(model.flat_data.copy())
        calls[call]()

    errors = attempt_during_fit(trainer, X, y, calls[call], in_callback)
    assert len(errors) == 1 and "another thread" in errors[0]
    if call == "load_state_dict":   # the callback's own load put the first weights back
        assert np.array_equal(model.flat_data, np.concatenate([w.ravel() for w in weights.values()]))
    else:
        assert np.array_equal(model.flat_data, held[0])
    if call == "save":      # written by the callback, with the weights it saw
        assert np.array_equal(cnet.load(path).flat_data, held[0])
    if call == "deepcopy":  # the callback's copy, the only one made
        assert len(held) == 2 and np.array_equal(held[1], held[0])


@pytest.mark.parametrize("holding", ["save", "predict"])
@pytest.mark.parametrize("waiting", ["predict", "state_dict", "deepcopy", "fit"])
def test_a_call_waits_for_another_threads_call_that_runs_no_user_code(holding, waiting,
                                                                      tmp_path):
    """cnet.save, state_dict, load_state_dict, evaluate and predict run no user code, so
    wait for nothing: another thread's call meanwhile (through another Trainer, for fit)
    waits for them rather than failing (a monitoring thread's snapshots must not make
    predict fail)."""
    model, X, y = small_problem()
    first, second = (Trainer(model, CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1))
                     for _ in range(2))
    inside, go = threading.Event(), threading.Event()

    model._calls = pausing_lock(inside, go)     # the holding call, paused holding it
    hold = {"save": lambda: cnet.save(model, tmp_path / "m.safetensors"),
            "predict": lambda: first.predict(X)}[holding]
    thread = threading.Thread(target=hold)
    thread.start()
    assert inside.wait(10)
    threading.Timer(0.05, go.set).start()
    if waiting == "predict":
        assert second.predict(X).shape == (64,)
    elif waiting == "state_dict":
        assert np.array_equal(model.state_dict()["0.weight"], model[0].weight.data)
    elif waiting == "deepcopy":
        assert np.array_equal(copy.deepcopy(model).flat_data, model.flat_data)
    else:
        assert second.fit(X, y, epochs=1, verbose=0).history["loss"][0] > 0
    assert go.is_set()      # it returned only after the holding call was let go on
    thread.join()


def test_a_model_swapped_in_from_another_thread_as_a_call_starts_is_refused():
    """Trainer.model's setter checks under the calls' lock: a swap between a call taking
    its model's lock and counting itself open is refused, not let through."""
    first, X, _ = small_problem()
    other = copy.deepcopy(first)
    trainer = Trainer(first, CrossEntropyLoss(), optim.SGD(first.parameters(), lr=0.1))
    window, tried, errors = threading.Event(), threading.Event(), []

    class Slow(_InUse):        # a thread switch right after the acquire
        def _acquire(self, fitting):
            super()._acquire(fitting)
            window.set()
            assert tried.wait(10)

    def swap():
        assert window.wait(10)
        try:
            trainer.model = other
        except RuntimeError as exc:
            errors.append(str(exc))
        tried.set()

    first._calls = Slow()
    thread = threading.Thread(target=swap)
    thread.start()
    trainer.predict(X)
    thread.join()
    assert len(errors) == 1 and trainer.model is first


def test_predicts_and_snapshots_from_several_threads_all_complete():
    """One Trainer's predict from two threads, state_dict and load_state_dict from two
    others, over and over: every call completes (the Trainer serialises its own calls, and
    calls that run no user code wait for each other), none is refused, nothing deadlocks."""
    model, X, _ = small_problem()
    trainer = Trainer(model, CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1))
    expected = trainer.predict(X)
    done, failures = [], []

    def repeat(name, call):
        try:
            for _ in range(200):
                call()
            done.append(name)
        except Exception as exc:    # noqa: BLE001 (any failure is the test's finding)
            failures.append(f"{name}: {exc!r}")

    def predict():
        assert np.array_equal(trainer.predict(X), expected)

    calls = {"predict 1": predict, "predict 2": predict,
             "state_dict": lambda: model.state_dict()["0.weight"].sum(),
             "load_state_dict": lambda: model.load_state_dict(model.state_dict())}
    threads = [threading.Thread(target=repeat, args=item) for item in calls.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not failures and sorted(done) == sorted(calls)


def test_fits_whose_callbacks_call_each_others_trainer_do_not_deadlock():
    """Two threads each fit their own model and evaluate the other's with the other's
    Trainer after every epoch. Blocking on the other Trainer's lock would wait forever
    (each holds its own through its fit): the Trainer's lock refuses another thread's call
    during a fit, as the model's does, so one fit raises and the other completes."""
    models = [small_problem()[0], Sequential(Dense(8, 16), ReLU(), Dense(16, 3), seed=1)]
    _, X, y = small_problem()
    trainers = [Trainer(m, CrossEntropyLoss(), optim.SGD(m.parameters(), lr=0.1))
                for m in models]
    both = threading.Barrier(2, timeout=10)
    outcome = {}

    class EvaluateOther(Callback):
        def __init__(self, other):
            self.other = other

        def on_epoch_end(self, trainer, epoch, logs):
            if epoch == 0:
                both.wait()         # both fits under way before either evaluates
            self.other.evaluate(X, y)

    def run(i):
        try:
            trainers[i].fit(X, y, epochs=2, verbose=0,
                            callbacks=[EvaluateOther(trainers[1 - i])])
            outcome[i] = "ok"
        except RuntimeError as exc:
            outcome[i] = str(exc)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads), "deadlock"
    assert sorted(outcome) == [0, 1] and list(outcome.values()).count("ok") >= 1
    assert all(v == "ok" or "this Trainer's fit" in v for v in outcome.values())


def test_a_call_through_a_trainer_fitting_in_another_thread_is_refused():
    """A callback that hands work to another thread and waits for it: through the fitting
    Trainer itself, that thread's call is refused as through a second Trainer of the model,
    not left waiting for the fit that waits for it."""
    model, X, y = small_problem()
    trainer = Trainer(model, CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1))
    errors = attempt_during_fit(trainer, X, y, lambda: trainer.predict(X),
                                lambda: trainer.predict(X))
    assert len(errors) == 1 and "this Trainer's fit" in errors[0]
    assert trainer.predict(X).shape == (64,)    # free again once the fit returned


def test_an_input_converted_by_another_thread_does_not_deadlock_predict():
    """np.asarray(X) may run user code (a lazy array computed by a thread pool); it runs
    before predict holds the model, so that pool's calls on the model do not wait for it."""
    from concurrent.futures import ThreadPoolExecutor
    model, X, _ = small_problem()
    trainer = Trainer(model, CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1))

    pool = ThreadPoolExecutor(1)

    class Lazy:
        def __array__(self, dtype=None, copy=None):
            pool.submit(model.state_dict).result(timeout=10)
            return X

    try:
        assert np.array_equal(trainer.predict(Lazy()), trainer.predict(X))
    finally:
        pool.shutdown(wait=False)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork")
def test_a_child_forked_during_another_threads_call_can_use_the_model():
    """The thread holding the model at a fork does not exist in the child: its hold is
    dropped there, so the child's calls neither wait for it forever nor are refused."""
    model, X, y = small_problem()
    trainer = Trainer(model, CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1))
    inside, go = threading.Event(), threading.Event()

    model._calls = pausing_lock(inside, go)
    thread = threading.Thread(target=trainer.predict, args=(X,))
    thread.start()
    assert inside.wait(10)
    try:
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)    # fork with threads
            pid = os.fork()
        if pid == 0:
            code = 0 if model.state_dict()["0.weight"].shape == (16, 8) else 1
            os._exit(code)
        deadline = time.time() + 20
        while time.time() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.02)
        else:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the child waited for a call of a thread it does not have")
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        go.set()
        thread.join()
