"""cnet.save / cnet.load: exact round trips, atomic writes, and hostile files rejected cleanly."""
import json
import os
import signal
import struct
import subprocess
import sys
import time
import tracemalloc

import numpy as np
import pytest

import cnet
from cnet import (BatchNorm1d, CrossEntropyLoss, Dense, Dropout, Identity, LeakyReLU, ReLU,
                  Sequential, Sigmoid, Softmax, Step, Tanh, Trainer, optim)
from cnet import io as cio
from cnet.callbacks import ModelCheckpoint
from helpers import closure_for

ARCHITECTURES = {
    "activations": lambda: [Dense(5, 7), ReLU(), Dense(7, 6, bias=False), LeakyReLU(0.3),
                            Dense(6, 4), Tanh(), Dense(4, 4), Sigmoid(), Identity(),
                            Dense(4, 3), Softmax(dim=1)],
    "batchnorm_dropout": lambda: [Dense(5, 8), BatchNorm1d(8), ReLU(), Dropout(0.25),
                                  Dense(8, 6), LeakyReLU(), Dropout(0.5), Dense(6, 3)],
    "batchnorm_options": lambda: [BatchNorm1d(5, eps=1e-3, momentum=None, affine=False),
                                  Dense(5, 4, init="he"), BatchNorm1d(4, momentum=0.3),
                                  Dense(4, 3, init="xavier")],
    "no_running_stats": lambda: [BatchNorm1d(5, track_running_stats=False), Dense(5, 3)],
    "step": lambda: [Dense(5, 3), Step()],
}

OPTIMIZERS = {
    "sgd": lambda p: optim.SGD(p, lr=0.05),
    "sgd_nesterov": lambda p: optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True,
                                        weight_decay=1e-3),
    "adam_amsgrad": lambda p: optim.Adam(p, lr=0.01, betas=(0.8, 0.99), amsgrad=True),
    "adamw": lambda p: optim.AdamW(p, lr=0.01, weight_decay=0.1),
    "adagrad": lambda p: optim.Adagrad(p, lr=0.05, lr_decay=0.01,
                                       initial_accumulator_value=0.1),
    "rmsprop": lambda p: optim.RMSprop(p, lr=0.01, momentum=0.5, centered=True),
}

X = np.random.default_rng(0).standard_normal((16, 5))
Y = np.random.default_rng(1).integers(0, 3, 16)


def build(arch="batchnorm_dropout", dtype="float64", seed=0):
    return Sequential(*ARCHITECTURES[arch](), dtype=dtype, seed=seed)


def train_manually(model, optimizer, steps, seed=0):
    """Mini-batch steps through the manual path (Dropout masks, BatchNorm statistics)."""
    loss_fn = CrossEntropyLoss()
    rng = np.random.default_rng(seed)
    model.train()
    for _ in range(steps):
        rows = rng.choice(len(X), 8, replace=False)
        optimizer.zero_grad()
        loss_fn(model(X[rows].astype(model.dtype)), Y[rows])
        model.backward(loss_fn.backward())
        optimizer.step()


def assert_same_model(a, b):
    assert type(b) is Sequential and b.dtype == a.dtype and b.training == a.training
    assert [type(l) for l in b.layers] == [type(l) for l in a.layers]
    assert [l.config() for l in b.layers] == [l.config() for l in a.layers]
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sb) == list(sa)
    for key in sa:
        assert sb[key].dtype == sa[key].dtype and sb[key].shape == sa[key].shape
        assert np.array_equal(sb[key], sa[key]), key
    for la, lb in zip(a.layers, b.layers):
        if isinstance(la, Dropout):
            assert np.array_equal(la.rng_state, lb.rng_state)


def assert_same_optimizer(a, b):
    assert type(b) is type(a) and b.step_count == a.step_count
    sa, sb = a.state_dict(), b.state_dict()
    assert sb["param_groups"] == sa["param_groups"]
    assert list(sb["state"]) == list(sa["state"])
    for key in sa["state"]:
        assert np.array_equal(sb["state"][key], sa["state"][key]), key


# --- round trips -----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_round_trip_rebuilds_the_model_exactly(tmp_path, arch, dtype):
    model = build(arch, dtype, seed=3)
    if arch != "step":
        train_manually(model, optim.SGD(model.parameters(), lr=0.1), 3)
    path = tmp_path / "model.safetensors"
    cnet.save(model, path)
    loaded = cnet.load(path)
    assert_same_model(model, loaded)
    x = X.astype(dtype)
    # Training mode (Dropout masks from the same stream, batch statistics) and eval mode.
    assert np.array_equal(loaded(x), model(x))
    model.eval(), loaded.eval()
    assert np.array_equal(loaded(x), model(x))


def test_eval_mode_is_restored_and_predictions_are_bit_identical(tmp_path):
    model = build(seed=5)
    train_manually(model, optim.Adam(model.parameters()), 4)
    model.eval()
    path = str(tmp_path / "m.safetensors")
    cnet.save(model, path)
    loaded = cnet.load(path)
    assert loaded.training is False
    assert np.array_equal(loaded(X), model(X))
    assert np.array_equal(Trainer(loaded, CrossEntropyLoss(), optim.SGD(loaded.parameters()))
                          .predict(X),
                          Trainer(model, CrossEntropyLoss(), optim.SGD(model.parameters()))
                          .predict(X))


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_optimizer_round_trip(tmp_path, name, dtype):
    model = build(dtype=dtype)
    opt = OPTIMIZERS[name](model.parameters())
    train_manually(model, opt, 3)
    path = tmp_path / "ckpt.safetensors"
    cnet.save(model, path, optimizer=opt, extra={"epoch": 3, "note": "é", "loss": [0.5, 0.25]})
    ckpt = cnet.load(path, with_optimizer=True)
    assert isinstance(ckpt, cio.Checkpoint)
    model2, opt2, extra = ckpt
    assert_same_model(model, model2)
    assert_same_optimizer(opt, opt2)
    assert extra == {"epoch": 3, "note": "é", "loss": [0.5, 0.25]}
    assert opt2.flat_data is model2.flat_data
    # Without with_optimizer, the same file gives just the model.
    assert_same_model(model, cnet.load(path))


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_training_continued_after_load_matches_uninterrupted_training(tmp_path, name):
    model = build(dtype="float64", seed=2)
    opt = OPTIMIZERS[name](model.parameters())
    train_manually(model, opt, 4, seed=10)
    cnet.save(model, tmp_path / "c.safetensors", optimizer=opt)
    model2, opt2, _ = cnet.load(tmp_path / "c.safetensors", with_optimizer=True)
    train_manually(model, opt, 5, seed=11)
    train_manually(model2, opt2, 5, seed=11)
    assert np.array_equal(model2.flat_data, model.flat_data)
    assert np.array_equal(model2.flat_buffers, model.flat_buffers)
    assert_same_optimizer(opt, opt2)



@pytest.mark.parametrize("line_search", [None, "strong_wolfe"])
@pytest.mark.parametrize("steps_before", [0, 2])
def test_lbfgs_round_trip_and_continued_training(tmp_path, line_search, steps_before):
    def setup(model, opt):
        return closure_for(model, opt, X, Y, CrossEntropyLoss())

    model = build("activations", "float64", seed=6)
    opt = optim.LBFGS(model.parameters(), lr=0.5, max_iter=3, history_size=4,
                      line_search_fn=line_search)
    closure = setup(model, opt)
    for _ in range(steps_before):
        opt.step(closure)
    cnet.save(model, tmp_path / "l.safetensors", optimizer=opt)
    model2, opt2, _ = cnet.load(tmp_path / "l.safetensors", with_optimizer=True)
    assert_same_model(model, model2)
    assert type(opt2) is optim.LBFGS and opt2.state_dict()["param_groups"] == \
        opt.state_dict()["param_groups"]
    closure2 = setup(model2, opt2)
    for _ in range(2):
        opt.step(closure)
        opt2.step(closure2)
    assert np.array_equal(model2.flat_data, model.flat_data)
    assert_same_optimizer(opt, opt2)

def test_trainer_fit_continued_after_load_matches(tmp_path):
    model = build(dtype="float64", seed=4)
    opt = optim.Adam(model.parameters(), lr=0.01)
    Trainer(model, CrossEntropyLoss(), opt).fit(X, Y, epochs=2, batch_size=4, seed=1,
                                                 verbose=0)
    cnet.save(model, tmp_path / "t.safetensors", optimizer=opt)
    model2, opt2, _ = cnet.load(tmp_path / "t.safetensors", with_optimizer=True)
    Trainer(model, CrossEntropyLoss(), opt).fit(X, Y, epochs=2, batch_size=4, seed=2,
                                                 verbose=0)
    Trainer(model2, CrossEntropyLoss(), opt2).fit(X, Y, epochs=2, batch_size=4, seed=2,
                                                   verbose=0)
    assert np.array_equal(model2.flat_data, model.flat_data)
    assert_same_model(model, model2)
    assert_same_optimizer(opt, opt2)


def test_param_groups_round_trip(tmp_path):
    model = build("activations")
    params = list(model.parameters())
    opt = optim.SGD([{"params": params[:3], "lr": 0.5}, {"params": params[3:]}], lr=0.1,
                    momentum=0.9)
    train_manually(model, opt, 2)
    cnet.save(model, tmp_path / "g.safetensors", optimizer=opt)
    model2, opt2, _ = cnet.load(tmp_path / "g.safetensors", with_optimizer=True)
    assert_same_optimizer(opt, opt2)
    assert [g["lr"] for g in opt2.param_groups] == [0.5, 0.1]


def test_load_without_optimizer_in_the_file(tmp_path):
    model = build()
    cnet.save(model, tmp_path / "m.safetensors")
    loaded, opt, extra = cnet.load(tmp_path / "m.safetensors", with_optimizer=True)
    assert opt is None and extra is None
    assert_same_model(model, loaded)


def test_file_is_plain_safetensors_with_state_dict_keys(tmp_path):
    model = build("batchnorm_options", "float32")
    opt = optim.Adam(model.parameters())
    cnet.save(model, tmp_path / "m.safetensors", optimizer=opt)
    raw = (tmp_path / "m.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    assert (8 + n) % 8 == 0       # tensors start aligned
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__")
    assert sorted(header) == sorted(list(model.state_dict()) + ["optimizer.exp_avg",
                                                                "optimizer.exp_avg_sq"])
    assert header["0.running_mean"]["dtype"] == "F32"
    assert header["0.num_batches_tracked"] == {"dtype": "I64", "shape": [],
                                               "data_offsets": header["0.num_batches_tracked"]
                                               ["data_offsets"]}
    arch = json.loads(meta["cnet.model"])
    assert arch["dtype"] == "float32" and arch["layers"][1] == {
        "type": "Dense", "config": {"in_features": 5, "out_features": 4, "bias": True,
                                    "init": "he"}}
    assert meta["cnet.format_version"] == cio.FORMAT_VERSION
    assert meta["cnet.version"] == cnet.__version__
    assert json.loads(meta["cnet.optimizer"])["type"] == "Adam"
    tensors, metadata = cio.read_safetensors(tmp_path / "m.safetensors")
    for key, value in model.state_dict().items():
        assert np.array_equal(tensors[key], value) and tensors[key].dtype == value.dtype


def test_model_without_parameters(tmp_path):
    model = Sequential(ReLU(), Dropout(0.5), seed=0)
    cnet.save(model, tmp_path / "m.safetensors")
    loaded = cnet.load(tmp_path / "m.safetensors")
    assert_same_model(model, loaded)
    assert np.array_equal(loaded(X), model(X))


def test_linear_alias_is_saved_as_dense(tmp_path):
    model = Sequential(cnet.Linear(3, 2), seed=0)
    cnet.save(model, tmp_path / "m.safetensors")
    assert type(cnet.load(tmp_path / "m.safetensors")[0]) is Dense


def test_save_rejects_what_it_cannot_write(tmp_path):
    path = tmp_path / "m.safetensors"
    model = build()

    class MyLayer(ReLU):
        pass

    with pytest.raises(TypeError, match="model"):
        cnet.save(object(), path)
    with pytest.raises(TypeError, match="MyLayer"):
        cnet.save(Sequential(Dense(3, 3), MyLayer()), path)
    with pytest.raises(ValueError, match="optimizer"):
        cnet.save(model, path, optimizer=optim.SGD(build().parameters()))
    with pytest.raises(TypeError, match="extra"):
        cnet.save(model, path, extra={"x": object()})
    with pytest.raises(TypeError, match="extra"):
        cnet.save(model, path, extra={"x": float("nan")})
    model[0].weight.data[0, 0] = np.inf
    with pytest.raises(ValueError, match="0.weight holds NaN or inf"):
        cnet.save(model, path)
    assert list(tmp_path.iterdir()) == []


def test_overwrite_keeps_the_file_mode(tmp_path):
    path = tmp_path / "m.safetensors"
    cnet.save(build(), path)
    os.chmod(path, 0o640)
    cnet.save(build(seed=1), path)
    assert (os.stat(path).st_mode & 0o777) == 0o640


# --- atomic writes ---------------------------------------------------------------------------

@pytest.mark.parametrize("writer", ["save", "write_safetensors", "ModelCheckpoint"])
def test_write_errors_name_the_path_given_not_the_temporary_file(tmp_path, writer):
    """The temporary file is an implementation detail: a missing folder, a folder path
    through a file, or a path that is a folder is reported with the user's path, before
    anything is written."""
    def write(path):
        if writer == "save":
            cnet.save(build(), path)
        elif writer == "write_safetensors":
            cio.write_safetensors(path, {"w": np.zeros(3)})
        else:
            model = build()
            trainer = Trainer(model, CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1))
            trainer.fit(X, Y, epochs=1, verbose=0,
                        callbacks=[ModelCheckpoint(path, monitor="loss")])

    (tmp_path / "file").write_bytes(b"x")
    missing = tmp_path / "no_such_dir" / "m.safetensors"
    with pytest.raises(FileNotFoundError, match="folder .*no_such_dir' does not exist") as info:
        write(str(missing))
    assert info.value.filename == str(missing) and ".tmp" not in str(info.value)
    through_file = tmp_path / "file" / "m.safetensors"
    with pytest.raises(NotADirectoryError, match="is a file") as info:
        write(str(through_file))
    assert info.value.filename == str(through_file)
    for folder in (str(tmp_path), str(tmp_path) + os.sep):
        with pytest.raises(IsADirectoryError, match="names a folder") as info:
            write(folder)
        assert info.value.filename == folder
    with pytest.raises(ValueError, match="path: expected a file path"):
        write("")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


@pytest.mark.parametrize("fail", ["write", "fsync", "replace", "interrupt"])
def test_failed_save_leaves_target_untouched_and_no_temp_file(tmp_path, monkeypatch, fail):
    path = tmp_path / "m.safetensors"
    cnet.save(build(seed=1), path)
    before = path.read_bytes()
    if fail == "write":
        original = cio._atomic_write

        def broken_atomic_write(target, write):
            def partial(f):
                f.write(b"partial data")
                raise OSError("disk full")
            original(target, partial)
        monkeypatch.setattr(cio, "_atomic_write", broken_atomic_write)
        error = OSError
    elif fail == "interrupt":
        def interrupted(fd):
            raise KeyboardInterrupt
        monkeypatch.setattr(cio.os, "fsync", interrupted)
        error = KeyboardInterrupt
    else:
        def broken(*args):
            raise OSError(f"{fail} failed")
        monkeypatch.setattr(cio.os, fail, broken)
        error = OSError
    with pytest.raises(error):
        cnet.save(build(seed=2), path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]
    assert_same_model(build(seed=1), cnet.load(path))


KILL_CHILD = """
import sys
import cnet
models = [cnet.Sequential(cnet.Dense(256, 384), cnet.ReLU(), cnet.Dense(384, 256), seed=s)
          for s in (0, 1)]
print("ready", flush=True)
i = 0
while True:
    cnet.save(models[i % 2], sys.argv[1], extra={"which": i % 2})
    i += 1
"""


def test_sigkill_during_save_leaves_a_whole_old_or_new_file(tmp_path):
    """Kill processes looping cnet.save at random moments: the target must always load as
    one of the two models, whole (CNET_KILL_ROUNDS sets the number of kills)."""
    rounds = int(os.environ.get("CNET_KILL_ROUNDS", "12"))
    target = tmp_path / "m.safetensors"
    models = [Sequential(Dense(256, 384), ReLU(), Dense(384, 256), seed=s) for s in (0, 1)]
    cnet.save(models[1], target, extra={"which": 1})
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(rounds):
        child = subprocess.Popen([sys.executable, "-c", KILL_CHILD, str(target)],
                                 stdout=subprocess.PIPE)
        try:
            assert child.stdout.readline().strip() == b"ready"
            time.sleep(rng.uniform(0.0, 0.08))
        finally:
            os.kill(child.pid, signal.SIGKILL)
            child.wait()
            child.stdout.close()
        model, _, extra = cnet.load(target, with_optimizer=True)
        which = extra["which"]
        seen.add(which)
        assert np.array_equal(model.flat_data, models[which].flat_data)
    # Killed processes may leave their temporary file; nothing else is in the folder.
    names = {p.name for p in tmp_path.iterdir()} - {"m.safetensors"}
    assert all(n.startswith(".m.safetensors.") and n.endswith(".tmp") for n in names)


# --- hostile files ---------------------------------------------------------------------------

def raw_file(path, header, data=b"", header_bytes=None, length=None):
    """A safetensors file written byte by byte, whatever it declares."""
    raw = header_bytes if header_bytes is not None else json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw) if length is None else length) + raw + data)
    return path


def cnet_file(path, model=None, optimizer=None, edit=None, tensors=None):
    """A cnet file whose metadata (parsed JSON) and tensors may be edited before writing;
    the checksum is recomputed, so only the semantic checks can catch the edit."""
    model = model or Sequential(Dense(3, 4), ReLU(), Dense(4, 2), seed=0)
    cnet.save(model, path, optimizer=optimizer)
    stored, meta = cio.read_safetensors(path)
    meta = {k: json.loads(v) if k in ("cnet.model", "cnet.optimizer") else v
            for k, v in meta.items()}
    if edit:
        edit(meta)
    if tensors:
        tensors(stored)
    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()}
    cio.write_safetensors(path, stored, meta)
    return path


def rejected(path, match):
    with pytest.raises(ValueError, match=match):
        cnet.load(path, with_optimizer=True)


def test_random_bytes_and_empty_files_are_rejected(tmp_path):
    rng = np.random.default_rng(0)
    for size in [0, 1, 7, 8, 9, 64, 1000, 100_000]:
        path = tmp_path / f"r{size}"
        path.write_bytes(rng.bytes(size))
        rejected(path, "safetensors|truncated|JSON")


def test_a_missing_file_is_an_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        cnet.load(tmp_path / "nope.safetensors")


@pytest.mark.parametrize("length", [0, 1, 2**63, cio.MAX_HEADER_BYTES + 1])
def test_header_lengths_out_of_range(tmp_path, length):
    rejected(raw_file(tmp_path / "f", {}, length=length), "header length|truncated")


@pytest.mark.parametrize("header_bytes, match", [
    (b"{not json}", "not valid JSON"),
    (b"[1, 2]", "not a JSON object"),
    (b'{"a": 1, "a": 2}', "duplicate key"),
    (b'{"__metadata__": {"x": NaN}}', "not valid JSON"),
    (b'{"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "not valid JSON"),
    (b'{"\xff": 1}', "not valid JSON"),
    (b'{"__metadata__": {"x": 1}}', "strings to strings"),
    (b'{"__metadata__": []}', "strings to strings"),
])
def test_headers_that_are_not_valid(tmp_path, header_bytes, match):
    rejected(raw_file(tmp_path / "f", None, header_bytes=header_bytes), match)


@pytest.mark.parametrize("entry, data, match", [
    ({"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, b"\0" * 4, "truncated"),
    ({"dtype": "F32", "shape": [2], "data_offsets": [0, 12]}, b"\0" * 12, "needs 8 bytes"),
    ({"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, b"\0" * 12, "trailing"),
    ({"dtype": "BF16", "shape": [2], "data_offsets": [0, 4]}, b"\0" * 4, "unsupported dtype"),
    ({"dtype": "C64", "shape": [1], "data_offsets": [0, 8]}, b"\0" * 8, "unsupported dtype"),
    ({"dtype": 5, "shape": [1], "data_offsets": [0, 4]}, b"\0" * 4, "unsupported dtype"),
    ({"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}, b"\0" * 4, "shape"),
    ({"dtype": "F32", "shape": [1.0], "data_offsets": [0, 4]}, b"\0" * 4, "shape"),
    ({"dtype": "F32", "shape": [True], "data_offsets": [0, 4]}, b"\0" * 4, "shape"),
    ({"dtype": "F32", "shape": [1] * 33, "data_offsets": [0, 4]}, b"\0" * 4, "shape"),
    ({"dtype": "F32", "shape": [0, 2**63], "data_offsets": [0, 0]}, b"", "int64s"),
    ({"dtype": "F32", "shape": [1] * 100_000, "data_offsets": [0, 4]}, b"\0" * 4,
     r"shape .*\[1, 1, 1, 1, 1, 1, \.\.\.\]$"),    # a long list is not printed whole
    ({"dtype": "F32", "shape": 4, "data_offsets": [0, 16]}, b"\0" * 16, "shape"),
    ({"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}, b"\0" * 4, "data_offsets"),
    ({"dtype": "F32", "shape": [1], "data_offsets": [-4, 0]}, b"\0" * 4, "data_offsets"),
    ({"dtype": "F32", "shape": [1], "data_offsets": [0]}, b"\0" * 4, "data_offsets"),
    ({"dtype": "F32", "shape": [1], "data_offsets": [0, 4], "x": 1}, b"\0" * 4, "exactly"),
    ({"dtype": "F32", "shape": [1]}, b"\0" * 4, "exactly"),
    ("F32", b"", "exactly"),
    ({"dtype": "F32", "shape": [2**40, 2**40], "data_offsets": [0, 2**82]}, b"\0" * 8,
     "truncated"),
    ({"dtype": "F64", "shape": [2**61], "data_offsets": [0, 2**64]}, b"\0" * 8, "truncated"),
])
def test_tensor_entries_that_do_not_fit_the_file(tmp_path, entry, data, match):
    rejected(raw_file(tmp_path / "f", {"w": entry}, data), match)


def test_overlapping_and_gapped_tensors(tmp_path):
    f32 = {"dtype": "F32", "shape": [1]}
    rejected(raw_file(tmp_path / "overlap", {"a": {**f32, "data_offsets": [0, 4]},
                                             "b": {**f32, "data_offsets": [0, 4]}},
                      b"\0" * 4), "contiguous")
    rejected(raw_file(tmp_path / "gap", {"a": {**f32, "data_offsets": [0, 4]},
                                         "b": {**f32, "data_offsets": [8, 12]}},
                      b"\0" * 12), "contiguous")
    rejected(raw_file(tmp_path / "partial", {"a": {**f32, "data_offsets": [0, 4]},
                                             "b": {"dtype": "F32", "shape": [2],
                                                   "data_offsets": [2, 10]}},
                      b"\0" * 10), "contiguous")


def test_huge_declared_sizes_allocate_nothing_large(tmp_path):
    paths = [raw_file(tmp_path / "shape", {"w": {"dtype": "F64", "shape": [2**30, 2**30],
                                                 "data_offsets": [0, 2**63]}}, b"\0" * 64),
             cnet_file(tmp_path / "arch", edit=lambda m: m["cnet.model"]["layers"][0].update(
                 config={"in_features": 3, "out_features": 10**9, "bias": True,
                         "init": "torch"}))]
    for path in paths:
        tracemalloc.start()
        try:
            with pytest.raises(ValueError):
                cnet.load(path)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 1 << 20


def test_safetensors_without_cnet_metadata(tmp_path):
    model = Sequential(Dense(3, 2), seed=0)
    cio.write_safetensors(tmp_path / "plain", model.state_dict())
    rejected(tmp_path / "plain", "not a cnet model file")
    cio.write_safetensors(tmp_path / "nover", model.state_dict(), {"cnet.model": "{}"})
    rejected(tmp_path / "nover", "not a cnet model file")


def test_missing_checksum_and_newer_format(tmp_path):
    path = cnet_file(tmp_path / "f")
    tensors, meta = cio.read_safetensors(path)
    header = {k: {"dtype": "F32", "shape": list(v.shape), "data_offsets": [0, 0]}
              for k, v in tensors.items()}
    offset, data = 0, b""
    for k, v in tensors.items():
        header[k]["data_offsets"] = [offset, offset + v.nbytes]
        offset += v.nbytes
        data += v.tobytes()
    header["__metadata__"] = {k: v for k, v in meta.items() if k != cio.CHECKSUM_KEY}
    rejected(raw_file(tmp_path / "nosum", header, data), "checksum")
    rejected(cnet_file(tmp_path / "v2", edit=lambda m: m.update({"cnet.format_version": "2"})),
             "format version")


def test_corruption_is_detected_by_the_checksum(tmp_path):
    path = cnet_file(tmp_path / "f")
    raw = bytearray(path.read_bytes())
    (n,) = struct.unpack("<Q", raw[:8])
    raw[8 + n + 5] ^= 0x01                 # one bit of a weight's mantissa
    path.write_bytes(bytes(raw))
    rejected(path, "checksum mismatch")


def test_every_single_bit_flip_is_rejected(tmp_path):
    model = Sequential(Dense(2, 2), Dropout(0.5), seed=0)
    cnet.save(model, tmp_path / "m", optimizer=optim.Adam(model.parameters()), extra={"e": 1})
    good = (tmp_path / "m").read_bytes()
    rng = np.random.default_rng(0)
    (n,) = struct.unpack("<Q", good[:8])
    bits = list(range(64)) + list(rng.choice(8 * len(good), 400, replace=False)) + \
        [8 * (8 + n) + i for i in range(8 * (len(good) - 8 - n))]   # every data bit
    path = tmp_path / "flipped"
    for bit in bits:
        raw = bytearray(good)
        raw[bit // 8] ^= 1 << (bit % 8)
        path.write_bytes(bytes(raw))
        with pytest.raises(ValueError):
            cnet.load(path, with_optimizer=True)


def test_every_truncation_is_rejected(tmp_path):
    good = cnet_file(tmp_path / "m").read_bytes()
    path = tmp_path / "cut"
    for size in range(0, len(good), 3):
        path.write_bytes(good[:size])
        rejected(path, "truncated|safetensors|trailing")


def _set_layer(i, **entry):
    return lambda m: m["cnet.model"]["layers"][i].update(entry)


@pytest.mark.parametrize("edit, match", [
    (lambda m: m.update({"cnet.model": "not json"}), "'cnet.model' is not valid JSON"),
    (lambda m: m.update({"cnet.model": "[]"}), "must be an object"),
    (lambda m: m["cnet.model"].update(dtype="float16"), "dtype"),
    (lambda m: m["cnet.model"].update(training="yes"), "training"),
    (lambda m: m["cnet.model"].update(layers=[]), "1 to"),
    (lambda m: m["cnet.model"].update(layers=[{"type": "Identity", "config": {}}] * 10_001),
     "1 to"),
    (_set_layer(1, type="os.system"), "unknown layer type 'os.system'"),
    (_set_layer(1, type="Layer"), "unknown layer type"),
    (_set_layer(1, type=["ReLU"]), "unknown layer type"),
    (_set_layer(1, config={"inplace": True}), "has no argument 'inplace'"),
    (_set_layer(1, config=[]), "config must be an object"),
    (_set_layer(1, extra=1), "expected"),
    (_set_layer(1, rng_state=[1, 2]), "rng_state"),
    (_set_layer(1, type="Dropout", config={"p": 0.5}), "needs an rng_state"),
    (_set_layer(0, config={"in_features": -3, "out_features": 4}), "invalid Dense config"),
    (_set_layer(0, config={"in_features": 3, "out_features": 4, "init": "evil"}),
     "invalid Dense config"),
    (_set_layer(0, config={"in_features": "3", "out_features": 4}), "invalid Dense config"),
    (_set_layer(0, config={"in_features": 3, "out_features": 4, "bias": "no"}),
     "bias='no'"),
    (_set_layer(0, config={"in_features": 3, "out_features": 5}), "needs \\[5, 3\\]"),
    (_set_layer(0, config={"in_features": 3, "out_features": 4, "bias": False}),
     "unexpected tensor '0.bias'"),
    (_set_layer(2, config={"in_features": 5, "out_features": 2}), "the architecture needs"),
])
def test_metadata_that_does_not_describe_a_valid_model(tmp_path, edit, match):
    rejected(cnet_file(tmp_path / "f", edit=edit), match)


def test_numbers_beyond_float64_and_absurd_step_counts_are_rejected(tmp_path):
    """JSON's grammar allows 1e999 and 10**400; a float64 does not, nor an int64 counter."""
    model = Sequential(Dense(3, 4), ReLU(), Dense(4, 2), seed=0)
    optimizer = optim.SGD(model.parameters(), lr=0.001)
    for i, (old, new, match) in enumerate([('"lr": 0.001', '"lr": 1e999', "beyond float64"),
                                           ('"lr": 0.001', '"lr": 1' + "0" * 400, "lr"),
                                           ('"step": 0', f'"step": {2**63}', "step")]):
        path = cnet_file(tmp_path / f"f{i}", model, optimizer)
        stored, meta = cio.read_safetensors(path)
        assert old in meta["cnet.optimizer"]
        meta["cnet.optimizer"] = meta["cnet.optimizer"].replace(old, new)
        cio.write_safetensors(path, stored, meta)
        rejected(path, match)


def test_extra_nested_too_deeply_for_json_is_an_error(tmp_path):
    deep = []
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(ValueError, match="extra: nested too deeply"):
        cnet.save(Sequential(Dense(3, 2)), tmp_path / "m.safetensors", extra=deep)
    assert list(tmp_path.iterdir()) == []


def test_layer_widths_that_do_not_chain(tmp_path):
    def edit(m):
        m["cnet.model"]["layers"] = [{"type": "Dense", "config": {"in_features": 3,
                                                                  "out_features": 4}},
                                     {"type": "Dense", "config": {"in_features": 5,
                                                                  "out_features": 2}}]

    def tensors(t):
        t["2.weight"] = t.pop("2.weight").repeat(2, axis=1)[:, :5].copy()
        t["1.weight"], t["1.bias"] = t.pop("2.weight"), t.pop("2.bias")
    rejected(cnet_file(tmp_path / "f", edit=edit, tensors=tensors), "do not fit")


def test_dropout_with_invalid_stream_state(tmp_path):
    model = Sequential(Dense(3, 3), Dropout(0.2), seed=0)
    for state in ([1], [-1, 0], [2**64, 0], [1.5, 0], "ab"):
        rejected(cnet_file(tmp_path / "f", model, edit=_set_layer(1, rng_state=state)),
                 "rng_state")


@pytest.mark.parametrize("change, match", [
    (lambda t: t.update({"0.weight": t["0.weight"].astype(np.float64)}), "dtype F64"),
    (lambda t: t.update({"0.weight": t["0.weight"].T.copy()}), "shape"),
    (lambda t: t.pop("2.bias"), "'2.bias' is missing"),
    (lambda t: t.update({"3.weight": np.zeros(2, np.float32)}), "unexpected tensor"),
    (lambda t: t.update({"0.weight": np.full((4, 3), np.nan, np.float32)}), "finite"),
    (lambda t: t.update({"0.weight": np.zeros((4, 3), np.int32)}), "dtype I32"),
])
def test_tensors_that_do_not_match_the_architecture(tmp_path, change, match):
    rejected(cnet_file(tmp_path / "f", tensors=change), match)


def test_batchnorm_counter_must_be_int64(tmp_path):
    model = Sequential(Dense(3, 4), BatchNorm1d(4), seed=0)
    rejected(cnet_file(tmp_path / "f", model, tensors=lambda t: t.update(
        {"1.num_batches_tracked": np.zeros((), np.float32)})), "dtype F32, expected I64")


def _set_opt(**spec):
    return lambda m: m["cnet.optimizer"].update(spec)


def _set_group(**group):
    return lambda m: m["cnet.optimizer"]["param_groups"][0].update(group)


@pytest.mark.parametrize("edit, match", [
    (lambda m: m.update({"cnet.optimizer": "{"}), "'cnet.optimizer' is not valid JSON"),
    (lambda m: m.update({"cnet.optimizer": "[]"}), "must be an object"),
    (_set_opt(type="builtins.eval"), "unknown optimizer type"),
    (_set_opt(type="Optimizer"), "unknown optimizer type"),
    (_set_opt(step=-1), "step"),
    (_set_opt(step=1.5), "step"),
    (_set_opt(param_groups=[]), "non-empty list"),
    (_set_opt(state=["exp_avg", "exp_avg"]), "distinct"),
    (_set_opt(state=["exp_avg"]), "unexpected tensor 'optimizer.exp_avg_sq'"),
    (_set_opt(state=["exp_avg", "exp_avg_sq", "max_exp_avg_sq"]), "is missing"),
    (_set_group(params=["0.weight", "9.weight"]), "'9.weight' is not a parameter"),
    (_set_group(params=["0.weight", "0.weight"]), "appears twice"),
    (_set_group(lr=-1.0), "invalid optimizer state.*lr"),
    (_set_group(lr="0.1"), "'lr' must be a number"),
    (_set_group(amsgrad=0), "'amsgrad' must be a bool"),
    (_set_group(betas=["0.9", 0.99]), "'betas' must be a list of number"),
    (_set_group(betas=[0.9]), "invalid optimizer state.*betas"),
    (_set_group(amsgrad=True), "invalid optimizer state"),
    (lambda m: m["cnet.optimizer"]["param_groups"][0].pop("eps"), "missing hyper-parameter"),
    (_set_opt(numbers={"exp_avg": 1}), "numbers must map"),
    (_set_opt(numbers={"n": "1"}), "numbers must map"),
    (_set_opt(numbers=[]), "numbers must map"),
    (_set_opt(numbers={"n_iter": 1}), "invalid optimizer state.*n_iter"),
    (lambda m: m["cnet.optimizer"].pop("numbers"), "must be an object with"),
])
def test_optimizer_metadata_that_is_not_valid(tmp_path, edit, match):
    model = Sequential(Dense(3, 4), ReLU(), Dense(4, 2), seed=0)
    opt = optim.Adam(model.parameters())
    rejected(cnet_file(tmp_path / "f", model, opt, edit=edit), match)


@pytest.mark.parametrize("change, match", [
    (lambda t: t.update({"optimizer.exp_avg": t["optimizer.exp_avg"][:-1].copy()}), "shape"),
    (lambda t: t.update({"optimizer.exp_avg": t["optimizer.exp_avg"].astype(np.float64)}),
     "dtype"),
    (lambda t: t.update({"optimizer.exp_avg_sq": np.full_like(t["optimizer.exp_avg_sq"],
                                                              np.inf)}), "finite"),
])
def test_optimizer_tensors_that_are_not_valid(tmp_path, change, match):
    model = Sequential(Dense(3, 4), ReLU(), Dense(4, 2), seed=0)
    rejected(cnet_file(tmp_path / "f", model, optim.Adam(model.parameters()), tensors=change),
             match)


# --- the safetensors container on its own ----------------------------------------------------

def test_read_and_write_safetensors_round_trip_many_dtypes(tmp_path):
    rng = np.random.default_rng(0)
    tensors = {
        "f16": rng.standard_normal((2, 3)).astype(np.float16),
        "f32": rng.standard_normal(5).astype(np.float32),
        "f64": rng.standard_normal((1, 2, 2)),
        "i8": np.array([-1, 2], np.int8), "u8": np.array([255], np.uint8),
        "i64": np.array(7, np.int64), "u32": np.arange(4, dtype=np.uint32),
        "bool": np.array([True, False]), "empty": np.zeros((0, 3), np.float32),
        "fortran": np.asfortranarray(rng.standard_normal((3, 2))),
        "bigendian": np.arange(3, dtype=">i4"),
    }
    cio.write_safetensors(tmp_path / "t", tensors, {"k": "v"})
    back, meta = cio.read_safetensors(tmp_path / "t")
    assert meta["k"] == "v" and cio.CHECKSUM_KEY in meta
    assert set(back) == set(tensors)
    for k, v in tensors.items():
        assert back[k].shape == v.shape and np.array_equal(back[k], v), k
        assert back[k].dtype == v.dtype.newbyteorder("=")
        assert back[k].flags.writeable and back[k].flags.c_contiguous


def test_write_safetensors_rejects_what_it_cannot_store(tmp_path):
    with pytest.raises(TypeError, match="complex"):
        cio.write_safetensors(tmp_path / "t", {"c": np.zeros(2, complex)})
    with pytest.raises(TypeError, match="object"):
        cio.write_safetensors(tmp_path / "t", {"o": np.array([None])})
    with pytest.raises(ValueError, match="name"):
        cio.write_safetensors(tmp_path / "t", {"__metadata__": np.zeros(2)})
    with pytest.raises(TypeError, match="metadata"):
        cio.write_safetensors(tmp_path / "t", {}, {"k": 1})
    assert list(tmp_path.iterdir()) == []

