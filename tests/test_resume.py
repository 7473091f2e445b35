"""Resume (issue 6): training killed mid-run (SIGKILL) and resumed from its last checkpoint
ends with exactly the weights of an uninterrupted run with the same seed.

A checkpoint is one cnet.save file: the weights (with the Dropout streams), the optimizer's
state and step count, and in `extra` the number of epochs done and the state of the shuffle
generator (`numpy.random.Generator.bit_generator.state`, plain JSON). Resuming loads it,
rebuilds the generator in that state and calls fit(seed=generator, initial_epoch=epochs done).
"""
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import cnet
from cnet import optim
from cnet.callbacks import Callback
from cnet.data import load_digits
from cnet.layers import Dense, Dropout, ReLU
from cnet.losses import CrossEntropyLoss
from cnet.model import Sequential
from cnet.trainer import Trainer

EPOCHS = 12


class ResumableCheckpoint(Callback):
    """After each epoch, save everything a resumed run needs to continue bit for bit."""

    def __init__(self, path, generator):
        self.path, self.generator = path, generator

    def on_epoch_end(self, trainer, epoch, logs):
        cnet.save(trainer.model, self.path, trainer.optimizer,
                  extra={"epoch": epoch + 1, "shuffle": self.generator.bit_generator.state})


def start_or_resume(path, seed=0):
    """(trainer, generator, epochs done): fresh, or from the checkpoint at `path`."""
    if os.path.exists(path):
        model, optimizer, extra = cnet.load(path, with_optimizer=True)
        generator = np.random.default_rng()
        generator.bit_generator.state = extra["shuffle"]
        done = extra["epoch"]
    else:
        model = Sequential(Dense(64, 32), ReLU(), Dropout(0.1), Dense(32, 10), dtype="float64",
                           seed=seed)
        optimizer = optim.Adam(model.parameters(), lr=1e-3)
        generator, done = np.random.default_rng(seed), 0
    return Trainer(model, CrossEntropyLoss(), optimizer), generator, done


def train(path, epochs=EPOCHS, seed=0, callbacks=()):
    X, y = load_digits()
    trainer, generator, done = start_or_resume(path, seed)
    trainer.fit(X / 16, y, epochs=epochs, batch_size=32, seed=generator, initial_epoch=done,
                verbose=0, callbacks=[ResumableCheckpoint(path, generator), *callbacks])
    return trainer


def state_of(trainer):
    arrays = [trainer.model.flat_data, trainer.model.flat_buffers]
    arrays += [s for s in trainer.optimizer.state.values() if s is not None]
    arrays += [layer.rng_state for layer in trainer.model.layers if hasattr(layer, "rng_state")]
    return [a.copy() for a in arrays] + [trainer.optimizer.step_count]


def assert_bit_identical(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        if isinstance(x, np.ndarray):
            assert x.dtype == y.dtype and x.tobytes() == y.tobytes()
        else:
            assert x == y


def test_resume_in_process_matches_an_uninterrupted_run(tmp_path):
    """Stop after k epochs (a fresh process would start from the file), resume, compare."""
    reference = train(tmp_path / "full.safetensors")
    for k in (1, 5, EPOCHS - 1):
        path = tmp_path / f"part{k}.safetensors"
        train(path, epochs=k)
        resumed = train(path)            # a new model, optimizer and generator from the file
        assert_bit_identical(state_of(resumed), state_of(reference))


def test_initial_epoch_numbers_history_and_callbacks_as_keras(tmp_path):
    seen = []

    class Record(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            seen.append(epoch)

    X, y = load_digits()
    model = Sequential(Dense(64, 10), seed=0)
    trainer = Trainer(model, CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.01))
    history = trainer.fit(X, y, epochs=5, initial_epoch=3, verbose=0, callbacks=[Record()])
    assert history.epoch == [3, 4] and seen == [3, 4]
    assert trainer.fit(X, y, epochs=2, initial_epoch=2, verbose=0).epoch == []
    for bad, error in [(-1, ValueError), (1.0, TypeError), (None, TypeError), (True, TypeError)]:
        with pytest.raises(error, match="initial_epoch"):
            trainer.fit(X, y, epochs=5, initial_epoch=bad, verbose=0)


def test_a_generator_seed_carries_its_state_across_fit_calls():
    """fit(seed=Generator) uses it as it is: two calls of one epoch shuffle as one call of two."""
    X, y = load_digits()
    results = []
    for calls in ([2], [1, 1]):
        model = Sequential(Dense(64, 10), dtype="float64", seed=0)
        trainer = Trainer(model, CrossEntropyLoss(), optim.Adam(model.parameters()))
        generator = np.random.default_rng(7)
        done = 0
        for epochs in calls:
            trainer.fit(X, y, epochs=done + epochs, initial_epoch=done, seed=generator,
                        verbose=0)
            done += epochs
        results.append(model.flat_data.copy())
    assert results[0].tobytes() == results[1].tobytes()


CHILD = textwrap.dedent("""
    import os
    import sys
    sys.path.insert(0, {tests!r})
    import numpy as np
    from cnet.callbacks import Callback
    from test_resume import train

    class Report(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            print("epoch", epoch + 1, flush=True)

    trainer = train(sys.argv[1], callbacks=[Report()])
    # Written aside and renamed: a kill during the write must not leave a partial result.
    with open(sys.argv[2] + ".part", "wb") as f:
        np.save(f, trainer.model.flat_data)
    os.replace(sys.argv[2] + ".part", sys.argv[2])
    print("done", flush=True)
""").format(tests=os.path.dirname(os.path.abspath(__file__)))


def child(checkpoint, out):
    # One BLAS thread: the same summation order in every process.
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-c", CHILD, str(checkpoint), str(out)],
                            stdout=subprocess.PIPE, text=True, env=env)


def test_sigkill_mid_training_then_resume_gives_the_uninterrupted_weights(tmp_path):
    """Kill the training process at random moments (after a random number of epochs, so
    mid-epoch or mid-save), restart it from its last checkpoint each time; the final weights
    are those of a run never interrupted, bit for bit (float64)."""
    reference = child(tmp_path / "ref.safetensors", tmp_path / "ref.npy")
    reference.communicate(timeout=300)      # reads its lines and closes the pipe
    assert reference.returncode == 0
    expected = np.load(tmp_path / "ref.npy")

    checkpoint, out = tmp_path / "run.safetensors", tmp_path / "run.npy"
    rng = np.random.default_rng(int.from_bytes(os.urandom(4), "little"))
    kills = 0
    for _ in range(3):      # a first process that finished before its kill starts over
        if kills:
            break
        checkpoint.unlink(missing_ok=True)
        out.unlink(missing_ok=True)
        for _ in range(4):
            proc = child(checkpoint, out)
            target = int(rng.integers(1, 4))       # let this process finish a few epochs first
            for _ in range(target):
                line = proc.stdout.readline()
                if not line.startswith("epoch"):
                    break
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            proc.stdout.close()
            kills += proc.returncode == -signal.SIGKILL
            if out.exists():
                break
    assert kills >= 1
    done = cnet.load(checkpoint, with_optimizer=True).extra["epoch"]
    assert 1 <= done <= EPOCHS
    if not out.exists():
        final = child(checkpoint, out)
        final.communicate(timeout=300)
        assert final.returncode == 0
    resumed = np.load(out)
    assert resumed.dtype == np.float64
    assert resumed.tobytes() == expected.tobytes()
